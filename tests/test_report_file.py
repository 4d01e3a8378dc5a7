"""The deflect-calls report file: checked before the first send, written after the run, safe in a spreadsheet."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from prefect_intercom.batch.report import BatchItemResult
from prefect_intercom.flows.report_file import (
    REPORT_COLUMNS,
    check_report,
    spreadsheet_safe,
    write_report,
    write_report_csv,
)
from prefect_intercom.outcomes import Outcome


def test_report_cells_a_spreadsheet_would_run_are_neutralised(tmp_path: Path) -> None:
    hostile = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"]
    results = [
        BatchItemResult(index, Outcome.REJECTED, "+1415•••0100", 400, text, text, text)
        for index, text in enumerate(hostile)
    ]
    report = tmp_path / "report.csv"
    write_report_csv(results, str(report))
    with open(report, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row, text in zip(rows, hostile, strict=True):
        assert row["intercom_code"] == row["request_id"] == row["message"] == "'" + text


def test_one_line_per_item_numbered_as_the_file_has_them(tmp_path: Path) -> None:
    results = [BatchItemResult(0, Outcome.SENT, status=200, request_id="req-1"), BatchItemResult(1, Outcome.REJECTED)]
    report = tmp_path / "report.csv"
    assert write_report_csv(results, str(report), lambda index: 10 + index) == 2
    with open(report, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows == [list(REPORT_COLUMNS), ["10", "sent", "200", "", "req-1", ""], ["11", "rejected", "", "", "", ""]]
    assert spreadsheet_safe("") == "" and spreadsheet_safe("plain") == "plain"


def test_the_report_is_checked_before_anything_is_sent(tmp_path: Path) -> None:
    callers = tmp_path / "callers.csv"
    callers.write_text("phone\n+14155550100\n", encoding="utf-8")
    check_report(str(tmp_path / "report.csv"), str(callers))  # a new file in a folder that exists
    assert not (tmp_path / "report.csv").exists()  # the check leaves nothing behind
    for report, reason in [
        (str(callers), "is the input file"),
        (f"file://{callers}", "is the input file"),
        (str(tmp_path), "is a directory"),
        (str(tmp_path / "nowhere" / "report.csv"), "no folder"),
    ]:
        with pytest.raises(ValueError, match=reason):
            check_report(report, str(callers))
    with pytest.raises(ValueError, match="is the input file"):
        check_report("s3://bucket/callers.csv", "s3://bucket/callers.csv/")
    check_report("s3://bucket/report.csv", "s3://bucket/callers.csv")  # a URL is only compared with the input


def test_a_report_that_cannot_be_written_after_the_run_is_one_sentence(tmp_path: Path) -> None:
    results = [BatchItemResult(0, Outcome.SENT)]
    assert write_report(results, str(tmp_path / "report.csv"), lambda index: index + 2) is None
    problem = write_report(results, str(tmp_path), lambda index: index + 2)
    assert problem is not None and problem.startswith(f"cannot write the report {tmp_path}: ")
    assert "\n" not in problem
