"""The `prefect-intercom test-request` command line: run the test-request flow once, or serve it.

prefect-intercom test-request --sandbox --phone +14155550100        # local sandbox, no account
prefect-intercom test-request --block intercom --phone +14155550100  # your saved block
prefect-intercom test-request serve --block intercom --phone +1...   # one-click "Quick run" in the UI
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any
from uuid import UUID

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.credentials import INTERCOM_VERSIONS
from prefect_intercom.flows.command_line import answer, block_problem, command_parser, parse_command, sandbox_block
from prefect_intercom.flows.parameters import BLOCK_VERSION
from prefect_intercom.flows.test_request import (
    ARTIFACT_KEYS,
    DEFAULT_API,
    DEPLOYMENT_NAME,
    FLOW_NAME,
    SANDBOX_TEST_PHONE,
    TEST_PHONE_ENV,
    test_request,
)
from prefect_intercom.tasks import phone_call_redirect_body
from prefect_intercom.validation import request_issues

PROG = "prefect-intercom test-request"


def parse_custom_attribute(text: str) -> tuple[str, Any]:
    """`key=value` (a string) or `key:=json` (any JSON value), as in HTTPie."""
    key, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r}: expected key=value or key:=json")
    if key.endswith(":"):
        key = key[:-1]
        try:
            value = json.loads(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: the value after ':=' must be JSON") from None
    if not key:
        raise argparse.ArgumentTypeError(f"{text!r}: the key is empty")
    return key, value


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command line, named `prog` in usage and help."""
    parser = command_parser(
        prog,
        "Run Intercom's POST /phone_call_redirects as a test request (the docs' three steps), "
        "or serve it as a Prefect deployment for a one-click Quick run in the UI.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "serve"],
        default="run",
        help="run: one test request now (default); serve: serve the deployment until interrupted",
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
    parser.add_argument("--api", default=DEFAULT_API, help=f"the API to search for (default: {DEFAULT_API!r})")
    parser.add_argument(
        "--name", default=DEPLOYMENT_NAME, help=f"serve: the deployment's name (default: {DEPLOYMENT_NAME!r})"
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Command-line entry point: the exit code (0 done, 1 the run failed, 2 it could not start)."""
    parser = build_parser(prog)
    args = parse_command(parser, argv)
    phone = args.phone or os.environ.get(TEST_PHONE_ENV) or (SANDBOX_TEST_PHONE if args.sandbox else None)
    if not phone:
        parser.error(f"--phone is required (or set ${TEST_PHONE_ENV}): the number that receives the SMS")
    body = phone_call_redirect_body(phone, dict(args.custom_attribute) or None)
    parameters = {
        "body": body,
        "block_name": args.block_name,
        "intercom_version": args.intercom_version or BLOCK_VERSION,
        "dry_run": args.dry_run,
        "api": args.api,
    }
    if not args.dry_run:  # a problem found before the flow runs is one sentence, not the flow's failure
        issues = request_issues(PHONE_CALL_REDIRECTS, body)
        problem = "the request is invalid: " + "; ".join(map(str, issues)) if issues else None
        if problem is None and not args.sandbox:
            problem = block_problem(args.block_name, None, args.debug)
        if problem:
            return answer(prog, problem)
    with ExitStack() as stack:
        try:
            sandbox = stack.enter_context(sandbox_block()) if args.sandbox else None
        except ImportError as missing:  # the sandbox's server is an extra
            return answer(prog, str(missing))
        if args.command == "serve":
            return _serve(args.name, parameters)
        code = _run(parameters)
        if sandbox is not None:
            print(f"\nThe sandbox received {len(sandbox.received)} request(s); {len(sandbox.accepted)} answered 200.")
        return code


def _run(parameters: dict[str, Any]) -> int:
    state = test_request(**parameters, return_state=True)
    flow_run_id = state.state_details.flow_run_id
    rule = "-" * 100
    for markdown in _artifacts_of(flow_run_id):
        print(f"\n{rule}\n\n{markdown}")
    print(f"\n{rule}")
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
