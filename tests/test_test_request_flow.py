"""The test-request flow on a real Prefect server (test harness) against the sandbox over loopback.

What each run publishes is read back from the Prefect API (artifacts, logs, the flow run), as
the UI would show it; the access token must appear in none of it, nor in the server's database.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.flows import load_flow_from_entrypoint
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL
from prefect.states import State
from prefect.utilities.callables import parameter_schema

from prefect_intercom import IntercomCredentials
from prefect_intercom.credentials import INTERCOM_VERSIONS
from prefect_intercom.privacy import mask_phone
from prefect_intercom.sandbox import SMS_FAILS_PHONE, Sandbox

from .conftest import PROJECT_ROOT, SECRET_TOKEN

FLOW_FILE = PROJECT_ROOT / "flows" / "test_request.py"
PHONE = "+14155550100"
STEP_KEYS = ("test-request-step-1-http-task", "test-request-step-2-api-reference", "test-request-step-3-response")


def _load_flow_module() -> ModuleType:
    """Import `flows/test_request.py` (not a package) under a name pytest will not collect."""
    spec = importlib.util.spec_from_file_location("prefect_intercom_flows_test_request", FLOW_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


flows = _load_flow_module()


@dataclass
class Run:
    """One finished run of the flow, as the Prefect API has it."""

    state: State
    flow_run: FlowRun
    artifacts: dict[str, str]
    logs: list[str]

    def everything(self) -> str:
        """All text the run left behind: parameters, state, artifacts and logs."""
        return "\n".join(
            [
                json.dumps(self.flow_run.parameters, default=str),
                str(self.flow_run.state.message if self.flow_run.state else ""),
                *self.artifacts.values(),
                *self.logs,
            ]
        )


def run_flow(**parameters: Any) -> Run:
    """Run the flow in this process and read back what it published."""
    state = flows.test_request(**parameters, return_state=True)
    flow_run_id = state.state_details.flow_run_id
    assert isinstance(flow_run_id, UUID)
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return Run(
        state=state,
        flow_run=flow_run,
        artifacts={artifact.key: str(artifact.data) for artifact in artifacts if artifact.key},
        logs=[log.message for log in logs],
    )


def assert_no_token(run: Run, token: str = SECRET_TOKEN) -> None:
    """Neither the run's parameters, state, artifacts, logs nor the server's database hold the token."""
    assert token not in run.everything()
    database = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1])
    for path in database.parent.iterdir():
        if path.is_file():
            assert token.encode() not in path.read_bytes(), f"the token is stored in {path.name}"


@pytest.fixture
def block_name(prefect_server: None, sandbox: Sandbox) -> str:
    """A saved credentials block pointing at the sandbox (a fresh name per test)."""
    name = f"test-request-{uuid4().hex[:12]}"
    IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url).save(name)
    return name


# --- the three steps -----------------------------------------------------------------------


def test_a_test_request_publishes_the_three_steps_and_sends_once(sandbox: Sandbox, block_name: str) -> None:
    run = run_flow(body={"phone": PHONE, "custom_attributes": {"issue_type": "Billing"}}, block_name=block_name)

    assert run.state.is_completed(), run.state.message
    assert sorted(run.artifacts) == list(STEP_KEYS)
    step1, step2, step3 = (run.artifacts[key] for key in STEP_KEYS)

    assert step1.startswith("# Step 1 · Add the HTTP task")
    assert f"`{sandbox.url}`" in step1
    assert "| Intercom-Version | `2.12` |" in step1
    assert "| Access token | `[REDACTED]`" in step1

    assert step2.startswith("# Step 2 · Find the API and load its reference")
    assert "found **POST /phone_call_redirects**" in step2
    assert "### Request body fields" in step2 and "| `phone` | String | Yes |" in step2
    assert "`2.11`, `2.12`, " in step2 and "`Unstable`" in step2 and "Default: `2.12`." in step2  # allowed versions
    assert f"`POST {sandbox.url}/phone_call_redirects`" in step2
    assert "| Authorization | `Bearer [REDACTED]` |" in step2
    assert '"issue_type": "Billing"' in step2
    assert "**Valid**" in step2

    assert step3.startswith("# Step 3 · Test request")
    assert "**200 OK**" in step3
    assert "`+1415•••0100`" in step3 and PHONE not in step3  # masked (issue 9)
    assert "| Latency |" in step3 and "| Request id | `" in step3
    assert "| X-RateLimit-Limit |" in step3 and "| X-RateLimit-Remaining |" in step3
    assert '"type": "phone_call_redirect"' in step3

    [received] = sandbox.received
    assert received.status == 200
    assert received.body == {"phone": PHONE, "custom_attributes": {"issue_type": "Billing"}}
    assert received.headers["intercom-version"] == "2.12"

    result = run.state.result()
    assert result["sent"] is True and result["status_code"] == 200
    assert result["request_id"] == received.request_id
    assert result["response"] == {"type": "phone_call_redirect", "phone": "+1415•••0100"}  # the echo, masked
    assert "Loaded block" in "\n".join(run.logs) and "+1415•••0100" in "\n".join(run.logs)
    assert_no_token(run)


def test_an_invalid_phone_fails_the_run_sends_nothing_and_says_why(sandbox: Sandbox, block_name: str) -> None:
    run = run_flow(body={"phone": "+1 415 555 0100"}, block_name=block_name)

    assert run.state.is_failed()
    assert "is not a phone number in E.164 format" in str(run.state.message)
    assert sandbox.received == []
    step2, step3 = run.artifacts[STEP_KEYS[1]], run.artifacts[STEP_KEYS[2]]
    assert "**Invalid request body** (1 problem); nothing was sent." in step2
    assert "| `/phone` | '+1 415•••0100' is not a phone number in E.164 format" in step2  # masked (issue 9)
    assert "| remove spaces: +1415•••0100 |" in step2
    assert '"phone": "+1 415•••0100"' in step2  # the body as given is still shown, masked
    assert "**Not sent**: the request body is invalid." in step3
    assert_no_token(run)


def test_an_intercom_error_is_reported_with_code_request_id_and_hint(sandbox: Sandbox, block_name: str) -> None:
    run = run_flow(body={"phone": SMS_FAILS_PHONE}, block_name=block_name)

    assert run.state.is_failed()
    assert "sms_failed" in str(run.state.message)
    [received] = sandbox.received
    assert received.status == 400 and sandbox.accepted == []
    step3 = run.artifacts[STEP_KEYS[2]]
    assert "**Refused: 400 Bad Request**" in step3
    assert "| Error code | `sms_failed` |" in step3
    assert "| Message | SMS was not sent due to an unknown error |" in step3
    assert f"| Request id | `{received.request_id}` |" in step3
    assert "| Hint | Intercom could not send the SMS" in step3
    assert "| Sent? | No: Intercom did not act on it" in step3
    assert_no_token(run)


def test_a_wrong_token_is_reported_without_showing_either_token(prefect_server: None, sandbox: Sandbox) -> None:
    wrong = "tok_WRONG_0b6b1f6a9d2c4e8f"
    name = f"test-request-{uuid4().hex[:12]}"
    IntercomCredentials(access_token=wrong, base_url=sandbox.url).save(name)
    run = run_flow(body={"phone": PHONE}, block_name=name)

    assert run.state.is_failed()
    step3 = run.artifacts[STEP_KEYS[2]]
    assert "**Refused: 401 Unauthorized**" in step3
    assert "| Error code | `unauthorized` |" in step3
    assert "Check the access token in your IntercomCredentials block." in step3
    assert sandbox.accepted == []
    assert_no_token(run, wrong)
    assert_no_token(run, SECRET_TOKEN)


def test_dry_run_prepares_and_shows_the_request_but_sends_nothing(sandbox: Sandbox, block_name: str) -> None:
    run = run_flow(body={"phone": PHONE}, block_name=block_name, dry_run=True)

    assert run.state.is_completed()
    assert run.state.result()["sent"] is False
    assert "**Valid**" in run.artifacts[STEP_KEYS[1]]
    assert "**Dry run: nothing was sent.**" in run.artifacts[STEP_KEYS[2]]
    assert sandbox.received == []


def test_a_version_override_is_sent_and_shown(sandbox: Sandbox, block_name: str) -> None:
    run = run_flow(body={"phone": PHONE}, block_name=block_name, intercom_version="2.11")

    assert run.state.is_completed()
    assert "`2.11` (this run; the block says `2.12`)" in run.artifacts[STEP_KEYS[0]]
    assert "| Intercom-Version | `2.11` |" in run.artifacts[STEP_KEYS[1]]
    assert [request.headers["intercom-version"] for request in sandbox.received] == ["2.11"]


@pytest.mark.parametrize("query", ["phone", "deflect calls to messenger", "phone_call_redirects"])
def test_the_api_query_finds_the_endpoint(sandbox: Sandbox, block_name: str, query: str) -> None:
    run = run_flow(body={"phone": PHONE}, block_name=block_name, api=query, dry_run=True)
    assert run.state.is_completed()
    assert f"Searched the catalogue for `{query}`: found **POST /phone_call_redirects**." in run.artifacts[STEP_KEYS[1]]


def test_an_api_query_that_matches_nothing_lists_what_exists(sandbox: Sandbox, block_name: str) -> None:
    run = run_flow(body={"phone": PHONE}, block_name=block_name, api="create a ticket")

    assert run.state.is_failed()
    step2 = run.artifacts[STEP_KEYS[1]]
    assert "**Not found**: No endpoint matches 'create a ticket'." in step2
    assert "phone_call_redirects (POST /phone_call_redirects:" in step2
    assert sandbox.received == []


def test_a_missing_block_names_it_and_says_how_to_create_it(prefect_server: None, sandbox: Sandbox) -> None:
    run = run_flow(body={"phone": PHONE}, block_name="no-such-block")

    assert run.state.is_failed()
    message = str(run.state.message)
    assert "No Intercom credentials block named 'no-such-block'" in message
    assert "IntercomCredentials(access_token='<your token>', region='us').save('no-such-block')" in message
    assert "Blocks > + > Intercom Credentials" in message
    assert "prefect-intercom test-request --sandbox" in message
    assert sandbox.received == []


def test_a_run_without_a_phone_is_refused_with_where_to_set_it(sandbox: Sandbox, block_name: str) -> None:
    """A deployment without a default phone: its Quick run sends nothing and says what to set."""
    run = run_flow(block_name=block_name)

    assert run.state.is_failed()
    step2 = run.artifacts[STEP_KEYS[1]]
    assert "| `/phone` | no phone number was given |" in step2
    assert "the deployment's default parameter body.phone" in step2
    assert sandbox.received == []


def test_the_block_may_be_named_with_its_type_slug(sandbox: Sandbox, block_name: str) -> None:
    run = run_flow(body={"phone": PHONE}, block_name=f"intercom-credentials/{block_name}", dry_run=True)
    assert run.state.is_completed()


# --- the parameters the UI renders ---------------------------------------------------------


def test_parameters_render_as_a_form_and_quick_run_needs_no_dialog() -> None:
    schema = parameter_schema(flows.test_request).model_dump()
    # The UI opens a parameter dialog instead of running when any parameter is required.
    assert schema["required"] == []
    assert list(schema["properties"]) == ["body", "block_name", "intercom_version", "dry_run", "api"]
    body = schema["definitions"]["PhoneCallRedirectBody"]
    assert body["required"] == ["phone"]
    assert body["additionalProperties"] is False
    assert list(body["properties"]) == ["phone", "custom_attributes"]
    assert "E.164" in body["properties"]["phone"]["description"]
    version = schema["properties"]["intercom_version"]
    # A plain dropdown, no "str / None" toggle: the block's version, then every version of the header schema.
    assert "anyOf" not in version and version["type"] == "string"
    assert version["enum"] == ["the block's", *INTERCOM_VERSIONS] and version["default"] == "the block's"
    assert schema["properties"]["dry_run"]["type"] == "boolean"
    assert schema["properties"]["api"]["default"] == "POST /phone_call_redirects"
    assert schema["properties"]["block_name"]["default"] == "intercom"
    assert "Name of your saved Intercom Credentials block" in schema["properties"]["block_name"]["description"]


def test_every_parameter_has_a_human_title_and_help_in_the_run_form() -> None:
    schema = parameter_schema(flows.test_request).model_dump()
    titles = {}
    for name, field in schema["properties"].items():
        shown = schema["definitions"][field["$ref"].rsplit("/", 1)[1]] if "$ref" in field else field
        titles[name] = shown["title"]
        assert field.get("description"), name
    assert titles == {
        "body": "Request body",
        "block_name": "Credentials block",
        "intercom_version": "Intercom-Version",
        "dry_run": "Dry run",
        "api": "API to test",
    }


def test_the_block_s_version_keeps_the_block_s_and_a_chosen_one_is_sent(sandbox: Sandbox, block_name: str) -> None:
    run = run_flow(body={"phone": PHONE}, block_name=block_name, intercom_version="the block's")
    assert run.state.is_completed()
    assert sandbox.received[-1].headers["intercom-version"] == "2.12"


def test_prefect_yaml_deploys_the_flow_with_a_phone_from_the_environment() -> None:
    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    [deployment] = [entry for entry in config["deployments"] if entry["name"] == "test-request"]
    assert deployment["entrypoint"] == "flows/test_request.py:test_request"
    assert deployment["parameters"]["body"] == {"phone": "{{ $INTERCOM_TEST_PHONE }}"}
    flow = load_flow_from_entrypoint(str(PROJECT_ROOT / deployment["entrypoint"]))
    assert flow.name == "test-request"
    parameters = {**deployment["parameters"], "body": {"phone": PHONE}}
    assert flow.validate_parameters(parameters)["body"].phone == PHONE


def test_prefect_deploy_creates_the_deployment_from_prefect_yaml(prefect_server: None, tmp_path: Path) -> None:
    """`prefect deploy --all` (the README's command) against a real server."""
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.actions import WorkPoolCreate

        try:
            client.create_work_pool(WorkPoolCreate(name="local", type="process"))
        except Exception as error:  # the pool may exist from an earlier test in this session
            if "already exists" not in str(error):
                raise
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), INTERCOM_TEST_PHONE=PHONE, PREFECT_HOME=str(tmp_path))
    completed = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("test-request/test-request")
    assert deployment.parameters["body"] == {"phone": PHONE}
    assert deployment.parameters["block_name"] == "intercom"
    assert deployment.work_pool_name == "local"
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}
    ]
    assert not deployment.parameter_openapi_schema.get("required")  # Quick run needs no dialog
    assert deployment.parameter_openapi_schema["properties"]["block_name"]["title"] == "Credentials block"
    with get_client(sync_client=True) as client:
        deflect = client.read_deployment_by_name("deflect-calls/deflect-calls")
    properties = deflect.parameter_openapi_schema["properties"]
    assert deflect.parameter_openapi_schema["required"] == ["csv_path"]
    assert {name: field["title"] for name, field in properties.items()}["csv_path"] == "CSV file"
    assert all(field["title"] != name and field.get("description") for name, field in properties.items())


# --- the command line ----------------------------------------------------------------------


def _cli(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"  # its temporary server, on a busy CI machine
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, str(FLOW_FILE), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_cli_with_an_invalid_phone_prints_the_errors_sends_nothing_and_fails(prefect_server: None) -> None:
    """One sentence and exit code 2, as `deflect-calls` answers it (issue 15, item 5); `--dry-run` shows the steps."""
    completed = _cli("--sandbox", "--phone", "+1 415 555 0100", PREFECT_API_URL=PREFECT_API_URL.value())
    assert completed.returncode == 2, completed.stdout + completed.stderr
    [line] = completed.stderr.strip().splitlines()
    assert "'+1 415•••0100' is not a phone number in E.164 format" in line  # masked (issue 9)
    assert "remove spaces: +1415•••0100" in line
    assert "Traceback" not in completed.stderr and "+1 415 555 0100" not in completed.stderr


def test_cli_dry_run_with_custom_attributes(prefect_server: None) -> None:
    completed = _cli(
        "--sandbox", "--dry-run", "-a", "issue_type=Billing", "-a", "vip:=true", PREFECT_API_URL=PREFECT_API_URL.value()
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert '"issue_type": "Billing",\n    "vip": true' in completed.stdout
    assert "**Dry run: nothing was sent.**" in completed.stdout
    assert "The sandbox received 0 request(s)" in completed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--block", "intercom"], "--phone is required"),
        (["--sandbox", "--block", "intercom"], "not allowed with argument"),
        (["--sandbox", "-a", "novalue"], "expected key=value or key:=json"),
        (["--sandbox", "-a", "n:=not json"], "the value after ':=' must be JSON"),
        (["--sandbox", "--intercom-version", "9.9"], "invalid choice"),
    ],
)
def test_cli_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        flows.main(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("issue_type=Billing", ("issue_type", "Billing")),
        ("note=a=b", ("note", "a=b")),
        ("vip:=true", ("vip", True)),
        ("seats:=3", ("seats", 3)),
        ('tags:=["a", "b"]', ("tags", ["a", "b"])),
        ("empty=", ("empty", "")),
    ],
)
def test_custom_attribute_arguments(text: str, expected: tuple[str, Any]) -> None:
    assert flows.parse_custom_attribute(text) == expected


@pytest.mark.e2e
def test_the_readme_command_works_from_a_fresh_prefect_home(tmp_path: Path) -> None:
    """`python flows/test_request.py --sandbox --phone ...` on Prefect's ephemeral server, nothing set up."""
    completed = _cli("--sandbox", "--phone", PHONE, PREFECT_HOME=str(tmp_path / "prefect-home"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "# Step 1 · Add the HTTP task" in out
    assert "## `POST /phone_call_redirects`" in out  # the reference
    assert "| Authorization | `Bearer [REDACTED]` |" in out  # the prepared request, token redacted
    assert "**200 OK**" in out and f"`{mask_phone(PHONE)}`" in out  # the response (phones masked, issue 9)
    assert "The sandbox received 1 request(s); 1 answered 200." in out
    assert "Test request completed" in out
