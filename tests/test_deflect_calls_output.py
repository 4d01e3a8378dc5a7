"""What `prefect-intercom deflect-calls` prints: refused rows, counts, a stopped batch in one line."""

from __future__ import annotations

import logging

import pytest

from prefect_intercom.batch.report import BatchItemResult
from prefect_intercom.flows.deflect_calls_output import _HideFailures, counts, print_problems, stop_line
from prefect_intercom.outcomes import Outcome

HOW = "run the same command again"


def _not_attempted(index: int, message: str = "Intercom answered 401 (unauthorized)") -> BatchItemResult:
    return BatchItemResult(index, Outcome.NOT_SENT, error_code="not_attempted", message=message)


def test_a_batch_that_did_not_stop_early_has_no_stop_line() -> None:
    assert stop_line([BatchItemResult(0, Outcome.SENT, attempts=1)], HOW) is None


def test_a_wrong_token_stop_names_the_status_the_code_and_the_fix() -> None:
    refused = BatchItemResult(0, Outcome.NOT_SENT, status=401, error_code="unauthorized", attempts=1)
    line = stop_line([refused, _not_attempted(1), _not_attempted(2)], HOW)
    assert line == (
        "401 unauthorized (unauthorized): stopped after 1 request; 2 rows not attempted; "
        "check the access token of the credentials block, then run the same command again to resume"
    )
    wrong_region = BatchItemResult(0, Outcome.NOT_SENT, status=404, error_code="not_found", attempts=1)
    assert "404 not found (not_found)" in stop_line([wrong_region, _not_attempted(1)], HOW)
    assert "check its region, then run" in stop_line([wrong_region, _not_attempted(1)], HOW)


def test_another_stop_says_the_batch_s_reason() -> None:
    sent = [BatchItemResult(index, Outcome.SENT, status=200, attempts=1) for index in range(3)]
    line = stop_line([*sent, _not_attempted(3, "Intercom's rate limit refused sends")], HOW)
    assert line == (
        "Intercom's rate limit refused sends: stopped after 3 requests; 1 rows not attempted; "
        "run the same command again to resume"
    )


def test_the_counts_in_the_run_s_words() -> None:
    results = [BatchItemResult(0, Outcome.SENT), BatchItemResult(1, Outcome.REJECTED), BatchItemResult(2, Outcome.SENT)]
    assert counts(results, dry_run=False) == "2 sent, 1 rejected, 0 not_sent, 0 unknown, 0 skipped"
    valid = BatchItemResult(0, Outcome.NOT_SENT, error_code="dry_run")
    assert counts([valid, BatchItemResult(1, Outcome.REJECTED)], dry_run=True) == (
        "dry run, nothing sent: 1 valid, 1 rejected, 0 skipped"
    )


def test_one_printable_line_per_refused_row(capsys: pytest.CaptureFixture[str]) -> None:
    results = [
        BatchItemResult(0, Outcome.SENT, "+1415•••0100", 200),
        BatchItemResult(1, Outcome.REJECTED, None, message="/phone: '' is not a phone number"),
        BatchItemResult(2, Outcome.NOT_SENT, "+1500•••0001", 400, "sms_failed", message="SMS was not sent\x1b[2J"),
        BatchItemResult(3, Outcome.NOT_SENT, "+1415•••0103", error_code="dry_run"),  # valid in a dry run
        _not_attempted(4),  # counted, not listed
    ]
    print_problems(results, lambda index: index + 2)
    assert capsys.readouterr().out.splitlines() == [
        "row 3: (no phone) rejected: /phone: '' is not a phone number",
        "row 4: +1500•••0001 not_sent: 400 sms_failed; SMS was not sent\\x1b[2J",
    ]


@pytest.mark.parametrize(
    ("level", "message", "shown"),
    [
        (logging.INFO, "Sending batch", False),
        (logging.WARNING, "The ledger is on local disk", True),
        (logging.WARNING, "The batch ended early after 2 sent", False),  # the command says it in its own words
        (logging.ERROR, "Flow run failed", False),
    ],
)
def test_the_quiet_console_keeps_only_prefect_s_warnings(level: int, message: str, shown: bool) -> None:
    record = logging.LogRecord("prefect", level, __file__, 1, message, None, None)
    assert _HideFailures().filter(record) is shown
