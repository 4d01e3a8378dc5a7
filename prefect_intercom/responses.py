"""Turn Intercom's HTTP answers into results or errors (the "parse" step of the pipeline).

Every text of an answer is redacted whole, then phone-masked, then cut (docs/security.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomRateLimitError,
    IntercomServerError,
)
from prefect_intercom.privacy import mask_values
from prefect_intercom.reading import CUT_EXTENSION, Answer
from prefect_intercom.redaction import cut, unchanged

REQUEST_ID_HEADERS = ("x-request-id", "intercom-request-id")
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
# A redirect's `Location`, renamed by the client, which never follows redirects (see client.py).
UNFOLLOWED_LOCATION_HEADER = "x-unfollowed-location"
KEPT_HEADERS = (*REQUEST_ID_HEADERS, *RATE_LIMIT_HEADERS, "retry-after", "content-type", UNFOLLOWED_LOCATION_HEADER)
_KEPT = frozenset(KEPT_HEADERS)
MAX_TEXT = 300
MAX_JSON_DEPTH = 64
MAX_ERRORS = 20  # entries of an `error.list` kept in an error


@dataclass(frozen=True)
class RateLimit:
    """Intercom's rate-limit headers of one answer (any may be missing).

    Attributes:
        limit: `X-RateLimit-Limit`: requests allowed in the window.
        remaining: `X-RateLimit-Remaining`: requests left in the window.
        reset_at: `X-RateLimit-Reset`: when the window resets (UTC).
    """

    limit: int | None = None
    remaining: int | None = None
    reset_at: dt.datetime | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit:
        """Read the three `X-RateLimit-*` headers; unparseable values count as missing."""
        reset, reset_at = _int_header(headers, "x-ratelimit-reset"), None
        if reset is not None:
            with contextlib.suppress(OverflowError, OSError, ValueError):
                reset_at = dt.datetime.fromtimestamp(reset, tz=dt.UTC)
        return cls(_int_header(headers, "x-ratelimit-limit"), _int_header(headers, "x-ratelimit-remaining"), reset_at)


@dataclass(frozen=True)
class IntercomResponse:
    """A successful answer.

    Attributes:
        status_code: The HTTP status (2xx).
        data: The JSON body (an empty dict when the body was empty or not a JSON object), the
            request's phone masked wherever it echoes it (`PREFECT_INTERCOM_SHOW_PHONES=1`: as sent).
        request_id: Intercom's request id, when it sent one.
        rate_limit: The rate-limit headers.
        elapsed_ms: Time from sending the request to reading the whole answer.
        headers: The response headers worth keeping (request id, rate limits, content type).
        unparsed_body: The start of the body when it was not a JSON object (rare; logged).
        attempts: How many times the request was sent (more than 1 after retries).
        truncated: Why the body was cut short, when it was (larger than 1 MiB, or still
            arriving at the request's deadline); the answer is a success all the same.
    """

    status_code: int
    data: dict[str, Any]
    request_id: str | None
    rate_limit: RateLimit
    elapsed_ms: float
    headers: dict[str, str] = field(default_factory=dict)
    unparsed_body: str | None = None
    attempts: int = 1
    truncated: str | None = None


class PhoneCallRedirect(BaseModel):
    """Intercom's answer to `POST /phone_call_redirects`.

    Intercom documents two shapes, `{type, phone}` and `{type, url}`; both are accepted and
    any other field Intercom adds is kept (see `model_extra`).

    Attributes:
        type: Normally `"phone_call_redirect"`.
        phone: The number that received the SMS, when Intercom echoes it (masked, like every
            text of the answer, unless `PREFECT_INTERCOM_SHOW_PHONES=1`).
        url: The Messenger link that was sent, when Intercom returns it.
        request_id: Intercom's request id for this call, when it sent one.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str | None = None
    phone: str | None = None
    url: str | None = None
    request_id: str | None = None

    @classmethod
    def from_response(cls, response: IntercomResponse) -> PhoneCallRedirect:
        """Build the result from a parsed answer (the body's `request_id`, if any, wins)."""
        return cls.model_validate({"request_id": response.request_id, **response.data})


def parse_response(
    response: Answer,
    *,
    elapsed_ms: float,
    redact: Callable[[str], str] = unchanged,
    mask: Callable[[str], str] = unchanged,
) -> IntercomResponse:
    """Return the answer if it is a success, else raise the matching `IntercomAPIError`.

    Args:
        response: The answer, with its body read.
        elapsed_ms: How long the call took.
        redact: Applied to every text taken from the answer, whole, before anything shortens
            it (the client passes a function that removes every form of the access token).
        mask: Applied after `redact` to every text taken from the answer, successes and
            failures alike (`data` and its keys, numbers that hold the phone, headers, request
            id, messages): the client masks every form of the request's phone number.

    Raises:
        IntercomAPIError: Any non-2xx answer (subclasses for 401/403, 429 and 5xx), and a 2xx
            whose body is an `error.list` (its `outcome` is unknown: the SMS may have gone).
    """
    body, text = _decode(response, redact)
    # The request's phone, masked in every text of the answer, a success's too: a server may echo
    # it anywhere (request id, headers, body), and these texts go to logs, events and reports.
    body = mask_values(body, mask)  # `text` is masked where it is shown (a body that is no JSON object)
    # One pass over the headers (names come lower-cased, repeated ones joined with ", ").
    present = {name: value for name, value in response.headers.items() if name in _KEPT}
    kept = {name: mask(redact(present[name])) for name in KEPT_HEADERS if name in present}
    request_id = _request_id(body, kept)
    request_id = cut(request_id, MAX_TEXT) if request_id else None
    rate_limit, status = RateLimit.from_headers(present), response.status_code
    truncated = response.extensions.get(CUT_EXTENSION)
    # A 2xx whose body is Intercom's `error.list` contradicts itself: an error whose outcome is unknown.
    if 200 <= status < 300 and not (isinstance(body, dict) and body.get("type") == "error.list"):
        return IntercomResponse(
            status_code=status,
            data=body if isinstance(body, dict) else {},
            request_id=request_id,
            rate_limit=rate_limit,
            elapsed_ms=elapsed_ms,
            headers=kept,
            unparsed_body=None if isinstance(body, dict) or not text else cut(mask(text), MAX_TEXT),
            truncated=truncated,
        )
    code, message, errors = _error_details(body, text, kept.get("content-type"), mask)
    if truncated:
        message = f"{message or 'no message'} (the answer was {truncated})"
    fields: dict[str, Any] = {
        "error_code": cut(mask(code), MAX_TEXT) if code else None,
        "message": message,
        "request_id": request_id,
        "errors": [
            {cut(mask(str(key)), MAX_TEXT): cut(mask(str(value)), MAX_TEXT) for key, value in item.items()}
            for item in errors[:MAX_ERRORS]
        ],
        "body": body,
        "headers": kept,
    }
    if status == 429:  # the numbers of a 429 (`limit`, `remaining`, `reset_at`) come from the headers as they came
        raise IntercomRateLimitError(
            status, retry_after=_retry_after(present.get("retry-after")), **asdict(rate_limit), **fields
        )
    if status in (401, 403):
        raise IntercomAuthenticationError(status, **fields)
    raise (IntercomServerError if status >= 500 else IntercomAPIError)(status, **fields)


def _error_details(
    body: Any, text: str, content_type: str | None, mask: Callable[[str], str]
) -> tuple[str | None, str | None, list[dict]]:
    """Intercom's code, a message (masked, cut) and the `error.list` entries, from a redacted body."""
    if isinstance(body, dict):
        raw_errors = body.get("errors")
        errors = [item for item in raw_errors if isinstance(item, dict)] if isinstance(raw_errors, list) else []
        # The first `error.list` entry's `code`, else the body's own `error_key`; its `message` too.
        source, code_key = (errors[0], "code") if errors else (body, "error_key")
        code, message = _text(source.get(code_key)), _text(source.get("message"))
        if not code and not message:  # no usable code or message (absent, null, empty): show the body
            message = json.dumps(body, ensure_ascii=False)
        return code, cut(mask(message), MAX_TEXT) if message else None, errors
    kind = cut(mask(content_type), 100) if content_type is not None else "no content type"
    if not text.strip():
        return None, f"empty body ({kind})", []
    return None, f"non-JSON body ({kind}): {cut(mask(text), MAX_TEXT)}", []


def _decode(response: Answer, redact: Callable[[str], str]) -> tuple[Any, str]:
    """The body as JSON (or `None`) and as text, both redacted: the text whole, then every string in the JSON."""
    text = redact(response.content.decode("utf-8", errors="replace"))
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None, text
    # A body nested deeper than any answer Intercom documents is kept as text: walking it
    # (redaction, summaries) would risk Python's recursion limit.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _nesting(body) > MAX_JSON_DEPTH:  # one per level
        return None, text
    # Again once decoded, when JSON escapes (`\\"`, `\\\\`) could have hidden a run from the text redaction
    # (every string, keys included: `mask_values` applies any function that way).
    return (mask_values(body, redact) if "\\" in text else body), text


def _nesting(value: Any) -> int:
    """How deeply `value` nests (0 for a scalar), computed without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _request_id(body: Any, headers: Mapping[str, str]) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("request_id"), str):
        return body["request_id"]
    return next((headers[name] for name in REQUEST_ID_HEADERS if name in headers), None)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = dt.datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=dt.UTC)
        except ValueError:
            return None
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None  # NaN or infinity is no answer


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(float(headers[name]))
    except (KeyError, ValueError, OverflowError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
