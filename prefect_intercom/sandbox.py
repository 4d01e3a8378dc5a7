"""A local stand-in for Intercom's `POST /phone_call_redirects`, over real HTTP.

It follows the documented contract: `401` with an `error.list` without the right bearer
token, `400 invalid_phone_number` for a phone that is not E.164, and the documented `200`
answer otherwise. It records every request it receives, so tests can count exactly what a
real person would have been texted.

Run it:

    python -m prefect_intercom.sandbox --host 127.0.0.1 --port 8765 --token sandbox-token

or start it from Python on a free port:

    with Sandbox() as sandbox:
        credentials = IntercomCredentials(access_token=sandbox.token, base_url=sandbox.url)

Numbers that trigger the documented failures (no SMS is "sent" for them):

- `+15005550001`: `400 sms_failed` ("SMS was not sent due to an unknown error").
- `+15005550002`: `422` with an `error_key`.

Inspection endpoints (not part of Intercom's API): `GET /sandbox/requests` lists what was
received (Authorization redacted), `DELETE /sandbox/requests` forgets it, `GET /sandbox/health`.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import uvicorn
from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint
from prefect_intercom.schemagen import E164_PATTERN

DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 - a well-known test token, not a secret
DEFAULT_HOST = "127.0.0.1"
SMS_FAILS_PHONE = "+15005550001"
UNPROCESSABLE_PHONE = "+15005550002"
ResponseShape = Literal["phone", "url"]

_E164 = re.compile(E164_PATTERN)
_ENDPOINT = get_endpoint(PHONE_CALL_REDIRECTS)
_VERSIONS = frozenset(_ENDPOINT.header_enum("Intercom-Version"))
# What Intercom's OpenAPI description (2.12, `custom_attributes`) accepts as custom attributes,
# plus booleans and non-integer numbers: its own example carries them and Intercom's data
# attributes support them. Anything else is answered 422, as Intercom documents.
_CUSTOM_ATTRIBUTES = Draft202012Validator(
    {
        "type": "object",
        "additionalProperties": {
            "anyOf": [
                {"type": ["string", "number", "boolean"]},
                {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "instances": {
                            "type": "array",
                            "items": {
                                "type": ["object", "null"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "external_id": {"type": "string"},
                                    "external_created_at": {"type": ["integer", "null"]},
                                    "external_updated_at": {"type": ["integer", "null"]},
                                    "created_at": {"type": "integer"},
                                    "updated_at": {"type": "integer"},
                                    "type": {"type": "string"},
                                    "custom_attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            ]
        },
    }
)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the sandbox received.

    Attributes:
        method: HTTP method.
        path: URL path.
        headers: Request headers, lower-cased names, as received.
        body: The JSON body, or `None` when it was not JSON.
        status: The status the sandbox answered with.
        request_id: The request id the sandbox answered with.
        received_at: UNIX time of arrival.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    request_id: str
    received_at: float

    @property
    def accepted(self) -> bool:
        """Whether this request "sent an SMS" (answered 200)."""
        return self.status == 200

    def public(self) -> dict[str, Any]:
        """This record as JSON data with the Authorization header redacted."""
        record = asdict(self)
        if "authorization" in record["headers"]:
            record["headers"]["authorization"] = "Bearer [REDACTED]"
        return record


@dataclass
class SandboxState:
    """What the sandbox knows: its token, its answer shape and what it received."""

    token: str = DEFAULT_TOKEN
    response_shape: ResponseShape = "phone"
    received: list[ReceivedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, entry: ReceivedRequest) -> None:
        """Keep a received request."""
        with self.lock:
            self.received.append(entry)

    def snapshot(self) -> list[ReceivedRequest]:
        """A copy of what was received so far."""
        with self.lock:
            return list(self.received)

    def clear(self) -> None:
        """Forget what was received."""
        with self.lock:
            self.received.clear()


def create_app(state: SandboxState) -> Starlette:
    """The sandbox's ASGI application, bound to `state`."""

    async def phone_call_redirects(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        raw = await request.body()
        body = _json_or_none(raw)
        status, payload = _answer(state, request, body)
        state.record(
            ReceivedRequest(
                method=request.method,
                path=request.url.path,
                headers={key.lower(): value for key, value in request.headers.items()},
                body=body,
                status=status,
                request_id=request_id,
                received_at=time.time(),
            )
        )
        if status == 401:
            payload["request_id"] = request_id
        return JSONResponse(payload, status_code=status, headers={"X-Request-Id": request_id})

    async def list_requests(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear()
            return Response(status_code=204)
        return JSONResponse([entry.public() for entry in state.snapshot()])

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "endpoint": _ENDPOINT.title})

    return Starlette(
        routes=[
            Route(_ENDPOINT.path, phone_call_redirects, methods=[_ENDPOINT.method]),
            Route("/sandbox/requests", list_requests, methods=["GET", "DELETE"]),
            Route("/sandbox/health", health, methods=["GET"]),
        ]
    )


def _answer(state: SandboxState, request: Request, body: Any) -> tuple[int, dict[str, Any]]:
    if request.headers.get("authorization") != f"Bearer {state.token}":
        return 401, {
            "type": "error.list",
            "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}],
        }
    version = request.headers.get("intercom-version")
    if version is not None and version not in _VERSIONS:
        return 400, {
            "type": "error.list",
            "errors": [{"code": "intercom_version_invalid", "message": f"Requested version {version} is invalid"}],
        }
    if not isinstance(body, dict):
        return 400, {"type": "error.list", "errors": [{"code": "parameter_invalid", "message": "Invalid JSON body"}]}
    phone = body.get("phone")
    if not isinstance(phone, str) or not _E164.match(phone):
        return 400, {"error_key": "invalid_phone_number", "message": "Invalid phone number"}
    if phone == SMS_FAILS_PHONE:
        return 400, {"error_key": "sms_failed", "message": "SMS was not sent due to an unknown error"}
    attributes_refused = "custom_attributes" in body and not _CUSTOM_ATTRIBUTES.is_valid(body["custom_attributes"])
    if phone == UNPROCESSABLE_PHONE or attributes_refused:
        return 422, {"error_key": "unprocessable_entity", "message": "Custom attributes could not be processed"}
    if state.response_shape == "url":
        return 200, {"type": "phone_call_redirect", "url": f"http://via.intercom.io/msgr/{uuid.uuid4()}"}
    return 200, {"type": "phone_call_redirect", "phone": phone}


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


class Sandbox:
    """Run the sandbox in a background thread of this process.

    Args:
        token: The bearer token the sandbox accepts.
        host: Address to bind (loopback only, unless you know why).
        port: Port to bind; 0 picks a free one.
        response_shape: Answer 200 with `{type, phone}` ("phone") or `{type, url}` ("url").

    Example:
        ```python
        with Sandbox() as sandbox:
            print(sandbox.url)          # http://127.0.0.1:54321
            ...
            assert len(sandbox.accepted) == 1
        ```
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        host: str = DEFAULT_HOST,
        port: int = 0,
        response_shape: ResponseShape = "phone",
    ) -> None:
        self.state = SandboxState(token=token, response_shape=response_shape)
        self.host = host
        self._requested_port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def token(self) -> str:
        """The bearer token the sandbox accepts."""
        return self.state.token

    @property
    def url(self) -> str:
        """Base URL of the running sandbox, e.g. `http://127.0.0.1:54321`."""
        if self.port is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every request received so far."""
        return self.state.snapshot()

    @property
    def accepted(self) -> list[ReceivedRequest]:
        """The requests answered 200, i.e. the SMS a real person would have received."""
        return [entry for entry in self.state.snapshot() if entry.accepted]

    def reset(self) -> None:
        """Forget what was received."""
        self.state.clear()

    def start(self, timeout: float = 10.0) -> Sandbox:
        """Start serving; returns once the port is bound."""
        config = uvicorn.Config(
            create_app(self.state),
            host=self.host,
            port=self._requested_port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="intercom-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start on {self.host}:{self._requested_port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
        self.port = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m prefect_intercom.sandbox",
        description="A local Intercom sandbox for POST /phone_call_redirects.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind (default: 8765; 0 for any)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help=f"accepted bearer token (default: {DEFAULT_TOKEN})")
    parser.add_argument(
        "--response-shape", choices=["phone", "url"], default="phone", help="shape of the 200 answer"
    )
    args = parser.parse_args(argv)
    state = SandboxState(token=args.token, response_shape=args.response_shape)
    print(f"Intercom sandbox: POST http://{args.host}:{args.port}{_ENDPOINT.path}", flush=True)
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="info", lifespan="off")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
