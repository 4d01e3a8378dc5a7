"""One batch run's state: admitting each item, sending it through the pipeline, stopping early.

`asend_batch` (in `engine`) feeds items to a `BatchRun`; the run validates and sorts each item
(`admit`), sends it with its write-ahead ledger entries around every attempt (`send`), records
its one outcome in the report, and decides when every further item would fail the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from prefect_intercom.batch.attribute_types import RefusedRow
from prefect_intercom.batch.concurrency import ConcurrencyLimit
from prefect_intercom.batch.ledger import BatchLedger, LedgerError
from prefect_intercom.batch.report import BatchItemResult, BatchReport
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.client import IntercomClient
from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomError,
    IntercomRateLimitError,
    IntercomTransportError,
    IntercomValidationError,
)
from prefect_intercom.outcomes import Outcome
from prefect_intercom.prepared import PreparedRequest
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


class BatchRun:
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
        check_lease: Callable[[], Awaitable[None]],
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
        if isinstance(body, RefusedRow):  # its reader refused it (a custom attribute's type): its own reason
            self.report.add(BatchItemResult(index, Outcome.REJECTED, masked, None, body.code, None, body.message))
            return None
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
        first = self.ledger.first_seen(digest, index)
        if first != index:
            what = "item key" if self.item_key is not None else "phone"
            message = f"same {what} as {self.report.label(first)}"
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
        served_from: float | None = None  # after any pacing wait: the ledger's write and the request hold the slot

        async def before_send() -> None:
            nonlocal announced, on_wire, served_from
            if served_from is None:
                served_from = time.monotonic()
            if self.report.stopped:
                raise _NotAttempted(self.report.stopped)
            await self.check_lease()
            if not announced:
                await self.ledger.announce(item.index, item.digest)
                announced = True
                await self.check_lease()  # still ours once the announcement is written: nobody else read the ledger
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
            if announced:  # written no later than the announcement of the item that takes this slot
                try:
                    self.ledger.record_outcome(item.digest, result.outcome)
                except LedgerError as error:
                    self._ledger_failed(error)
            self.report.add(result)
        finally:
            self.limit.release(time.monotonic() - served_from if on_wire is not None and served_from else None)
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
            if 200 <= error.status_code < 300:  # Intercom said "success" and "error" at once
                message = f"a success status with an error body, the SMS may have been sent: {message or 'no message'}"
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


def _code(error: IntercomError) -> str:
    """A short reason code for a failure: Intercom's error code, else the error's own."""
    return str(getattr(error, "error_code", None) or error.code)
