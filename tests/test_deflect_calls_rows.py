"""One row numbering, a readable table, the report path checked by the flow, the dry run in the run's words.

Rows are numbered as the file has them (header row 1, blank lines counted) in the report file,
the table artifact, the flow-run summary and every message that points at another row
(issue 15, item 3); the table puts outcome, reason and row first and cuts no word (item 4); a
deployment run checks its report path before the first send, as the command does (issue 16);
the dry run counts and words what the run would (issue 15, item 8); a missing block hints at deflect-calls (item 9).
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from prefect_intercom import IntercomCredentials
from prefect_intercom.batch.report import TABLE_MESSAGE_CHARS, BatchItemResult, BatchReport
from prefect_intercom.cli import main as prefect_intercom
from prefect_intercom.flows.deflect_calls import deflect_calls
from prefect_intercom.outcomes import Outcome
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN

# Line numbers as an editor or a spreadsheet shows them: 1 header, 2-3 blank, 4 valid, 5 blank,
# 6 invalid, 7 valid, 8 the phone of row 4 again, 9 blank, 10 no phone, 11 valid.
CALLERS = (
    "phone,issue_type\n\n\n+14155550100,Billing\n\n+1 415 555 0199,Billing\n+14155550101,Support\n"
    "+14155550100,Again\n\n,Support\n+14155550102,Billing\n"
)
FILE_ROWS = {"sent": ["4", "7", "11"], "rejected": ["6", "10"], "skipped": ["8"]}


@pytest.fixture
def callers(tmp_path: Path) -> Path:
    path = tmp_path / "callers.csv"
    path.write_text(CALLERS, encoding="utf-8")
    return path


def _block(url: str) -> str:
    name = f"rows-{uuid.uuid4().hex[:8]}"
    IntercomCredentials(access_token=SECRET_TOKEN, base_url=url).save(name, overwrite=True)
    return name


def _report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _artifacts(flow_run_id: Any) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_one_row_numbering_in_the_report_the_table_the_summary_and_the_duplicate_message(
    prefect_server: None, sandbox: Sandbox, callers: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.csv"
    state = deflect_calls(
        csv_path=str(callers),
        block_name=_block(sandbox.url),
        batch_key=f"rows-{uuid.uuid4().hex[:8]}",
        report_path=str(report),
        return_state=True,
    )
    assert state.is_completed(), state.message
    rows = _report(report)
    for outcome, numbers in FILE_ROWS.items():
        assert [row["row"] for row in rows if row["outcome"] == outcome] == numbers
    [duplicate] = [row for row in rows if row["outcome"] == "skipped"]
    assert duplicate["message"] == "same phone as row 4"

    artifacts = _artifacts(state.state_details.flow_run_id)
    [table] = [artifact for artifact in artifacts if artifact.type == "table"]
    data = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert all(list(row)[:3] == ["outcome", "reason", "row"] for row in data)
    for outcome, numbers in FILE_ROWS.items():
        assert sorted(str(row["row"]) for row in data if row["outcome"] == outcome) == sorted(numbers)
    assert [row["message"] for row in data if row["outcome"] == "skipped"] == ["same phone as row 4"]
    [summary] = [a for a in artifacts if a.task_run_id is None and a.type == "markdown"]
    assert "- row 6 (" in summary.data and "- row 10 (" in summary.data


def test_the_table_puts_outcome_reason_and_row_first_and_cuts_no_word() -> None:
    words = "the phone number must be in E.164 format: a plus sign, the country code and the number without"
    long = f"{words} spaces or punctuation, e.g. +14155550100 " * 3
    report = BatchReport(batch_key="k", first_row=2)
    report.add(BatchItemResult(0, Outcome.NOT_SENT, "+1415•••0100", 400, "invalid_phone_number", "req-1", long))
    report.add(BatchItemResult(1, Outcome.REJECTED, None, message="at /phone: missing"))
    first, second = report.table_rows()
    assert list(first)[:3] == ["outcome", "reason", "row"]
    assert (first["reason"], first["row"]) == ("400 invalid_phone_number", 2)
    assert (second["reason"], second["row"]) == ("invalid", 3)
    message = first["message"]
    assert len(message) <= TABLE_MESSAGE_CHARS and message.endswith("…")
    assert long.startswith(message[:-1]) and long[len(message) - 1] == " "  # cut before a space: a whole word
    assert second["message"] == "at /phone: missing"


@pytest.mark.parametrize("target", ["/dev/full", "missing-folder", "input"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_deployment_run_checks_its_report_path_before_the_first_send(
    prefect_server: None, sandbox: Sandbox, callers: Path, tmp_path: Path, target: str, dry_run: bool
) -> None:
    report = {"/dev/full": "/dev/full", "missing-folder": str(tmp_path / "no" / "r.csv"), "input": str(callers)}
    state = deflect_calls.with_options(retries=0)(
        csv_path=str(callers),
        block_name=_block(sandbox.url),
        batch_key=f"rows-{uuid.uuid4().hex[:8]}",
        report_path=report[target],
        dry_run=dry_run,
        return_state=True,
    )
    assert state.is_failed()
    message = (state.message or "").splitlines()
    assert len(message) == 1 and "the report" in message[0] and "nothing was sent" in message[0], message
    assert sandbox.received == []
    assert callers.read_text(encoding="utf-8") == CALLERS


def test_the_dry_run_counts_and_words_what_the_run_does(
    prefect_server: None, sandbox: Sandbox, callers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dry_report, run_report = tmp_path / "dry.csv", tmp_path / "run.csv"
    assert prefect_intercom(["deflect-calls", str(callers), "--dry-run", "--report", str(dry_report)]) == 0
    dry = capsys.readouterr().out.splitlines()
    block = _block(sandbox.url)
    argv = ["deflect-calls", str(callers), "--block", block, "--report", str(run_report)]
    assert prefect_intercom([*argv, "--batch-key", f"rows-{uuid.uuid4().hex[:8]}"]) == 0
    run = capsys.readouterr().out.splitlines()
    assert len(sandbox.received) == 3

    assert [line for line in dry if line.startswith("row ")] == [line for line in run if line.startswith("row ")]
    [dry_done] = [line for line in dry if line.startswith("Done: ")]
    assert dry_done == "Done: dry run, nothing sent: 3 valid, 2 rejected, 1 skipped"
    [run_done] = [line for line in run if line.startswith("Done: ")]
    assert run_done.startswith("Done: 3 sent, 2 rejected, 0 not_sent, 0 unknown, 1 skipped")
    would_send = {"not_sent": "sent"}  # the dry run's valid rows are the ones the run sends
    dry_rows, run_rows = _report(dry_report), _report(run_report)
    assert [(r["row"], would_send.get(r["outcome"], r["outcome"])) for r in dry_rows] == [
        (r["row"], r["outcome"]) for r in run_rows
    ]
    for dry_row, run_row in zip(dry_rows, run_rows, strict=True):
        if run_row["outcome"] in ("rejected", "skipped"):
            assert dry_row == run_row


def test_a_deployment_run_with_a_missing_block_hints_at_deflect_calls_not_test_request(
    prefect_server: None, callers: Path
) -> None:
    state = deflect_calls.with_options(retries=0)(
        csv_path=str(callers), block_name=f"nope-{uuid.uuid4().hex[:6]}", return_state=True
    )
    assert state.is_failed() and "No Intercom credentials block named" in (state.message or "")
    assert "test-request" not in (state.message or "") and "deflect-calls FILE --sandbox" in (state.message or "")


def test_the_command_line_reads_back_what_the_batch_streamed(tmp_path: Path) -> None:
    """`read_results` reads the results file `BatchReport` writes (a real report, its real constructor)."""
    from prefect_intercom.flows.deflect_calls import read_results, refused_every_send, sent_so_far

    path = tmp_path / "results.jsonl"
    report = BatchReport(batch_key="campaign-7", results_path=str(path))
    written = [
        BatchItemResult(1, Outcome.SENT, "+1415•••0101", 200, None, "req-1", None, 1),
        BatchItemResult(0, Outcome.SKIPPED, "+1415•••0100", None, "already_sent", None, "recorded as sent", 0),
        BatchItemResult(2, Outcome.NOT_SENT, "+1415•••0102", 401, "unauthorized", "req-2", "Access Token Invalid", 1),
        BatchItemResult(3, Outcome.NOT_SENT, None, None, "not_attempted", None, "stopped", 0),
    ]
    for result in written:
        report.add(result)
    report.close()
    assert list(read_results(path)) == written == list(report.iter_items())
    assert sent_so_far(written) == 2
    assert refused_every_send(written) == written[2]
    assert refused_every_send(written[:2]) is None
    assert list(read_results(tmp_path / "none.jsonl")) == []
