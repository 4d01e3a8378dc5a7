"""Hostile answers: any status code, headers and bytes into `parse_response` and the client.

A 2xx becomes an `IntercomResponse`; anything else an `IntercomAPIError` (the subclass its
status calls for) whose message names the status and says something useful. Nothing else
comes out, and no answer can smuggle the access token into an error.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.client import IntercomClient
from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomRateLimitError,
    IntercomServerError,
    IntercomTransportError,
)
from prefect_intercom.responses import IntercomResponse, parse_response

from .bounded import bounded
from .conftest import SECRET_TOKEN

DOCUMENTED_AND_COMMON = [200, 201, 204, 301, 302, 307, 308, 400, 401, 403, 404, 422, 429, 500, 502, 503, 504]
STATUSES = st.one_of(st.integers(100, 599), st.sampled_from(DOCUMENTED_AND_COMMON), st.integers(0, 999))
HEADER_NAMES = st.one_of(
    st.sampled_from([
        "content-type", "x-request-id", "intercom-request-id", "x-ratelimit-limit", "x-ratelimit-remaining",
        "x-ratelimit-reset", "retry-after", "location", "set-cookie", "authorization",
    ]),
    st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True),
)
HEADER_VALUES = st.one_of(
    st.sampled_from([
        b"application/json", b"text/html; charset=utf-8", b"-1", b"1e400", b"nan", b"inf", b"99999999999999999999",
        b"Wed, 21 Oct 2015 07:28:00 GMT", b"0", b"", SECRET_TOKEN.encode(), f"Bearer {SECRET_TOKEN}".encode(),
    ]),
    st.binary(max_size=40).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"")),
)
HEADERS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=15,
)
INTERCOM_SHAPED = st.one_of(
    st.fixed_dictionaries({"error_key": JSON_VALUES}, optional={"message": JSON_VALUES}),
    st.fixed_dictionaries(
        {"type": st.just("error.list"), "errors": st.lists(st.dictionaries(
            st.sampled_from(["code", "message", "field"]), JSON_VALUES, max_size=3) | JSON_VALUES, max_size=3)},
        optional={"request_id": JSON_VALUES},
    ),
    st.fixed_dictionaries(
        {"type": st.just("phone_call_redirect")}, optional={"phone": JSON_VALUES, "url": JSON_VALUES}
    ),
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    INTERCOM_SHAPED.map(lambda value: json.dumps(value).encode()),
    st.sampled_from([
        b"", b"null", b"[" * 5000 + b"]" * 5000, b'{"a":' * 900 + b"1" + b"}" * 900, b"1" * 5000,
        b"\xff\xfe\x00", b"<html>Bad gateway</html>", json.dumps({"message": SECRET_TOKEN}).encode(),
        json.dumps({"errors": [{"code": SECRET_TOKEN, "message": f"Bearer {SECRET_TOKEN}"}]}).encode(),
    ]),
)


def _redact(text: str) -> str:
    return IntercomClient(SECRET_TOKEN, base_url="http://127.0.0.1:9", intercom_version="2.12").redact(text)


def _expected_class(status: int) -> type[IntercomAPIError]:
    if status in (401, 403):
        return IntercomAuthenticationError
    if status == 429:
        return IntercomRateLimitError
    if status >= 500:
        return IntercomServerError
    return IntercomAPIError


def _check_error(error: IntercomAPIError, status: int) -> None:
    assert type(error) is _expected_class(status)
    assert error.status_code == status
    text = str(error)
    assert text.startswith(f"Intercom answered HTTP {status}")
    assert len(text) < 2000, "an error message that floods the logs"
    # Something beyond the bare status: Intercom's code, its message, or a summary of the body.
    assert error.error_code or error.message or error.hint, text
    kept = (error.error_code, error.message, error.request_id, error.errors, error.body, error.headers)
    everything = repr((text, *kept))
    assert SECRET_TOKEN not in everything


def _check_success(response: IntercomResponse, status: int) -> None:
    assert response.status_code == status
    assert isinstance(response.data, dict)
    assert SECRET_TOKEN not in repr((response.unparsed_body, response.headers))


@bounded(400)
@given(status=STATUSES, headers=HEADERS, body=BODIES)
@example(status=400, headers=[], body=b"[" * 900 + b"]" * 900)
@example(status=429, headers=[("retry-after", b"1e400"), ("x-ratelimit-reset", b"1e400")], body=b"")
@example(status=401, headers=[("x-request-id", SECRET_TOKEN.encode())], body=b"{}")
def test_parse_response_raises_only_api_errors(status: int, headers: list[tuple[str, bytes]], body: bytes) -> None:
    response = httpx.Response(status, headers=headers, content=body)
    try:
        parsed = parse_response(response, elapsed_ms=1.0, redact=_redact)
    except IntercomAPIError as error:
        assert not 200 <= status < 300
        _check_error(error, status)
        if isinstance(error, IntercomRateLimitError) and error.retry_after is not None:
            assert 0 <= error.retry_after < float("inf")
        return
    assert 200 <= status < 300
    _check_success(parsed, status)


ENCODINGS = st.sampled_from([None, "gzip", "deflate", "br", "identity", "x-unknown", "gzip, deflate"])


def _encode(body: bytes, encoding: str | None, broken: bool) -> bytes:
    if broken or encoding not in ("gzip", "deflate"):
        return body
    return gzip.compress(body) if encoding == "gzip" else zlib.compress(body)


@bounded(200)
@given(status=STATUSES.filter(lambda status: status >= 100), headers=HEADERS, body=BODIES, encoding=ENCODINGS,
       broken=st.booleans())
@example(status=401, headers=[], body=b"not gzip", encoding="gzip", broken=True)
@example(status=200, headers=[], body=b"not gzip", encoding="gzip", broken=True)
@example(status=302, headers=[("location", b"https://evil.example/steal")], body=b"", encoding=None, broken=False)
def test_the_client_raises_only_api_errors(
    status: int, headers: list[tuple[str, bytes]], body: bytes, encoding: str | None, broken: bool
) -> None:
    answer_headers = [(name, value) for name, value in headers if name.lower() != "content-encoding"]
    if encoding:
        answer_headers.append(("content-encoding", encoding.encode()))
    wire = _encode(body, encoding, broken)
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, headers=answer_headers, stream=httpx.ByteStream(wire))

    client = IntercomClient(
        SECRET_TOKEN, base_url="http://127.0.0.1:9", intercom_version="2.12", transport=httpx.MockTransport(answer)
    )
    with client:
        try:
            parsed = client.request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
        except IntercomAPIError as error:
            assert not 200 <= status < 300
            _check_error(error, status)
        else:
            assert 200 <= status < 300
            _check_success(parsed, status)
    assert len(calls) == 1, "the client followed a redirect or retried"


@bounded(60)
@given(status=STATUSES.filter(lambda status: status >= 100), headers=HEADERS, body=BODIES, encoding=ENCODINGS)
async def test_the_async_client_raises_only_api_errors(
    status: int, headers: list[tuple[str, bytes]], body: bytes, encoding: str | None
) -> None:
    answer_headers = [(name, value) for name, value in headers if name.lower() != "content-encoding"]
    if encoding:
        answer_headers.append(("content-encoding", encoding.encode()))

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=answer_headers, stream=httpx.ByteStream(body))

    client = IntercomClient(
        SECRET_TOKEN, base_url="http://127.0.0.1:9", intercom_version="2.12", transport=httpx.MockTransport(answer)
    )
    async with client:
        try:
            parsed = await client.arequest(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
        except IntercomAPIError as error:
            assert not 200 <= status < 300
            _check_error(error, status)
        else:
            _check_success(parsed, status)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError(f"peer closed; Authorization: Bearer {SECRET_TOKEN}"),
        httpx.ReadError("reset"),
        httpx.UnsupportedProtocol("gopher"),
    ],
    ids=lambda failure: type(failure).__name__,
)
def test_no_answer_is_a_transport_error(failure: Exception) -> None:
    def answer(request: httpx.Request) -> Any:
        raise failure

    client = IntercomClient(
        SECRET_TOKEN, base_url="http://127.0.0.1:9", intercom_version="2.12", transport=httpx.MockTransport(answer)
    )
    with client, pytest.raises(IntercomTransportError) as caught:
        client.request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
    assert SECRET_TOKEN not in str(caught.value)
    assert type(failure).__name__ in str(caught.value)
