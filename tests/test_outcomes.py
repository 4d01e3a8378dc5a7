"""The outcome vocabulary: its values are the words of reports, ledgers and events."""

from __future__ import annotations

from prefect_intercom.outcomes import Outcome


def test_the_outcomes_and_their_words() -> None:
    assert [outcome.value for outcome in Outcome] == ["sent", "rejected", "not_sent", "unknown", "skipped"]
    assert Outcome("not_sent") is Outcome.NOT_SENT
    assert f"{Outcome.UNKNOWN}" == "unknown"  # a StrEnum: formats as its word
