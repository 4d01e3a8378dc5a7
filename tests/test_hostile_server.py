"""Hostile servers: nothing escapes. No piece of the token, no full phone number, no unbounded read.

A real HTTP server over loopback (`tests/hostile_server.py`) echoes the `Authorization` header
back in every form (as it is, `Bearer `-prefixed, JSON-escaped, URL-encoded), at every offset
around every cut, in bodies, headers and the reason phrase; sends 50 MB answers and gzip
bombs; trickles its answer byte by byte. The client (sync and async, on httpx's and on
aiohttp's transport), the task and Prefect's view of the run must show no 10-character piece
of the token anywhere (exceptions with their whole chain and attributes, log records at
DEBUG, state messages) and the request's phone number only masked.
"""

from __future__ import annotations

import gc
import gzip
import logging
import tracemalloc
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler

from prefect_intercom import (
    IntercomAPIError,
    IntercomCredentials,
    IntercomServerError,
    IntercomTransportError,
    IntercomValidationError,
    Outcome,
    create_phone_call_redirect,
)
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.client import IntercomClient
from prefect_intercom.privacy import SHOW_PHONES_ENV
from prefect_intercom.reading import CUT_AT_DEADLINE, CUT_TOO_LARGE, MAX_ANSWER_BYTES
from prefect_intercom.responses import MAX_TEXT, IntercomResponse

from .hostile_server import HostileServer, Received, Reply
from .leaks import exposed, phone_shown, reachable_texts

CANARY_TOKEN = "dG9rOkNBTkFSWQ/3b8f+2d6e9a1c=4f7b0e5d8a2c6f9b1e4d7a0c3f6b=="  # base64-like: `/+=` get URL-encoded
PHONE = "+353871235678"
MASKED_PHONE = "+3538•••5678"
BODY = {"phone": PHONE}
FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda authorization: authorization.removeprefix("Bearer "),
    "bearer": lambda authorization: authorization,
    "json-escaped": lambda authorization: "".join(f"\\u{ord(char):04x}" for char in authorization),
    "url-encoded": lambda authorization: urllib.parse.quote(authorization, safe=""),
}


def _json(status: int, text: str) -> Reply:
    return Reply(status, headers=[("Content-Type", "application/json")], body=text.encode("latin-1"))


# What the server answers, given the text to put in it (padding + the echo).
SHAPES: dict[str, Callable[[str], Reply]] = {
    "401 error.list message": lambda text: _json(
        401, '{"type":"error.list","errors":[{"code":"unauthorized","message":"' + text + '"}]}'
    ),
    "500 HTML page": lambda text: Reply(
        500,
        "Internal Server Error",
        [("Content-Type", "text/html")],
        f"<html><body><p>{text}</p></body></html>".encode(),
    ),
    "400 without a code": lambda text: _json(400, '{"detail":"' + text + '"}'),
    "200 text body": lambda text: Reply(200, headers=[("Content-Type", "text/plain")], body=text.encode()),
    "200 JSON body": lambda text: _json(200, '{"type":"phone_call_redirect","url":"' + text + '"}'),
    "302 headers and reason": lambda text: Reply(
        302, text[-60:], [("Location", text), ("X-Request-Id", text), ("Content-Type", text)], b""
    ),
}


def _echo(shape: str, form: str, offset: int) -> Callable[[Received], Reply]:
    def answer(request: Received) -> Reply:
        return SHAPES[shape]("." * offset + FORMS[form](request.authorization))

    return answer


def _client(base_url: str, **options: Any) -> IntercomClient:
    return IntercomClient(CANARY_TOKEN, base_url=base_url, intercom_version="2.12", **options)


async def _send_once(client: IntercomClient, mode: str) -> IntercomResponse:
    """One request through the sync or the async client (`mode`), closing it after."""
    if mode == "sync":
        with client:
            return client.request(PHONE_CALL_REDIRECTS, BODY)
    async with client:
        return await client.arequest(PHONE_CALL_REDIRECTS, BODY)


def _outcome(send: Callable[[], IntercomResponse]) -> Any:
    """The answer or the error a send ends with."""
    try:
        return send()
    except IntercomAPIError as error:
        return error


def _check_nothing_escapes(outcome: Any) -> None:
    texts = reachable_texts(outcome)
    assert exposed(texts, CANARY_TOKEN) == []
    assert not phone_shown(texts, PHONE)
    if isinstance(outcome, IntercomAPIError):
        assert len(str(outcome)) < 2 * MAX_TEXT + 300
        assert outcome.__context__ is None and outcome.__cause__ is None


# --- the token echoed at every offset around every cut ------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", SHAPES)
def test_an_echoed_token_at_any_offset_leaves_no_piece_in_the_error_or_the_answer(shape: str, form: str) -> None:
    """Every offset from 0 to past the longest cut: the token straddles each cut at some offset."""

    def handler_for(offset: int) -> Callable[[httpx.Request], httpx.Response]:
        answer = _echo(shape, form, offset)

        def handler(request: httpx.Request) -> httpx.Response:
            headers = {name.lower(): value for name, value in request.headers.items()}
            reply = answer(Received(request.method, request.url.path, headers, request.content))
            return httpx.Response(
                reply.status,
                headers=[(name, value) for name, value in reply.headers],
                content=reply.body,
                extensions={"reason_phrase": reply.reason.encode("latin-1", "replace")},
            )

        return handler

    for offset in range(0, MAX_TEXT + 40):
        with _client("http://127.0.0.1:9", transport=httpx.MockTransport(handler_for(offset))) as client:
            outcome = _outcome(lambda: client.request(PHONE_CALL_REDIRECTS, BODY))
        _check_nothing_escapes(outcome)
        assert isinstance(outcome, IntercomResponse) == shape.startswith("200")


@pytest.fixture(scope="module")
def echo_server() -> Iterator[tuple[HostileServer, dict[str, Callable[[Received], Reply]]]]:
    """One hostile server whose answer each test sets (`script["answer"]`)."""
    script: dict[str, Callable[[Received], Reply]] = {"answer": lambda request: Reply()}
    with HostileServer(lambda request: script["answer"](request)) as server:
        yield server, script


@pytest.mark.parametrize("shape", SHAPES)
def test_over_the_network_the_sync_client_shows_no_piece_at_any_offset_around_the_cuts(
    echo_server: tuple[HostileServer, dict], shape: str
) -> None:
    server, script = echo_server
    with _client(server.url) as client:
        for form in ("bearer", "url-encoded"):
            for offset in range(MAX_TEXT - 200, MAX_TEXT + 5):
                script["answer"] = _echo(shape, form, offset)
                _check_nothing_escapes(_outcome(lambda: client.request(PHONE_CALL_REDIRECTS, BODY)))


@pytest.mark.parametrize("shape", SHAPES)
async def test_over_the_network_the_async_client_shows_no_piece_at_any_offset_around_the_cuts(
    echo_server: tuple[HostileServer, dict], shape: str
) -> None:
    server, script = echo_server
    async with _client(server.url) as client:  # aiohttp's transport
        for form in ("bearer", "json-escaped"):
            for offset in range(MAX_TEXT - 200, MAX_TEXT + 5):
                script["answer"] = _echo(shape, form, offset)
                try:
                    outcome: Any = await client.arequest(PHONE_CALL_REDIRECTS, BODY)
                except IntercomAPIError as error:
                    outcome = error
                _check_nothing_escapes(outcome)


# --- no answer: nothing behind the error -------------------------------------------------


def _broken_status_line(request: Received) -> Reply:
    """A status line no HTTP parser takes, quoting the token (the parser's error quotes the line)."""
    return Reply(200, f"OK\r\nX-Broken {request.authorization}\r\n\x00{request.authorization}")


TRANSPORT_FAILURES: dict[str, Callable[[Received], Reply]] = {
    "broken status line": _broken_status_line,
    "no answer in time": lambda request: Reply(200, body=b"{}", trickle=0.3, piece=1, trickle_head=True),
}


@pytest.mark.parametrize("failure", TRANSPORT_FAILURES)
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_failed_exchange_raises_an_error_with_no_token_behind_it(
    echo_server: tuple[HostileServer, dict], failure: str, mode: str
) -> None:
    server, script = echo_server
    script["answer"] = TRANSPORT_FAILURES[failure]
    client = _client(server.url, timeout=0.2)
    with pytest.raises(IntercomTransportError) as caught:
        await _send_once(client, mode)
    error = caught.value
    assert error.__context__ is None and error.__cause__ is None
    assert error.outcome is Outcome.UNKNOWN
    assert exposed(reachable_texts(error), CANARY_TOKEN) == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_refused_connection_raises_an_error_with_no_token_behind_it(mode: str) -> None:
    with HostileServer(lambda request: Reply()) as server:
        url = server.url  # the port is free again once the server is gone
    client = _client(url)
    with pytest.raises(IntercomTransportError) as caught:
        await _send_once(client, mode)
    assert caught.value.outcome is Outcome.NOT_SENT
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert exposed(reachable_texts(caught.value), CANARY_TOKEN) == []


# --- log records of httpx, httpcore, aiohttp at DEBUG ------------------------------------

CANARY_HEADER = "canary-header-8e1f"
HTTP_LOGGERS = ("httpx", "httpcore", "aiohttp", "asyncio")


def _headers_echo(request: Received) -> Reply:
    echo = request.authorization
    return Reply(
        200,
        f"OK {echo}",
        [("X-Echo", echo), ("X-Echo-Url", urllib.parse.quote(echo, safe="")), ("X-Canary", CANARY_HEADER)],
        b'{"type":"phone_call_redirect"}',
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_debug_logs_of_the_http_libraries_hold_no_piece_of_an_echoed_token(
    echo_server: tuple[HostileServer, dict], caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    server, script = echo_server
    script["answer"] = _headers_echo
    for name in HTTP_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    client = _client(server.url)
    response = await _send_once(client, mode)
    assert response.status_code == 200
    records = [record for record in caplog.records if record.name.split(".")[0] in HTTP_LOGGERS]
    texts = [caplog.handler.format(record) for record in records]
    assert any("HTTP Request: POST" in text for text in texts)  # the control: httpx's INFO line was caught
    if mode == "sync":
        assert any(CANARY_HEADER in text for text in texts)  # ... and httpcore's DEBUG one with the headers
    assert exposed(texts, CANARY_TOKEN) == []


def test_the_log_filter_redacts_a_token_while_its_client_lives_and_lets_it_go_after() -> None:
    token = "tok_FILTER_d41d8cd98f00b204e98a0998ecf8427e"  # no run of 7 digits: phones are masked too
    logger = logging.getLogger("httpcore.http11")

    def filtered() -> str:
        record = logging.LogRecord(logger.name, logging.DEBUG, __file__, 1, "got %s", (f"Bearer {token}",), None)
        assert logger.filter(record)
        return record.getMessage()

    client = IntercomClient(
        token, base_url="http://127.0.0.1:9", intercom_version="2.12", transport=httpx.MockTransport(_empty)
    )
    with client:
        client.request(PHONE_CALL_REDIRECTS, BODY)
    assert filtered() == "got Bearer [REDACTED]"
    del client
    gc.collect()
    assert filtered() == f"got Bearer {token}"  # no secret is kept once no client needs it


def _empty(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


# --- bounded answers ----------------------------------------------------------------------

FIFTY_MB = 50 * 1024 * 1024


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_50_mb_success_is_read_up_to_1_mib_and_still_sent(
    echo_server: tuple[HostileServer, dict], mode: str
) -> None:
    server, script = echo_server
    script["answer"] = lambda request: Reply(200, headers=[("Content-Type", "text/plain")], body=b"A", size=FIFTY_MB)
    tracemalloc.start()
    try:
        client = _client(server.url)
        response = await _send_once(client, mode)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 200 and response.truncated == CUT_TOO_LARGE
    assert response.unparsed_body is not None and len(response.unparsed_body) <= MAX_TEXT
    assert peak < 8 * MAX_ANSWER_BYTES, f"peak {peak:,} bytes"
    sent = server.sent[-1]
    assert not sent.finished and sent.written < FIFTY_MB // 2  # the rest was never read: the connection closed


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_gzip_bomb_inflates_no_further_than_the_limit(
    echo_server: tuple[HostileServer, dict], mode: str
) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    server, script = echo_server
    script["answer"] = lambda request: Reply(
        500, headers=[("Content-Encoding", "gzip"), ("Content-Type", "text/plain")], body=bomb
    )
    tracemalloc.start()
    try:
        client = _client(server.url)
        with pytest.raises(IntercomServerError) as caught:
            await _send_once(client, mode)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert CUT_TOO_LARGE in str(caught.value)
    assert peak < 8 * MAX_ANSWER_BYTES + 2 * len(bomb), f"peak {peak:,} bytes"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_body_trickled_past_the_deadline_is_cut_there_and_a_2xx_is_still_sent(
    echo_server: tuple[HostileServer, dict], mode: str
) -> None:
    server, script = echo_server
    # A byte every 20 ms: no read ever waits its 0.3 s timeout, the whole body would take 8 s.
    script["answer"] = lambda request: Reply(200, body=b"x" * 400, trickle=0.02, piece=1)
    client = _client(server.url, timeout=0.3)
    response = await _send_once(client, mode)
    assert response.status_code == 200 and response.truncated == CUT_AT_DEADLINE
    assert not server.sent[-1].finished


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_headers_trickled_past_the_deadline_end_the_request_as_unknown(
    echo_server: tuple[HostileServer, dict], mode: str
) -> None:
    server, script = echo_server
    script["answer"] = lambda request: Reply(200, body=b"{}", trickle=0.02, piece=1, trickle_head=True)
    client = _client(server.url, timeout=0.3)
    with pytest.raises(IntercomTransportError) as caught:
        await _send_once(client, mode)
    assert caught.value.outcome is Outcome.UNKNOWN
    assert "deadline" in str(caught.value)
    assert not server.sent[-1].finished


# --- phone numbers in answers -------------------------------------------------------------


def _phone_echo(request: Received) -> Reply:
    message = f"The phone number {PHONE} (353871235678) is not valid"
    return _json(400, '{"type":"error.list","errors":[{"code":"invalid_phone_number","message":"' + message + '"}]}')


def test_the_request_phone_in_an_error_answer_is_masked(echo_server: tuple[HostileServer, dict]) -> None:
    server, script = echo_server
    script["answer"] = _phone_echo
    with _client(server.url) as client, pytest.raises(IntercomAPIError) as caught:
        client.request(PHONE_CALL_REDIRECTS, BODY)
    assert MASKED_PHONE in str(caught.value)
    assert not phone_shown(reachable_texts(caught.value), PHONE)


def test_the_switch_shows_the_full_phone_for_debugging(
    echo_server: tuple[HostileServer, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SHOW_PHONES_ENV, "1")
    server, script = echo_server
    script["answer"] = _phone_echo
    with _client(server.url) as client, pytest.raises(IntercomAPIError) as caught:
        client.request(PHONE_CALL_REDIRECTS, BODY)
    assert PHONE in str(caught.value)


# --- the task in a flow: state messages, logs in Prefect ----------------------------------


@flow
def _deflect(base_url: str, case: str) -> Any:
    """The phone is not a flow parameter here (Prefect stores parameters): only the task sees it."""
    credentials = IntercomCredentials(access_token=CANARY_TOKEN, base_url=base_url)
    phone = {"valid": PHONE, "spaced": "+353 87 123 5678"}[case]
    return create_phone_call_redirect(credentials, phone, {"note": "hostile-marker-41c"})


async def _run_texts(state: Any) -> list[str]:
    """What Prefect shows of a run: the flow's and its tasks' state messages, and every log line."""
    flow_run_id: UUID = state.state_details.flow_run_id
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        task_runs = await client.read_task_runs()
    messages = [str(run.state.message) for run in task_runs if run.flow_run_id == flow_run_id and run.state]
    return [str(state.message), *messages, *(log.message for log in logs)]


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("shape", ["401 error.list message", "500 HTML page", "400 without a code", "200 text body"])
async def test_the_task_against_an_echoing_server_leaves_no_piece_in_states_or_logs(
    echo_server: tuple[HostileServer, dict], shape: str
) -> None:
    server, script = echo_server
    script["answer"] = _echo(shape, "bearer", MAX_TEXT - 40)
    state = _deflect(server.url, "valid", return_state=True)
    texts = await _run_texts(state)
    assert any("hostile-marker-41c" in text or "Sending POST" in text for text in texts)  # the control
    assert any(MASKED_PHONE in text for text in texts)
    assert exposed(texts, CANARY_TOKEN) == []
    assert not phone_shown(texts, PHONE)
    result = await state.aresult(raise_on_failure=False)
    assert exposed(reachable_texts(result), CANARY_TOKEN) == []


@pytest.mark.usefixtures("prefect_server")
async def test_an_invalid_phone_is_masked_in_the_error_its_hint_the_state_and_the_logs(
    echo_server: tuple[HostileServer, dict],
) -> None:
    server, _ = echo_server
    received = len(server.received)
    state = _deflect(server.url, "spaced", return_state=True)
    assert state.is_failed()
    error = await state.aresult(raise_on_failure=False)
    assert isinstance(error, IntercomValidationError)
    assert error.errors[0].hint == f"remove spaces: {MASKED_PHONE}"
    texts = [*await _run_texts(state), *reachable_texts(error)]
    assert any(f"remove spaces: {MASKED_PHONE}" in text for text in texts)
    assert not phone_shown(texts, PHONE)
    assert len(server.received) == received  # nothing was sent


@pytest.mark.usefixtures("prefect_server")
async def test_the_task_takes_a_too_big_2xx_as_sent_and_warns(echo_server: tuple[HostileServer, dict]) -> None:
    server, script = echo_server
    script["answer"] = lambda request: Reply(200, headers=[("Content-Type", "text/plain")], body=b"A", size=FIFTY_MB)
    state = _deflect(server.url, "valid", return_state=True)
    assert state.is_completed()
    texts = await _run_texts(state)
    assert any(f"so the SMS was sent, but the answer was {CUT_TOO_LARGE}" in text for text in texts)
    assert not server.sent[-1].finished
