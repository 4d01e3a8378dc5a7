"""Turn Intercom's HTTP answers into results or errors (the "parse" step of the pipeline)."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomRateLimitError,
    IntercomServerError,
)

REQUEST_ID_HEADERS = ("x-request-id", "intercom-request-id")
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
# A redirect's `Location`, renamed by the client, which never follows redirects (see client.py).
UNFOLLOWED_LOCATION_HEADER = "x-unfollowed-location"
KEPT_HEADERS = (*REQUEST_ID_HEADERS, *RATE_LIMIT_HEADERS, "retry-after", "content-type", UNFOLLOWED_LOCATION_HEADER)
_KEPT = frozenset(KEPT_HEADERS)
MAX_TEXT = 300
MAX_JSON_DEPTH = 64


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
        reset = _int_header(headers, "x-ratelimit-reset")
        reset_at = None
        if reset is not None:
            try:
                reset_at = dt.datetime.fromtimestamp(reset, tz=dt.timezone.utc)
            except (OverflowError, OSError, ValueError):
                reset_at = None
        return cls(
            limit=_int_header(headers, "x-ratelimit-limit"),
            remaining=_int_header(headers, "x-ratelimit-remaining"),
            reset_at=reset_at,
        )


@dataclass(frozen=True)
class IntercomResponse:
    """A successful answer.

    Attributes:
        status_code: The HTTP status (2xx).
        data: The JSON body (an empty dict when the body was empty or not a JSON object).
        request_id: Intercom's request id, when it sent one.
        rate_limit: The rate-limit headers.
        elapsed_ms: Time from sending the request to reading the whole answer.
        headers: The response headers worth keeping (request id, rate limits, content type).
        unparsed_body: The start of the body when it was not a JSON object (rare; logged).
        attempts: How many times the request was sent (more than 1 after retries).
    """

    status_code: int
    data: dict[str, Any]
    request_id: str | None
    rate_limit: RateLimit
    elapsed_ms: float
    headers: dict[str, str] = field(default_factory=dict)
    unparsed_body: str | None = None
    attempts: int = 1


class PhoneCallRedirect(BaseModel):
    """Intercom's answer to `POST /phone_call_redirects`.

    Intercom documents two shapes, `{type, phone}` and `{type, url}`; both are accepted and
    any other field Intercom adds is kept (see `model_extra`).

    Attributes:
        type: Normally `"phone_call_redirect"`.
        phone: The number that received the SMS, when Intercom echoes it.
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
    response: httpx.Response, *, elapsed_ms: float, redact: Callable[[str], str] = lambda text: text
) -> IntercomResponse:
    """Return the answer if it is a success, else raise the matching `IntercomAPIError`.

    Args:
        response: The answer, with its body read.
        elapsed_ms: How long the call took.
        redact: Applied to every text taken from the answer before it goes into an error
            (the client passes a function that removes the access token).

    Raises:
        IntercomAPIError: Any non-2xx answer (subclasses for 401/403, 429 and 5xx).
    """
    body, text = _decode(response)
    # One pass over the headers (names come lower-cased, repeated ones joined with ", ").
    present = {name: value for name, value in response.headers.items() if name in _KEPT}
    kept = {name: redact(present[name]) for name in KEPT_HEADERS if name in present}
    request_id = _request_id(body, present)
    if 200 <= response.status_code < 300:
        return IntercomResponse(
            status_code=response.status_code,
            data=body if isinstance(body, dict) else {},
            request_id=request_id,
            rate_limit=RateLimit.from_headers(present),
            elapsed_ms=elapsed_ms,
            headers=kept,
            unparsed_body=None if isinstance(body, dict) or not text else redact(text[:MAX_TEXT]),
        )
    raise _api_error(response, body, text, request_id, kept, redact)


def _api_error(
    response: httpx.Response,
    body: Any,
    text: str,
    request_id: str | None,
    headers: dict[str, str],
    redact: Callable[[str], str],
) -> IntercomAPIError:
    status = response.status_code
    code, message, errors = _error_details(body, text, response)
    fields: dict[str, Any] = {
        "error_code": redact(code) if code else None,
        "message": redact(message) if message else None,
        "request_id": redact(request_id) if request_id else None,
        "errors": [{key: redact(str(value)) for key, value in item.items()} for item in errors],
        "body": _redact_json(body, redact),
        "headers": headers,
    }
    if status in (401, 403):
        return IntercomAuthenticationError(status, **fields)
    if status == 429:
        rate_limit = RateLimit.from_headers(response.headers)
        return IntercomRateLimitError(
            status,
            reset_at=rate_limit.reset_at,
            retry_after=_retry_after(response.headers),
            limit=rate_limit.limit,
            remaining=rate_limit.remaining,
            **fields,
        )
    if status >= 500:
        return IntercomServerError(status, **fields)
    return IntercomAPIError(status, **fields)


def _error_details(body: Any, text: str, response: httpx.Response) -> tuple[str | None, str | None, list[dict]]:
    if isinstance(body, dict):
        raw_errors = body.get("errors")
        errors = [item for item in raw_errors if isinstance(item, dict)] if isinstance(raw_errors, list) else []
        if errors:
            code, message = _text(errors[0].get("code")), _text(errors[0].get("message"))
        else:
            code, message = _text(body.get("error_key")), _text(body.get("message"))
        if not code and not message:  # no usable code or message (absent, null, empty): show the body
            message = _short(json.dumps(body, ensure_ascii=False))
        return code, message, errors
    content_type = response.headers.get("content-type", "no content type")
    if not text.strip():
        return None, f"empty body ({content_type})", []
    return None, f"non-JSON body ({content_type}): {_short(text)}", []


def _decode(response: httpx.Response) -> tuple[Any, str]:
    try:
        text = response.content.decode("utf-8", errors="replace")
    except Exception:  # pragma: no cover - content is always bytes once read
        text = ""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None, text
    # A body nested deeper than any answer Intercom documents is kept as text: walking it
    # (redaction, summaries) would risk Python's recursion limit.
    return (None, text) if _nesting(body) > MAX_JSON_DEPTH else (body, text)


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


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = dt.datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            return None
        seconds = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None  # NaN or infinity is no answer


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(float(headers[name]))
    except (KeyError, ValueError, OverflowError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else _short(str(value))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _redact_json(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(key)): _redact_json(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_json(item, redact) for item in value]
    return value
