"""One batch run's state (`prefect_intercom.batch.run`): sorting items, stopping, progress, the ledger's failure.

Sending through a server: tests/test_batch.py, tests/test_batch_edges.py, tests/test_batch_windows.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.filesystems import LocalFileSystem

from prefect_intercom import IntercomCredentials
from prefect_intercom.batch.attribute_types import RefusedRow
from prefect_intercom.batch.concurrency import ConcurrencyLimit
from prefect_intercom.batch.ledger import BatchLedger
from prefect_intercom.batch.ledger_store import LocalStore
from prefect_intercom.batch.report import BatchReport
from prefect_intercom.batch.run import BatchRun
from prefect_intercom.errors import LedgerError
from prefect_intercom.outcomes import Outcome


def new_run(tmp_path: Path, **options: Any) -> BatchRun:
    client = IntercomCredentials(access_token="tok_run", base_url="http://127.0.0.1:9").get_client()
    store = LocalStore(LocalFileSystem(basepath=str(tmp_path)))
    ledger = BatchLedger("k", store, scope="", digest_secret=b"s" * 32)
    return BatchRun(client, ledger, BatchReport(batch_key="k"), ConcurrencyLimit(1), **options)


def test_admit_sends_a_valid_item_and_records_every_other_at_once(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    assert run.admit(0, {"phone": "+14155550100"}) is not None
    assert run.admit(1, {"phone": "+14155550100"}) is None  # the same phone again
    assert run.admit(2, {"phone": "not a phone"}) is None
    assert run.admit(3, RefusedRow("+14155550101", "column 'vip': 'yes' is not a boolean")) is None
    assert run.admit(4, ["not", "a", "mapping"]) is None
    results = {result.index: result for result in run.report.items()}
    assert (results[1].outcome, results[1].error_code, results[1].message) == (
        Outcome.SKIPPED,
        "duplicate_in_batch",
        "same phone as item 0",
    )
    assert (
        results[2].outcome is Outcome.REJECTED and results[2].phone is not None and "phone" in str(results[2].message)
    )
    assert (results[3].outcome, results[3].error_code) == (Outcome.REJECTED, "attribute_type")
    assert results[4].outcome is Outcome.REJECTED and results[4].phone is None


def test_a_failing_item_key_rejects_the_item_and_a_custom_key_names_itself(tmp_path: Path) -> None:
    run = new_run(tmp_path, item_key=lambda body: body.get("custom_attributes", {}).get("id", ""))
    assert run.admit(0, {"phone": "+14155550100", "custom_attributes": {"id": "a"}}) is not None
    assert run.admit(1, {"phone": "+14155550101", "custom_attributes": {"id": "a"}}) is None
    assert run.admit(2, {"phone": "+14155550102"}) is None  # an empty key
    results = {result.index: result for result in run.report.items()}
    assert results[1].message == "same item key as item 0"
    assert results[2].outcome is Outcome.REJECTED and "non-empty string" in str(results[2].message)


def test_once_stopped_the_first_reason_stays_and_every_item_admitted_is_not_attempted(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    run.stop("Intercom answered 401 (unauthorized)")
    run.stop("a later reason")
    assert run.admit(0, {"phone": "+14155550100"}) is None
    [result] = run.report.items()
    assert (result.outcome, result.error_code, result.message) == (
        Outcome.NOT_SENT,
        "not_attempted",
        "Intercom answered 401 (unauthorized)",
    )


async def test_progress_is_paced_unless_final_and_a_failing_callback_changes_nothing(tmp_path: Path) -> None:
    calls: list[int] = []

    def on_progress(report: BatchReport) -> None:
        calls.append(report.total)
        raise RuntimeError("the watcher failed")

    run = new_run(tmp_path, on_progress=on_progress, progress_interval=3600)
    await run.progress()
    await run.progress(final=True)
    await run.progress(final=True)
    assert calls == [0, 0] and run.report.stopped is None


class _BrokenLedger:
    async def close(self) -> None:
        raise LedgerError("the last record could not be written")


async def test_a_ledger_that_cannot_close_is_the_runs_failure_unless_one_came_first(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    run.ledger = _BrokenLedger()  # type: ignore[assignment]
    await run.close_ledger()
    assert str(run.ledger_failure) == "the last record could not be written"
    first = LedgerError("an earlier write failed")
    run.ledger_failure = first
    await run.close_ledger()
    assert run.ledger_failure is first
