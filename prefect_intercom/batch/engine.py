"""The batch engine: stream items through the one request pipeline, every item in exactly one outcome.

`asend_batch` sends a batch inside one task run through `IntercomClient.prepare` / `asend`, so with the
single task's retry policy and pacing; outcomes and when a batch stops early: docs/batches.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

from prefect.filesystems import WritableFileSystem
from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_intercom.batch.concurrency import DEFAULT_MAX_CONCURRENCY, ConcurrencyLimit
from prefect_intercom.batch.heap import frozen_heap
from prefect_intercom.batch.lease import hold_batch_key
from prefect_intercom.batch.lease_state import run_logger
from prefect_intercom.batch.ledger import BatchLedger, LedgerApp
from prefect_intercom.batch.ledger_location import ledger_location_note, storage_was_chosen
from prefect_intercom.batch.ledger_secret import load_ledger_key, read_ledger_key
from prefect_intercom.batch.report import DEFAULT_TABLE_ROWS, BatchReport
from prefect_intercom.batch.run import (
    DEFAULT_STOP_AFTER_UNKNOWN,
    BatchRun,
    ItemKeyFunction,
    PendingItem,
    ProgressCallback,
)
from prefect_intercom.client import IntercomClient
from prefect_intercom.errors import IntercomConfigurationError
from prefect_intercom.privacy import mask_digits, phone_number_in

__all__ = ["asend_batch", "check_batch_key", "send_batch"]


def check_batch_key(batch_key: str) -> None:
    """Refuse a batch key that holds what looks like a phone number, before anything is sent.

    The batch key is shown as it is wherever the batch reports (logs, events, artifacts, the
    report's summary, error messages): a phone in it would be personal data in clear there.

    Raises:
        IntercomConfigurationError: The key holds a phone-like number (`privacy.phone_number_in`).
    """
    found = phone_number_in(batch_key) if isinstance(batch_key, str) else None
    if found is not None:
        raise IntercomConfigurationError(
            f"the batch key holds what looks like a phone number ({found}); batch keys are shown in "
            "logs, events and artifacts, so name the batch without personal data (a campaign and a "
            "date: 'callbacks-2026-12-03'); nothing was sent"
        )


async def asend_batch(
    client: IntercomClient,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    batch_key: str,
    ledger_storage: WritableFileSystem | None = None,
    concurrency: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    resend_unknown: bool = False,
    item_key: ItemKeyFunction | None = None,
    stop_after_unknown: int | None = DEFAULT_STOP_AFTER_UNKNOWN,
    expected_total: int | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval: float = 1.0,
    results_path: str | None = None,
    max_table_rows: int = DEFAULT_TABLE_ROWS,
    first_row: int | Callable[[int], int] | None = None,
    lock: bool = True,
    lock_wait: float = 0.0,
) -> BatchReport:
    """Send a stream of phone call redirects through `client`; every item ends in one outcome.

    Items are read lazily, validated (invalid ones are `rejected` and never sent), checked
    against the batch ledger (what earlier runs of `batch_key` sent is `skipped`), and sent
    through `client.asend`, so through its retry policy and pacer. Each attempt is written to
    the ledger before it goes on the wire and each outcome no later than the next attempt (see
    `prefect_intercom.batch.ledger`), so a crash leaves at most the requests in flight `unknown`.

    Args:
        client: The pipeline, configured with its retry policy and pacer.
        requests: Request bodies (`{"phone": ..., "custom_attributes": {...}}`), any iterable.
        batch_key: Identifies the batch across runs; a re-run with the same key does not
            resend what was sent.
        ledger_storage: Where the ledger lives (default: the run's result storage).
        concurrency: Requests in flight; `None` (default) adapts it to Intercom's rate and the
            measured latency, up to `max_concurrency`.
        max_concurrency: The most requests in flight when adapting.
        resend_unknown: Send items whose outcome was unknown in an earlier run (may text twice).
        item_key: The item's identity in the batch, from its body (default: the phone).
        stop_after_unknown: Stop after this many unknown outcomes in a row (`None`: never).
        expected_total: The number of items, if known (for progress only).
        on_progress: Called with the report at most every `progress_interval` seconds
            and at the end (may be async).
        progress_interval: Seconds between progress calls.
        results_path: A file to write every item's result to (JSON Lines); default: a
            temporary file removed with the report.
        max_table_rows: Rows the report keeps for its table (problems first).
        first_row: What people call item 0 (`2` for CSV rows), or each item's row number
            (`scan_csv(...).row_numbers`); default: `item 0` (`BatchReport.first_row`).
        lock: Hold the batch key's lease (`prefect_intercom.batch.lease`) for the whole run, so that
            two runs of one key never send at the same time. Needs a Prefect API.
        lock_wait: Seconds to wait for another run of the key to finish (0: refuse at once).

    Returns:
        The report: every input item in exactly one outcome.

    Raises:
        IntercomConfigurationError: The batch key holds what looks like a phone number
            (`check_batch_key`); nothing was sent.
        BatchKeyBusyError: Another run holds the batch key; nothing was sent. (A lease lost
            while sending is no exception: the batch stops, the rest `not_sent` as `lease_lost`.)
        LedgerError: The ledger could not be read or written (the run stops; what was in
            flight is recorded as unknown at worst).

    Example:
        ```python
        async with IntercomCredentials.load("intercom").get_client(retry=RetryPolicy(), pacer=Pacer()) as client:
            report = await asend_batch(client, [{"phone": "+14155550100"}], batch_key="campaign-7")
        print(report.counts)
        ```
    """
    check_batch_key(batch_key)
    started = time.monotonic()
    pacer_rate = client.pacer.rate if client.pacer is not None else None  # what the pacer knows of Intercom's rate
    limit = ConcurrencyLimit(concurrency, maximum=max_concurrency, allowed_rate=pacer_rate)
    # The ledger key is read while the lease is taken (a read claims nothing); a key still to be created is
    # created once the lease is held (created alongside the lease's writes, it waited seconds for SQLite).
    lease_context = hold_batch_key(batch_key, wait=lock_wait) if lock else nullcontext()
    async with _reading_ledger_key() as key, lease_context as lease:
        ledger = await BatchLedger.open(
            batch_key, ledger_storage, app=LedgerApp.of(client), ledger_key=load_ledger_key(read=key)
        )
        note = await ledger_location_note(
            local=ledger.local, where=ledger.where, chosen=await storage_was_chosen(ledger_storage)
        )
        if note is not None:
            run_logger(__name__).warning(note)
        report = BatchReport(
            batch_key=batch_key,
            run=ledger.run,
            expected_total=expected_total,
            results_path=results_path,
            max_table_rows=max_table_rows,
            first_row=first_row,
            ledger_note=note,
        )
        run = BatchRun(
            client,
            ledger,
            report,
            limit,
            resend_unknown=resend_unknown,
            item_key=item_key,
            stop_after_unknown=stop_after_unknown,
            on_progress=on_progress,
            progress_interval=progress_interval,
            confirm_lease=lease.confirm if lease is not None else None,
        )
        # Progress is visible from the start: its first call goes while the first item is sent (a periodic
        # call meanwhile is skipped), and is over before the last one.
        first_progress = asyncio.ensure_future(run.progress(final=True))
        try:
            with frozen_heap():  # full collections would walk the whole process's objects (batch/heap.py)
                await _feed(run, requests)
        finally:
            report.concurrency = limit.peak
            report.elapsed = time.monotonic() - started
            report.close()  # every result is in the file; `report.items()` reads it back
            await asyncio.wait({first_progress})
            await run.close_ledger()
    if run.ledger_failure is not None:
        raise run.ledger_failure
    await run.progress(final=True)
    return report


@asynccontextmanager
async def _reading_ledger_key() -> AsyncIterator[asyncio.Future[bytes | None]]:
    """The ledger key being read (`None` if it is still to be created); the read is over when the block is."""
    reading = asyncio.ensure_future(read_ledger_key())
    try:
        yield reading
    finally:
        reading.cancel()  # nothing if it was over
        await asyncio.wait({reading})
        if not reading.cancelled():
            reading.exception()  # retrieved: a failure the block never awaited (the lease refused) is no warning


async def _feed(run: BatchRun, requests: Iterable[Any] | AsyncIterable[Any]) -> None:
    """Send every admitted item from workers, as many as the concurrency limit; wait for all of them.

    A worker that has sent an item reads and sends the next one itself, so a freed slot is used
    without another turn of the event loop (a turn costs about a millisecond at 2,000 items/s).
    The first item goes alone: a wrong token or URL costs one request. Cancelled, or once a
    worker fails, no item starts: the workers reading the input or waiting for a slot are
    cancelled, the sends under way finish; a worker's failure is then raised.
    """
    source = _Admitted(run, requests)
    workers: set[asyncio.Task[None]] = set()
    sending: set[asyncio.Task[Any] | None] = set()  # the tasks holding a slot: finished, never cut
    failures: list[BaseException] = []
    aside = 0  # a worker calling `on_progress` (the Prefect API, maybe slow) is replaced meanwhile

    def top_up() -> None:  # as many workers as the limit allows (it grows as latency is measured)
        while len(workers) - aside < run.limit.limit and not source.over:
            worker = asyncio.create_task(work())
            workers.add(worker)
            worker.add_done_callback(workers.discard)

    def halt() -> None:  # no more items: a read or a wait for a slot is cut (the input may never answer)
        source.over = True
        for worker in workers - sending:
            if worker is not asyncio.current_task():
                worker.cancel()

    async def report() -> None:
        nonlocal aside
        if not run.progress_due():
            return
        aside += 1
        top_up()
        try:
            await run.progress()
        finally:
            aside -= 1

    async def work() -> None:
        me = asyncio.current_task()
        try:
            while len(workers) - aside <= run.limit.limit:  # the limit shrank: the workers beyond it end
                pending = await source.next()
                if pending is None:
                    return
                await _send(run, pending, sending, me)
                if run.progress_due():  # checked here: no coroutine made per item for nothing
                    await report()
                top_up()
        except (Exception, asyncio.CancelledError) as error:  # kept, not lost in a task nobody awaits
            if isinstance(error, asyncio.CancelledError) and me is not None and me.cancelling():
                raise  # cut by `halt`
            failures.append(error)
            halt()

    try:
        first = await source.next()
        if first is not None:  # in a task of its own, shielded: cancelled meanwhile, its answer is awaited too
            probe = asyncio.create_task(_send(run, first, sending))
            workers.add(probe)
            probe.add_done_callback(workers.discard)
            await asyncio.shield(probe)
            await report()
        top_up()
        while workers:  # a worker that ended early (the limit shrank) is replaced while items remain
            await asyncio.wait(set(workers), return_when=asyncio.FIRST_COMPLETED)
            top_up()
    finally:
        halt()  # cancelled: no more items are handed out; those in flight finish
        await asyncio.gather(*workers, return_exceptions=True)
    if failures:
        raise failures[0]
    if source.broken is not None:
        run.stop(source.broken)


async def _send(
    run: BatchRun, pending: PendingItem, sending: set[asyncio.Task[Any] | None], task: asyncio.Task[Any] | None = None
) -> None:
    """Send one admitted item in a slot of the concurrency limit (not at all once the batch stopped).

    `task` is the task sending it (a worker knows itself; by default the current task).
    """
    await run.limit.acquire()
    if run.report.stopped:
        run.limit.release()
        run.not_attempted(pending.index, pending.phone)
        return
    if task is None:
        task = asyncio.current_task()
    sending.add(task)
    try:
        await run.send(pending)
    finally:
        sending.discard(task)


_END = object()  # the input has no more items


class _Admitted:
    """The input, read by one worker at a time: `next()` admits items until one is to be sent.

    A plain iterable is read with no `await` between taking an item and numbering it, so workers
    read it without a lock; an async one is read under a lock (an async generator takes one reader).

    Attributes:
        over: No more items are handed out (the input ended or broke off, or the batch was cancelled).
        broken: Why the input broke off, if it did: the items read still go, then the batch stops.
    """

    def __init__(self, run: BatchRun, requests: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._run = run
        self._requests = requests
        self._plain: Iterator[Any] | None = None
        self._stream: AsyncIterator[Any] | None = None
        self._reading = asyncio.Lock()
        self._index = -1
        self.over = False
        self.broken: str | None = None

    async def next(self) -> PendingItem | None:
        """The next item to send (items rejected or skipped are recorded on the way), or `None`."""
        if not isinstance(self._requests, AsyncIterable):
            return await self._admit_next(self._read_plain)
        async with self._reading:
            return await self._admit_next(self._read_stream)

    async def _admit_next(self, read: Callable[[], Awaitable[Any]]) -> PendingItem | None:
        passed = 0
        while not self.over:
            try:
                body = await read()
            except Exception as error:
                self._broke(error)
                break
            if body is _END:
                self.over = True
                break
            self._index += 1
            pending = self._run.admit(self._index, body)
            if pending is not None:
                return pending
            passed += 1
            if passed % 64 == 0:  # a long run of items not sent (a re-run skipping them): the loop goes on
                await asyncio.sleep(0)
        return None

    async def _read_plain(self) -> Any:
        """The next item of a plain iterable (`_END` after the last), read without suspending."""
        if self._plain is None:
            self._plain = iter(self._requests)  # type: ignore[arg-type]
        return next(self._plain, _END)

    async def _read_stream(self) -> Any:
        """The next item of an async iterable (`_END` after the last)."""
        if self._stream is None:
            self._stream = aiter(self._requests)  # type: ignore[arg-type]
        return await anext(self._stream, _END)

    def _broke(self, error: Exception) -> None:
        """The input broke off: what was read is sent and reported, then the batch stops."""
        where = f"after item {self._index}" if self._index >= 0 else "before its first item"
        self.broken = mask_digits(f"the input failed {where}: {type(error).__name__}: {error}")
        self.over = True


def send_batch(client: IntercomClient, requests: Iterable[Any], **options: Any) -> BatchReport:
    """Blocking twin of `asend_batch` (same arguments)."""
    return run_coro_as_sync(asend_batch(client, requests, **options))
