"""The sandbox's starlette application: the endpoint (documented answer, rate limit, latency, faults) and inspection."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from prefect_intercom.sandbox.contract import ENDPOINT, data_attributes_answer, documented_answer, rate_limited
from prefect_intercom.sandbox.state import ReceivedRequest, SandboxState

_PROXY_PAGE = "<html><head><title>{status}</title></head><body><h1>{status}</h1><hr>proxy</body></html>"


def create_app(state: SandboxState) -> Starlette:
    """The sandbox's ASGI application, bound to `state`.

    Args:
        state: The options and records of this sandbox.

    Returns:
        The application: the endpoint, `GET /data_attributes` (the workspace's attributes, recorded
        apart: `GET /sandbox/reads`), `GET`/`DELETE /sandbox/requests` and `GET /sandbox/health`.
    """

    async def phone_call_redirects(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        raw = await request.body()
        body = _json_or_none(raw)
        received_at = time.time()
        status, payload = documented_answer(
            token=state.token,
            response_shape=state.response_shape,
            authorization=request.headers.get("authorization"),
            version=request.headers.get("intercom-version"),
            body=body,
        )
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
                status, payload = rate_limited(state.rate_limit, state.rate_limit_window)
                delivered = False
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

    async def data_attributes(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        status, payload = data_attributes_answer(
            token=state.token,
            authorization=request.headers.get("authorization"),
            version=request.headers.get("intercom-version"),
            attributes=dict(state.data_attributes),
            status=state.data_attributes_status,
        )
        state.record_read(
            ReceivedRequest(
                method=request.method,
                path=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
                headers={key.lower(): value for key, value in request.headers.items()},
                body=None,
                status=status,
                request_id=request_id,
                received_at=time.time(),
                delivered=False,
            )
        )
        return JSONResponse(payload, status_code=status, headers={"X-Request-Id": request_id})

    async def list_reads(_: Request) -> Response:
        return JSONResponse([entry.public() for entry in state.read_snapshot()])

    async def list_requests(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear()
            return Response(status_code=204)
        return JSONResponse([entry.public() for entry in state.snapshot()])

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "endpoint": ENDPOINT.title})

    return Starlette(
        routes=[
            Route(ENDPOINT.path, phone_call_redirects, methods=[ENDPOINT.method]),
            Route("/data_attributes", data_attributes, methods=["GET"]),
            Route("/sandbox/requests", list_requests, methods=["GET", "DELETE"]),
            Route("/sandbox/reads", list_reads, methods=["GET"]),
            Route("/sandbox/health", health, methods=["GET"]),
        ]
    )


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _faulty(
    state: SandboxState, fault: str, status: int, payload: dict[str, Any], effect: bool
) -> tuple[int, dict[str, Any], bool]:
    """The answer for an injected fault: (status, JSON payload, whether the SMS went out)."""
    if fault == "429":
        return (*rate_limited(state.rate_limit, state.rate_limit_window), False)
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
