"""Hostile servers, round three: the request's phone echoed anywhere comes out masked, everywhere.

A real HTTP server over loopback (`tests/hostile_server.py`) echoes the phone of each request
in every form (with and without `+`, spaced, `00`-prefixed, URL-encoded, JSON-escaped) in the
request id, the headers and the body of successes and errors; logs it in the HTTP libraries'
DEBUG records; sends 10,000 headers; answers 200 with an `error.list`. Prefect's real server
(`prefect_server`) then holds no full phone in events, logs, artifacts, the report file or its
database, while the masked phone (the control) is found there.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
from prefect.filesystems import LocalFileSystem
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL
from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_intercom import (
    IntercomAPIError,
    IntercomConfigurationError,
    IntercomCredentials,
    Outcome,
    create_phone_call_redirect,
    create_phone_call_redirects,
    log_filter,
)
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.client import IntercomClient
from prefect_intercom.privacy import SHOW_PHONES_ENV, mask_phone
from prefect_intercom.responses import IntercomResponse

from .hostile_server import HostileServer, Received, Reply
from .leaks import phone_shown, reachable_texts
from .test_events import events_of

TOKEN = "tok_PHONES_0b1e2f3a4c5d6e7f8091a2b3c4d5e6f7"
PHONE = "+353861904417"  # the canary: no other test uses it
ERROR_PHONE = "+353861904418"  # answered 200 with an `error.list`
MASKED = mask_phone(PHONE)
ECHOES = {
    "as sent": PHONE,
    "digits alone": PHONE[1:],
    "spaced": "+353 86 190 4417",
    "00-prefixed": "00353861904417",
    "URL-encoded": "%2B353861904417",
    "URL-encoded digits": "".join(f"%{ord(char):02X}" for char in PHONE),
}
JSON_ESCAPED = "".join(f"\\u{ord(char):04x}" for char in PHONE)
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def shown(texts: list[str], phone: str = PHONE) -> bool:
    """Whether any text shows the full phone, as it is or once URL-, JSON- or HTML-decoded."""
    decoded = [_UNICODE_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text) for text in texts]
    return phone_shown([*texts, *decoded, *(html.unescape(text) for text in texts)], phone)


def _echo_everywhere(status: int) -> Callable[[Received], Reply]:
    """An answer that echoes the request's phone in every form, in headers and body."""

    def answer(request: Received) -> Reply:
        echoes = " ".join(f"[{echo}]" for echo in ECHOES.values())
        headers: list[tuple[str, str | bytes]] = [
            ("Content-Type", "application/json"),
            ("X-Request-Id", f"req-{PHONE}"),
            *((f"X-Echo-{index}", echo) for index, echo in enumerate(ECHOES.values())),
        ]
        if status < 300:
            body = {"type": "phone_call_redirect", "phone": PHONE, "note": echoes, "number": int(PHONE[1:])}
        else:
            error = {"code": f"invalid_{PHONE[1:]}", "message": f"not a mobile: {echoes}"}
            body = {"type": "error.list", "errors": [error], "request_id": f"req {ECHOES['spaced']}"}
        text = json.dumps(body).replace(f'"{PHONE}"', f'"{JSON_ESCAPED}"')  # one echo JSON-escaped
        return Reply(status, headers=headers, body=text.encode())

    return answer


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[HostileServer, dict[str, Callable[[Received], Reply]]]]:
    """One hostile server whose answer each test sets (`script["answer"]`)."""
    script: dict[str, Callable[[Received], Reply]] = {"answer": lambda request: Reply()}
    with HostileServer(lambda request: script["answer"](request)) as running:
        yield running, script


def _client(base_url: str) -> IntercomClient:
    return IntercomClient(TOKEN, base_url=base_url, intercom_version="2.12", timeout=10)


async def _send(base_url: str, mode: str, phone: str = PHONE) -> IntercomResponse:
    client = _client(base_url)
    if mode == "sync":
        with client:
            return client.request(PHONE_CALL_REDIRECTS, {"phone": phone})
    async with client:
        return await client.arequest(PHONE_CALL_REDIRECTS, {"phone": phone})


async def _outcome(base_url: str, mode: str) -> Any:
    try:
        return await _send(base_url, mode)
    except IntercomAPIError as error:
        return error


# --- 1. every text of an answer, successes and errors --------------------------------------


@pytest.mark.parametrize("status", [200, 400])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_phone_echoed_in_any_form_anywhere_in_an_answer_comes_out_masked(
    server: tuple[HostileServer, dict], mode: str, status: int
) -> None:
    running, script = server
    script["answer"] = _echo_everywhere(status)
    outcome = await _outcome(running.url, mode)
    assert isinstance(outcome, IntercomResponse if status == 200 else IntercomAPIError)
    texts = reachable_texts(outcome)
    assert any(MASKED in text for text in texts)  # the control: the echo is there, masked
    assert not shown(texts)
    if isinstance(outcome, IntercomResponse):
        assert outcome.request_id == f"req-{MASKED}"
        assert outcome.data["phone"] == MASKED and outcome.data["number"] == MASKED[1:]


async def test_the_switch_shows_the_echoed_phone_of_a_success(
    server: tuple[HostileServer, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SHOW_PHONES_ENV, "1")
    running, script = server
    script["answer"] = _echo_everywhere(200)
    response = await _send(running.url, "sync")
    assert response.request_id == f"req-{PHONE}" and response.data["phone"] == PHONE


# --- 2. the HTTP libraries' log records -----------------------------------------------------

HTTP_LOGGERS = ("httpx", "httpcore", "aiohttp", "asyncio")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_debug_records_of_the_http_libraries_show_phones_masked(
    server: tuple[HostileServer, dict], caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    running, script = server
    script["answer"] = _echo_everywhere(200)
    for name in HTTP_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    await _send(running.url, mode)
    records = [record for record in caplog.records if record.name.split(".")[0] in HTTP_LOGGERS]
    texts = [caplog.handler.format(record) for record in records]
    assert any("HTTP Request: POST" in text for text in texts)  # the control: httpx's INFO line
    if mode == "sync":
        assert any("X-Echo" in text and MASKED[:5] in text for text in texts)  # ... httpcore's DEBUG headers
    assert not shown(texts)


def test_the_log_filter_masks_phones_and_keeps_ports_addresses_and_sizes() -> None:
    log_filter.install()  # what a client's first send does
    logger = logging.getLogger("httpcore.connection")
    args = ("127.0.0.1", 54321, "+1 (415) 555-0188", "%2B14155550188", 30)
    message = "host=%s port=%d got %s %s length=%d"
    record = logging.LogRecord(logger.name, logging.DEBUG, __file__, 1, message, args, None)
    assert logger.filter(record)
    assert record.getMessage() == "host=127.0.0.1 port=54321 got +1 (415) •••-0188 %2B1415•••0188 length=30"


# --- 4. a head of 10,000 headers ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_2xx_with_10000_headers_is_sent_in_both_clients(server: tuple[HostileServer, dict], mode: str) -> None:
    running, script = server
    script["answer"] = lambda request: Reply(
        200, headers=[(f"X-H{index}", "v") for index in range(10_000)], body=b'{"type":"phone_call_redirect"}'
    )
    response = await _send(running.url, mode)
    assert response.status_code == 200 and response.data == {"type": "phone_call_redirect"}


# --- 5. a 200 whose body is an error.list ---------------------------------------------------


def _error_list_200(request: Received) -> Reply:
    body = {"type": "error.list", "errors": [{"code": "sms_failed", "message": "could not send"}]}
    return Reply(200, headers=[("Content-Type", "application/json")], body=json.dumps(body).encode())


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_200_error_list_is_an_error_whose_outcome_is_unknown(
    server: tuple[HostileServer, dict], mode: str
) -> None:
    running, script = server
    script["answer"] = _error_list_200
    with pytest.raises(IntercomAPIError) as caught:
        await _send(running.url, mode)
    error = caught.value
    assert (error.status_code, error.error_code, error.outcome) == (200, "sms_failed", Outcome.UNKNOWN)
    assert "may have been sent" in str(error)
    assert len(running.received) and running.received[-1].path == "/phone_call_redirects"


# --- Prefect's server: events, logs, artifacts, the report file, the database ---------------


def _hostile(request: Received) -> Reply:
    phone = json.loads(request.body)["phone"]
    if phone == ERROR_PHONE:
        return _error_list_200(request)
    return _echo_everywhere(200)(request)


async def _prefect_texts(flow_run_id: Any) -> list[str]:
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        task_runs = await client.read_task_runs()
    return [
        *(log.message for log in logs),
        *(artifact.model_dump_json() for artifact in artifacts),
        *(str(run.state.message) for run in task_runs if run.flow_run_id == flow_run_id and run.state),
    ]


def _database_text() -> str:
    url = PREFECT_API_DATABASE_CONNECTION_URL.value() or ""
    path = Path(url.split("///", 1)[-1])
    files = [candidate for candidate in path.parent.glob(path.name + "*") if candidate.is_file()]
    assert files, url
    return "\n".join(candidate.read_bytes().decode("utf-8", errors="replace") for candidate in files)


@pytest.mark.usefixtures("prefect_server")
def test_prefect_holds_no_echoed_phone_in_events_logs_artifacts_report_or_database(
    server: tuple[HostileServer, dict], tmp_path: Path
) -> None:
    running, script = server
    script["answer"] = _hostile
    results = tmp_path / "results.jsonl"

    @flow
    def deflect(base_url: str) -> dict[str, Any]:
        credentials = IntercomCredentials(access_token=TOKEN, base_url=base_url)
        redirect = create_phone_call_redirect(credentials, PHONE)
        failed = create_phone_call_redirect(credentials, ERROR_PHONE, return_state=True)
        storage = LocalFileSystem(basepath=str(tmp_path / "ledger"))
        report = create_phone_call_redirects(
            credentials,
            [{"phone": PHONE}, {"phone": ERROR_PHONE}],
            batch_key="hostile-phones-1",
            ledger_storage=storage,
            results_path=str(results),
            artifact_key="hostile-phones",
        )
        return {"redirect": redirect, "failed": failed.is_failed(), "items": report.items()}

    state = deflect(running.url, return_state=True)
    outcome = state.result()
    assert outcome["failed"]  # the 200 error.list fails the single task: outcome unknown
    assert outcome["redirect"].request_id == f"req-{MASKED}"
    assert [(item.outcome, item.request_id) for item in outcome["items"]] == [
        (Outcome.SENT, f"req-{MASKED}"),
        (Outcome.UNKNOWN, None),
    ]
    assert "may have been sent" in (outcome["items"][1].message or "")
    flow_run_id = state.state_details.flow_run_id
    events = events_of(flow_run_id, "intercom.", expected=4)
    names = sorted(event.event for event in events)
    assert names == [
        "intercom.batch.finished",
        "intercom.batch.unknown",
        "intercom.phone_call_redirect.sent",
        "intercom.phone_call_redirect.unknown",
    ]
    texts = [event.model_dump_json() for event in events] + run_coro_as_sync(_prefect_texts(flow_run_id))
    texts.append(results.read_text(encoding="utf-8"))
    assert any(f"req-{MASKED}" in text for text in texts)  # the control: the masked echo went everywhere
    assert not shown(texts) and not shown(texts, ERROR_PHONE)
    deadline = time.monotonic() + 10
    while f"req-{MASKED}" not in (database := _database_text()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert f"req-{MASKED}" in database  # the control: what Prefect stored is in this file
    assert not phone_shown(database, PHONE) and not phone_shown(database, ERROR_PHONE)


# --- 3. a batch key that holds a phone --------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_a_batch_key_holding_a_phone_is_refused_before_anything_is_sent(
    server: tuple[HostileServer, dict], tmp_path: Path
) -> None:
    running, script = server
    script["answer"] = _hostile
    received = len(running.received)

    @flow
    def deflect(base_url: str) -> Any:
        credentials = IntercomCredentials(access_token=TOKEN, base_url=base_url)
        storage = LocalFileSystem(basepath=str(tmp_path / "ledger"))
        key = "callback-" + "+1415555" + "0188"  # built here: the flow's parameters hold no phone
        return create_phone_call_redirects(credentials, [{"phone": PHONE}], batch_key=key, ledger_storage=storage)

    state = deflect(running.url, return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, IntercomConfigurationError)
    assert "+1415•••0188" in str(error) and "nothing was sent" in str(error)
    assert len(running.received) == received
    flow_run_id = state.state_details.flow_run_id
    texts = [str(state.message), *run_coro_as_sync(_prefect_texts(flow_run_id)), *reachable_texts(error)]
    texts += [event.model_dump_json() for event in events_of(flow_run_id, "intercom.", expected=0)]
    assert any("+1415•••0188" in text for text in texts)
    assert not shown(texts, "+14155550188")
