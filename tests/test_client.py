"""The request pipeline: what goes on the wire, and how every answer is mapped."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import httpx
import pytest

from prefect_intercom import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomCredentials,
    IntercomRateLimitError,
    IntercomServerError,
    IntercomTransportError,
    IntercomValidationError,
    Outcome,
    PhoneCallRedirect,
    __version__,
)
from prefect_intercom.client import IntercomClient
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN

BODY = {"phone": "+14155550100", "custom_attributes": {"issue_type": "Billing", "priority": "High"}}


# --- real HTTP over loopback --------------------------------------------------------------


def test_exact_request_on_the_wire(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    with credentials.get_client() as client:
        response = client.request("phone_call_redirects", BODY)
    assert response.status_code == 200
    assert response.data == {"type": "phone_call_redirect", "phone": "+1415•••0100"}  # the echo, masked
    assert response.request_id
    [received] = sandbox.received
    assert received.method == "POST"
    assert received.path == "/phone_call_redirects"
    assert received.body == BODY
    headers = received.headers
    assert headers["authorization"] == f"Bearer {SECRET_TOKEN}"
    assert headers["intercom-version"] == "2.12"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"].startswith(f"prefect-intercom/{__version__} ")
    assert response.request_id == received.request_id


@pytest.mark.parametrize("version", ["1.0", "2.11", "Unstable"])
def test_version_override_from_the_block(sandbox: Sandbox, version: str) -> None:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url, intercom_version=version)
    with credentials.get_client() as client:
        client.request("phone_call_redirects", BODY)
    assert sandbox.received[-1].headers["intercom-version"] == version


def test_version_override_per_client_is_validated(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    with credentials.get_client(intercom_version="2.11") as client:
        client.request("phone_call_redirects", BODY)
    assert sandbox.received[-1].headers["intercom-version"] == "2.11"
    with credentials.get_client(intercom_version="2.12\r\nX-Injected: 1") as client:
        with pytest.raises(IntercomValidationError, match="Intercom-Version"):
            client.request("phone_call_redirects", BODY)
    assert len(sandbox.received) == 1


async def test_async_pipeline_sends_the_same_request(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    async with credentials.get_client() as client:
        response = await client.arequest("phone_call_redirects", BODY)
    assert response.status_code == 200
    assert sandbox.received[0].body == BODY


def test_both_documented_success_shapes(credentials: IntercomCredentials) -> None:
    with Sandbox(token=SECRET_TOKEN, response_shape="url") as url_sandbox:
        with IntercomCredentials(access_token=SECRET_TOKEN, base_url=url_sandbox.url).get_client() as client:
            response = client.request("phone_call_redirects", BODY)
    result = PhoneCallRedirect.from_response(response)
    assert result.type == "phone_call_redirect"
    assert result.url and result.url.startswith("http://via.intercom.io/msgr/")
    assert result.phone is None


def test_invalid_body_sends_nothing(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    with credentials.get_client() as client, pytest.raises(IntercomValidationError):
        client.request("phone_call_redirects", {"phone": "+1 415 555 0100"})
    assert sandbox.received == []


def test_wrong_token_is_a_401_with_request_id(sandbox: Sandbox) -> None:
    credentials = IntercomCredentials(access_token="tok_WRONG_token_value", base_url=sandbox.url)
    with credentials.get_client() as client, pytest.raises(IntercomAuthenticationError) as caught:
        client.request("phone_call_redirects", BODY)
    error = caught.value
    assert (error.status_code, error.error_code, error.message) == (401, "unauthorized", "Access Token Invalid")
    assert error.request_id == sandbox.received[0].request_id
    assert "tok_WRONG_token_value" not in str(error) + repr(error)


def test_sandbox_rejects_a_non_e164_phone_when_validation_is_bypassed(sandbox: Sandbox) -> None:
    answer = httpx.post(
        f"{sandbox.url}/phone_call_redirects",
        json={"phone": "12345"},
        headers={"Authorization": f"Bearer {SECRET_TOKEN}"},
    )
    assert answer.status_code == 400
    assert answer.json() == {"error_key": "invalid_phone_number", "message": "Invalid phone number"}


def test_connection_refused_is_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = IntercomClient(SECRET_TOKEN, base_url=f"http://127.0.0.1:{port}", intercom_version="2.12")
    with client, pytest.raises(IntercomTransportError) as caught:
        client.request("phone_call_redirects", BODY)
    assert caught.value.outcome is Outcome.NOT_SENT
    assert SECRET_TOKEN not in str(caught.value)


# --- answer mapping (narrow unit tests over httpx.MockTransport) -------------------------


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> IntercomClient:
    return IntercomClient(
        SECRET_TOKEN,
        base_url="https://api.intercom.io",
        intercom_version="2.12",
        transport=httpx.MockTransport(handler),
    )


def _answer(status: int, body: object = None, *, text: str | None = None, headers: dict | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


ERROR_CASES = [
    # status, body, exception class, error_code, message fragment, request_id
    (400, {"error_key": "invalid_phone_number", "message": "Invalid phone number"}, IntercomAPIError,
     "invalid_phone_number", "Invalid phone number", None),
    (400, {"error_key": "sms_failed", "message": "SMS was not sent due to an unknown error"}, IntercomAPIError,
     "sms_failed", "SMS was not sent", None),
    (401, {"type": "error.list", "request_id": "b67f417d-7f0b-410f-af31-647fcf7f9348",
           "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]},
     IntercomAuthenticationError, "unauthorized", "Access Token Invalid", "b67f417d-7f0b-410f-af31-647fcf7f9348"),
    (403, {"type": "error.list", "request_id": "r-403", "errors": [{"code": "forbidden", "message": "No scope"}]},
     IntercomAuthenticationError, "forbidden", "No scope", "r-403"),
    (404, {"type": "error.list", "errors": [{"code": "not_found", "message": "Resource Not Found"}]},
     IntercomAPIError, "not_found", "Resource Not Found", None),
    (422, {"error_key": "some_error"}, IntercomAPIError, "some_error", None, None),
    (500, {"type": "error.list", "request_id": "r-500", "errors": [{"code": "server_error", "message": "Boom"}]},
     IntercomServerError, "server_error", "Boom", "r-500"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "kind", "code", "message", "request_id"), ERROR_CASES)
def test_error_statuses_are_mapped(status, body, kind, code, message, request_id) -> None:
    with _client(_answer(status, body)) as client, pytest.raises(kind) as caught:
        client.request("phone_call_redirects", BODY)
    error = caught.value
    assert type(error) is kind
    assert error.status_code == status
    assert error.error_code == code
    assert error.request_id == request_id
    if message:
        assert error.message and message in error.message
    assert f"HTTP {status}" in str(error)


def test_429_carries_the_reset_time_and_rate_limit_headers() -> None:
    headers = {
        "X-RateLimit-Limit": "166",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1700000010",
        "Retry-After": "7",
        "X-Request-Id": "r-429",
    }
    body = {"type": "error.list", "errors": [{"code": "rate_limit_exceeded", "message": "Exceeded rate limit"}]}
    with _client(_answer(429, body, headers=headers)) as client, pytest.raises(IntercomRateLimitError) as caught:
        client.request("phone_call_redirects", BODY)
    error = caught.value
    assert error.error_code == "rate_limit_exceeded"
    assert error.request_id == "r-429"
    assert (error.limit, error.remaining, error.retry_after) == (166, 0, 7.0)
    assert error.reset_at is not None and int(error.reset_at.timestamp()) == 1700000010
    assert "resets at 2023-11-14T22:13:30+00:00" in str(error)
    assert error.outcome is Outcome.NOT_SENT


@pytest.mark.parametrize(
    ("status", "text", "content_type", "fragment"),
    [
        (502, "<html><body>Bad Gateway</body></html>", "text/html", "non-JSON body (text/html): <html>"),
        (503, "", "text/plain", "empty body"),
        (418, "I'm a teapot", "text/plain", "non-JSON body"),
    ],
)
def test_non_json_error_bodies(status: int, text: str, content_type: str, fragment: str) -> None:
    handler = _answer(status, text=text, headers={"Content-Type": content_type})
    with _client(handler) as client, pytest.raises(IntercomAPIError) as caught:
        client.request("phone_call_redirects", BODY)
    assert caught.value.status_code == status
    assert fragment in str(caught.value)
    assert caught.value.outcome is (Outcome.UNKNOWN if status >= 500 else Outcome.NOT_SENT)


def test_a_redirect_is_not_followed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(307, headers={"Location": "https://evil.example.com/steal"})

    with _client(handler) as client, pytest.raises(IntercomAPIError) as caught:
        client.request("phone_call_redirects", BODY)
    assert caught.value.status_code == 307
    assert seen == ["https://api.intercom.io/phone_call_redirects"]


def test_the_token_is_redacted_from_an_echoing_error_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error_key": "bad", "message": f"got {request.headers['authorization']}"})

    with _client(handler) as client, pytest.raises(IntercomAPIError) as caught:
        client.request("phone_call_redirects", BODY)
    everything = str(caught.value) + repr(caught.value) + json.dumps(caught.value.body) + str(caught.value.__dict__)
    assert SECRET_TOKEN not in everything
    assert "[REDACTED]" in caught.value.message


def test_success_keeps_unknown_fields_and_rate_limits() -> None:
    body = {"type": "phone_call_redirect", "phone": "+14155550100", "conversation_id": "123"}
    headers = {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "999", "X-RateLimit-Reset": "1700000000"}
    with _client(_answer(200, body, headers=headers)) as client:
        response = client.request("phone_call_redirects", BODY)
    result = PhoneCallRedirect.from_response(response)
    assert result.phone == "+1415•••0100"
    assert result.model_extra == {"conversation_id": "123"}
    assert (response.rate_limit.limit, response.rate_limit.remaining) == (1000, 999)


def test_success_with_a_non_json_body_is_still_a_success() -> None:
    with _client(_answer(200, text="OK", headers={"Content-Type": "text/plain"})) as client:
        response = client.request("phone_call_redirects", BODY)
    assert response.status_code == 200
    assert response.data == {}
    assert response.unparsed_body == "OK"


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (httpx.ConnectError("refused"), Outcome.NOT_SENT),
        (httpx.ConnectTimeout("slow connect"), Outcome.NOT_SENT),
        (httpx.ReadTimeout("slow answer"), Outcome.UNKNOWN),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), Outcome.UNKNOWN),
        (httpx.ReadError("connection reset by peer"), Outcome.UNKNOWN),
        (httpx.WriteError("broken pipe"), Outcome.UNKNOWN),
    ],
)
def test_transport_failures_say_whether_the_request_may_have_been_sent(error: Exception, outcome: Outcome) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with _client(handler) as client, pytest.raises(IntercomTransportError) as caught:
        client.request("phone_call_redirects", BODY)
    assert caught.value.outcome is outcome
    assert caught.value.url == "https://api.intercom.io/phone_call_redirects"


def test_prepared_request_never_holds_the_token() -> None:
    with _client(_answer(200, {})) as client:
        prepared = client.prepare("phone_call_redirects", BODY)
    assert SECRET_TOKEN not in repr(prepared) + str(prepared.display_headers()) + repr(client)
    assert prepared.display_headers()["Authorization"] == "Bearer [REDACTED]"
    assert json.loads(prepared.content) == BODY


# --- typed transports: the wrong kind is refused at construction ---------------------------


@pytest.mark.parametrize(
    ("argument", "given", "expected"),
    [
        pytest.param("transport", httpx.AsyncHTTPTransport(), "httpx.BaseTransport", id="async as transport"),
        pytest.param("async_transport", httpx.HTTPTransport(), "httpx.AsyncBaseTransport", id="sync as async"),
        pytest.param("transport", "http://proxy:8080", "httpx.BaseTransport", id="a string as transport"),
        pytest.param("async_transport", object(), "httpx.AsyncBaseTransport", id="an object as async"),
    ],
)
def test_a_transport_of_the_wrong_kind_is_refused_naming_the_argument_and_the_type(
    argument: str, given: object, expected: str
) -> None:
    with pytest.raises(TypeError) as caught:
        IntercomClient(SECRET_TOKEN, base_url="https://api.intercom.io", intercom_version="2.12", **{argument: given})
    message = str(caught.value)
    assert message.startswith(f"{argument} must be an {expected} or None, not {type(given).__name__}")
    assert SECRET_TOKEN not in message


def test_a_mock_transport_is_both_kinds_and_each_client_uses_the_one_given_to_it() -> None:
    sync_seen: list[httpx.Request] = []
    async_seen: list[httpx.Request] = []

    def sync_handler(request: httpx.Request) -> httpx.Response:
        sync_seen.append(request)
        return httpx.Response(200, json={"type": "phone_call_redirect", "phone": "+14155550100"})

    def async_handler(request: httpx.Request) -> httpx.Response:
        async_seen.append(request)
        return httpx.Response(200, json={"type": "phone_call_redirect", "phone": "+14155550100"})

    client = IntercomClient(
        SECRET_TOKEN,
        base_url="https://api.intercom.io",
        intercom_version="2.12",
        transport=httpx.MockTransport(sync_handler),
        async_transport=httpx.MockTransport(async_handler),
    )
    with client:
        client.request("phone_call_redirects", BODY)

    async def send() -> None:
        async with client:
            await client.arequest("phone_call_redirects", BODY)

    asyncio.run(send())
    assert (len(sync_seen), len(async_seen)) == (1, 1)
