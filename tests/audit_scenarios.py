"""The token audit's scenarios, run in a process of their own (see `test_token_audit.py`).

    python -m tests.audit_scenarios OUTPUT.json   # with PREFECT_API_URL set to the audit server

Runs the flows and tasks with the distinctive `SECRET_TOKEN` against real sandboxes: success,
validation failure, 401 and 500, for the test-request flow, the deflect-calls batch flow, and
the tasks (sync and async) in small flows of their own. Every text a user could see (reprs and
strs of the block, client, results, states and exceptions, with tracebacks) goes into
OUTPUT.json; every log record, at every level and from every logger (httpx and httpcore
included), goes to stderr. The test searches all of it, and the server, for the token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.flows import load_flow_from_entrypoint
from prefect.states import State

from prefect_intercom import IntercomCredentials, acreate_phone_call_redirect, create_phone_call_redirect
from prefect_intercom.sandbox import Sandbox

from .conftest import PROJECT_ROOT, SECRET_TOKEN

# A marker that must be found where the token must not: it proves the search sees the data.
MARKER = "audit-marker-5d0c1e"
GOOD_PHONE = "+14155550100"
BAD_PHONE = "+1 415 555 0100"
BLOCKS = {"ok": "audit-ok", "401": "audit-401", "500": "audit-500"}


def _texts_of(value: Any) -> list[str]:
    texts = [repr(value), str(value)]
    if isinstance(value, BaseException):
        texts.append("".join(traceback.format_exception(value)))
        texts.extend(repr(getattr(value, name, None)) for name in ("errors", "body", "headers", "request_id"))
    return texts


def _state_texts(state: State) -> list[str]:
    texts = [repr(state), str(state.message)]
    try:
        texts += _texts_of(state.result(raise_on_failure=False))
    except Exception as error:  # a result that cannot be read is itself something to search
        texts += _texts_of(error)
    return texts


@flow(name="audit-task-sync")
def sync_task_flow(block_name: str, phone: str) -> Any:
    """The sync task, with the credentials block loaded by name (never a parameter)."""
    credentials = IntercomCredentials.load(block_name)
    return create_phone_call_redirect(credentials, phone, {"note": MARKER})


@flow(name="audit-task-async")
async def async_task_flow(block_name: str, phone: str) -> Any:
    """The async task."""
    credentials = await IntercomCredentials.aload(block_name)
    return await acreate_phone_call_redirect(credentials, phone, {"note": MARKER})


@flow(name="audit-task-credentials-parameter")
def credentials_parameter_flow(credentials: IntercomCredentials, phone: str) -> Any:
    """The block passed as a flow parameter: Prefect stores parameters, so it must store no token."""
    return create_phone_call_redirect(credentials, phone, {"note": MARKER})


def run(output: Path) -> None:
    """Run every scenario; write what a user could see into `output`."""
    texts: list[str] = []
    flow_runs: dict[str, str] = {}

    def record(name: str, state: State) -> None:
        flow_runs[name] = str(state.state_details.flow_run_id)
        texts.extend(_state_texts(state))

    test_request = load_flow_from_entrypoint(str(PROJECT_ROOT / "flows" / "test_request.py") + ":test_request")
    deflect_calls = load_flow_from_entrypoint(str(PROJECT_ROOT / "flows" / "deflect_calls.py") + ":deflect_calls")
    deflect_calls = deflect_calls.with_options(retries=0)
    csv_path = output.parent / "callers.csv"
    csv_path.write_text(f"phone,note\n{GOOD_PHONE},{MARKER}\n{BAD_PHONE},{MARKER}\n+14155550101,{MARKER}\n")

    with (
        Sandbox(token=SECRET_TOKEN) as good,
        Sandbox(token="a-different-token") as refusing,
        Sandbox(token=SECRET_TOKEN, faults={"500": 1.0}) as failing,
    ):
        for key, sandbox in (("ok", good), ("401", refusing), ("500", failing)):
            block = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
            block.save(BLOCKS[key], overwrite=True)
            texts += [*_texts_of(block), block.model_dump_json(), json.dumps(block.model_dump(mode="json"))]
            loaded = IntercomCredentials.load(BLOCKS[key])
            texts += _texts_of(loaded) + _texts_of(loaded.get_client())

        body = {"phone": GOOD_PHONE, "custom_attributes": {"note": MARKER}}
        invalid = {"phone": BAD_PHONE, "custom_attributes": {"note": MARKER}}
        record("test_request ok", test_request(body=body, block_name=BLOCKS["ok"], return_state=True))
        record("test_request invalid", test_request(body=invalid, block_name=BLOCKS["ok"], return_state=True))
        record("test_request 401", test_request(body=body, block_name=BLOCKS["401"], return_state=True))
        record("test_request 500", test_request(body=body, block_name=BLOCKS["500"], return_state=True))

        for key in ("ok", "401", "500"):
            record(f"sync task {key}", sync_task_flow(BLOCKS[key], GOOD_PHONE, return_state=True))
            record(f"async task {key}", asyncio.run(async_task_flow(BLOCKS[key], GOOD_PHONE, return_state=True)))
        record("sync task invalid", sync_task_flow(BLOCKS["ok"], BAD_PHONE, return_state=True))
        record(
            "credentials parameter",
            credentials_parameter_flow(IntercomCredentials.load(BLOCKS["ok"]), GOOD_PHONE, return_state=True),
        )
        for key in ("ok", "401", "500"):
            record(
                f"deflect_calls {key}",
                deflect_calls(str(csv_path), block_name=BLOCKS[key], concurrency=2, return_state=True),
            )
        received = [entry.public() for entry in good.received + refusing.received + failing.received]

    texts.append(json.dumps(received))
    output.write_text(json.dumps({"texts": texts, "flow_runs": flow_runs, "received": len(received)}))


def main() -> None:
    """Entry point: every log record of every logger goes to stderr, at DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    for name in ("", "httpx", "httpcore", "prefect", "prefect_intercom"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
