"""One batch run's state (`prefect_intercom.batch.run`): sorting items, stopping, progress, the ledger's failure.

Sending through a server: tests/test_batch.py, tests/test_batch_edges.py, tests/test_batch_windows.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.filesystems import LocalFileSystem

from prefect_intercom import IntercomCredentials
from prefect_intercom.batch.attribute_types import RefusedRow
from prefect_intercom.batch.concurrency import ConcurrencyLimit
from prefect_intercom.batch.engine import _feed
from prefect_intercom.batch.ledger import BatchLedger
from prefect_intercom.batch.ledger_store import LocalStore
from prefect_intercom.batch.report import BatchItemResult, BatchReport
from prefect_intercom.batch.run import BatchRun, PendingItem
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


# --- the engine's workers (`engine._feed`), each send faked: what is read, sent and recorded ----


def _sending_to_nowhere(run: BatchRun, sent: list[int], seconds: float = 0.01) -> None:
    """Make `run.send` take `seconds`, record the item sent and give its slot back, as `BatchRun.send` does."""

    async def send(item: PendingItem) -> None:
        sent.append(item.index)
        await asyncio.sleep(seconds)
        run.report.add(BatchItemResult(item.index, Outcome.SENT, item.phone))
        run.limit.release()

    run.send = send  # type: ignore[method-assign]


@pytest.mark.timeout(30)
async def test_a_cancelled_batch_starts_no_send_and_does_not_wait_for_its_input(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    run.limit = ConcurrencyLimit(4)
    sent: list[int] = []
    _sending_to_nowhere(run, sent)
    more = asyncio.Event()

    async def requests() -> AsyncIterator[dict[str, Any]]:  # a stream that waits for more (a queue, a socket)
        for index in range(3):
            yield {"phone": f"+1415555{index:04d}"}
        await more.wait()
        yield {"phone": "+14155559999"}

    batch = asyncio.create_task(_feed(run, requests()))
    await asyncio.sleep(0.2)  # items 0-2 sent, a worker waits for the input
    batch.cancel()
    finished, _ = await asyncio.wait({batch}, timeout=2)
    more.set()  # the input answers after the cancellation
    await asyncio.sleep(0.1)
    assert finished == {batch} and batch.cancelled()  # Ctrl-C does not wait for the input
    assert sent == [0, 1, 2]  # nothing read after the cancellation goes out


class _HostileMapping(dict):  # type: ignore[type-arg]
    def get(self, key: Any, default: Any = None) -> Any:
        raise RuntimeError("a mapping that cannot be read")


async def test_an_item_that_breaks_admission_fails_the_batch_instead_of_vanishing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = new_run(tmp_path)
    run.limit = ConcurrencyLimit(4)
    sent: list[int] = []
    _sending_to_nowhere(run, sent)
    requests = [{"phone": f"+1415555{index:04d}"} for index in range(40)]
    requests[10] = _HostileMapping(phone="+14155550010")
    with pytest.raises(RuntimeError, match="cannot be read"):  # as when one task read the input
        await _feed(run, requests)
    assert len(sent) <= 10 + 4  # no more read once it failed: at most the items workers held
    assert "never retrieved" not in caplog.text


async def test_an_input_that_raises_cancelled_error_is_not_taken_for_its_end(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    run.limit = ConcurrencyLimit(4)
    sent: list[int] = []
    _sending_to_nowhere(run, sent)

    async def requests() -> AsyncIterator[dict[str, Any]]:  # a stream whose own reader was cancelled
        for index in range(8):
            yield {"phone": f"+1415555{index:04d}"}
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):  # as when one task read the input: never a report short of items
        await _feed(run, requests())
    assert sorted(sent) == list(range(8))


@dataclass
class _Answer:
    status_code: int = 200
    request_id: str | None = None
    truncated: str | None = None
    attempts: int = 1


@pytest.mark.timeout(30)
async def test_a_slow_progress_callback_does_not_hold_up_the_sends(tmp_path: Path) -> None:
    sent: list[int] = []
    three_more = asyncio.Event()

    waited: list[bool] = []

    async def on_progress(report: BatchReport) -> None:  # the Prefect API, answering slowly
        if report.total == 1:
            waited.append(await _within(three_more.wait(), seconds=2))

    async def asend(prepared: Any, *, before_send: Any, on_retry: Any) -> _Answer:  # Intercom, answering at once
        await before_send()
        sent.append(len(sent))
        if len(sent) == 4:
            three_more.set()
        return _Answer()

    run = new_run(tmp_path, on_progress=on_progress, progress_interval=0)
    run.client.asend = asend  # type: ignore[method-assign]
    await _feed(run, [{"phone": f"+1415555{index:04d}"} for index in range(6)])  # concurrency 1
    assert waited == [True]  # items 1-3 went out while item 0's progress was being reported
    assert run.report.counts["sent"] == 6


async def _within(awaitable: Any, seconds: float) -> bool:
    """Whether `awaitable` finished within `seconds`."""
    try:
        await asyncio.wait_for(awaitable, timeout=seconds)
    except TimeoutError:
        return False
    return True


def test_a_phone_with_a_lone_surrogate_is_rejected_and_recorded_not_a_crash(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    assert run.admit(0, {"phone": "+1415\ud800"}) is None  # mis-decoded input; the results file is UTF-8
    [result] = run.report.items()
    assert (result.outcome, result.phone) == (Outcome.REJECTED, "+1415\\ud800")
    assert "lone surrogate" in str(result.message)


@pytest.mark.timeout(30)
async def test_a_batch_cancelled_during_its_first_send_records_that_sends_answer(tmp_path: Path) -> None:
    async def asend(prepared: Any, *, before_send: Any, on_retry: Any) -> _Answer:  # Intercom, answering in 0.2 s
        await before_send()
        await asyncio.sleep(0.2)
        return _Answer()

    run = new_run(tmp_path)
    run.client.asend = asend  # type: ignore[method-assign]
    batch = asyncio.create_task(_feed(run, [{"phone": f"+1415555{index:04d}"} for index in range(3)]))
    await asyncio.sleep(0.05)  # item 0, the first, is on the wire
    batch.cancel()  # Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert [(result.index, result.outcome) for result in run.report.items()] == [(0, Outcome.SENT)]


async def test_a_limit_that_shrinks_and_grows_strands_no_item_and_the_first_goes_alone(tmp_path: Path) -> None:
    chance = random.Random(7)
    run = new_run(tmp_path)
    run.limit = ConcurrencyLimit(None, maximum=40, allowed_rate=lambda: chance.choice([5.0, 50.0, 500.0]))
    sent: list[int] = []
    in_flight: list[int] = []

    async def send(item: PendingItem) -> None:
        sent.append(item.index)
        in_flight.append(len(run.limit._slots))
        await asyncio.sleep(chance.random() * 0.005)
        run.report.add(BatchItemResult(item.index, Outcome.SENT, item.phone))
        run.limit.release(chance.choice([0.001, 0.05, 0.3]))  # the limit swings between 4 and 40

    run.send = send  # type: ignore[method-assign]

    async def requests() -> AsyncIterator[dict[str, Any]]:
        for index in range(400):
            if chance.random() < 0.05:
                await asyncio.sleep(0.002)  # the input is slow now and then
            yield {"phone": f"+1415555{index:04d}"}

    await _feed(run, requests())
    assert sorted(sent) == list(range(400)) and run.report.total == 400
    assert in_flight[0] == 1 and max(in_flight) <= run.limit.peak <= 40
