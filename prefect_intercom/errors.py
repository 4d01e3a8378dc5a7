"""The exception family: every public error of prefect-intercom is defined here.

None holds the access token; phones in messages are masked; each survives pickling as it is
(Prefect pickles a failed task's exception). Why and how: docs/errors.md.

```
IntercomError
├── IntercomValidationError (ValueError)   the body or headers break the schema; nothing was sent
├── IntercomConfigurationError (ValueError) credentials or base URL refused; nothing was sent
├── IntercomTransportError                 no HTTP answer; `outcome` says whether it may have taken effect
├── IntercomRateLimitWaitError             the rate-limit window resets beyond the retry budget; nothing was sent
├── IntercomAPIError                       Intercom answered, but not with success (a 2xx error.list: unknown)
│   ├── IntercomAuthenticationError            401, 403
│   ├── IntercomRateLimitError                 429 (with the reset time)
│   └── IntercomServerError                    5xx
├── EarlierAttemptUnknownError             a flow retry: an earlier attempt may have texted; not sent again
├── BatchStoppedError                      a batch stopped sending early; carries the full report
├── LedgerError                            the batch ledger cannot be read or written; nothing more is sent
│   └── LedgerDamageError, LedgerAccessDeniedError (403), LedgerLocationError (disk no re-run reads)
├── BatchLeaseError                        the batch key's lease could not be taken or kept
│   ├── BatchKeyBusyError                      another run holds the batch key; this run sent nothing
│   └── BatchKeyLostError                      this run lost its lease after it may have sent; it stops
├── EndpointNotFoundError (LookupError)    no catalogue entry (or several) matches a name or query
└── DocsPageError (ValueError)             build time: a documentation page breaks the expected format
```
"""

from __future__ import annotations

import copyreg
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect_intercom.outcomes import BatchSummary, Outcome
from prefect_intercom.privacy import mask_phone

if TYPE_CHECKING:
    from uuid import UUID


class IntercomError(Exception):
    """Base class of every error raised by prefect-intercom.

    Attributes:
        attempts: How many times the request was sent before this error (more after retries).
        code: A short reason code for a batch item it left unsent (Intercom's `error_code` comes first).
    """

    attempts: int = 1
    code: str = "not_attempted"

    def __reduce__(self) -> tuple[Any, ...]:
        # `BaseException` pickles as `cls(*args)`, which these constructors cannot take: skip `__init__`
        # (`cls.__new__(cls, *args)` keeps `args`, the message; the attributes are restored as state).
        return copyreg.__newobj__, (type(self), *self.args), dict(self.__dict__)


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it was raised from or during (`__cause__`, else `__context__`), each once."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


@dataclass(frozen=True)
class ValidationIssue:
    """One violation of a schema.

    Attributes:
        path: JSON Pointer to the offending value (`""` is the whole body), e.g. `/phone`
            (exact; shown with its digit runs masked, since a key may be a phone number).
        message: What is wrong, in plain English.
        hint: How to fix it, when there is an obvious fix.
    """

    path: str
    message: str
    hint: str | None = None

    def __repr__(self) -> str:
        return f"ValidationIssue(path={mask_phone(self.path)!r}, message={self.message!r}, hint={self.hint!r})"

    def __str__(self) -> str:
        where = mask_phone(self.path) if self.path else "(body)"  # a key may be a phone number
        return f"{where}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


class IntercomValidationError(IntercomError, ValueError):
    """The request breaks the schema generated from Intercom's documentation; nothing was sent.

    Attributes:
        endpoint: The endpoint's catalogue name, e.g. `phone_call_redirects`.
        errors: Every violation found, each with its JSON Pointer `path`, `message` and `hint`.
    """

    def __init__(self, endpoint: str, errors: list[ValidationIssue], what: str = "request body") -> None:
        self.endpoint = endpoint
        self.errors = errors
        self.what = what
        count = f"{len(errors)} error" + ("s" if len(errors) != 1 else "")
        lines = "\n".join(f"  - {issue}" for issue in errors)
        super().__init__(f"Invalid {what} for {endpoint} ({count}); nothing was sent:\n{lines}")


class IntercomConfigurationError(IntercomError, ValueError):
    """The credentials or connection settings are refused; nothing was sent."""


class IntercomTransportError(IntercomError):
    """No HTTP answer came back (connection refused, reset, timeout).

    Attributes:
        outcome: `Outcome.NOT_SENT` when the request never left (e.g. the connection was refused),
            `Outcome.UNKNOWN` when it may have reached Intercom.
        url: The URL that was called.
    """

    def __init__(self, message: str, *, outcome: Outcome, url: str) -> None:
        self.outcome = outcome
        self.url = url
        super().__init__(f"{message} ({url}); outcome: {outcome.value}")


class IntercomRateLimitWaitError(IntercomError):
    """Sending would mean waiting for the rate-limit window longer than the retry budget; nothing was sent.

    Raised by the pacer instead of sleeping, so a batch ends the rest `not_sent` for a later run.

    Attributes:
        reset_at: When the window resets (UTC), if known.
        wait: Seconds the send would have had to wait from now.
        max_wait: The budget of waiting it was refused against (seconds).
        waited: Seconds this send had already waited for the rate limit.
        outcome: Always `Outcome.NOT_SENT`.
    """

    outcome = Outcome.NOT_SENT
    code = "rate_limit_wait"

    def __init__(self, reset_at: dt.datetime | None, wait: float, max_wait: float, waited: float = 0.0) -> None:
        self.reset_at = reset_at
        self.wait = wait
        self.max_wait = max_wait
        self.waited = waited
        when = (
            f"the rate-limit window resets at {reset_at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
            if reset_at is not None
            else "the rate limit holds sends back"
        )
        already = f" ({_seconds(waited)} s of it already waited)" if waited > 0 else ""
        super().__init__(
            f"{when}, in {_seconds(wait)} s, beyond the retry budget of {_seconds(max_wait)} s{already}; not sent"
        )


def _seconds(value: float) -> str:
    """`7,200` for long waits, `2.5` for short ones, `0.02` for very short ones."""
    if value >= 10 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


class IntercomAPIError(IntercomError):
    """Intercom answered with a non-success status, or a 2xx with an `error.list` body (outcome unknown).

    Attributes:
        status_code: The HTTP status.
        error_code: Intercom's code (`error_key` or the first `errors[].code`), if given.
        message: Intercom's message, or a summary of the body when it is not JSON.
        request_id: Intercom's `request_id` (body or `X-Request-Id` header), if given.
        errors: Every entry of an `error.list` body, as dicts with `code`, `message`, `field`.
        body: The parsed JSON body, or `None` when the body was not JSON.
        headers: Response headers worth keeping (rate-limit and request id headers).
    """

    outcome = Outcome.NOT_SENT

    def __init__(
        self,
        status_code: int,
        *,
        error_code: str | None = None,
        message: str | None = None,
        request_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.error_code = error_code
        self.message = message
        self.request_id = request_id
        self.errors = errors or []
        self.body = body
        self.headers = headers or {}
        if 200 <= status_code < 300:  # a success status, yet an error body: the SMS may have gone
            self.outcome = Outcome.UNKNOWN
        super().__init__(self._summary())

    def _summary(self) -> str:
        code = f"[{self.error_code}]" if self.error_code else None
        text = " ".join(part for part in (f"Intercom answered HTTP {self.status_code}", code, self.message) if part)
        if self.request_id:
            text += f" (request_id: {self.request_id})"
        return f"{text}. {self.hint}" if self.hint else text

    @property
    def hint(self) -> str | None:
        """A suggestion for the user, when the error has an obvious next step."""
        if 200 <= self.status_code < 300:
            return "A success status with an error body: the SMS may have been sent (outcome unknown)."
        return _HINTS.get(self.error_code or "") or _STATUS_HINTS.get(self.status_code)


class IntercomAuthenticationError(IntercomAPIError):
    """401 or 403: the access token is missing, wrong, or lacks the permission."""


class IntercomRateLimitError(IntercomAPIError):
    """429: the app's rate limit is used up.

    Attributes:
        reset_at: When the window resets (`X-RateLimit-Reset`), if given.
        retry_after: Seconds to wait (`Retry-After`), if given.
        limit: `X-RateLimit-Limit`, if given.
        remaining: `X-RateLimit-Remaining`, if given.
    """

    def __init__(
        self,
        status_code: int,
        *,
        reset_at: dt.datetime | None = None,
        retry_after: float | None = None,
        limit: int | None = None,
        remaining: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.reset_at = reset_at
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = remaining
        super().__init__(status_code, **kwargs)

    def _summary(self) -> str:
        resets = f" The limit resets at {self.reset_at.isoformat()}." if self.reset_at is not None else ""
        return super()._summary() + resets


class IntercomServerError(IntercomAPIError):
    """5xx: Intercom failed. The SMS may or may not have been sent (outcome unknown)."""

    outcome = Outcome.UNKNOWN


class EarlierAttemptUnknownError(IntercomError):
    """An earlier attempt of this flow run may have texted this person; this one did not send.

    Raised on a flow retry when the same call (`prefect_intercom.idempotency`) may have taken
    effect earlier, and the task's `RetryPolicy` does not allow repeating it.

    Attributes:
        outcome: Always `Outcome.UNKNOWN`: the earlier attempt's outcome is not known.
        earlier: What the earlier attempt recorded (error type, status, request id), or
            `in flight` when it never recorded an end.
        flow_run_id: The flow run.
        occurrence: Which of the identical calls in the attempt this is (1 for the first).
    """

    outcome = Outcome.UNKNOWN

    def __init__(self, *, earlier: str, flow_run_id: UUID, occurrence: int) -> None:
        self.earlier = earlier
        self.flow_run_id = flow_run_id
        self.occurrence = occurrence
        super().__init__(
            f"Not sent: an earlier attempt of flow run {flow_run_id} made this call (occurrence "
            f"{occurrence}) and its outcome is unknown ({earlier}); the person may already have "
            "been texted. Pass retry=RetryPolicy(retry_unknown=True) to send again anyway."
        )


class BatchStoppedError(IntercomError):
    """The batch stopped sending early (authentication refused, a window beyond the retry budget...).

    Attributes:
        report: The full report; the items not attempted are `not_sent`, so a re-run with
            the same batch key sends them.
    """

    def __init__(self, report: BatchSummary) -> None:
        self.report = report
        super().__init__(
            f"batch {report.batch_key!r} stopped early: {report.stopped} "
            f"({report.counts['sent']:,} sent, {report.counts['not_sent']:,} not sent, "
            f"{report.counts['unknown']:,} unknown); a re-run with batch_key={report.batch_key!r} "
            "sends the items not sent"
        )


class LedgerError(IntercomError):
    """The batch ledger cannot be read or written; nothing more is sent."""


class LedgerDamageError(LedgerError):
    """A ledger object is damaged (checksum, name, version, an unknown word) or missing amid others."""


class LedgerAccessDeniedError(LedgerError):
    """The ledger storage refused a read or write (401/403, `PermissionError`)."""


class LedgerLocationError(LedgerError):
    """The ledger would be on a disk that a re-run elsewhere never reads; nothing was sent."""


class BatchLeaseError(IntercomError):
    """The batch key's lease could not be taken or kept; this run sends nothing more.

    Attributes:
        batch_key: The batch key.
        lease_name: Its global concurrency limit on the Prefect server.
        lease_seconds: How long the (holder's) lease lasts after its last renewal, when known.
    """

    def __init__(self, message: str, *, batch_key: str, lease_name: str, lease_seconds: float | None = None) -> None:
        self.batch_key = batch_key
        self.lease_name = lease_name
        self.lease_seconds = lease_seconds
        super().__init__(message)


class BatchKeyBusyError(BatchLeaseError):
    """Another run holds the batch key; this run sent nothing."""


class BatchKeyLostError(BatchLeaseError):
    """This run lost its lease on the batch key, possibly after sending: it stops and sends nothing more.

    Not a `BatchKeyBusyError`: "busy" promises that nothing was sent, "lost" does not.
    """

    code = "lease_lost"


class EndpointNotFoundError(IntercomError, LookupError):
    """No catalogue entry matches a name or query; the message lists what exists."""


class DocsPageError(IntercomError, ValueError):
    """A documentation page does not follow the expected format.

    Attributes:
        line: 1-based number of the offending line (0 when the whole page is at fault).
        reason: What is wrong, without the location.
    """

    def __init__(self, line: int, reason: str, source: str = "<page>") -> None:
        self.line = line
        self.reason = reason
        self.source = source
        where = f"{source}, line {line}" if line else source
        super().__init__(f"{where}: {reason}")


_TOKEN_HINT = "Check the access token in your IntercomCredentials block."  # noqa: S105 - a hint
_RATE_HINT = "Wait for the rate limit window to reset, or pace sends."
_HINTS = {
    "invalid_phone_number": "Check the phone number is a reachable number in E.164 format, e.g. +14155550100.",
    "sms_failed": "Intercom could not send the SMS; the number may not accept texts. Check it and your Switch setup.",
    **dict.fromkeys(("unauthorized", "token_unauthorized"), _TOKEN_HINT),
    "rate_limit_exceeded": _RATE_HINT,
}
_STATUS_HINTS = {
    401: _TOKEN_HINT,
    403: "The access token lacks the permission for this call; check the app's scopes in Intercom.",
    404: "Check the region and base URL in your IntercomCredentials block.",
    **dict.fromkeys(
        (301, 302, 303, 307, 308),
        "Redirects are never followed, so the access token stays with the configured host; check the "
        "base URL in your IntercomCredentials block.",
    ),
    429: _RATE_HINT,
}
