"""Batch sends: many phone call redirects in one task run, every item in exactly one outcome.

One Prefect task run per phone costs tens of milliseconds of orchestration, far below
Intercom's rate; a batch sends its items inside one task run, with bounded concurrency,
through the same pipeline as the single task (`IntercomClient.prepare` / `asend`, with its
retry policy and pacing). Items are read lazily from any iterable, so a CSV of 100,000 rows
is never held whole; each item ends in exactly one `ItemOutcome`:

| outcome | meaning | texted? | a re-run with the batch key |
| --- | --- | --- | --- |
| `sent` | Intercom accepted it (2xx) | yes | skips it |
| `rejected` | invalid (schema errors in `message`); never sent | no | rejects it again |
| `not_sent` | Intercom refused it (see below), it never connected, or the batch stopped first | no | sends it |
| `unknown` | 5xx, timeout or connection dropped after sending | maybe | skips it (`resend_unknown`) |
| `skipped` | sent (or unknown) by an earlier run, or a duplicate item key in this batch | - | skips it |

Intercom's refusals are definitive: 400 (`invalid_phone_number`, `sms_failed`), 401, 403,
404, 422, and 429 once the retry budget is spent. They are `not_sent`, with the status and
Intercom's error code, rather than a separate "failed": the person was not texted, and a
re-run may send them again.

`asend_batch` is the plain function (tests and scripts call it without Prefect); the tasks
`create_phone_call_redirects` / `acreate_phone_call_redirects` add the credentials block,
the default batch key, a progress artifact while running and a table artifact at the end.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.filesystems import WritableFileSystem
from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.client import IntercomClient, PreparedRequest
from prefect_intercom.credentials import IntercomCredentials
from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomError,
    IntercomRateLimitError,
    IntercomTransportError,
    IntercomValidationError,
    Outcome,
)
from prefect_intercom.ledger import BatchLedger
from prefect_intercom.pacing import Pacer
from prefect_intercom.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from prefect_intercom.tasks import mask_phone

DEFAULT_CONCURRENCY = 16
DEFAULT_CHUNK_SIZE = 200
DEFAULT_STOP_AFTER_UNKNOWN = 25
DEFAULT_TABLE_ROWS = 500
# Answers that would be the same for every item: stop instead of failing each one.
_STOP_STATUSES = frozenset({401, 403, 404})

ItemKey = Callable[[Mapping[str, Any]], str]
ProgressCallback = Callable[["BatchReport"], Awaitable[None] | None]


class ItemOutcome(str, Enum):
    """The one outcome of a batch item (see the table in the module docstring)."""

    SENT = "sent"
    REJECTED = "rejected"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class BatchItemResult:
    """What happened to one input item.

    Attributes:
        index: Position of the item in the input (0-based).
        outcome: Its one outcome.
        phone: The phone number, masked (`+1415•••0100`), when the item had one.
        status: Intercom's HTTP status, when Intercom answered.
        error_code: Intercom's error code (`invalid_phone_number`, `rate_limit_exceeded`...),
            or this package's reason for `skipped` (`already_sent`, `unknown_in_earlier_run`,
            `duplicate_in_batch`) and `not_sent` (`not_attempted`, `no_connection`).
        request_id: Intercom's request id (for `skipped`: the earlier run's, when known).
        message: Details: validation errors, Intercom's message, why the item was skipped.
        attempts: How many times it was sent in this run (0 when it never was).
    """

    index: int
    outcome: ItemOutcome
    phone: str | None = None
    status: int | None = None
    error_code: str | None = None
    request_id: str | None = None
    message: str | None = None
    attempts: int = 0


# A result as kept in memory (a report may hold 100,000 of them): the common case, sent at
# the first attempt with a 200, as `(index, request_id, masked phone as UTF-8)`; any other
# as a tuple in `BatchItemResult` field order.
_Row = tuple[Any, ...]
_PROBLEM_ORDER = {"unknown": 0, "not_sent": 1, "rejected": 2, "skipped": 3, "sent": 4}


@dataclass
class BatchReport:
    """The report of one batch run: every input item in exactly one outcome.

    Attributes:
        batch_key: The batch key (what a re-run must pass to skip what this run sent).
        run: The run number of this batch key (0 for the first).
        counts: Items per outcome (every `ItemOutcome` value is present).
        reasons: Items per `outcome status error_code` (e.g. `not_sent 400 invalid_phone_number`).
        retries: Attempts beyond the first, over all items.
        rate_limited: 429 answers that were retried (a 429 beyond the retry budget is a
            `not_sent` item with status 429).
        stopped: Why the batch stopped sending early, if it did (remaining items are `not_sent`).
        expected_total: How many items the caller announced, if it did (for progress).
        elapsed: Seconds from start to end.
    """

    batch_key: str
    run: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {outcome.value: 0 for outcome in ItemOutcome})
    reasons: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    rate_limited: int = 0
    stopped: str | None = None
    expected_total: int | None = None
    elapsed: float = 0.0
    _rows: list[_Row] = field(default_factory=list, repr=False)

    @property
    def total(self) -> int:
        """Items with an outcome so far."""
        return len(self._rows)

    @property
    def sent(self) -> int:
        """Items Intercom accepted in this run."""
        return self.counts[ItemOutcome.SENT.value]

    def add(self, result: BatchItemResult) -> None:
        """Record the outcome of one item."""
        self._add(
            result.index,
            result.outcome,
            result.phone,
            result.status,
            result.error_code,
            result.request_id,
            result.message,
            result.attempts,
        )

    def _add(
        self,
        index: int,
        outcome: ItemOutcome,
        phone: str | None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        message: str | None = None,
        attempts: int = 0,
    ) -> None:
        if outcome is ItemOutcome.SENT and status == 200 and attempts == 1 and code is None and message is None:
            self._rows.append((index, request_id, phone.encode() if phone is not None else None))
        else:
            self._rows.append((index, outcome.value, phone, status, code, request_id, message, attempts))
        self.counts[outcome.value] += 1
        if outcome is not ItemOutcome.SENT:
            self.reasons[" ".join(str(part) for part in (outcome.value, status, code) if part is not None)] += 1

    def items(self, outcome: ItemOutcome | str | None = None) -> list[BatchItemResult]:
        """Every item's result in input order (or only those with `outcome`)."""
        wanted = ItemOutcome(outcome).value if outcome is not None else None
        rows = sorted(row for row in self._rows if wanted is None or _outcome(row) == wanted)
        return [_result(row) for row in rows]

    def table_rows(self, max_rows: int = DEFAULT_TABLE_ROWS) -> list[dict[str, Any]]:
        """Rows for a table artifact: problems first (unknown, not sent, rejected, skipped), then sent."""
        order = sorted(self._rows, key=lambda row: (_PROBLEM_ORDER[_outcome(row)], row[0]))[:max_rows]
        return [
            {
                "item": result.index,
                "outcome": result.outcome.value,
                "phone": result.phone or "",
                "status": "" if result.status is None else result.status,
                "error_code": result.error_code or "",
                "request_id": result.request_id or "",
                "attempts": result.attempts,
                "message": (result.message or "")[:200],
            }
            for result in map(_result, order)
        ]

    def summary_markdown(self, max_rows: int | None = None) -> str:
        """A Markdown summary: counts, reasons, rate, and what a re-run would do."""
        rate = self.total / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"**Batch** `{self.batch_key}` (run {self.run}): {self.total:,} items in {self.elapsed:.1f} s "
            f"({rate:,.1f} items/s), {self.retries:,} retries ({self.rate_limited:,} after a 429).",
            "",
            "| outcome | items |",
            "| --- | ---: |",
            *(f"| {name} | {count:,} |" for name, count in self.counts.items()),
        ]
        if self.reasons:
            lines += ["", "| reason (outcome, status, code) | items |", "| --- | ---: |"]
            lines += [f"| {reason} | {count:,} |" for reason, count in self.reasons.most_common(20)]
        if self.stopped:
            lines += ["", f"**Stopped early:** {self.stopped}. The items not attempted are `not_sent`."]
        unknown = self.counts[ItemOutcome.UNKNOWN.value]
        lines += [
            "",
            "A re-run with the same batch key sends only the `not_sent` items"
            + (f"; the {unknown:,} `unknown` ones only with `resend_unknown=True`." if unknown else "."),
        ]
        if max_rows is not None and self.total > max_rows:
            lines.append(f"The table shows {max_rows:,} of {self.total:,} items, problems first.")
        return "\n".join(lines)

    def progress_text(self) -> str:
        """One line for a progress artifact."""
        total = f" of {self.expected_total:,}" if self.expected_total is not None else ""
        parts = ", ".join(f"{count:,} {name}" for name, count in self.counts.items() if count)
        return f"{self.total:,}{total} items: {parts or 'none yet'}"


def _outcome(row: _Row) -> str:
    return ItemOutcome.SENT.value if len(row) == 3 else row[1]


def _result(row: _Row) -> BatchItemResult:
    if len(row) == 3:
        index, request_id, phone = row
        return BatchItemResult(
            index, ItemOutcome.SENT, phone.decode() if phone is not None else None, 200, None, request_id, None, 1
        )
    index, outcome, phone, status, code, request_id, message, attempts = row
    return BatchItemResult(index, ItemOutcome(outcome), phone, status, code, request_id, message, attempts)


class BatchStoppedError(IntercomError):
    """The batch stopped sending early (authentication refused, too many unknown outcomes...).

    Attributes:
        report: The full report; the items not attempted are `not_sent`, so a re-run with
            the same batch key sends them.
    """

    def __init__(self, report: BatchReport) -> None:
        self.report = report
        super().__init__(
            f"batch {report.batch_key!r} stopped early: {report.stopped} "
            f"({report.counts['sent']:,} sent, {report.counts['not_sent']:,} not sent, "
            f"{report.counts['unknown']:,} unknown)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.report,))


@dataclass
class _Pending:
    index: int
    digest: bytes
    phone: str
    prepared: PreparedRequest


class _BatchRun:
    """The state of one `asend_batch` call."""

    def __init__(
        self,
        client: IntercomClient,
        ledger: BatchLedger,
        report: BatchReport,
        *,
        concurrency: int,
        chunk_size: int,
        resend_unknown: bool,
        item_key: ItemKey | None,
        stop_after_unknown: int | None,
        on_progress: ProgressCallback | None,
        progress_interval: float,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.report = report
        self.semaphore = asyncio.Semaphore(concurrency)
        self.chunk_size = chunk_size
        self.resend_unknown = resend_unknown
        self.item_key = item_key
        self.stop_after_unknown = stop_after_unknown
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.seen: dict[int, int] = {}  # first 8 bytes of each item digest -> the item's index
        self.unknown_streak = 0
        self.chunks = 0
        self.in_flight: list[asyncio.Task[None]] = []
        self.last_progress = time.monotonic()
        self.reporting = False
        self.probe: asyncio.Event | None = None  # set once the first item has its answer

    # --- reading and sorting the input -----------------------------------------------------

    def admit(self, index: int, body: Any) -> _Pending | None:
        """Validate one item and decide whether it is sent; record it at once if not."""
        phone = body.get("phone") if isinstance(body, Mapping) else None
        masked = mask_phone(phone) if isinstance(phone, str) else None
        if self.report.stopped:
            self.report._add(index, ItemOutcome.NOT_SENT, masked, None, "not_attempted", None, self.report.stopped)
            return None
        try:
            prepared = self.client.prepare(PHONE_CALL_REDIRECTS, body)
            key = self.item_key(body) if self.item_key is not None else phone
            if not isinstance(key, str) or not key:
                raise ValueError(f"the item key is {key!r}; it must be a non-empty string")
        except IntercomValidationError as error:
            message = "; ".join(str(issue) for issue in error.errors)
            self.report._add(index, ItemOutcome.REJECTED, masked, None, None, None, message)
            return None
        except Exception as error:  # an item the schema cannot even look at, or a failing item_key
            self.report._add(index, ItemOutcome.REJECTED, masked, None, None, None, f"{type(error).__name__}: {error}")
            return None
        digest = self.ledger.digest(key)
        first = self.seen.setdefault(int.from_bytes(digest[:8], "big"), index)
        if first != index:
            message = f"same item key as item {first}"
            self.report._add(index, ItemOutcome.SKIPPED, masked, None, "duplicate_in_batch", None, message)
            return None
        earlier = self.ledger.previous.get(digest)
        if earlier is not None and (earlier.outcome == ItemOutcome.SENT.value or not self.resend_unknown):
            code = "already_sent" if earlier.outcome == ItemOutcome.SENT.value else "unknown_in_earlier_run"
            message = f"recorded as {earlier.outcome} by run {earlier.run} of this batch key"
            self.report._add(index, ItemOutcome.SKIPPED, masked, None, code, earlier.request_id, message)
            return None
        return _Pending(index, digest, masked or "", prepared)

    # --- sending ---------------------------------------------------------------------------

    async def dispatch(self, chunk: list[_Pending]) -> None:
        """Record the chunk's intent, start sending it, and keep at most two chunks in flight."""
        number = self.chunks
        self.chunks += 1
        await self.ledger.record_intent(number, [(item.index, item.digest) for item in chunk])
        self.in_flight.append(asyncio.create_task(self._send_chunk(number, chunk)))
        while len(self.in_flight) > 1:
            await self.in_flight.pop(0)

    async def drain(self) -> None:
        """Wait for every chunk in flight (re-raising the first failure after all have ended)."""
        results = await asyncio.gather(*self.in_flight, return_exceptions=True)
        self.in_flight.clear()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _send_chunk(self, number: int, chunk: list[_Pending]) -> None:
        results = await asyncio.gather(*(self._send(item) for item in chunk))
        await self.ledger.record_outcomes(
            number,
            [
                (item.index, item.digest, result.outcome.value, result.status, result.error_code, result.request_id)
                for item, result in zip(chunk, results, strict=True)
            ],
        )

    async def _send(self, item: _Pending) -> BatchItemResult:
        if self.probe is None:  # the first item goes alone: a wrong token or URL costs one request
            self.probe = asyncio.Event()
            try:
                async with self.semaphore:
                    result = await self._attempt(item)
            finally:
                self.probe.set()
        else:
            await self.probe.wait()
            async with self.semaphore:
                result = await self._attempt(item) if not self.report.stopped else None
        if result is None:
            result = BatchItemResult(
                item.index, ItemOutcome.NOT_SENT, item.phone, error_code="not_attempted", message=self.report.stopped
            )
        self.report.add(result)
        await self._progress()
        return result

    async def _attempt(self, item: _Pending) -> BatchItemResult:
        try:
            response = await self.client.asend(item.prepared)
        except IntercomAPIError as error:
            outcome = ItemOutcome.UNKNOWN if error.outcome is Outcome.UNKNOWN else ItemOutcome.NOT_SENT
            self._observe(outcome, error)
            return BatchItemResult(
                item.index,
                outcome,
                item.phone,
                status=error.status_code,
                error_code=error.error_code,
                request_id=error.request_id,
                message=error.message,
                attempts=error.attempts,
            )
        except IntercomTransportError as error:
            outcome = ItemOutcome.UNKNOWN if error.outcome is Outcome.UNKNOWN else ItemOutcome.NOT_SENT
            self._observe(outcome, error)
            code = "no_answer" if outcome is ItemOutcome.UNKNOWN else "no_connection"
            return BatchItemResult(
                item.index, outcome, item.phone, error_code=code, message=str(error), attempts=error.attempts
            )
        except IntercomError as error:  # e.g. the shared rate limit is missing: nothing left
            self._stop(f"{type(error).__name__}: {error}")
            return BatchItemResult(
                item.index, ItemOutcome.NOT_SENT, item.phone, error_code="not_attempted", message=str(error)
            )
        self.unknown_streak = 0
        return BatchItemResult(
            item.index,
            ItemOutcome.SENT,
            item.phone,
            status=response.status_code,
            request_id=response.request_id,
            attempts=response.attempts,
        )

    def _observe(self, outcome: ItemOutcome, error: IntercomError) -> None:
        """Stop the batch when every further item would fail the same way."""
        if isinstance(error, IntercomAuthenticationError) or (
            isinstance(error, IntercomAPIError) and error.status_code in _STOP_STATUSES
        ):
            self._stop(f"Intercom answered {error.status_code} ({error.error_code or 'no code'})")  # type: ignore[attr-defined]
        if outcome is ItemOutcome.UNKNOWN:
            self.unknown_streak += 1
            limit = self.stop_after_unknown
            if limit is not None and self.unknown_streak >= limit:
                self._stop(f"{self.unknown_streak} answers in a row had an unknown outcome; Intercom may be failing")
        else:
            self.unknown_streak = 0

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
        finally:
            self.reporting = False

    def count_retry(self, error: IntercomError, attempt: int, wait: float) -> None:
        """`on_retry` hook: count retries and 429s in the report."""
        self.report.retries += 1
        if isinstance(error, IntercomRateLimitError):
            self.report.rate_limited += 1


async def asend_batch(
    client: IntercomClient,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    batch_key: str,
    ledger: BatchLedger | None = None,
    ledger_storage: WritableFileSystem | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    resend_unknown: bool = False,
    item_key: ItemKey | None = None,
    stop_after_unknown: int | None = DEFAULT_STOP_AFTER_UNKNOWN,
    expected_total: int | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval: float = 1.0,
) -> BatchReport:
    """Send a stream of phone call redirects through `client`; every item ends in one outcome.

    Items are read lazily, validated (invalid ones are `rejected` and never sent), checked
    against the batch ledger (what earlier runs of `batch_key` sent is `skipped`), and sent
    with at most `concurrency` requests in flight, through `client.asend` and so through
    its retry policy and pacer. Each chunk of `chunk_size` items is recorded in the ledger
    before it is sent and again once every item has an outcome.

    Args:
        client: The pipeline, configured with its retry policy and pacer.
        requests: Request bodies (`{"phone": ..., "custom_attributes": {...}}`), any iterable.
        batch_key: Identifies the batch across runs; a re-run with the same key does not
            resend what was sent.
        ledger: An open ledger (default: `BatchLedger.open(batch_key, ledger_storage)`).
        ledger_storage: Where the ledger lives (default: the run's result storage).
        concurrency: Requests in flight at most.
        chunk_size: Items per ledger record (a crash makes at most one chunk `unknown`).
        resend_unknown: Send items whose outcome was unknown in an earlier run (may text twice).
        item_key: The item's identity in the batch, from its body (default: the phone).
        stop_after_unknown: Stop after this many unknown outcomes in a row (`None`: never).
        expected_total: The number of items, if known (for progress only).
        on_progress: Called with the report at most every `progress_interval` seconds
            and at the end (may be async).
        progress_interval: Seconds between progress calls.

    Returns:
        The report: every input item in exactly one outcome.

    Raises:
        LedgerError: The ledger could not be read or written (the run stops; what was in
            flight is recorded as unknown at worst).

    Example:
        ```python
        async with IntercomCredentials.load("intercom").get_client(retry=RetryPolicy()) as client:
            report = await asend_batch(client, [{"phone": "+14155550100"}], batch_key="campaign-7")
        print(report.counts)
        ```
    """
    if concurrency < 1 or chunk_size < 1:
        raise ValueError("concurrency and chunk_size must be at least 1")
    started = time.monotonic()
    ledger = ledger or await BatchLedger.open(batch_key, ledger_storage)
    report = BatchReport(batch_key=batch_key, run=ledger.run, expected_total=expected_total)
    run = _BatchRun(
        client,
        ledger,
        report,
        concurrency=concurrency,
        chunk_size=chunk_size,
        resend_unknown=resend_unknown,
        item_key=item_key,
        stop_after_unknown=stop_after_unknown,
        on_progress=on_progress,
        progress_interval=progress_interval,
    )
    previous_hook = client.on_retry
    client.on_retry = run.count_retry if previous_hook is None else _both(previous_hook, run.count_retry)
    chunk: list[_Pending] = []
    await run._progress(final=True)  # progress is visible from the start
    try:
        async for index, body in _enumerate(requests):
            pending = run.admit(index, body)
            if pending is None:
                continue
            chunk.append(pending)
            if len(chunk) >= chunk_size:
                await run.dispatch(chunk)
                chunk = []
        if chunk:
            await run.dispatch(chunk)
    finally:
        await run.drain()
        client.on_retry = previous_hook
        report.elapsed = time.monotonic() - started
    await run._progress(final=True)
    return report


def send_batch(client: IntercomClient, requests: Iterable[Any], **options: Any) -> BatchReport:
    """Blocking twin of `asend_batch` (same arguments)."""
    return run_coro_as_sync(asend_batch(client, requests, **options))


def _both(first: Callable[..., None], second: Callable[..., None]) -> Callable[..., None]:
    def call(*args: Any) -> None:
        first(*args)
        second(*args)

    return call


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


# --- CSV input --------------------------------------------------------------------------------


def read_requests_csv(
    path: str | Path,
    *,
    phone_column: str = "phone",
    attribute_columns: Iterable[str] | None = None,
    encoding: str = "utf-8-sig",
) -> Iterator[dict[str, Any]]:
    """Stream request bodies from a CSV file, one row at a time (never the whole file).

    Every column but `phone_column` becomes a custom attribute (string values; empty cells
    are left out), or only `attribute_columns` when given.

    Args:
        path: The CSV file, with a header row.
        phone_column: The column with the phone numbers (E.164).
        attribute_columns: The columns to send as custom attributes (default: all others).
        encoding: The file's encoding (default: UTF-8, with or without a byte-order mark).

    Yields:
        `{"phone": ..., "custom_attributes": {...}}` per row (`custom_attributes` only when
        a row has some).

    Raises:
        ValueError: The file has no `phone_column` (or an attribute column is missing).

    Example:
        ```python
        report = create_phone_call_redirects(credentials, read_requests_csv("callers.csv"))
        ```
    """
    with open(path, newline="", encoding=encoding) as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if phone_column not in header:
            raise ValueError(f"{path}: no {phone_column!r} column (columns: {', '.join(header) or 'none'})")
        others = [name for name in header if name != phone_column]
        columns = others if attribute_columns is None else list(attribute_columns)
        missing = [name for name in columns if name not in header]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(map(repr, missing))}")
        for row in reader:
            body: dict[str, Any] = {"phone": (row.get(phone_column) or "").strip()}
            attributes = {name: row[name] for name in columns if row.get(name) not in (None, "")}
            if attributes:
                body["custom_attributes"] = attributes
            yield body


def count_csv_rows(path: str | Path, encoding: str = "utf-8-sig") -> int:
    """The number of data rows of a CSV file (streamed; for progress reporting)."""
    with open(path, newline="", encoding=encoding) as handle:
        return max(0, sum(1 for _ in csv.reader(handle)) - 1)


# --- the Prefect tasks ------------------------------------------------------------------------

_BATCH_TASK_OPTIONS: dict[str, Any] = {
    "name": "create-phone-call-redirects",
    "cache_policy": NO_CACHE,
    # Prefect's retries would replay a consumed iterator; re-runs go through the ledger.
    "retries": 0,
    "persist_result": False,
}


# Batch calls so far in each flow run attempt: flow run id -> (id of the attempt's context, calls).
_BATCH_CALLS: dict[str, tuple[int, int]] = {}


def default_batch_key() -> str:
    """The batch key of the current task run: stable across retries of its flow run.

    The flow run id and the call's position among the batches the flow run has sent
    (`flow-run-<id>/batch-0`, `.../batch-1`...), so retrying a failed flow run (same flow
    run id, same calls in the same order) finds what the failed attempt sent. Prefect's own
    task run keys cannot serve: they are random for each attempt. Pass `batch_key` yourself
    when a flow starts batches concurrently, or to re-run a batch in a new flow run. Outside
    a flow run: the task run id (every run is then a new batch).
    """
    task_context = TaskRunContext.get()
    flow_context = FlowRunContext.get()
    if flow_context is None or flow_context.flow_run is None:
        if task_context is None:
            raise ValueError("pass batch_key= when sending a batch outside a Prefect run")
        return f"task-run-{task_context.task_run.id}"
    flow_run_id = str(flow_context.flow_run.id)
    attempt, calls = _BATCH_CALLS.get(flow_run_id, (id(flow_context), 0))
    if attempt != id(flow_context):
        calls = 0
    _BATCH_CALLS[flow_run_id] = (id(flow_context), calls + 1)
    return f"flow-run-{flow_run_id}/batch-{calls}"


class _ProgressArtifact:
    """A Prefect progress artifact kept up to date while the batch runs."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.artifact_id: Any = None

    async def update(self, report: BatchReport) -> None:
        expected = report.expected_total
        percent = min(100.0, 100.0 * report.total / expected) if expected else 0.0
        if self.artifact_id is None:
            self.artifact_id = await acreate_progress_artifact(
                progress=percent, key=self.key, description=report.progress_text()
            )
        else:
            await aupdate_progress_artifact(self.artifact_id, progress=percent, description=report.progress_text())


async def _arun_batch_task(
    credentials: IntercomCredentials,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    batch_key: str | None,
    concurrency: int,
    retry: RetryPolicy | None,
    pace: bool,
    global_rate_limit: str | None,
    resend_unknown: bool,
    item_key: ItemKey | None,
    expected_total: int | None,
    ledger_storage: WritableFileSystem | None,
    artifact_key: str,
    max_table_rows: int,
    stop_after_unknown: int | None,
    chunk_size: int,
) -> BatchReport:
    logger = get_run_logger()
    key = batch_key or default_batch_key()
    progress = _ProgressArtifact(f"{artifact_key}-progress")
    pacer = Pacer(headers=pace, global_rate_limit=global_rate_limit) if pace or global_rate_limit else None
    logger.info(
        "Sending batch %r: concurrency %d, pacing %s, retry %s",
        key,
        concurrency,
        "off" if pacer is None else f"headers{' + ' + repr(global_rate_limit) if global_rate_limit else ''}",
        retry,
    )
    async with credentials.get_client(retry=retry, pacer=pacer, max_connections=concurrency) as client:
        report = await asend_batch(
            client,
            requests,
            batch_key=key,
            ledger_storage=ledger_storage,
            concurrency=concurrency,
            chunk_size=chunk_size,
            resend_unknown=resend_unknown,
            item_key=item_key,
            stop_after_unknown=stop_after_unknown,
            expected_total=expected_total,
            on_progress=progress.update,
        )
    if report.expected_total is None:
        report.expected_total = report.total
    await progress.update(report)
    await acreate_table_artifact(
        table=report.table_rows(max_table_rows),
        key=f"{artifact_key}-report",
        description=report.summary_markdown(max_table_rows),
    )
    logger.info("Batch %r (run %d) done: %s", key, report.run, report.progress_text())
    if report.stopped:
        raise BatchStoppedError(report)
    return report


@task(**_BATCH_TASK_OPTIONS)
async def acreate_phone_call_redirects(
    credentials: IntercomCredentials,
    requests: Iterable[Any] | AsyncIterable[Any],
    batch_key: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    retry: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    pace: bool = True,
    global_rate_limit: str | None = None,
    resend_unknown: bool = False,
    item_key: ItemKey | None = None,
    expected_total: int | None = None,
    ledger_storage: WritableFileSystem | None = None,
    artifact_key: str = "intercom-batch",
    max_table_rows: int = DEFAULT_TABLE_ROWS,
    stop_after_unknown: int | None = DEFAULT_STOP_AFTER_UNKNOWN,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> BatchReport:
    """Deflect many callers to the Intercom Messenger in one task run.

    Async version of `create_phone_call_redirects`; see there for arguments and errors.
    """
    return await _arun_batch_task(**locals())


@async_dispatch(acreate_phone_call_redirects)
@task(**_BATCH_TASK_OPTIONS)
def create_phone_call_redirects(
    credentials: IntercomCredentials,
    requests: Iterable[Any] | AsyncIterable[Any],
    batch_key: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    retry: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    pace: bool = True,
    global_rate_limit: str | None = None,
    resend_unknown: bool = False,
    item_key: ItemKey | None = None,
    expected_total: int | None = None,
    ledger_storage: WritableFileSystem | None = None,
    artifact_key: str = "intercom-batch",
    max_table_rows: int = DEFAULT_TABLE_ROWS,
    stop_after_unknown: int | None = DEFAULT_STOP_AFTER_UNKNOWN,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> BatchReport:
    """Deflect many callers to the Intercom Messenger in one task run; each item ends in one outcome.

    Items are streamed from `requests`, validated (invalid ones are `rejected`, never sent),
    and sent with at most `concurrency` in flight through the same pipeline as
    `create_phone_call_redirect`: the same retry policy (by default only 429s and connect
    failures are retried) and pacing from Intercom's rate-limit headers, optionally shared
    with other processes through a Prefect global rate limit. A progress artifact follows
    the run; a table artifact (summary and up to `max_table_rows` rows, problems first)
    ends it. Every chunk is recorded in a ledger in the run's result storage before it is
    sent, so retrying the flow run, or re-running with the same `batch_key`, never resends
    what was sent (see `prefect_intercom.ledger`).

    Args:
        credentials: The `IntercomCredentials` block to use.
        requests: Request bodies, any iterable (e.g. `read_requests_csv("callers.csv")`):
            `{"phone": "+14155550100", "custom_attributes": {"issue_type": "Billing"}}`.
        batch_key: Identifies the batch across runs (default: this task call within its
            flow run, stable across retries of the flow run).
        concurrency: Requests in flight at most.
        retry: The retry policy (default: 429s and connect failures, bounded); pass
            `RetryPolicy(retry_unknown=True)` to also repeat what may have texted.
        pace: Slow down from Intercom's rate-limit headers before a 429.
        global_rate_limit: Name of a Prefect global concurrency limit with slot decay shared
            by every sender of the same Intercom app (`prefect gcl create ...`).
        resend_unknown: Also send items whose outcome was unknown in an earlier run.
        item_key: The item's identity, from its body (default: the phone number; an item
            whose key was already seen in the batch is `skipped`).
        expected_total: The number of items, if known (for the progress artifact).
        ledger_storage: Where the ledger lives (default: the run's result storage).
        artifact_key: Prefix of the artifacts' keys (`-progress`, `-report`).
        max_table_rows: Rows in the table artifact at most.
        stop_after_unknown: Stop after this many unknown outcomes in a row (`None`: never).
        chunk_size: Items per ledger record.

    Returns:
        The `BatchReport`: counts per outcome and every item's result (`report.items()`).

    Raises:
        BatchStoppedError: The batch stopped early (401/403/404, or a streak of unknown
            outcomes); `.report` holds the report, and a re-run sends what was not attempted.
        LedgerError: The ledger could not be read or written.

    Example:
        ```python
        from prefect import flow
        from prefect_intercom import IntercomCredentials, create_phone_call_redirects
        from prefect_intercom.batch import read_requests_csv

        @flow(retries=2)
        def deflect(path: str):
            credentials = IntercomCredentials.load("intercom")
            report = create_phone_call_redirects(credentials, read_requests_csv(path))
            return report.counts
        ```
    """
    return run_coro_as_sync(_arun_batch_task(**locals()))
