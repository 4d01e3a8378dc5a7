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

Rate limits, latency and faults (all optional, `Sandbox(...)` arguments or CLI flags):

- `rate_limit` requests per `rate_limit_window` seconds (default: Intercom's 10,000 a minute,
  1667 per 10-second window), windows aligned on multiples of the window length. Every
  authenticated answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
  `X-RateLimit-Reset` (a UNIX time); the request over the limit gets `429` with an
  `error.list` whose code is `rate_limit_exceeded`. Unauthenticated answers carry none, as
  Intercom documents. `retry_after` adds a `Retry-After` header to 429s (Intercom sends none).
- `omit_rate_limit_headers`: the probability that an authenticated answer comes without the
  three headers (Intercom says some of its answers have none), drawn per request from `seed`.
- `keep_alive`: seconds an idle keep-alive connection stays open (5, uvicorn's default). A
  client that keeps idle connections just as long races the server closing them: a request
  sent on a connection as it closes gets no answer (an `unknown` outcome).
- `latency` seconds before every answer; a range (`latency=(0.15, 0.4)`, or `latency=0.15`
  with `latency_max=0.4`) draws each answer's latency uniformly from it, from `seed`.
- `faults`, a probability per kind, drawn per request from `seed`, the phone and how many
  times that phone arrived (so a run is reproducible whatever the concurrency):

  | kind | answer | the SMS |
  | --- | --- | --- |
  | `429` | 429 `rate_limit_exceeded` (the window's real headers) | not sent |
  | `500`, `503` | that status with a JSON `error.list` | sent with probability `fault_effect` |
  | `502`, `html` | 502 / 503 with an HTML page from a "proxy" | sent with probability `fault_effect` |
  | `reset` | the TCP connection is reset before any answer | sent with probability `fault_effect` |
  | `slow` | the normal answer, `slow_seconds` late (past the client's timeout) | sent, as normal |
  | `empty` | the normal status with an empty body | sent, as normal |

  Each received request records its `fault` and whether the SMS went out (`delivered`);
  `Sandbox.accepted` lists exactly the SMS a real person would have received.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
except ImportError as missing:  # the sandbox's own dependencies are an extra
    raise ImportError(
        f"the Intercom sandbox needs starlette and uvicorn ({missing.name or missing} is missing): "
        "pip install 'prefect-intercom[sandbox]'",
        name=missing.name,
    ) from None

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint
from prefect_intercom.client import DEFAULT_TIMEOUT
from prefect_intercom.schemagen import E164_PATTERN

DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 - a well-known test token, not a secret
DEFAULT_HOST = "127.0.0.1"
SMS_FAILS_PHONE = "+15005550001"
UNPROCESSABLE_PHONE = "+15005550002"
ResponseShape = Literal["phone", "url"]
# Intercom's default: 10,000 calls a minute per app, counted in 10-second windows.
DEFAULT_RATE_LIMIT = 1667
DEFAULT_RATE_LIMIT_WINDOW = 10.0
# uvicorn's default: a client that keeps idle connections as long races the server closing them.
DEFAULT_KEEP_ALIVE = 5.0
FAULT_KINDS = ("429", "500", "502", "503", "html", "reset", "slow", "empty")
# Faults that may or may not have sent the SMS before failing (`fault_effect`).
_UNCERTAIN_FAULTS = frozenset({"500", "502", "503", "html", "reset"})
_PROXY_PAGE = "<html><head><title>{status}</title></head><body><h1>{status}</h1><hr>proxy</body></html>"

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
        fault: The injected fault (`"503"`, `"reset"`, ...), if any.
        delivered: Whether the SMS went out; `None` means "if answered 200".
        latency: Seconds the answer was held back (the drawn latency).
        rate_limit_headers: Whether the answer carried the `X-RateLimit-*` headers.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    request_id: str
    received_at: float
    fault: str | None = None
    delivered: bool | None = None
    latency: float = 0.0
    rate_limit_headers: bool = False

    @property
    def accepted(self) -> bool:
        """Whether this request "sent an SMS" (a real person would have received it)."""
        return self.delivered if self.delivered is not None else self.status == 200

    def public(self) -> dict[str, Any]:
        """This record as JSON data with the Authorization header redacted (and `accepted`)."""
        record = asdict(self)
        record["accepted"] = self.accepted
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
    latency: float | tuple[float, float] = 0.0
    latency_max: float | None = None
    omit_rate_limit_headers: float = 0.0
    rate_limit: int | None = DEFAULT_RATE_LIMIT
    rate_limit_window: float = DEFAULT_RATE_LIMIT_WINDOW
    retry_after: float | None = None
    faults: Mapping[str, float] = field(default_factory=dict)
    fault_effect: float = 0.0
    slow_seconds: float = DEFAULT_TIMEOUT + 5
    seed: int = 0
    server: Any = field(default=None, repr=False)
    _window: tuple[float, int] = (0.0, 0)
    _arrivals: dict[str, int] = field(default_factory=dict, repr=False)
    _shape_arrivals: dict[str, int] = field(default_factory=dict, repr=False)
    latency_range: tuple[float, float] = field(init=False, default=(0.0, 0.0))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.faults) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if any(not 0 <= rate <= 1 for rate in self.faults.values()) or sum(self.faults.values()) > 1:
            raise ValueError("fault rates must be between 0 and 1 and add up to at most 1")
        if self.rate_limit is not None and (self.rate_limit < 1 or self.rate_limit_window <= 0):
            raise ValueError("rate_limit must be at least 1 and rate_limit_window positive")
        low, high = _latency_range(self.latency, self.latency_max)
        if low < 0 or self.slow_seconds < 0 or not 0 <= self.fault_effect <= 1:
            raise ValueError("latency and slow_seconds must not be negative; fault_effect is a probability")
        if not 0 <= self.omit_rate_limit_headers <= 1:
            raise ValueError("omit_rate_limit_headers is a probability")
        self.latency_range = (low, high)

    def admit(self, now: float) -> tuple[bool, dict[str, str]]:
        """Count one authenticated request in its window: (within the limit?, rate-limit headers)."""
        if self.rate_limit is None:
            return True, {}
        width = self.rate_limit_window
        start = math.floor(now / width) * width
        with self.lock:
            window_start, count = self._window
            if window_start != start:
                count = 0
            admitted = count < self.rate_limit
            if admitted:
                count += 1
            self._window = (start, count)
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(self.rate_limit - count),
            "X-RateLimit-Reset": str(math.ceil(start + width)),
        }
        return admitted, headers

    def draw_shape(self, body: Any) -> tuple[float, bool]:
        """This request's latency and whether its answer keeps the rate-limit headers.

        Drawn from `seed`, the phone and how many times that phone arrived (a count of its
        own, so that the fault draws stay what they were), hence reproducible whatever the
        concurrency.
        """
        low, high = self.latency_range
        if low == high and not self.omit_rate_limit_headers:
            return low, True
        phone = body.get("phone") if isinstance(body, dict) else None
        key = phone if isinstance(phone, str) else ""
        with self.lock:
            arrival = self._shape_arrivals.get(key, 0)
            self._shape_arrivals[key] = arrival + 1
        latency = low + (high - low) * _uniform(self.seed, key, arrival, "latency") if high > low else low
        omit = _uniform(self.seed, key, arrival, "omit-headers") < self.omit_rate_limit_headers
        return latency, not omit

    def draw_fault(self, body: Any) -> tuple[str | None, bool]:
        """The fault for this request, if any, and whether an uncertain fault still sent the SMS."""
        if not self.faults:
            return None, False
        phone = body.get("phone") if isinstance(body, dict) else None
        key = phone if isinstance(phone, str) else ""
        with self.lock:
            arrival = self._arrivals.get(key, 0)
            self._arrivals[key] = arrival + 1
        draw = _uniform(self.seed, key, arrival, "fault")
        for kind in FAULT_KINDS:
            rate = self.faults.get(kind, 0.0)
            if draw < rate:
                effect = kind in _UNCERTAIN_FAULTS and _uniform(self.seed, key, arrival, "effect") < self.fault_effect
                return kind, effect
            draw -= rate
        return None, False

    def record(self, entry: ReceivedRequest) -> None:
        """Keep a received request."""
        with self.lock:
            self.received.append(entry)

    def snapshot(self) -> list[ReceivedRequest]:
        """A copy of what was received so far."""
        with self.lock:
            return list(self.received)

    def clear(self) -> None:
        """Forget what was received (and how often each phone arrived)."""
        with self.lock:
            self.received.clear()
            self._arrivals.clear()
            self._shape_arrivals.clear()


def create_app(state: SandboxState) -> Starlette:
    """The sandbox's ASGI application, bound to `state`."""

    async def phone_call_redirects(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        raw = await request.body()
        body = _json_or_none(raw)
        received_at = time.time()
        status, payload = _answer(state, request, body)
        headers = {"X-Request-Id": request_id}
        fault, delivered = None, status == 200
        latency, keep_headers = state.draw_shape(body)
        if status != 401:  # Intercom counts and reports rate limits for authenticated calls only
            admitted, rate_headers = state.admit(received_at)
            if keep_headers:
                headers.update(rate_headers)
            if admitted:
                fault, effect = state.draw_fault(body)
                if fault is not None:
                    status, payload, delivered = _faulty(state, fault, status, payload, delivered and effect)
            else:
                status, payload, delivered = _rate_limited(state)
            if status == 429 and state.retry_after is not None:
                headers["Retry-After"] = f"{state.retry_after:g}"
        state.record(
            ReceivedRequest(
                method=request.method,
                path=request.url.path,
                headers={key.lower(): value for key, value in request.headers.items()},
                body=body,
                status=status,
                request_id=request_id,
                received_at=received_at,
                fault=fault,
                delivered=delivered,
                latency=latency,
                rate_limit_headers="X-RateLimit-Reset" in headers,
            )
        )
        if status == 401:
            payload["request_id"] = request_id
        if latency:
            await asyncio.sleep(latency)
        if fault == "slow":
            await asyncio.sleep(state.slow_seconds)
        elif fault == "reset":
            return await _reset_connection(state, request)
        elif fault == "empty":
            return Response(b"", status_code=status, headers=headers, media_type="application/json")
        elif fault in ("502", "html"):
            return HTMLResponse(_PROXY_PAGE.format(status=f"{status} Service Error"), status, headers=headers)
        return JSONResponse(payload, status_code=status, headers=headers)

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


def _latency_range(latency: float | Sequence[float], latency_max: float | None) -> tuple[float, float]:
    """`(low, high)` from `latency` (seconds, or a `(low, high)` pair) and `latency_max`."""
    if isinstance(latency, (int, float)):
        low = high = float(latency)
        if latency_max is not None:
            high = float(latency_max)
    else:
        if latency_max is not None:
            raise ValueError("give the latency as a (low, high) pair or as latency and latency_max, not both")
        low, high = (float(value) for value in latency)
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        raise ValueError(f"the latency range must be finite and low <= high, not {low:g}..{high:g}")
    return low, high


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _uniform(seed: int, key: str, arrival: int, purpose: str) -> float:
    """A reproducible draw in [0, 1) for (seed, phone, n-th arrival of that phone, purpose)."""
    digest = hashlib.blake2b(f"{seed}|{purpose}|{arrival}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _rate_limited(state: SandboxState) -> tuple[int, dict[str, Any], bool]:
    window = f"{state.rate_limit_window:g}_seconds"
    message = f"Exceeded rate limit of {state.rate_limit} in {window}"
    return 429, {"type": "error.list", "errors": [{"code": "rate_limit_exceeded", "message": message}]}, False


def _faulty(
    state: SandboxState, fault: str, status: int, payload: dict[str, Any], effect: bool
) -> tuple[int, dict[str, Any], bool]:
    """The answer for an injected fault: (status, JSON payload, whether the SMS went out)."""
    if fault == "429":
        return _rate_limited(state)
    if fault in ("slow", "empty"):
        return status, payload, status == 200
    codes = {"500": (500, "server_error"), "503": (503, "service_unavailable")}
    if fault in codes:
        code, name = codes[fault]
        return code, {"type": "error.list", "errors": [{"code": name, "message": "Server error"}]}, effect
    return (502 if fault in ("502", "reset") else 503), {}, effect


async def _reset_connection(state: SandboxState, request: Request) -> Response:
    """Reset the TCP connection the request came on (RST, no answer at all)."""
    client = tuple(request.scope.get("client") or ())
    connections = getattr(getattr(state.server, "server_state", None), "connections", ())
    for protocol in list(connections):
        if getattr(protocol, "client", None) == client and getattr(protocol, "transport", None) is not None:
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            protocol.transport.abort()
            await asyncio.sleep(0)
            return Response(status_code=502)
    raise RuntimeError("the reset fault needs the sandbox's own server (Sandbox or the CLI)")


class Sandbox:
    """Run the sandbox in a background thread of this process.

    Args:
        token: The bearer token the sandbox accepts.
        host: Address to bind (loopback only, unless you know why).
        port: Port to bind; 0 picks a free one.
        response_shape: Answer 200 with `{type, phone}` ("phone") or `{type, url}` ("url").
        latency: Seconds to wait before every answer, or a `(low, high)` range drawn from
            uniformly per request (reproducible from `seed`).
        latency_max: With a number as `latency`, the top of the range (`latency` its bottom).
        omit_rate_limit_headers: Probability that an answer comes without the rate-limit headers.
        rate_limit: Requests allowed per window (`None`: no limit and no rate-limit headers).
        rate_limit_window: The window's length in seconds.
        retry_after: Seconds to announce in a `Retry-After` header on 429s (default: none).
        faults: Probability per fault kind, e.g. `{"429": 0.05, "503": 0.02, "reset": 0.01}`
            (kinds: `FAULT_KINDS`, described in the module docstring).
        fault_effect: Probability that a 5xx, HTML or reset fault happened after the SMS went out.
        slow_seconds: How late a `slow` answer comes (set it above the client's timeout).
        seed: Seed of the fault draws.
        keep_alive: Seconds an idle keep-alive connection stays open (uvicorn's default, 5 s).

    Example:
        ```python
        with Sandbox(latency=(0.15, 0.4), rate_limit=100, rate_limit_window=1, faults={"503": 0.02}) as sandbox:
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
        *,
        latency: float | tuple[float, float] = 0.0,
        latency_max: float | None = None,
        omit_rate_limit_headers: float = 0.0,
        rate_limit: int | None = DEFAULT_RATE_LIMIT,
        rate_limit_window: float = DEFAULT_RATE_LIMIT_WINDOW,
        retry_after: float | None = None,
        faults: Mapping[str, float] | None = None,
        fault_effect: float = 0.0,
        slow_seconds: float = DEFAULT_TIMEOUT + 5,
        seed: int = 0,
        keep_alive: float = DEFAULT_KEEP_ALIVE,
    ) -> None:
        self.state = SandboxState(
            token=token,
            response_shape=response_shape,
            latency=latency,
            latency_max=latency_max,
            omit_rate_limit_headers=omit_rate_limit_headers,
            rate_limit=rate_limit,
            rate_limit_window=rate_limit_window,
            retry_after=retry_after,
            faults=dict(faults or {}),
            fault_effect=fault_effect,
            slow_seconds=slow_seconds,
            seed=seed,
        )
        self.host = host
        self._requested_port = port
        self.keep_alive = keep_alive
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
            timeout_graceful_shutdown=2,
            timeout_keep_alive=self.keep_alive,
        )
        self._server = uvicorn.Server(config)
        self.state.server = self._server
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
    parser.add_argument("--response-shape", choices=["phone", "url"], default="phone", help="shape of the 200 answer")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer (default: 0)")
    parser.add_argument(
        "--latency-max",
        type=float,
        default=None,
        help="draw each answer's latency uniformly between --latency and this, from --seed (default: fixed)",
    )
    parser.add_argument(
        "--omit-rate-limit-headers",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that an answer comes without the X-RateLimit-* headers (default: 0)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=DEFAULT_RATE_LIMIT,
        help=f"requests per window, 0 for no limit (default: {DEFAULT_RATE_LIMIT})",
    )
    parser.add_argument(
        "--rate-limit-window",
        type=float,
        default=DEFAULT_RATE_LIMIT_WINDOW,
        help=f"window length in seconds (default: {DEFAULT_RATE_LIMIT_WINDOW:g})",
    )
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on 429s (default: none)")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"inject a fault with a probability, e.g. 503=0.02 (repeatable; kinds: {', '.join(FAULT_KINDS)})",
    )
    parser.add_argument(
        "--fault-effect", type=float, default=0.0, help="probability that a 5xx/HTML/reset fault still sent the SMS"
    )
    parser.add_argument(
        "--slow-seconds", type=float, default=DEFAULT_TIMEOUT + 5, help="how late a 'slow' answer comes"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws (default: 0)")
    parser.add_argument(
        "--keep-alive",
        type=float,
        default=DEFAULT_KEEP_ALIVE,
        help=f"seconds an idle keep-alive connection stays open (default: {DEFAULT_KEEP_ALIVE:g}, uvicorn's)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="uvicorn's log level; below info, requests are not logged (default: info)",
    )
    args = parser.parse_args(argv)
    try:
        faults = {kind: float(rate) for kind, _, rate in (item.partition("=") for item in args.fault)}
        state = SandboxState(
            token=args.token,
            response_shape=args.response_shape,
            latency=args.latency,
            latency_max=args.latency_max,
            omit_rate_limit_headers=args.omit_rate_limit_headers,
            rate_limit=args.rate_limit or None,
            rate_limit_window=args.rate_limit_window,
            retry_after=args.retry_after,
            faults=faults,
            fault_effect=args.fault_effect,
            slow_seconds=args.slow_seconds,
            seed=args.seed,
        )
    except ValueError as error:
        parser.error(str(error))
    config = uvicorn.Config(
        create_app(state),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="off",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=args.keep_alive,
    )
    server = uvicorn.Server(config)
    state.server = server
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it.
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        port = sock.getsockname()[1]  # the real one when --port 0
        print(f"Intercom sandbox: POST http://{args.host}:{port}{_ENDPOINT.path}", flush=True)
        server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
