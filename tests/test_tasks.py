"""The Prefect tasks, run in real flows against a real Prefect server and the sandbox."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler

from prefect_intercom import (
    IntercomAuthenticationError,
    IntercomCredentials,
    IntercomServerError,
    IntercomValidationError,
    PhoneCallRedirect,
    acreate_phone_call_redirect,
    create_phone_call_redirect,
)
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN

pytestmark = pytest.mark.usefixtures("prefect_server")


@flow
def sync_flow(credentials: IntercomCredentials, phone: str, attributes: dict | None = None) -> PhoneCallRedirect:
    return create_phone_call_redirect(credentials, phone, attributes)


@flow
async def async_flow(credentials: IntercomCredentials, phone: str) -> PhoneCallRedirect:
    return await create_phone_call_redirect(credentials, phone)


@flow
async def explicit_async_flow(credentials: IntercomCredentials, phone: str) -> PhoneCallRedirect:
    return await acreate_phone_call_redirect(credentials, phone, {"source": "ivr"})


async def _logs(flow_run_id: UUID) -> list[str]:
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def test_sync_flow_sends_once_and_returns_a_typed_result(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    result = sync_flow(credentials, "+14155550100", {"issue_type": "Billing"})
    assert isinstance(result, PhoneCallRedirect)
    assert (result.type, result.phone) == ("phone_call_redirect", "+1415•••0100")
    assert result.request_id == sandbox.accepted[0].request_id
    assert [entry.body for entry in sandbox.received] == [
        {"phone": "+14155550100", "custom_attributes": {"issue_type": "Billing"}}
    ]


async def test_async_flows_await_the_same_task(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    first = await async_flow(credentials, "+14155550100")
    second = await explicit_async_flow(credentials, "+447911123456")
    assert first.phone == "+1415•••0100"
    assert second.phone == "+4479•••3456"
    assert [entry.body for entry in sandbox.accepted] == [
        {"phone": "+14155550100"},
        {"phone": "+447911123456", "custom_attributes": {"source": "ivr"}},
    ]


async def test_logs_say_what_was_sent_without_the_token(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    state = await async_flow(credentials, "+14155550100", return_state=True)
    messages = await _logs(state.state_details.flow_run_id)
    text = "\n".join(messages)
    assert f"Sending POST {sandbox.url}/phone_call_redirects (Intercom-Version 2.12)" in text
    assert "+1415•••0100" in text  # the phone is masked in logs
    assert "Intercom answered 200" in text
    assert SECRET_TOKEN not in text


def test_invalid_body_fails_the_task_and_sends_nothing(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    with pytest.raises(IntercomValidationError) as caught:
        sync_flow(credentials, "+1 415 555 0100")
    assert caught.value.errors[0].path == "/phone"
    assert caught.value.errors[0].hint == "remove spaces: +1415•••0100"  # masked (issue 9)
    assert sandbox.received == []


def test_intercom_errors_fail_the_run_with_status_code_and_request_id(sandbox: Sandbox) -> None:
    wrong = IntercomCredentials(access_token="tok_wrong_but_distinctive", base_url=sandbox.url)
    state = sync_flow(wrong, "+14155550100", return_state=True)
    assert state.is_failed()
    with pytest.raises(IntercomAuthenticationError) as caught:
        state.result()
    assert caught.value.status_code == 401
    assert caught.value.request_id == sandbox.received[0].request_id
    assert "tok_wrong_but_distinctive" not in str(caught.value) + str(state.message)


class _AlwaysUnavailable(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).hits.append(self.path)
        body = b'{"type":"error.list","request_id":"r-503","errors":[{"code":"service_unavailable"}]}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unavailable_server() -> Iterator[str]:
    _AlwaysUnavailable.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysUnavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_5xx_is_reported_once_and_never_retried_on_its_own(unavailable_server: str) -> None:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=unavailable_server)
    with pytest.raises(IntercomServerError) as caught:
        sync_flow(credentials, "+14155550100")
    assert caught.value.status_code == 503
    assert caught.value.request_id == "r-503"
    assert caught.value.outcome.value == "unknown"
    assert _AlwaysUnavailable.hits == ["/phone_call_redirects"]


def test_a_saved_block_drives_the_task(sandbox: Sandbox) -> None:
    IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url).save("task-test", overwrite=True)

    @flow
    def from_saved_block(phone: str) -> PhoneCallRedirect:
        return create_phone_call_redirect(IntercomCredentials.load("task-test"), phone)

    assert from_saved_block("+14155550100").phone == "+1415•••0100"
    assert len(sandbox.accepted) == 1
