"""Hostile answers: any status code, headers and bytes into `parse_response` and the client.

A 2xx becomes an `IntercomResponse`; anything else an `IntercomAPIError` (the subclass its
status calls for) whose message names the status and says something useful. Nothing else
comes out, and no answer can smuggle the access token into an error: not whole, not in
pieces, not escaped, not across a cut. Answers of any size are read up to 1 MiB.
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
from prefect_intercom.outcomes import Outcome
from prefect_intercom.reading import CUT_TOO_LARGE, MAX_ANSWER_BYTES
from prefect_intercom.redaction import Redactor
from prefect_intercom.responses import MAX_TEXT, IntercomResponse, parse_response

from .bounded import bounded
from .conftest import SECRET_TOKEN
from .leaks import exposed, reachable_texts

DOCUMENTED_AND_COMMON = [200, 201, 204, 301, 302, 307, 308, 400, 401, 403, 404, 422, 429, 500, 502, 503, 504]
STATUSES = st.one_of(st.integers(100, 599), st.sampled_from(DOCUMENTED_AND_COMMON), st.integers(0, 999))
HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "content-type",
            "x-request-id",
            "intercom-request-id",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "retry-after",
            "location",
            "set-cookie",
            "authorization",
        ]
    ),
    st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True),
)
HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"text/html; charset=utf-8",
            b"-1",
            b"1e400",
            b"nan",
            b"inf",
            b"99999999999999999999",
            b"Wed, 21 Oct 2015 07:28:00 GMT",
            b"0",
            b"",
            SECRET_TOKEN.encode(),
            f"Bearer {SECRET_TOKEN}".encode(),
        ]
    ),
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
        {
            "type": st.just("error.list"),
            "errors": st.lists(
                st.dictionaries(st.sampled_from(["code", "message", "field"]), JSON_VALUES, max_size=3) | JSON_VALUES,
                max_size=3,
            ),
        },
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
    st.sampled_from(
        [
            b"",
            b"null",
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 900 + b"1" + b"}" * 900,
            b"1" * 5000,
            b"\xff\xfe\x00",
            b"<html>Bad gateway</html>",
            json.dumps({"message": SECRET_TOKEN}).encode(),
            json.dumps({"errors": [{"code": SECRET_TOKEN, "message": f"Bearer {SECRET_TOKEN}"}]}).encode(),
        ]
    ),
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


def assert_refusal(error: IntercomAPIError, status: int) -> None:
    """Only a non-2xx, or a 2xx whose body is Intercom's `error.list` (then the SMS may have gone), is an error."""
    if 200 <= status < 300:
        assert isinstance(error.body, dict) and error.body.get("type") == "error.list", error
        assert error.outcome is Outcome.UNKNOWN


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
        assert_refusal(error, status)
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
@given(
    status=STATUSES.filter(lambda status: status >= 100),
    headers=HEADERS,
    body=BODIES,
    encoding=ENCODINGS,
    broken=st.booleans(),
)
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
            assert_refusal(error, status)
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
        SECRET_TOKEN,
        base_url="http://127.0.0.1:9",
        intercom_version="2.12",
        async_transport=httpx.MockTransport(answer),
    )
    async with client:
        try:
            parsed = await client.arequest(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
        except IntercomAPIError as error:
            assert_refusal(error, status)
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


# --- a hostile server echoing the token: any form, any place, any cut ---------------------

CANARY = "dG9rOkZVWlo/4c1d+8e2f6a0b=3d7c9e1f5a2b8d4c6e0f1a3b=="  # base64-like: `/+=` change when encoded


def _escaped(text: str, how: str, draw: st.DrawFn) -> str:
    """`text` in one of the forms a server may echo it in (each character escaped or not, at random)."""
    if how == "url":
        return "".join(
            f"%{ord(char):02{draw(st.sampled_from('xX'))}}" if draw(st.booleans()) else char for char in text
        )
    if how == "json":
        return "".join(f"\\u{ord(char):04x}" if draw(st.booleans()) else char for char in text).replace("/", "\\/")
    if how == "html":
        return "".join(f"&#{ord(char)};" if draw(st.booleans()) else char for char in text)
    if how == "upper":
        return text.upper()
    return text


@st.composite
def _echoes(draw: st.DrawFn) -> tuple[str, str]:
    """(where the echo goes, the echo): the whole `Bearer` header or a piece of it, in some form."""
    header = f"Bearer {CANARY}"
    start = draw(st.integers(0, len(header) - 10))
    end = draw(st.integers(start + 10, len(header)))
    piece = draw(st.sampled_from([header, CANARY, header[start:end]]))
    return draw(st.sampled_from(["message", "code", "html", "text", "header", "data"])), _escaped(
        piece, draw(st.sampled_from(["raw", "url", "json", "html", "upper"])), draw
    )


def _hostile_answer(status: int, where: str, text: str) -> httpx.Response:
    if where == "header":
        raw = text.encode()  # header values as bytes: a server need not send ASCII
        return httpx.Response(status, headers=[("x-request-id", raw), ("content-type", raw), ("location", raw)])
    if where == "html":
        return httpx.Response(
            status, content=f"<html><body>{text}</body></html>".encode(), headers={"content-type": "text/html"}
        )
    if where == "text":
        return httpx.Response(status, content=text.encode())
    key = {"message": "message", "code": "error_key", "data": "url"}[where]
    return httpx.Response(status, json={"type": "x", key: text, "request_id": text[-40:]})


@bounded(300)
@given(
    status=st.sampled_from([200, 201, 302, 400, 401, 403, 404, 422, 429, 500, 502, 503]),
    echo=_echoes(),
    padding=st.integers(0, 400),
    filler=st.sampled_from([".", " ", "a", "\n", "é", "\\", "%"]),
)
@example(status=401, echo=("message", f"Bearer {CANARY}"), padding=270, filler=".")
@example(status=500, echo=("html", f"Bearer {CANARY}"[:30]), padding=280, filler="a")
@example(status=200, echo=("data", "OkZVWlo\\u002f4c1"), padding=0, filler=".")  # JSON-escaped twice in the body
@example(status=400, echo=("message", "OkZVWlo\\u002f4c1"), padding=3, filler="\\")
def test_an_echoed_token_in_any_form_at_any_offset_leaves_no_piece_of_it(
    status: int, echo: tuple[str, str], padding: int, filler: str
) -> None:
    where, text = echo
    client = IntercomClient(
        CANARY,
        base_url="http://127.0.0.1:9",
        intercom_version="2.12",
        transport=httpx.MockTransport(lambda request: _hostile_answer(status, where, filler * padding + text)),
    )
    with client:
        try:
            outcome: Any = client.request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
        except IntercomAPIError as error:
            outcome = error
    assert exposed(reachable_texts(outcome), CANARY) == []


@bounded(300)
@given(
    text=st.text(max_size=200),
    pieces_=st.lists(st.tuples(st.integers(0, len(CANARY) - 8), st.integers(8, len(CANARY))), max_size=4),
    data=st.data(),
)
def test_redaction_leaves_no_8_character_piece_and_changes_nothing_else(
    text: str, pieces_: list[tuple[int, int]], data: st.DataObject
) -> None:
    redactor = Redactor(CANARY)
    assert redactor.redact(text) == text or exposed(text, CANARY, 8)  # no false alarm on texts without the token
    hostile = text
    for start, length in pieces_:
        piece = CANARY[start : start + length]
        how = data.draw(st.sampled_from(["raw", "url", "json", "html", "upper"]))
        at = data.draw(st.integers(0, len(hostile)))
        hostile = hostile[:at] + _escaped(piece, how, data.draw) + hostile[at:]
    assert exposed(redactor.redact(hostile), CANARY, 8) == []


# --- bounded answers: any size, any chunking, compressed or not ---------------------------


@bounded(30)
@given(
    size=st.one_of(
        st.integers(0, 2048),
        st.integers(MAX_ANSWER_BYTES - 2, MAX_ANSWER_BYTES + 2),
        st.integers(0, 3 * MAX_ANSWER_BYTES),
    ),
    chunk=st.integers(1, 256 * 1024),
    encoding=st.sampled_from([None, "gzip", "deflate"]),
    status=st.sampled_from([200, 500]),
)
async def test_an_answer_of_any_size_is_read_up_to_the_limit_and_says_when_it_was_cut(
    size: int, chunk: int, encoding: str | None, status: int
) -> None:
    body = (b'{"type":"phone_call_redirect","url":"' + b"u" * size)[:size]
    wire = _encode(body, encoding, broken=False)
    chunk = max(chunk, len(wire) // 2048)  # any boundaries, but never millions of one-byte chunks

    async def stream() -> Any:
        for start in range(0, len(wire), chunk):
            yield wire[start : start + chunk]

    headers = {"content-encoding": encoding} if encoding else {}
    client = IntercomClient(
        SECRET_TOKEN,
        base_url="http://127.0.0.1:9",
        intercom_version="2.12",
        async_transport=httpx.MockTransport(lambda request: httpx.Response(status, headers=headers, content=stream())),
    )
    async with client:
        try:
            outcome: Any = await client.arequest(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
        except IntercomServerError as error:
            outcome = error
    too_large = max(len(body), len(wire)) > MAX_ANSWER_BYTES
    if status == 200:
        assert outcome.truncated == (CUT_TOO_LARGE if too_large else None)
        assert outcome.unparsed_body is None or len(outcome.unparsed_body) <= MAX_TEXT
    else:
        assert (CUT_TOO_LARGE in str(outcome)) == too_large
        assert len(str(outcome)) < 1000
