"""One batch run's state: admitting each item, sending it through the pipeline, stopping early.

`engine.asend_batch` feeds items to a `BatchRun`; docs/batches.md tells what each outcome means.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prefect_intercom.batch.attribute_types import RefusedRow
from prefect_intercom.batch.concurrency import ConcurrencyLimit
from prefect_intercom.batch.ledger import BatchLedger
from prefect_intercom.batch.report import BatchItemResult, BatchReport
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.client import IntercomClient
from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomError,
    IntercomRateLimitError,
    IntercomTransportError,
    IntercomValidationError,
    LedgerError,
)
from prefect_intercom.outcomes import Outcome
from prefect_intercom.prepared import PreparedRequest
from prefect_intercom.privacy import mask_digits, mask_phone
from prefect_intercom.retry import outcome_of

DEFAULT_STOP_AFTER_UNKNOWN = 25
# Answers that would be the same for every item (authentication errors are 401 or 403): stop, not fail each.
_STOP_STATUSES = frozenset({401, 403, 404})

ItemKeyFunction = Callable[[Mapping[str, Any]], str]
"""Gives an item's identity in its batch from its request body (default: its phone)."""
ProgressCallback = Callable[[BatchReport], Awaitable[None] | None]


class _NotAttempted(IntercomError):
    """The batch stopped before this item's attempt went on the wire."""


@dataclass
class PendingItem:
    """An admitted item, waiting for its slot: its index, ledger digest, masked phone and request."""

    index: int
    digest: bytes
    phone: str | None
    prepared: PreparedRequest


@dataclass(eq=False, repr=False)  # compared and shown as an object: its client and ledger stay out of reprs
class BatchRun:
    """The state of one `asend_batch` call.

    Attributes:
        confirm_lease: Awaited before each attempt: raises once the batch key's lease is lost
            (`None`: the run holds no lease).
        ledger_failure: The first ledger error; the engine raises it once the run is over.
    """

    client: IntercomClient
    ledger: BatchLedger
    report: BatchReport
    limit: ConcurrencyLimit
    resend_unknown: bool = False
    item_key: ItemKeyFunction | None = None
    stop_after_unknown: int | None = DEFAULT_STOP_AFTER_UNKNOWN
    on_progress: ProgressCallback | None = None
    progress_interval: float = 1.0
    confirm_lease: Callable[[], Awaitable[None]] | None = None
    ledger_failure: LedgerError | None = None
    unknown_streak: int = 0
    _last_progress: float = field(default_factory=time.monotonic)
    _reporting: bool = False

    # --- reading and sorting the input -----------------------------------------------------

    def admit(self, index: int, body: Any) -> PendingItem | None:
        """Validate one item and decide whether it is sent; record it at once if not."""
        phone = body.get("phone") if isinstance(body, Mapping) else None
        masked = mask_phone(phone) if isinstance(phone, str) else None

        def record(outcome: Outcome, code: str | None, message: str | None) -> None:
            self.report.add(BatchItemResult(index, outcome, masked, error_code=code, message=message))

        if isinstance(body, RefusedRow):  # its reader refused it (a custom attribute's type): its own reason
            return record(Outcome.REJECTED, body.code, body.message)
        try:
            prepared = self.client.prepare(PHONE_CALL_REDIRECTS, body)
            key = self.item_key(body) if self.item_key is not None else phone
            if not isinstance(key, str) or not key:
                raise ValueError(f"the item key is {key!r}; it must be a non-empty string")
        except IntercomValidationError as error:
            return record(Outcome.REJECTED, None, "; ".join(str(issue) for issue in error.errors))
        except Exception as error:  # an item the schema cannot even look at, or a failing item_key
            return record(Outcome.REJECTED, None, mask_digits(f"{type(error).__name__}: {error}"))
        digest = self.ledger.digest(key)
        first = self.ledger.first_seen(digest, index)
        if first != index:
            what = "item key" if self.item_key is not None else "phone"
            return record(Outcome.SKIPPED, "duplicate_in_batch", f"same {what} as {self.report.label(first)}")
        earlier = self.ledger.previous(digest)
        if earlier is not None and (earlier.outcome is Outcome.SENT or not self.resend_unknown):
            code = "already_sent" if earlier.outcome is Outcome.SENT else "unknown_in_earlier_run"
            return record(
                Outcome.SKIPPED, code, f"recorded as {earlier.outcome.value} by run {earlier.run} of this batch key"
            )
        if self.report.stopped:
            return self.not_attempted(index, masked)
        return PendingItem(index, digest, masked, prepared)

    def not_attempted(self, index: int, phone: str | None) -> None:
        """Record an item the batch stopped before sending."""
        self.report.add(
            BatchItemResult(index, Outcome.NOT_SENT, phone, None, "not_attempted", None, self.report.stopped)
        )

    # --- sending ---------------------------------------------------------------------------

    async def send(self, item: PendingItem) -> None:
        """Send one item (its slot already taken) and record its outcome before giving the slot back."""
        announced = False
        uncertain = False  # an earlier attempt may have texted (only with `retry_unknown`)
        on_wire: float | None = None
        served_from: float | None = None  # after any pacing wait: the ledger's write and the request hold the slot

        async def before_send() -> None:
            nonlocal announced, on_wire, served_from
            if served_from is None:
                served_from = time.monotonic()
            if self.report.stopped:
                raise _NotAttempted(self.report.stopped)
            if self.confirm_lease is not None:
                await self.confirm_lease()
            if not announced:
                await self.ledger.announce(item.index, item.digest)
                announced = True
                if self.confirm_lease is not None:  # still ours once the announcement is written
                    await self.confirm_lease()
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
                self.ledger.retract(item.digest)
                announced = False

        try:
            try:
                response = await self.client.asend(item.prepared, before_send=before_send, on_retry=on_retry)
            except IntercomError as error:
                result = self._failed(item, error, announced)
                if uncertain and result.outcome is Outcome.NOT_SENT:  # refused now, an earlier attempt may have texted
                    message = f"an earlier attempt may have texted; then: {result.message}"
                    result = replace(result, outcome=Outcome.UNKNOWN, message=message)
            except Exception as error:  # not ours to expect; still one outcome, and no more sends
                self.stop(f"unexpected {type(error).__name__} while sending")
                outcome = Outcome.UNKNOWN if on_wire is not None else Outcome.NOT_SENT
                result = BatchItemResult(
                    item.index, outcome, item.phone, error_code="internal_error", message=type(error).__name__
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
            if announced:  # written no later than the announcement of the item that takes this slot
                try:
                    self.ledger.record_outcome(item.digest, result.outcome)
                except LedgerError as error:
                    self._ledger_failed(error)
            self.report.add(result)
        finally:
            self.limit.release(time.monotonic() - served_from if on_wire is not None and served_from else None)
            if self.limit.latency is not None:
                self.ledger.fit_linger(self.limit.latency)

    def _failed(self, item: PendingItem, error: IntercomError, announced: bool) -> BatchItemResult:
        """The result of a failed send, stopping the batch when the failure concerns every item."""
        outcome, message, code = outcome_of(error), str(error), _code(error)
        status = request_id = None
        attempts = 0
        if isinstance(error, IntercomAPIError):
            self._observe(outcome, error)
            status, code, request_id = error.status_code, error.error_code, error.request_id
            message, attempts = error.message, error.attempts
            if 200 <= status < 300:  # Intercom said "success" and "error" at once
                message = f"a success status with an error body, the SMS may have been sent: {message or 'no message'}"
            if isinstance(error, IntercomRateLimitError) and error.reset_at is not None:
                message = f"{message}; the window resets at {error.reset_at.isoformat()}, beyond the retry budget"
        elif isinstance(error, IntercomTransportError):
            self._observe(outcome, error)
            code, attempts = ("no_answer" if outcome is Outcome.UNKNOWN else "no_connection"), error.attempts
        elif isinstance(error, LedgerError):
            self._ledger_failed(error)
            outcome, code = (Outcome.UNKNOWN if announced else Outcome.NOT_SENT), "ledger_failed"
        elif isinstance(error, _NotAttempted):
            outcome, code = Outcome.NOT_SENT, "not_attempted"
        else:  # nothing went out: the pacer would wait beyond the budget, the lease was lost, a shared limit is missing
            self.stop(message)
            outcome = Outcome.NOT_SENT
        return BatchItemResult(item.index, outcome, item.phone, status, code, request_id, message, attempts)

    def _observe(self, outcome: Outcome, error: IntercomAPIError | IntercomTransportError) -> None:
        """Stop the batch when every further item would fail the same way."""
        if isinstance(error, IntercomAPIError) and error.status_code in _STOP_STATUSES:
            self.stop(f"Intercom answered {error.status_code} ({error.error_code or 'no code'})")
        if isinstance(error, IntercomRateLimitError):
            when = f" until {error.reset_at.isoformat()}" if error.reset_at is not None else ""
            self.stop(f"Intercom's rate limit refused sends{when}, beyond the retry budget")
        self.unknown_streak = self.unknown_streak + 1 if outcome is Outcome.UNKNOWN else 0
        limit = self.stop_after_unknown
        if self.unknown_streak and limit is not None and self.unknown_streak >= limit:
            self.stop(f"{self.unknown_streak} answers in a row had an unknown outcome; Intercom may be failing")

    def _ledger_failed(self, error: LedgerError) -> None:
        self.ledger_failure = self.ledger_failure or error
        self.stop(f"the batch ledger failed: {error}")

    # --- what the engine calls -------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Stop sending (the first reason stays): every item not yet attempted ends `not_sent`."""
        if self.report.stopped is None:
            self.report.stopped = reason

    async def close_ledger(self) -> None:
        """Close the ledger; a failure to close counts as the run's ledger failure (unless one came first)."""
        try:
            await self.ledger.close()
        except LedgerError as error:
            self.ledger_failure = self.ledger_failure or error

    def progress_due(self) -> bool:
        """Whether `progress()` would call `on_progress` now (the engine calls it after each send)."""
        if self.on_progress is None or self._reporting:
            return False
        return time.monotonic() - self._last_progress >= self.progress_interval

    async def progress(self, final: bool = False) -> None:
        """Call `on_progress` with the report, at most every `progress_interval` seconds unless `final`."""
        if self.on_progress is None or self._reporting or not (final or self.progress_due()):
            return
        self._last_progress, self._reporting = time.monotonic(), True
        try:
            with contextlib.suppress(Exception):  # progress is for people watching: it never stops or loses the batch
                outcome = self.on_progress(self.report)
                if outcome is not None:
                    await outcome
        finally:
            self._reporting = False


def _code(error: IntercomError) -> str:
    """A short reason code for a failure: Intercom's error code, else the error's own."""
    return str(getattr(error, "error_code", None) or error.code)
