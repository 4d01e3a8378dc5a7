"""The batch engine: stream items through the one request pipeline, every item in exactly one outcome.

One Prefect task run per phone costs tens of milliseconds of orchestration, far below
Intercom's rate; a batch sends its items inside one task run through the same pipeline as the
single task (`IntercomClient.prepare` / `asend`, with its retry policy and pacing). Items are
read lazily from any iterable; each ends in exactly one `Outcome`:

| outcome | meaning | texted? | a re-run with the batch key |
| --- | --- | --- | --- |
| `sent` | Intercom accepted it (2xx) | yes | skips it |
| `rejected` | invalid (schema errors in `message`); never sent | no | rejects it again |
| `not_sent` | Intercom refused it, it never connected, or the batch stopped first | no | sends it |
| `unknown` | 5xx, timeout or connection dropped after sending | maybe | skips it (`resend_unknown`) |
| `skipped` | sent (or unknown) by an earlier run, or a duplicate item key in this batch | - | skips it |

Intercom's refusals are definitive (400, 401, 403, 404, 422, and 429 once the retry budget is
spent): `not_sent`, with the status and Intercom's error code. The batch stops early, leaving
the rest `not_sent` for a re-run, when every further item would fail the same way (401, 403,
404), when Intercom's window is spent beyond the retry budget, or after a streak of unknowns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from prefect.filesystems import WritableFileSystem
from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_intercom.batch.concurrency import DEFAULT_MAX_CONCURRENCY, ConcurrencyLimit
from prefect_intercom.batch.keys import KeyTable, key64
from prefect_intercom.batch.ledger import BatchLedger, LedgerError
from prefect_intercom.batch.report import DEFAULT_TABLE_ROWS, BatchItemResult, BatchReport
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.client import IntercomClient, PreparedRequest
from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomError,
    IntercomRateLimitError,
    IntercomTransportError,
    IntercomValidationError,
)
from prefect_intercom.outcomes import Outcome
from prefect_intercom.privacy import mask_digits, mask_phone
from prefect_intercom.retry import outcome_of

DEFAULT_STOP_AFTER_UNKNOWN = 25
# Answers that would be the same for every item: stop instead of failing each one.
_STOP_STATUSES = frozenset({401, 403, 404})

ItemKey = Callable[[Mapping[str, Any]], str]
ProgressCallback = Callable[[BatchReport], Awaitable[None] | None]


class _NotAttempted(IntercomError):
    """The batch stopped before this item's attempt went on the wire."""


@dataclass
class _Pending:
    index: int
    digest: bytes
    phone: str | None
    prepared: PreparedRequest


class _BatchRun:
    """The state of one `asend_batch` call."""

    def __init__(
        self,
        client: IntercomClient,
        ledger: BatchLedger,
        report: BatchReport,
        limit: ConcurrencyLimit,
        *,
        resend_unknown: bool,
        item_key: ItemKey | None,
        stop_after_unknown: int | None,
        on_progress: ProgressCallback | None,
        progress_interval: float,
        check_lease: Callable[[], None],
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.report = report
        self.limit = limit
        self.resend_unknown = resend_unknown
        self.item_key = item_key
        self.stop_after_unknown = stop_after_unknown
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.check_lease = check_lease
        self.seen = KeyTable()  # item key -> index of its first item in this batch
        self.unknown_streak = 0
        self.last_progress = time.monotonic()
        self.reporting = False
        self.ledger_failure: LedgerError | None = None
        self.progress_failures = 0
        self.last_progress_error: str | None = None

    # --- reading and sorting the input -----------------------------------------------------

    def admit(self, index: int, body: Any) -> _Pending | None:
        """Validate one item and decide whether it is sent; record it at once if not."""
        phone = body.get("phone") if isinstance(body, Mapping) else None
        masked = mask_phone(phone) if isinstance(phone, str) else None
        try:
            prepared = self.client.prepare(PHONE_CALL_REDIRECTS, body)
            key = self.item_key(body) if self.item_key is not None else phone
            if not isinstance(key, str) or not key:
                raise ValueError(f"the item key is {key!r}; it must be a non-empty string")
        except IntercomValidationError as error:
            message = "; ".join(str(issue) for issue in error.errors)
            self.report.add(BatchItemResult(index, Outcome.REJECTED, masked, message=message))
            return None
        except Exception as error:  # an item the schema cannot even look at, or a failing item_key
            message = mask_digits(f"{type(error).__name__}: {error}")
            self.report.add(BatchItemResult(index, Outcome.REJECTED, masked, message=message))
            return None
        digest = self.ledger.digest(key)
        first = self.seen.setdefault(key64(digest), index)
        if first != index:
            message = f"same item key as item {first}"
            self.report.add(BatchItemResult(index, Outcome.SKIPPED, masked, None, "duplicate_in_batch", None, message))
            return None
        earlier = self.ledger.previous(digest)
        if earlier is not None and (earlier.outcome is Outcome.SENT or not self.resend_unknown):
            code = "already_sent" if earlier.outcome is Outcome.SENT else "unknown_in_earlier_run"
            message = f"recorded as {earlier.outcome.value} by run {earlier.run} of this batch key"
            self.report.add(BatchItemResult(index, Outcome.SKIPPED, masked, None, code, None, message))
            return None
        if self.report.stopped:
            self.not_attempted(index, masked)
            return None
        return _Pending(index, digest, masked, prepared)

    def not_attempted(self, index: int, phone: str | None) -> None:
        """Record an item the batch stopped before sending."""
        self.report.add(
            BatchItemResult(index, Outcome.NOT_SENT, phone, None, "not_attempted", None, self.report.stopped)
        )

    # --- sending ---------------------------------------------------------------------------

    async def send(self, item: _Pending) -> None:
        """Send one item (its slot already taken) and record its outcome before giving the slot back."""
        announced = False
        uncertain = False  # an earlier attempt may have texted (only with `retry_unknown`)
        on_wire: float | None = None

        async def before_send() -> None:
            nonlocal announced, on_wire
            if self.report.stopped:
                raise _NotAttempted(self.report.stopped)
            self.check_lease()
            if not announced:
                await self.ledger.announce(item.index, item.digest)
                announced = True
                self.check_lease()  # still ours once the announcement is written: nobody else read the ledger
            if on_wire is None:
                on_wire = time.monotonic()

        def on_retry(error: IntercomError, attempt: int, wait: float) -> None:
            nonlocal announced, uncertain
            self.report.retries += 1
            if isinstance(error, IntercomRateLimitError):
                self.report.rate_limited += 1
            if outcome_of(error) is Outcome.UNKNOWN:
                uncertain = True
            elif announced and not uncertain:
                self.ledger.retract(item.index, item.digest, getattr(error, "status_code", None), _code(error))
                announced = False

        try:
            try:
                response = await self.client.asend(item.prepared, before_send=before_send, on_retry=on_retry)
            except IntercomError as error:
                result = self._failed(item, error, announced)
                if (
                    uncertain and result.outcome is Outcome.NOT_SENT
                ):  # its last attempt was refused, an earlier one may have texted
                    result = replace(
                        result,
                        outcome=Outcome.UNKNOWN,
                        message=f"an earlier attempt may have texted; then: {result.message}",
                    )
            except Exception as error:  # not ours to expect; still one outcome, and no more sends
                self._stop(f"unexpected {type(error).__name__} while sending")
                outcome = Outcome.UNKNOWN if on_wire is not None else Outcome.NOT_SENT
                result = BatchItemResult(
                    item.index, outcome, item.phone, error_code="internal_error", message=f"{type(error).__name__}"
                )
            else:
                self.unknown_streak = 0
                result = BatchItemResult(
                    item.index,
                    Outcome.SENT,
                    item.phone,
                    status=response.status_code,
                    request_id=response.request_id,
                    message=f"sent; the answer was cut: {response.truncated}" if response.truncated else None,
                    attempts=response.attempts,
                )
            if announced:
                try:
                    await self.ledger.complete(
                        item.index, item.digest, result.outcome, result.status, result.error_code, result.request_id
                    )
                except LedgerError as error:
                    self._ledger_failed(error)
            self.report.add(result)
        finally:
            self.limit.release(time.monotonic() - on_wire if on_wire is not None else None)
        await self._progress()

    def _failed(self, item: _Pending, error: IntercomError, announced: bool) -> BatchItemResult:
        """The result of a failed send, stopping the batch when the failure concerns every item."""
        if isinstance(error, LedgerError):
            self._ledger_failed(error)
            outcome = Outcome.UNKNOWN if announced else Outcome.NOT_SENT
            return BatchItemResult(item.index, outcome, item.phone, error_code="ledger_failed", message=str(error))
        if isinstance(error, _NotAttempted):
            return BatchItemResult(
                item.index, Outcome.NOT_SENT, item.phone, error_code="not_attempted", message=str(error)
            )
        outcome = outcome_of(error)
        if isinstance(error, IntercomAPIError):
            self._observe(outcome, error)
            message = error.message
            if isinstance(error, IntercomRateLimitError) and error.reset_at is not None:
                message = f"{message}; the window resets at {error.reset_at.isoformat()}, beyond the retry budget"
            return BatchItemResult(
                item.index,
                outcome,
                item.phone,
                status=error.status_code,
                error_code=error.error_code,
                request_id=error.request_id,
                message=message,
                attempts=error.attempts,
            )
        if isinstance(error, IntercomTransportError):
            self._observe(outcome, error)
            code = "no_answer" if outcome is Outcome.UNKNOWN else "no_connection"
            return BatchItemResult(
                item.index, outcome, item.phone, error_code=code, message=str(error), attempts=error.attempts
            )
        # Nothing went out: the pacer would wait beyond the budget, the lease was lost, a shared rate limit is missing.
        self._stop(str(error))
        return BatchItemResult(item.index, Outcome.NOT_SENT, item.phone, error_code=_code(error), message=str(error))

    def _observe(self, outcome: Outcome, error: IntercomError) -> None:
        """Stop the batch when every further item would fail the same way."""
        if isinstance(error, IntercomAuthenticationError) or (
            isinstance(error, IntercomAPIError) and error.status_code in _STOP_STATUSES
        ):
            self._stop(f"Intercom answered {error.status_code} ({error.error_code or 'no code'})")  # type: ignore[attr-defined]
        if isinstance(error, IntercomRateLimitError):
            when = f" until {error.reset_at.isoformat()}" if error.reset_at is not None else ""
            self._stop(f"Intercom's rate limit refused sends{when}, beyond the retry budget")
        if outcome is Outcome.UNKNOWN:
            self.unknown_streak += 1
            limit = self.stop_after_unknown
            if limit is not None and self.unknown_streak >= limit:
                self._stop(f"{self.unknown_streak} answers in a row had an unknown outcome; Intercom may be failing")
        else:
            self.unknown_streak = 0

    def _ledger_failed(self, error: LedgerError) -> None:
        self.ledger_failure = self.ledger_failure or error
        self._stop(f"the batch ledger failed: {error}")

    def _stop(self, reason: str) -> None:
        if self.report.stopped is None:
            self.report.stopped = reason

    async def _progress(self, final: bool = False) -> None:
        if self.on_progress is None or self.reporting:
            return
        now = time.monotonic()
        if not final and now - self.last_progress < self.progress_interval:
            return
        self.last_progress, self.reporting = now, True
        try:
            outcome = self.on_progress(self.report)
            if outcome is not None:
                await outcome
        except Exception as error:  # progress is for people watching: it never stops or loses the batch
            self.progress_failures += 1
            self.last_progress_error = f"{type(error).__name__}"
        finally:
            self.reporting = False


def _code(error: BaseException) -> str:
    """A short reason code for a failure without an Intercom error code."""
    code = getattr(error, "error_code", None)
    if code:
        return str(code)
    name = type(error).__name__
    return {"IntercomRateLimitWaitError": "rate_limit_wait", "BatchKeyLostError": "lease_lost"}.get(
        name, "not_attempted"
    )


def _header_rate(client: IntercomClient) -> Callable[[], float | None]:
    """What the client's pacer knows of Intercom's rate (requests a second), for the adaptive concurrency."""

    def rate() -> float | None:
        pacer = client.pacer
        rates = []
        header_pacer = getattr(pacer, "header_pacer", None)
        learned = getattr(header_pacer, "rate", None)
        if callable(learned):
            rates.append(learned())
        global_limit = getattr(pacer, "global_limit", None)
        rates.append(getattr(global_limit, "slot_decay_per_second", None))
        known = [value for value in rates if value]
        return min(known) if known else None

    return rate


async def asend_batch(
    client: IntercomClient,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    batch_key: str,
    ledger_storage: WritableFileSystem | None = None,
    concurrency: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    resend_unknown: bool = False,
    item_key: ItemKey | None = None,
    stop_after_unknown: int | None = DEFAULT_STOP_AFTER_UNKNOWN,
    expected_total: int | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval: float = 1.0,
    results_path: str | None = None,
    max_table_rows: int = DEFAULT_TABLE_ROWS,
    lock: bool = True,
    lock_wait: float = 0.0,
) -> BatchReport:
    """Send a stream of phone call redirects through `client`; every item ends in one outcome.

    Items are read lazily, validated (invalid ones are `rejected` and never sent), checked
    against the batch ledger (what earlier runs of `batch_key` sent is `skipped`), and sent
    through `client.asend`, so through its retry policy and pacer. Each attempt is written to
    the ledger before it goes on the wire and each outcome before its slot is given back (see
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
        lock: Hold the batch key's lease (`prefect_intercom.lease`) for the whole run, so that
            two runs of one key never send at the same time. Needs a Prefect API.
        lock_wait: Seconds to wait for another run of the key to finish (0: refuse at once).

    Returns:
        The report: every input item in exactly one outcome.

    Raises:
        BatchKeyBusyError: Another run holds the batch key; nothing was sent.
        LedgerError: The ledger could not be read or written (the run stops; what was in
            flight is recorded as unknown at worst).

    Example:
        ```python
        async with IntercomCredentials.load("intercom").get_client(retry=RetryPolicy(), pacer=Pacer()) as client:
            report = await asend_batch(client, [{"phone": "+14155550100"}], batch_key="campaign-7")
        print(report.counts)
        ```
    """
    started = time.monotonic()
    limit = ConcurrencyLimit(concurrency, maximum=max_concurrency, rate=_header_rate(client))
    holder: AbstractAsyncContextManager[Any]
    if lock:
        from prefect_intercom.lease import hold_batch_key

        holder = hold_batch_key(batch_key, wait=lock_wait)
    else:
        holder = nullcontext()
    async with holder as lease:
        ledger = await BatchLedger.open(batch_key, ledger_storage)
        report = BatchReport(
            batch_key=batch_key,
            run=ledger.run,
            expected_total=expected_total,
            results_path=results_path,
            max_table_rows=max_table_rows,
        )
        run = _BatchRun(
            client,
            ledger,
            report,
            limit,
            resend_unknown=resend_unknown,
            item_key=item_key,
            stop_after_unknown=stop_after_unknown,
            on_progress=on_progress,
            progress_interval=progress_interval,
            check_lease=lease.check if lease is not None else _nothing,
        )
        await run._progress(final=True)  # progress is visible from the start
        try:
            await _feed(run, requests)
        finally:
            report.concurrency = limit.peak
            report.elapsed = time.monotonic() - started
            report.close()  # every result is in the file; `report.items()` reads it back
            try:
                await ledger.close()
            except LedgerError as error:
                run.ledger_failure = run.ledger_failure or error
    if run.ledger_failure is not None:
        raise run.ledger_failure
    await run._progress(final=True)
    return report


async def _feed(run: _BatchRun, requests: Iterable[Any] | AsyncIterable[Any]) -> None:
    """Admit items one by one and start each send as a slot frees; wait for all of them."""
    tasks: set[asyncio.Task[None]] = set()
    probed = False
    items = _enumerate(requests)
    index = -1
    broken: str | None = None  # why the input broke off: the items read still go, then the batch stops
    try:
        while True:
            try:
                index, body = await anext(items)
            except StopAsyncIteration:
                break
            except Exception as error:  # the input broke off: what was read is sent and reported
                where = f"after item {index}" if index >= 0 else "before its first item"
                broken = mask_digits(f"the input failed {where}: {type(error).__name__}: {error}")
                break
            pending = run.admit(index, body)
            if pending is None:
                continue
            await run.limit.acquire()
            if run.report.stopped:
                run.limit.release()
                run.not_attempted(pending.index, pending.phone)
                continue
            task = asyncio.create_task(run.send(pending))
            if not probed:  # the first item goes alone: a wrong token or URL costs one request
                probed = True
                await task
                continue
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    if broken is not None:
        run._stop(broken)


def _nothing() -> None:
    return None


def send_batch(client: IntercomClient, requests: Iterable[Any], **options: Any) -> BatchReport:
    """Blocking twin of `asend_batch` (same arguments)."""
    return run_coro_as_sync(asend_batch(client, requests, **options))


async def _enumerate(requests: Iterable[Any] | AsyncIterable[Any]) -> Any:
    """`enumerate` over a sync or async iterable, yielding to the event loop now and then."""
    if isinstance(requests, AsyncIterable):
        index = 0
        async for body in requests:
            yield index, body
            index += 1
        return
    for index, body in enumerate(requests):
        yield index, body
        if index % 64 == 63:
            await asyncio.sleep(0)
