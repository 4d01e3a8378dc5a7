"""What a deflect-calls run tells the UI: its summary artifact's text and its WARNING lines (no Prefect run)."""

from __future__ import annotations

import logging

import pytest

from prefect_intercom.batch.report import BatchItemResult
from prefect_intercom.flows.run_state import is_unknown, log_problems, not_texted, problem_text, summary_markdown
from prefect_intercom.outcomes import Outcome

RESULTS = [
    BatchItemResult(0, Outcome.SENT, "+1415•••0100", 200),
    BatchItemResult(1, Outcome.NOT_SENT, "+1500•••0001", 400, "sms_failed", message="SMS was not sent"),
    BatchItemResult(2, Outcome.REJECTED, None, message="/phone: '' is not a phone number"),
    BatchItemResult(3, Outcome.SKIPPED, "+1415•••0103", error_code="unknown_in_earlier_run"),
]


def test_the_problem_text_is_status_code_then_message() -> None:
    assert problem_text(RESULTS[1]) == "400 sms_failed; SMS was not sent"
    assert problem_text(RESULTS[2]) == "/phone: '' is not a phone number"
    assert problem_text(BatchItemResult(0, Outcome.SENT)) == ""


def test_unknown_and_not_texted() -> None:
    assert [is_unknown(result) for result in RESULTS] == [False, False, False, True]
    assert [not_texted(result) for result in RESULTS] == [False, True, True, False]


def test_the_summary_names_every_row_not_texted_by_its_file_row_and_how_to_resume() -> None:
    markdown = summary_markdown(RESULTS, "campaign-7", "run it again", lambda index: index + 2)
    assert markdown.startswith("# Deflect calls: 4 row(s), 2 not texted, 1 unknown\n")
    assert "Batch key `campaign-7`" in markdown and "| sent | 1 |" in markdown
    assert "- row 3 (+1500•••0001): 400 sms_failed; SMS was not sent" in markdown
    assert "- row 4 (no phone): /phone: '' is not a phone number" in markdown
    assert "- row 5 (+1415•••0103): unknown_in_earlier_run" in markdown
    assert "To resume: run it again; nobody already texted is texted twice." in markdown
    everyone = summary_markdown(RESULTS[:1], "campaign-7", "run it again")
    assert "everyone texted" in everyone and "To resume" not in everyone


def test_one_warning_per_kind_of_problem(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test-run-state")
    with caplog.at_level(logging.WARNING, logger="test-run-state"):
        log_problems(logger, RESULTS, lambda index: index + 2)
    assert [record.getMessage() for record in caplog.records] == [
        "1 row(s) not sent: row 3 (+1500•••0001): 400 sms_failed; SMS was not sent",
        "1 row(s) unknown (may have been texted): row 5 (+1415•••0103): unknown_in_earlier_run",
        "1 row(s) rejected: row 4 (no phone): /phone: '' is not a phone number",
    ]
