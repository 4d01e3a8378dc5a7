"""The sandbox's starlette application: Intercom's documented answers, then rate limit, latency and faults.

`documented_answer` is what Intercom documents `POST /phone_call_redirects` answers before any
rate limit or fault (401, 400 version or phone, the two failing numbers, 422, 200): docs/sandbox.md.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
import uuid
from collections.abc import Mapping
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint, schema_folder
from prefect_intercom.sandbox.state import ReceivedRequest, SandboxState
from prefect_intercom.schema_rules import E164

SMS_FAILS_PHONE = "+15005550001"
UNPROCESSABLE_PHONE = "+15005550002"
ENDPOINT = get_endpoint(PHONE_CALL_REDIRECTS)

_VERSIONS = frozenset(ENDPOINT.header_enum("Intercom-Version"))


def _nullable_as_null_type(node: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0's `nullable: true` as JSON Schema says it, `null` among the types (a `json` object hook)."""
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


# What the shipped copy of Intercom's OpenAPI description (2.12, `custom_attributes`) accepts as
# custom attributes, plus booleans and non-integer numbers: its own example carries them and
# Intercom's data attributes support them. Anything else is answered 422, as Intercom documents.
_DESCRIPTION = (schema_folder() / f"{PHONE_CALL_REDIRECTS}.2.12.openapi.yaml").read_text(encoding="utf-8")
_COMPONENTS = json.loads(json.dumps(yaml.safe_load(_DESCRIPTION)["components"]), object_hook=_nullable_as_null_type)
_ATTRIBUTES = _COMPONENTS["schemas"]["custom_attributes"]
_ATTRIBUTES["additionalProperties"]["anyOf"].append({"type": ["boolean", "number"]})
_CUSTOM_ATTRIBUTES = Draft202012Validator({**_ATTRIBUTES, "components": _COMPONENTS})  # `$ref`s point into components


def documented_answer(state: SandboxState, headers: Mapping[str, str], body: Any) -> tuple[int, dict[str, Any]]:
    """The documented answer to one request: `(status, JSON payload)`.

    Args:
        state: The sandbox (its token and the shape of its 200 answer).
        headers: The request's headers (Authorization, Intercom-Version).
        body: The request's JSON body (`None` when it was not JSON).

    Returns:
        The status and the JSON payload.
    """
    if (refused := _refused(state, headers)) is not None:
        return refused
    if not isinstance(body, dict):
        return 400, _error_list("parameter_invalid", "Invalid JSON body")
    phone = body.get("phone")
    if not isinstance(phone, str) or not E164.match(phone):
        return 400, {"error_key": "invalid_phone_number", "message": "Invalid phone number"}
    if phone == SMS_FAILS_PHONE:
        return 400, {"error_key": "sms_failed", "message": "SMS was not sent due to an unknown error"}
    if phone == UNPROCESSABLE_PHONE or not _CUSTOM_ATTRIBUTES.is_valid(body.get("custom_attributes", {})):
        return 422, {"error_key": "unprocessable_entity", "message": "Custom attributes could not be processed"}
    if state.response_shape == "url":
        return 200, {"type": "phone_call_redirect", "url": f"http://via.intercom.io/msgr/{uuid.uuid4()}"}
    return 200, {"type": "phone_call_redirect", "phone": phone}


def _refused(state: SandboxState, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]] | None:
    """Intercom's answer to a request without the right bearer token or with an unknown version, else `None`."""
    if headers.get("authorization") != f"Bearer {state.token}":
        return 401, _error_list("unauthorized", "Access Token Invalid")
    if (version := headers.get("intercom-version")) is not None and version not in _VERSIONS:
        return 400, _error_list("intercom_version_invalid", f"Requested version {version} is invalid")
    return None


def _error_list(code: str, message: str) -> dict[str, Any]:
    """Intercom's `error.list` body with one error (a new one each time: the app adds to a 401's)."""
    return {"type": "error.list", "errors": [{"code": code, "message": message}]}


def data_attributes_answer(state: SandboxState, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """The answer to `GET /data_attributes?model=contact`: the workspace's attributes, or an error.

    Args:
        state: The sandbox (its token, custom attributes and the status to answer with: anything
            but 200 is an `error.list`).
        headers: The request's headers (Authorization, Intercom-Version).

    Returns:
        The status and the JSON payload: `{type: list, data: [data_attribute, ...]}` with two
        standard attributes (`custom: false`) and the custom ones.
    """
    if (refused := _refused(state, headers)) is not None:
        return refused
    if state.data_attributes_status != 200:
        return state.data_attributes_status, _error_list("unauthorized", "Not authorized")
    standard = [("name", "string", False), ("email", "string", False)]
    custom = [(name, data_type, True) for name, data_type in state.data_attributes.items()]
    data = [
        {
            "type": "data_attribute",
            "model": "contact",
            "name": name,
            "full_name": f"custom_attributes.{name}" if is_custom else name,
            "label": name,
            "description": "",
            "data_type": data_type,
            "api_writable": True,
            "custom": is_custom,
            "archived": False,
        }
        for name, data_type, is_custom in standard + custom
    ]
    return 200, {"type": "list", "data": data}


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
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):
            body = None
        received_at = time.time()
        status, payload = documented_answer(state, request.headers, body)
        headers = {"X-Request-Id": request_id}
        fault, delivered = None, status == 200
        latency, keep_headers = state.draw_shape(body)
        if status != 401:  # Intercom counts and reports rate limits for authenticated calls only
            admitted, rate_headers = state.admit(received_at)
            if keep_headers:
                headers.update(rate_headers)
            # A drawn fault, and whether an uncertain one (5xx, HTML, reset) still sent the SMS; "slow" and
            # "empty" keep the answer.
            fault, effect = state.draw_fault(body) if admitted else (None, False)
            if not admitted or fault == "429":  # Intercom's 429 for `rate_limit` requests per window
                limit = f"Exceeded rate limit of {state.rate_limit} in {state.rate_limit_window:g}_seconds"
                status, payload, delivered = 429, _error_list("rate_limit_exceeded", limit), False
            elif fault in ("500", "503"):
                name = "server_error" if fault == "500" else "service_unavailable"
                status, payload, delivered = int(fault), _error_list(name, "Server error"), delivered and effect
            elif fault in ("502", "html", "reset"):
                status, payload, delivered = (503 if fault == "html" else 502), {}, delivered and effect
            if status == 429 and state.retry_after is not None:
                headers["Retry-After"] = f"{state.retry_after:g}"
        rate_limit_headers = "X-RateLimit-Reset" in headers
        answer = {"fault": fault, "delivered": delivered, "latency": latency, "rate_limit_headers": rate_limit_headers}
        state.record(_received(request, request.url.path, body, status, request_id, received_at, **answer))
        if status == 401:
            payload["request_id"] = request_id
        await asyncio.sleep(latency + (state.slow_seconds if fault == "slow" else 0))
        if fault == "reset":
            return await _reset_connection(state, request)
        elif fault == "empty":
            return Response(b"", status_code=status, headers=headers, media_type="application/json")
        elif fault in ("502", "html"):
            return HTMLResponse(_PROXY_PAGE.format(status=f"{status} Service Error"), status, headers=headers)
        return JSONResponse(payload, status_code=status, headers=headers)

    async def data_attributes(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        status, payload = data_attributes_answer(state, request.headers)
        path = f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path
        state.record(_received(request, path, None, status, request_id, time.time(), delivered=False), read=True)
        return JSONResponse(payload, status_code=status, headers={"X-Request-Id": request_id})

    async def records(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear()
            return Response(status_code=204)
        return JSONResponse([entry.public() for entry in state.snapshot(reads=request.url.path == "/sandbox/reads")])

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "endpoint": ENDPOINT.title})

    return Starlette(
        routes=[
            Route(ENDPOINT.path, phone_call_redirects, methods=[ENDPOINT.method]),
            Route("/data_attributes", data_attributes, methods=["GET"]),
            Route("/sandbox/requests", records, methods=["GET", "DELETE"]),
            Route("/sandbox/reads", records, methods=["GET"]),
            Route("/sandbox/health", health, methods=["GET"]),
        ]
    )


def _received(
    request: Request, path: str, body: Any, status: int, request_id: str, received_at: float, **answer: Any
) -> ReceivedRequest:
    """The record of `request` (its method and headers: ASGI's names are lower case) and of its answer."""
    headers = dict(request.headers.items())
    return ReceivedRequest(request.method, path, headers, body, status, request_id, received_at, **answer)


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
