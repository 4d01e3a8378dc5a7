"""The token audit's hostile scenarios, run in a process of their own (see `test_token_audit.py`).

    python -m tests.hostile_scenarios OUTPUT.json   # PREFECT_API_URL set to the audit server

A hostile server (`tests/hostile_server.py`) echoes the `Authorization` header back, as it is,
JSON-escaped and URL-encoded, straddling the 300-character cut of error texts: in a 401's
message, a 500's HTML page, a 400 without a code, a 200's text body, and in headers and the
reason phrase of a 200 (which also echoes the request's phone in its request id, a header and
its body). The tasks (sync and async) and the test-request flow run against it
with the base64-like `CANARY_TOKEN`, while httpx, httpcore and aiohttp log at DEBUG into the
Prefect API (`PREFECT_LOGGING_EXTRA_LOGGERS`). The phone the tasks text is never a flow
parameter (Prefect stores parameters): it may appear masked only. Every text a user could
see goes into OUTPUT.json; the test searches it, the API, the database and the home.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.flows import load_flow_from_entrypoint
from prefect.states import State

from prefect_intercom import IntercomCredentials, acreate_phone_call_redirect, create_phone_call_redirect

from .audit_scenarios import _state_texts  # one way to collect what a state shows
from .conftest import PROJECT_ROOT
from .hostile_server import HostileServer, Received, Reply

CANARY_TOKEN = "dG9rOkFVRElU/5e2a+7c1f3b9d=0a4e6c8b2d1f7e3a9c5b0d2e4f6a8c1=="
TASK_PHONE = "+353871235678"  # texted by the tasks: never a parameter, so nowhere in full
TASK_PHONE_MASKED = "+3538•••5678"
SPACED_TASK_PHONE = "+353 87 123 5678"
PARAMETER_PHONE = "+14155550123"  # the test-request flow's body parameter: Prefect stores it
MARKER = "hostile-marker-7a3e"
CANARY_HEADER = "hostile-canary-header-2c9d"
BLOCK = "hostile-echo"
CUT = 300


def _echo_forms(authorization: str) -> str:
    escaped = "".join(f"\\u{ord(char):04x}" for char in authorization)
    return f"{authorization} {escaped} {urllib.parse.quote(authorization, safe='')}"


def _answer(shape: str, request: Received) -> Reply:
    echo = _echo_forms(request.authorization)
    text = "." * (CUT - 60) + echo  # the echo straddles the cut of error texts
    if shape == "401":
        body = {"type": "error.list", "errors": [{"code": "unauthorized", "message": text}]}
        return Reply(401, headers=[("Content-Type", "application/json")], body=json.dumps(body).encode())
    if shape == "500":
        return Reply(500, headers=[("Content-Type", "text/html")], body=f"<html><p>{text}</p></html>".encode())
    if shape == "400":
        return Reply(400, headers=[("Content-Type", "application/json")], body=json.dumps({"detail": text}).encode())
    if shape == "200-text":
        return Reply(200, headers=[("Content-Type", "text/plain")], body=text.encode())
    phone = json.loads(request.body)["phone"]  # the phone canary: echoed in the request id and a header
    return Reply(  # 200 with the echo in headers and the reason phrase
        200,
        f"OK {request.authorization}",
        [
            ("X-Echo", request.authorization),
            ("X-Echo-All", echo),
            ("X-Canary", CANARY_HEADER),
            ("X-Request-Id", f"req-{phone}"),
            ("X-Echo-Phone", urllib.parse.quote(phone, safe="")),
        ],
        json.dumps({"type": "phone_call_redirect", "phone": phone, "request_id": f"{echo} req {phone}"}).encode(),
    )


SHAPES = ("401", "500", "400", "200-text", "200-headers")


@flow(name="hostile-task-sync")
def sync_task_flow(case: str) -> Any:
    """The sync task; the phone is chosen here, not passed as a parameter."""
    credentials = IntercomCredentials.load(BLOCK)
    phone = SPACED_TASK_PHONE if case == "invalid" else TASK_PHONE
    return create_phone_call_redirect(credentials, phone, {MARKER: "x"})


@flow(name="hostile-task-async")
async def async_task_flow(case: str) -> Any:
    """The async task (aiohttp's transport)."""
    credentials = await IntercomCredentials.aload(BLOCK)
    return await acreate_phone_call_redirect(credentials, TASK_PHONE, {MARKER: "x"})


def run(output: Path) -> None:
    """Run every scenario; write what a user could see into `output`."""
    texts: list[str] = []
    flow_runs: dict[str, str] = {}
    script: dict[str, Callable[[Received], Reply]] = {}

    def record(name: str, state: State) -> None:
        flow_runs[name] = str(state.state_details.flow_run_id)
        texts.extend(_state_texts(state))

    test_request = load_flow_from_entrypoint(str(PROJECT_ROOT / "flows" / "test_request.py") + ":test_request")
    with HostileServer(lambda request: script["answer"](request)) as server:
        IntercomCredentials(access_token=CANARY_TOKEN, base_url=server.url).save(BLOCK, overwrite=True)
        for shape in SHAPES:
            script["answer"] = lambda request, shape=shape: _answer(shape, request)
            record(f"sync {shape}", sync_task_flow(shape, return_state=True))
            record(f"async {shape}", asyncio.run(async_task_flow(shape, return_state=True)))
        record("sync invalid", sync_task_flow("invalid", return_state=True))
        for shape in ("500", "200-text"):
            script["answer"] = lambda request, shape=shape: _answer(shape, request)
            body = {"phone": PARAMETER_PHONE, "custom_attributes": {"note": MARKER}}
            record(f"test_request {shape}", test_request(body=body, block_name=BLOCK, return_state=True))
        received = len(server.received)
    output.write_text(json.dumps({"texts": texts, "flow_runs": flow_runs, "received": received}))


def main() -> None:
    """Entry point: the HTTP libraries log at DEBUG (to the API too); every record also goes to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    for name in ("", "httpx", "httpcore", "aiohttp", "prefect", "prefect_intercom"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
