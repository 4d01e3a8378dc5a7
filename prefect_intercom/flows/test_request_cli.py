"""The `prefect-intercom test-request` command line: run the test-request flow once, or serve it.

Examples (`--help` for everything):

    prefect-intercom test-request --sandbox --phone +14155550100        # local sandbox, no account
    prefect-intercom test-request --block intercom --phone +14155550100  # your saved block
    prefect-intercom test-request serve --block intercom --phone +1...   # one-click "Quick run" in the UI
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.credentials import INTERCOM_VERSIONS
from prefect_intercom.errors import IntercomConfigurationError
from prefect_intercom.flows.parameters import BLOCK_VERSION, DEFAULT_BLOCK_NAME
from prefect_intercom.flows.sandbox_block import SANDBOX_BLOCK_NAME, sandbox_block
from prefect_intercom.flows.test_request import (
    ARTIFACT_KEYS,
    DEFAULT_API,
    DEPLOYMENT_NAME,
    FLOW_NAME,
    SANDBOX_TEST_PHONE,
    TEST_PHONE_ENV,
    load_credentials,
    test_request,
)
from prefect_intercom.validation import request_issues

PROG = "prefect-intercom test-request"


def parse_custom_attribute(text: str) -> tuple[str, Any]:
    """`key=value` (a string) or `key:=json` (any JSON value), as in HTTPie."""
    index = text.find("=")
    if index < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected key=value or key:=json")
    value: Any
    if index > 0 and text[index - 1] == ":":
        key = text[: index - 1]
        try:
            value = json.loads(text[index + 1 :])
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: the value after ':=' must be JSON") from None
    else:
        key, value = text[:index], text[index + 1 :]
    if not key:
        raise argparse.ArgumentTypeError(f"{text!r}: the key is empty")
    return key, value


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command-line interface.

    Args:
        prog: The command's name in usage and help.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run Intercom's POST /phone_call_redirects as a test request (the docs' three steps), "
        "or serve it as a Prefect deployment for a one-click Quick run in the UI.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "serve"],
        default="run",
        help="run: one test request now (default); serve: serve the deployment until interrupted",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--sandbox",
        action="store_true",
        help=f"start the local Intercom sandbox and save a block {SANDBOX_BLOCK_NAME!r} pointing at it "
        "(no Intercom account needed; nothing leaves this machine)",
    )
    target.add_argument(
        "--block",
        metavar="NAME",
        help=f"your saved IntercomCredentials block (default: {DEFAULT_BLOCK_NAME!r})",
    )
    parser.add_argument(
        "--phone",
        help=f"the phone that receives the SMS, E.164 (default: ${TEST_PHONE_ENV}; --sandbox: {SANDBOX_TEST_PHONE})",
    )
    parser.add_argument(
        "--custom-attribute",
        "-a",
        action="append",
        default=[],
        type=parse_custom_attribute,
        metavar="KEY=VALUE",
        help="a custom attribute: key=text or key:=json (repeatable)",
    )
    parser.add_argument("--intercom-version", choices=INTERCOM_VERSIONS, help="Intercom-Version for this run")
    parser.add_argument("--dry-run", action="store_true", help="validate and show the request; send nothing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also with PREFECT_LOGGING_LEVEL=DEBUG)")
    parser.add_argument("--api", default=DEFAULT_API, help=f"the API to search for (default: {DEFAULT_API!r})")
    parser.add_argument(
        "--name", default=DEPLOYMENT_NAME, help=f"serve: the deployment's name (default: {DEPLOYMENT_NAME!r})"
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Command-line entry point.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).
        prog: The command's name in usage and help.

    Returns:
        The exit code.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    # Without PREFECT_API_URL, Prefect starts a temporary server for this process; its telemetry
    # heartbeat only prints a traceback on a machine without internet. An explicit setting wins.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    phone = args.phone or os.environ.get(TEST_PHONE_ENV) or (SANDBOX_TEST_PHONE if args.sandbox else None)
    if not phone:
        parser.error(f"--phone is required (or set ${TEST_PHONE_ENV}): the number that receives the SMS")
    body: dict[str, Any] = {"phone": phone}
    if args.custom_attribute:
        body["custom_attributes"] = dict(args.custom_attribute)
    parameters: dict[str, Any] = {
        "body": body,
        "block_name": args.block or (SANDBOX_BLOCK_NAME if args.sandbox else DEFAULT_BLOCK_NAME),
        "intercom_version": args.intercom_version or BLOCK_VERSION,
        "dry_run": args.dry_run,
        "api": args.api,
    }
    if not args.dry_run:
        block = None if args.sandbox else parameters["block_name"]
        problem = _start_problem(body, block, debug=args.debug)
        if problem:
            print(f"{prog}: {problem}", file=sys.stderr)
            return 2
    if not args.sandbox:
        return _serve(args.name, parameters) if args.command == "serve" else _run(parameters)

    try:
        starting = sandbox_block()
    except ImportError as missing:  # the sandbox's server is an extra: one line, no traceback
        print(f"{prog}: {missing}", file=sys.stderr)
        return 2
    with starting as sandbox:
        if args.command == "serve":
            return _serve(args.name, parameters)
        code = _run(parameters)
        received = sandbox.received
        print(f"\nThe sandbox received {len(received)} request(s); {len(sandbox.accepted)} answered 200.")
        return code


def _start_problem(body: dict[str, Any], block_name: str | None, *, debug: bool) -> str | None:
    """One sentence when the request cannot start (invalid phone, missing block); `None` when it can.

    Checked before the flow runs, so that a configuration or input problem is one line and exit
    code 2 (as `deflect-calls` answers it), not the flow's failure with its tracebacks. With
    `debug` (or `PREFECT_LOGGING_LEVEL=DEBUG`) the traceback is printed as well.
    """
    issues = request_issues(PHONE_CALL_REDIRECTS, body)
    if issues:
        return "the request is invalid: " + "; ".join(str(issue) for issue in issues)
    if block_name is None:  # the sandbox's own block
        return None
    try:
        load_credentials(block_name)
    except Exception as error:
        if debug or os.environ.get("PREFECT_LOGGING_LEVEL", "").upper() == "DEBUG":
            traceback.print_exc()
        if isinstance(error, IntercomConfigurationError):
            return str(error).splitlines()[0]
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"cannot load the Intercom credentials block {block_name!r}: {reason}"
    return None


def _run(parameters: dict[str, Any]) -> int:
    state = test_request(**parameters, return_state=True)
    flow_run_id = state.state_details.flow_run_id
    for markdown in _artifacts_of(flow_run_id):
        print("\n" + "-" * 100 + "\n")
        print(markdown)
    print("\n" + "-" * 100)
    if state.is_completed():
        print(f"\nTest request completed (flow run {flow_run_id}).")
        return 0
    print(f"\nTest request failed (flow run {flow_run_id}): {state.message}", file=sys.stderr)
    return 1


def _artifacts_of(flow_run_id: UUID | None) -> list[str]:
    """The markdown of the run's step artifacts, in step order (read back from the Prefect API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    if flow_run_id is None:
        return []
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    steps = sorted((a for a in artifacts if a.key in ARTIFACT_KEYS), key=lambda a: (a.key, a.created))
    return [str(artifact.data) for artifact in steps]


def _serve(name: str, parameters: dict[str, Any]) -> int:
    print(
        f"Serving deployment '{FLOW_NAME}/{name}' with default parameters "
        f"block_name={parameters['block_name']!r}, phone={parameters['body']['phone']!r}. "
        "In the Prefect UI: Deployments > test-request > Run > Quick run. Ctrl+C stops."
    )
    test_request.serve(
        name=name,
        parameters={key: value for key, value in parameters.items() if value not in (None, BLOCK_VERSION)},
        description="Test request: Intercom's POST /phone_call_redirects, the docs' three steps. "
        "Quick run sends one SMS to the default phone.",
        tags=["intercom", "test-request"],
        pause_on_shutdown=False,
    )
    return 0
