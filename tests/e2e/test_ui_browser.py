"""The deployments in a real browser and the README's deployment steps, on one Prefect server.

Everything is real and local: `prefect server start` on a loopback port with its own
PREFECT_HOME, the Intercom sandbox as its own process (`python -m prefect_intercom.sandbox`),
an `IntercomCredentials` block saved on that server, `python flows/test_request.py serve` in
a subprocess (Deployments -> test-request-served -> Run -> Quick run), and Debian's Chromium
driven by Playwright. The sandbox's `GET /sandbox/requests` counts what a real person would
have been texted.

On the same server, while the first tests run, the README's deployment steps are followed
from a fresh `git clone` of HEAD into a fresh virtualenv (`readme_route.py`): `pip install
'.[sandbox]'`, `prefect deploy --all`, a `process` worker, the README's own sandbox. The
`readme` tests run both deployments as the README says, then check in the browser what a
deflect-calls run that could not text everyone shows, and both deployments' Run forms.

Screenshots of every step land in `test-output/e2e-ui/` (git-ignored) and stay there, with a
`FAILED-*.png` of the page at the moment a test fails and the processes' logs in `logs/`.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from prefect_intercom.privacy import mask_phone

from ..conftest import PROJECT_ROOT
from .readme_route import ReadmeRoute

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT_DIR = PROJECT_ROOT / "test-output" / "e2e-ui"
FLOW_NAME = "test-request"
DEPLOYMENT_NAME = "test-request-served"  # prefect.yaml's test-request/test-request is the README route's
BLOCK_NAME = "e2e-sandbox"
TEST_PHONE = "+14155550100"
INVALID_PHONE = "+1 415-555-0100"
VALIDATION_MESSAGE = "is not a phone number in E.164 format"
# Generous upper bounds on waiting for something to happen (never assertions about speed).
STARTUP_SECONDS = 120
RUN_SECONDS = 180
UI_TIMEOUT_MS = 60_000
CREATE_ATTEMPTS = 3
README_POOL = "local"  # prefect.yaml's work pool, as the README creates it
README_BLOCK = "intercom-sandbox"

T = TypeVar("T")

SAVE_BLOCK = """
import csv
import os
from prefect_intercom import IntercomCredentials
IntercomCredentials(
    access_token=os.environ["E2E_INTERCOM_TOKEN"], base_url=os.environ["E2E_SANDBOX_URL"]
).save(os.environ["E2E_BLOCK_NAME"], overwrite=True)
"""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, probe: Callable[[], T | None], *, seconds: float, process: Any = None) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        result = probe()
        if result:
            return result
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}; see {OUTPUT_DIR / 'logs'}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {seconds:.0f} s; see {OUTPUT_DIR / 'logs'}")
        time.sleep(0.25)


def http_get_json(url: str) -> Any:
    """The JSON at `url`, or None while the server is not answering 200."""
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@dataclass
class Stack:
    """The running processes and where they listen."""

    api_url: str
    ui_url: str
    sandbox_url: str
    token: str
    prefect_home: Path
    env: dict[str, str]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    readme: ReadmeRoute | None = None
    readme_setting_up: threading.Thread | None = None
    readme_error: BaseException | None = None

    def sandbox_requests(self) -> list[dict[str, Any]]:
        """Everything the sandbox received so far (Authorization redacted by the sandbox)."""
        return httpx.get(f"{self.sandbox_url}/sandbox/requests", timeout=10).json()

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        """The flow run as the API returns it."""
        return httpx.get(f"{self.api_url}/flow_runs/{flow_run_id}", timeout=10).json()

    def deployment_flow_run_count(self) -> int:
        """How many flow runs the server holds (the served test-request deployment's only)."""
        return int(httpx.post(f"{self.api_url}/flow_runs/count", json={}, timeout=10).json())

    def wait_until_final(self, flow_run_id: str) -> dict[str, Any]:
        """Wait for the run to reach a final state; returns the run."""

        def final() -> dict[str, Any] | None:
            run = self.flow_run(flow_run_id)
            state = run.get("state") or {}
            return run if state.get("type") in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

        return wait_for(f"flow run {flow_run_id} to finish", final, seconds=RUN_SECONDS)

    def artifacts(self, flow_run_id: str) -> dict[str, str]:
        """The run's markdown artifacts by key."""
        response = httpx.post(
            f"{self.api_url}/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
            timeout=10,
        )
        return {artifact["key"]: artifact["data"] for artifact in response.json() if artifact.get("key")}

    def logs(self, flow_run_id: str) -> list[str]:
        """The run's log messages, as the API stores them."""
        response = httpx.post(
            f"{self.api_url}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}}, timeout=10
        )
        return [entry["message"] for entry in response.json()]


def _start(
    stack: Stack, name: str, command: list[str], cwd: Path = PROJECT_ROOT, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log = (OUTPUT_DIR / "logs" / f"{name}.log").open("wb")
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=stack.env if env is None else env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stopping it stops its children
    )
    stack.processes.append((name, process))
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Prefect server, sandbox, a saved block and the served deployment, all on loopback.

    When a selected test needs the README route (the `readme` fixture), its set-up starts here too, in a thread.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `bash .ci/setup --full` (apt-get install chromium)")
    shutil.rmtree(OUTPUT_DIR, ignore_errors=True)
    (OUTPUT_DIR / "logs").mkdir(parents=True)
    api_port, sandbox_port = free_port(), free_port()
    home = tmp_path_factory.mktemp("prefect-home")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{api_port}/api",
        PREFECT_UI_API_URL=f"http://127.0.0.1:{api_port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        # SQLite's busy wait: on a loaded machine 10 s (the default) was not always enough (a 503 in CI).
        PREFECT_SERVER_DATABASE_TIMEOUT="30",
        PREFECT_LOGGING_LEVEL="INFO",
    )
    stack = Stack(
        api_url=f"http://127.0.0.1:{api_port}/api",
        ui_url=f"http://127.0.0.1:{api_port}",
        sandbox_url=f"http://127.0.0.1:{sandbox_port}",
        token=f"e2e_{secrets.token_hex(16)}",
        prefect_home=home,
        env=env,
    )
    started = time.monotonic()
    server_ready = threading.Event()
    try:
        if any("readme" in getattr(item, "fixturenames", ()) for item in request.session.items):
            _set_up_the_readme_route_meanwhile(stack, api_port, tmp_path_factory.mktemp("readme-route"), server_ready)
        server = _start(
            stack,
            "prefect-server",
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(api_port)],
        )
        sandbox = _start(
            stack,
            "sandbox",
            [sys.executable, "-m", "prefect_intercom.sandbox", "--port", str(sandbox_port), "--token", stack.token],
        )
        wait_for(
            "the sandbox", lambda: http_get_json(f"{stack.sandbox_url}/sandbox/health"), seconds=30, process=sandbox
        )
        wait_for(
            "the Prefect server",
            lambda: http_get_json(f"{stack.api_url}/health"),
            seconds=STARTUP_SECONDS,
            process=server,
        )
        server_ready.set()
        subprocess.run(
            [sys.executable, "-c", SAVE_BLOCK],
            cwd=PROJECT_ROOT,
            env={
                **env,
                "E2E_INTERCOM_TOKEN": stack.token,
                "E2E_SANDBOX_URL": stack.sandbox_url,
                "E2E_BLOCK_NAME": BLOCK_NAME,
            },
            check=True,
            timeout=120,
        )
        served = _start(
            stack,
            "serve",
            [
                sys.executable, "flows/test_request.py", "serve",
                "--block", BLOCK_NAME, "--phone", TEST_PHONE, "--name", DEPLOYMENT_NAME,
            ],
        )  # fmt: skip
        wait_for(
            "the served deployment",
            lambda: http_get_json(f"{stack.api_url}/deployments/name/{FLOW_NAME}/{DEPLOYMENT_NAME}"),
            seconds=STARTUP_SECONDS,
            process=served,
        )
        print(f"\n[e2e] server, sandbox, block and served deployment ready in {time.monotonic() - started:.1f} s")
        yield stack
    finally:
        server_ready.set()  # a thread still waiting for the server goes on, and fails on its first command
        if stack.readme_setting_up is not None:
            stack.readme_setting_up.join(timeout=STARTUP_SECONDS)
        # The serving process and the worker first (they talk to the server while stopping), the server last.
        for _, process in reversed(stack.processes):
            _stop(process)


def _set_up_the_readme_route_meanwhile(stack: Stack, api_port: int, base: Path, server_ready: threading.Event) -> None:
    """Follow the README's deployment steps in a thread: the install while the server starts, the rest while
    the served deployment's tests run."""
    route = ReadmeRoute(
        project_root=PROJECT_ROOT, base=base, api_port=api_port, sandbox_port=free_port(), logs=OUTPUT_DIR / "logs"
    )
    stack.readme = route

    def start(name: str, command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return _start(stack, name, command, cwd=cwd, env=env)

    def set_up() -> None:
        try:
            route.set_up(start, lambda: server_ready.wait(STARTUP_SECONDS * 2))
        except BaseException as error:  # re-raised by the `readme` fixture, in the tests that need it
            stack.readme_error = error

    stack.readme_setting_up = threading.Thread(target=set_up, name="readme-route", daemon=True)
    stack.readme_setting_up.start()


@pytest.fixture(scope="module")
def readme(stack: Stack) -> ReadmeRoute:
    """The README route set up: both deployments made, the worker online, the README's sandbox answering."""
    assert stack.readme is not None and stack.readme_setting_up is not None
    stack.readme_setting_up.join(timeout=RUN_SECONDS * 3)
    if stack.readme_setting_up.is_alive():
        pytest.fail(f"the README's steps did not finish; see {OUTPUT_DIR / 'logs'}")
    if stack.readme_error is not None:
        raise stack.readme_error
    route = stack.readme
    wait_for("the README's sandbox", lambda: http_get_json(f"{route.sandbox_url}/sandbox/health"), seconds=60)

    def worker_online() -> bool:
        workers = httpx.post(f"{stack.api_url}/work_pools/{README_POOL}/workers/filter", json={}, timeout=10)
        return workers.status_code == 200 and any(worker.get("status") == "ONLINE" for worker in workers.json())

    wait_for("the README's worker", worker_online, seconds=STARTUP_SECONDS)
    print(f"\n[e2e] README route set up (seconds per step): {route.timings}")
    return route


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright's sync API."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="install with `bash .ci/setup --full`")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Camera:
    """Numbered screenshots of each step, plus one of the page when a test fails."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.taken: list[Path] = []

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        """Save a screenshot as `NN-name.png` (animations finished, so toasts are fully shown)."""
        path = OUTPUT_DIR / f"{len(list(OUTPUT_DIR.glob('[0-9][0-9]-*.png'))) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        self.taken.append(path)
        return path

    @contextmanager
    def on_failure(self, test_name: str) -> Iterator[None]:
        """Keep a screenshot of the page as it was when the test failed."""
        try:
            yield
        except BaseException:
            self.page.screenshot(path=str(OUTPUT_DIR / f"FAILED-{test_name}.png"), full_page=True)
            raise


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that never calls outside hosts (analytics is blocked)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    new_page = context.new_page()
    new_page.set_default_timeout(UI_TIMEOUT_MS)
    new_page.route("**/*amplitude.com/**", lambda route: route.abort())
    yield new_page
    context.close()


def open_deployment(page: Any, stack: Stack, camera: Camera) -> None:
    """Dashboard -> Deployments -> test-request, as a user clicks through it."""
    page.goto(stack.ui_url + "/")
    page.get_by_role("link", name="Deployments", exact=True).click()
    deployment_link = page.locator("a[href*='/deployments/deployment/']").filter(has_text=DEPLOYMENT_NAME).first
    deployment_link.wait_for()
    camera.shot("deployments-list")
    deployment_link.click()
    page.get_by_role("button", name="Run", exact=True).wait_for()
    page.get_by_text("flows/test_request.py:test_request").wait_for()  # the deployment's details have loaded


def start_run(page: Any, stack: Stack, menu_item: str, submit: Callable[[], None] | None = None) -> str:
    """Run -> `menu_item`; returns the id of the flow run the click created.

    The Prefect server on SQLite answers `503 Service Unavailable` when its database is busy
    (`prefect.server.api.server.is_client_retryable_exception`): nothing was created and the
    UI shows an error toast, so a user clicks again. The test does the same, at most
    `CREATE_ATTEMPTS` times, after checking that the refused click created no flow run.
    """
    deployment_page = page.url
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        runs_before = stack.deployment_flow_run_count()
        page.get_by_role("button", name="Run", exact=True).click()
        item = page.get_by_role("menuitem", name=menu_item)
        item.wait_for()
        if submit is None:
            with page.expect_response(_is_create_flow_run) as created:
                item.click()
        else:
            item.click()
            with page.expect_response(_is_create_flow_run) as created:
                submit()
        response = created.value
        if response.status == 503 and attempt < CREATE_ATTEMPTS:
            assert stack.deployment_flow_run_count() == runs_before, "a refused click created a flow run"
            print(f"\n[e2e] the Prefect server answered 503 (database busy) to click {attempt}; clicking again")
            time.sleep(2)
            page.goto(deployment_page)
            page.get_by_role("button", name="Run", exact=True).wait_for()
            continue
        assert response.status == 201, response.text()
        return response.json()["id"]
    raise AssertionError("unreachable")


def _is_create_flow_run(response: Any) -> bool:
    return response.request.method == "POST" and response.url.endswith("/create_flow_run")


def open_run_tab(page: Any, stack: Stack, flow_run_id: str, state: str, tab: str) -> None:
    """The run page (after the run is final, so nothing is still loading), on `tab`."""
    page.goto(f"{stack.ui_url}/v2/runs/flow-run/{flow_run_id}")
    page.get_by_text(state, exact=True).first.wait_for()
    page.get_by_role("tab", name=tab).click()


def shown_text(page: Any, expected: str, seconds: float = 10.0) -> str:
    """The page's visible text once it shows `expected` (the UI may re-render the page a moment after it
    first showed it, as CI once saw: a screenshot with the text, then a body read without it)."""
    deadline = time.monotonic() + seconds
    while True:
        text = page.locator("body").inner_text()
        if expected in text or time.monotonic() > deadline:
            return text
        time.sleep(0.25)


def open_artifact(page: Any, key: str) -> None:
    """Click the artifact card `key` on the run's Artifacts tab."""
    page.get_by_text(key, exact=True).first.click()
    page.wait_for_url("**/artifacts/artifact/**")


def assert_token_never_stored(stack: Stack, flow_run_id: str) -> None:
    """The token is nowhere: parameters, artifacts, logs, process output, PREFECT_HOME (the DB)."""
    run = stack.flow_run(flow_run_id)
    assert stack.token not in str(run["parameters"])
    assert stack.token not in str(stack.artifacts(flow_run_id))
    assert stack.token not in "\n".join(stack.logs(flow_run_id))
    for log in (OUTPUT_DIR / "logs").glob("*.log"):
        assert stack.token not in log.read_text(errors="replace"), log.name
    needle = stack.token.encode()
    for path in stack.prefect_home.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), f"the token is stored in {path}"


def test_quick_run_sends_one_test_request(stack: Stack, page: Any) -> None:
    camera = Camera(page)
    before = len(stack.sandbox_requests())
    started = time.monotonic()
    with camera.on_failure("quick-run"):
        open_deployment(page, stack, camera)
        camera.shot("deployment")
        flow_run_id = start_run(page, stack, "Quick run")
        page.locator("[data-sonner-toast]").filter(has_text="Flow run created").first.wait_for()
        camera.shot("quick-run-created")

        run = stack.wait_until_final(flow_run_id)
        assert run["state"]["type"] == "COMPLETED", run["state"]
        assert run["parameters"]["body"]["phone"] == TEST_PHONE  # the deployment's default parameters
        assert run["parameters"]["block_name"] == BLOCK_NAME

        open_run_tab(page, stack, flow_run_id, "Completed", "Artifacts")
        page.get_by_text("test-request-step-3-response", exact=True).first.wait_for()
        camera.shot("run-completed-artifacts")
        open_artifact(page, "test-request-step-3-response")
        page.get_by_text("200 OK").first.wait_for()
        camera.shot("response-artifact")
        shown = shown_text(page, "200 OK")
        assert "200 OK" in shown
        assert mask_phone(TEST_PHONE) in shown and TEST_PHONE not in shown  # phones are masked (issue 9)
        assert "phone_call_redirect" in shown

        received = stack.sandbox_requests()[before:]
        assert len(received) == 1, received
        assert received[0]["body"] == {"phone": TEST_PHONE}
        assert received[0]["status"] == 200
        assert received[0]["headers"]["authorization"] == "Bearer [REDACTED]"  # the sandbox's own redaction

        artifacts = stack.artifacts(flow_run_id)
        assert sorted(artifacts) == [
            "test-request-step-1-http-task",
            "test-request-step-2-api-reference",
            "test-request-step-3-response",
        ]
        assert "Bearer [REDACTED]" in artifacts["test-request-step-2-api-reference"]
        assert_token_never_stored(stack, flow_run_id)
    print(f"\n[e2e] quick run: click to checked artifact in {time.monotonic() - started:.1f} s")


def test_custom_run_with_an_invalid_phone_fails_and_sends_nothing(stack: Stack, page: Any) -> None:
    camera = Camera(page)
    before = len(stack.sandbox_requests())
    started = time.monotonic()
    with camera.on_failure("custom-run"):
        open_deployment(page, stack, camera)

        def fill_and_submit() -> None:
            phone = page.get_by_label("Phone", exact=True)
            phone.wait_for()
            assert phone.input_value() == TEST_PHONE  # the form starts from the deployment's defaults
            phone.fill(INVALID_PHONE)
            camera.shot("custom-run-form")
            page.get_by_role("button", name="Submit").click()

        flow_run_id = start_run(page, stack, "Custom run", submit=fill_and_submit)
        run = stack.wait_until_final(flow_run_id)
        assert run["state"]["type"] == "FAILED", run["state"]
        assert VALIDATION_MESSAGE in run["state"]["message"]
        assert run["parameters"]["body"]["phone"] == INVALID_PHONE

        open_run_tab(page, stack, flow_run_id, "Failed", "Logs")
        page.get_by_text(VALIDATION_MESSAGE).first.wait_for()
        camera.shot("failed-run-logs")

        page.get_by_role("tab", name="Artifacts").click()
        open_artifact(page, "test-request-step-2-api-reference")
        page.get_by_text("Invalid request body").first.wait_for()
        problem = page.get_by_text(VALIDATION_MESSAGE).first
        problem.wait_for()
        assert "remove spaces and punctuation: +1415•••0100" in shown_text(page, "remove spaces and punctuation")
        for attempt in range(3):  # the UI may re-render the artifact a moment after showing it
            try:
                page.get_by_text(VALIDATION_MESSAGE).first.scroll_into_view_if_needed()
                break
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(0.5)
        camera.shot("validation-artifact", full_page=False)  # the long reference above stays out of the shot

        assert stack.sandbox_requests()[before:] == []  # nothing was sent
        artifacts = stack.artifacts(flow_run_id)
        assert "Not sent" in artifacts["test-request-step-3-response"]
        assert_token_never_stored(stack, flow_run_id)
    print(f"\n[e2e] custom run: click to checked failure in {time.monotonic() - started:.1f} s")


FORM_TITLES = {
    "Request body": "The phone that receives the SMS (E.164) and optional custom attributes.",
    "Credentials block": "Name of your saved Intercom Credentials block (Blocks > Intercom Credentials).",
    "Intercom-Version": "The Intercom API version for this run only",
    "Dry run": "Validate and show what would be sent, but send nothing.",
    "API to test": 'A catalogue name, "METHOD /path" or words such as "deflect calls to messenger".',
}


def test_the_custom_run_form_shows_a_title_and_help_for_every_parameter(stack: Stack, page: Any) -> None:
    """Run > Custom run: human titles and help, not `block_name` or `dry_run`; the version is one dropdown."""
    camera = Camera(page)
    with camera.on_failure("custom-run-form-titles"):
        open_deployment(page, stack, camera)
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Custom run").click()
        page.get_by_label("Phone", exact=True).wait_for()
        for title, help_text in FORM_TITLES.items():
            page.get_by_text(re.compile(rf"^{re.escape(title)}( \(Optional\))?$")).first.wait_for()  # the label
            page.get_by_text(help_text).first.wait_for()
        camera.shot("custom-run-form-titles")
        shown = page.locator("main").inner_text() if page.locator("main").count() else page.locator("body").inner_text()
        for raw in ("block_name", "intercom_version", "dry_run"):
            assert raw not in shown, raw
        assert "the block's" in shown  # the version's default, in a dropdown with no "None" toggle


# --- the README's deployment route (issue 15, items 1, 2 and 6) -----------------------------------

UUID_LINE = re.compile(r"UUID: ([0-9a-f-]{36})")
PROBLEM_ROWS = [  # a spreadsheet's rows 2-5; the sandbox refuses +15005550001 (400 sms_failed)
    "+14155550110",
    "+14155550111",
    "+1 415 555 0199",
    "+15005550001",
]


def readme_sandbox_requests(route: ReadmeRoute) -> list[dict[str, Any]]:
    """What the README's sandbox received so far."""
    return httpx.get(f"{route.sandbox_url}/sandbox/requests", timeout=10).json()


def csv_phones(path: Path) -> list[str]:
    """The phone column of a CSV file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    column = lines[0].split(",").index("phone")
    return [line.split(",")[column] for line in lines[1:] if line]


def test_the_readme_deployment_steps_run_both_deployments_on_a_process_worker(
    stack: Stack, readme: ReadmeRoute
) -> None:
    """README: fresh clone, `pip install '.[sandbox]'`, `prefect deploy --all`, a worker, both runs Completed."""
    started = time.monotonic()
    assert readme.skipped == ["prefect server start"]  # the only README line the test does not run itself
    assert [command.split(" -p ")[0] for command in readme.run_commands] == [
        "prefect deployment run test-request/test-request",
        "prefect deployment run deflect-calls/deflect-calls",
    ]
    installed = readme.run("cd / && python -c 'import prefect_intercom; print(prefect_intercom.__file__)'", 90)
    assert installed.splitlines()[-1].startswith(str(readme.venv / "lib")), installed  # a plain install, not -e
    before = len(readme_sandbox_requests(readme))

    outputs = readme.run_together(readme.run_commands, 91)  # the two commands, typed in two terminals
    flow_run_ids = [UUID_LINE.findall(output)[0] for output in outputs]
    runs = [stack.wait_until_final(flow_run_id) for flow_run_id in flow_run_ids]
    for run in runs:
        assert (run["state"]["type"], run["state"]["name"]) == ("COMPLETED", "Completed"), (
            run["state"],
            stack.logs(run["id"])[-20:],
        )
        assert run["parameters"]["block_name"] == README_BLOCK
        assert run["work_pool_name"] == README_POOL  # a worker of the README's pool ran it, not `serve`
    test_request_run, deflect_calls_run = runs
    assert test_request_run["parameters"]["body"] == {"phone": TEST_PHONE}  # INTERCOM_TEST_PHONE at deploy time
    assert "3 row(s), everyone texted" in deflect_calls_run["state"]["message"]

    received = readme_sandbox_requests(readme)[before:]
    expected = [TEST_PHONE, *csv_phones(readme.clone / "docs" / "examples" / "callers.csv")]
    assert sorted(request["body"]["phone"] for request in received) == sorted(expected)
    assert {request["status"] for request in received} == {200}
    print(f"\n[e2e] README route: both runs, command to Completed, in {time.monotonic() - started:.1f} s")


def create_deflect_calls_run(stack: Stack, parameters: dict[str, Any]) -> str:
    """A run of the README's deflect-calls deployment through the API (a 503, SQLite busy, is retried); its id."""
    deployment = httpx.get(f"{stack.api_url}/deployments/name/deflect-calls/deflect-calls", timeout=10).json()
    for _ in range(5):  # a 503 is the server's SQLite busy (nothing created): retried, as Prefect's client does
        created = httpx.post(
            f"{stack.api_url}/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": parameters},
            timeout=30,
        )
        if created.status_code != 503:
            break
        time.sleep(1)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def save_block_for(stack: Stack, name: str, base_url: str) -> None:
    """A copy of the saved credentials block that sends to `base_url` (through the API: no process to start)."""
    slug = f"{stack.api_url}/block_types/slug/intercom-credentials/block_documents/name"
    saved = httpx.get(f"{slug}/{BLOCK_NAME}", params={"include_secrets": "true"}, timeout=10).json()
    created = httpx.post(
        f"{stack.api_url}/block_documents/",
        json={
            "name": name,
            "data": {**saved["data"], "base_url": base_url},
            "block_schema_id": saved["block_schema_id"],
            "block_type_id": saved["block_type_id"],
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text


@dataclass
class FinishedRun:
    """A flow run that reached its final state, and its report file."""

    id: str
    run: dict[str, Any]
    report: Path


@dataclass
class DeflectCallsRuns:
    """The module's deflect-calls runs on the README's worker (made once, for several run pages)."""

    problems: FinishedRun
    unknown: FinishedRun
    faulty_sandbox_url: str


@pytest.fixture(scope="module")
def deflect_calls_runs(stack: Stack, readme: ReadmeRoute) -> DeflectCallsRuns:
    """Two runs, started together so the worker runs them at once.

    `problems`: `PROBLEM_ROWS` on the README's sandbox (sent, sent, rejected, not sent), with a report file.
    `unknown`: one row sent to a sandbox that answers every send with a 503 after texting the person.
    """
    port = free_port()
    faulty = _start(
        stack,
        "sandbox-503",
        [
            sys.executable, "-m", "prefect_intercom.sandbox", "--port", str(port), "--token", stack.token,
            "--fault", "503=1", "--fault-effect", "1",
        ],
    )  # fmt: skip
    faulty_url = f"http://127.0.0.1:{port}"
    callers = readme.base / "callers-with-problems.csv"
    callers.write_text("phone,issue_type\n" + "".join(f"{phone},Billing\n" for phone in PROBLEM_ROWS))
    report = readme.base / "callers-with-problems-report.csv"
    parameters = {"csv_path": str(callers), "block_name": README_BLOCK, "report_path": str(report)}
    problems_id = create_deflect_calls_run(stack, parameters)
    one_caller = readme.base / "callers-unknown.csv"
    one_caller.write_text("phone,issue_type\n+14155550130,Billing\n")
    unknown_report = readme.base / "callers-unknown-report.csv"
    wait_for("the 503 sandbox", lambda: http_get_json(f"{faulty_url}/sandbox/health"), seconds=60, process=faulty)
    save_block_for(stack, "e2e-sandbox-503", faulty_url)
    parameters = {"csv_path": str(one_caller), "block_name": "e2e-sandbox-503", "report_path": str(unknown_report)}
    unknown_id = create_deflect_calls_run(stack, parameters)
    return DeflectCallsRuns(
        problems=FinishedRun(problems_id, stack.wait_until_final(problems_id), report),
        unknown=FinishedRun(unknown_id, stack.wait_until_final(unknown_id), unknown_report),
        faulty_sandbox_url=faulty_url,
    )


def test_a_deflect_calls_run_that_did_not_text_everyone_says_so_on_its_run_page(
    stack: Stack, deflect_calls_runs: DeflectCallsRuns, page: Any
) -> None:
    """Run page of a worker's run with a refused and a not-sent row: the state's name, the summary, WARNINGs."""
    camera = Camera(page)
    with camera.on_failure("deflect-calls-problems"):
        flow_run_id, run = deflect_calls_runs.problems.id, deflect_calls_runs.problems.run
        assert (run["state"]["type"], run["state"]["name"]) == ("COMPLETED", "Completed with problems"), run["state"]

        open_run_tab(page, stack, flow_run_id, "Completed with problems", "Artifacts")
        page.get_by_text("deflect-calls-summary", exact=True).first.wait_for()
        camera.shot("problems-run-artifacts")
        open_artifact(page, "deflect-calls-summary")
        shown = shown_text(page, "row 5 (")
        camera.shot("problems-summary-artifact")
        assert "row 4 (" in shown and "row 5 (" in shown and "To resume" in shown, shown
        assert "5500001" not in shown and "4155550199" not in shown  # phones masked

        # The task's table artifact at 1,400 px (item 4): outcome, reason and row first, all three in view.
        open_run_tab(page, stack, flow_run_id, "Completed with problems", "Artifacts")
        open_artifact(page, "intercom-batch-report")
        # The artifact's own table (its description's Markdown tables are shown above it): the one with a row column.
        table = page.locator("table", has=page.locator("th", has_text=re.compile(r"^\s*row\s*$", re.IGNORECASE)))
        table.first.wait_for()
        camera.shot("problems-table-artifact", full_page=False)
        headers = table.first.locator("th")
        names = [" ".join(text.split()).lower() for text in headers.all_inner_texts()]
        assert names[:3] == ["outcome", "reason", "row"], names
        width = page.viewport_size["width"]
        for index in range(3):
            box = headers.nth(index).bounding_box()
            assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= width, (names[index], box, width)
        shown = shown_text(page, "not_sent")
        assert "not_sent" in shown and "rejected" in shown, shown

        open_run_tab(page, stack, flow_run_id, "Completed with problems", "Logs")
        for line in ("1 row(s) not sent: row 5", "1 row(s) rejected: row 4"):
            message = log_line_at_level(page, line, "WARNING")
        message.scroll_into_view_if_needed()
        camera.shot("problems-run-logs", full_page=False)
        warnings = httpx.post(
            f"{stack.api_url}/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [flow_run_id]}, "level": {"ge_": 30}}},
            timeout=10,
        ).json()
        messages = [entry["message"] for entry in warnings]
        assert any("1 row(s) not sent: row 5" in message for message in messages), messages
        assert any("1 row(s) rejected: row 4" in message for message in messages), messages


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _is_level(level: str) -> str:
    return f"normalize-space(text())='{level}'"


def log_line_at_level(page: Any, line: str, level: str) -> Any:
    """The Logs tab's entry showing `line`, checked to carry the one level badge `level`."""
    message = page.get_by_text(line).first
    message.wait_for()
    # The log line's row: the nearest enclosing element that holds a level badge (INFO, WARNING, ...).
    entry = message.locator(f"xpath=ancestor::*[.//*[{' or '.join(map(_is_level, LEVELS))}]][1]")
    badges = [name for name in LEVELS if entry.get_by_text(name, exact=True).count()]
    assert badges == [level], (line, entry.inner_text())
    return message


RUN_FORM_FIRST_FIELDS = {
    "deflect-calls": ["CSV file", "Credentials block", "Dry run", "Report CSV"],
    "test-request": ["Request body", "Credentials block", "Intercom-Version", "Dry run"],
}


@pytest.mark.parametrize("deployment", sorted(RUN_FORM_FIRST_FIELDS))
def test_the_run_form_of_each_readme_deployment_has_plain_fields_in_the_order_users_set_them(
    stack: Stack, readme: ReadmeRoute, page: Any, deployment: str
) -> None:
    """Run > Custom run of prefect.yaml's deployments: no "str | None" toggles, the first fields first (item 6)."""
    camera = Camera(page)
    with camera.on_failure(f"run-form-{deployment}"):
        deployment_id = httpx.get(f"{stack.api_url}/deployments/name/{deployment}/{deployment}", timeout=10).json()[
            "id"
        ]
        page.goto(f"{stack.ui_url}/v2/deployments/deployment/{deployment_id}")
        page.get_by_role("button", name="Run", exact=True).wait_for()
        titles = RUN_FORM_FIRST_FIELDS[deployment]

        def check_fill_and_submit() -> None:
            labels = [page.get_by_text(re.compile(rf"^{re.escape(title)}( \(Optional\))?$")).first for title in titles]
            for label in labels:
                label.wait_for()
            camera.shot(f"run-form-{deployment}")
            shown = shown_text(page, titles[-1])
            assert "str | None" not in shown and "Property is type" not in shown, shown
            tops = [label.bounding_box()["y"] for label in labels]
            assert tops == sorted(tops), dict(zip(titles, tops, strict=True))
            # The form as a user fills it: the server accepts what it sends (a null in the body was a 409).
            if deployment == "deflect-calls":
                page.get_by_label(re.compile(r"^CSV file")).fill("docs/examples/callers.csv")
            page.get_by_label(re.compile(r"^Credentials block")).fill(README_BLOCK)
            page.get_by_label(re.compile(r"^Dry run")).click()
            page.get_by_role("button", name="Submit").click()

        before = len(readme_sandbox_requests(readme))
        flow_run_id = start_run(page, stack, "Custom run", submit=check_fill_and_submit)
        run = stack.wait_until_final(flow_run_id)
        assert run["state"]["type"] == "COMPLETED", (run["state"], stack.logs(run["id"])[-10:])
        assert run["parameters"]["dry_run"] is True and run["parameters"]["block_name"] == README_BLOCK
        assert readme_sandbox_requests(readme)[before:] == []  # a dry run sends nothing


# --- the operator's path (issue 15): the table artifact at 1,400 px, a cleared optional field ----------------

FIRST_COLUMNS = ["outcome", "reason", "row"]
TABLE_GEOMETRY = """(table) => {
    let box = table.parentElement;  // the box the table scrolls in: its nearest ancestor that clips
    while (box && !['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(box).overflowX)) {
        box = box.parentElement;
    }
    box = box || document.documentElement;
    const edges = (element) => {
        const rect = element.getBoundingClientRect();
        return {left: rect.left, right: rect.right};
    };
    return {
        box: {...edges(box), scrollLeft: box.scrollLeft},
        table: table.getBoundingClientRect().width,
        page: document.documentElement.scrollWidth,
        rows: [...table.rows].map((row) => [...row.cells].map((cell) => ({
            text: cell.innerText.trim(), ...edges(cell), clipped: cell.scrollWidth > cell.clientWidth + 1,
        }))),
    };
}"""


def whole_or_cut_at_a_word(shown: str, full: str) -> bool:
    """Whether `shown` is `full` (spaces collapsed), or its start cut at a word boundary and ended with "…"."""
    full = " ".join(full.split())
    if shown == full:
        return True
    start = shown.removesuffix("…")
    return shown.endswith("…") and full.startswith(start) and not full[len(start)].isalnum() and len(start) > 0


def test_the_table_artifact_reads_at_1400_px_outcome_reason_and_row_in_view_no_message_cut_mid_word(
    stack: Stack, deflect_calls_runs: DeflectCallsRuns, page: Any
) -> None:
    """Issue 15: the table artifact at a 1,400 px window: its first columns in view, messages whole or cut at a word."""
    camera = Camera(page)
    with camera.on_failure("table-artifact-1400"):
        problems = deflect_calls_runs.problems
        flow_run_id = problems.id
        assert problems.run["state"]["name"] == "Completed with problems", problems.run["state"]
        with problems.report.open(encoding="utf-8", newline="") as file:
            full_messages = {row["row"]: row["message"] for row in csv.DictReader(file)}
        assert max(map(len, full_messages.values())) > 150, full_messages  # a message too long for its column

        open_run_tab(page, stack, flow_run_id, "Completed with problems", "Artifacts")
        open_artifact(page, "intercom-batch-report")
        table = page.locator("table", has=page.locator("th", has_text=re.compile(r"^\s*row\s*$", re.IGNORECASE)))
        table.first.wait_for()
        page.get_by_text("rejected", exact=True).first.wait_for()
        camera.shot("table-artifact-1400", full_page=False)
        geometry = table.first.evaluate(TABLE_GEOMETRY)
        print(
            f"\n[e2e] table artifact at 1,400 px: table {geometry['table']:.0f} px in a box from "
            f"{geometry['box']['left']:.0f} to {geometry['box']['right']:.0f} px; page {geometry['page']} px wide"
        )
        header, *cells = geometry["rows"]
        names = [cell["text"].lower() for cell in header]
        print(f"[e2e] its columns' left edges (px): { {cell['text']: round(cell['left']) for cell in header} }")
        assert names[:3] == FIRST_COLUMNS, names
        assert len(cells) == len(PROBLEM_ROWS), geometry["rows"]
        width = page.viewport_size["width"]
        assert geometry["page"] <= width, geometry["page"]  # the page itself never scrolls sideways
        box = geometry["box"]
        assert box["scrollLeft"] == 0, box
        for row in (header, *cells):  # the first three columns, headers and cells, wholly inside the visible box
            for cell in row[:3]:
                assert box["left"] <= cell["left"] and cell["right"] <= min(box["right"], width), (cell, box)
                assert not cell["clipped"], cell
        by_name = [dict(zip(names, (cell["text"] for cell in row), strict=True)) for row in cells]
        assert sorted(row["outcome"] for row in by_name) == ["not_sent", "rejected", "sent", "sent"], by_name
        assert {row["row"]: row["reason"] for row in by_name if row["outcome"] != "sent"} == {
            "4": "invalid",
            "5": "400 sms_failed",
        }, by_name
        messages = names.index("message")
        for row in (header, *cells):  # the message starts in view too: read without scrolling sideways
            assert box["left"] <= row[messages]["left"] < box["right"] - 100, (row[messages], box)
        for row in cells:  # a message is shown whole (the box scrolls to it), never hidden by the cell's width
            assert not row[messages]["clipped"], row[messages]
        for row in by_name:
            assert whole_or_cut_at_a_word(row["message"], full_messages[row["row"]]), (row, full_messages[row["row"]])
        assert any(row["message"].endswith("…") for row in by_name), by_name  # the long one was shortened
        table.first.locator("td").last.scroll_into_view_if_needed()
        camera.shot("table-artifact-1400-messages", full_page=False)


CLEARED_FIELDS = {"Requests in flight": "4", "Batch key": "spring-campaign"}


def test_clearing_an_optional_field_of_the_deflect_calls_run_form_still_creates_the_run(
    stack: Stack, readme: ReadmeRoute, page: Any
) -> None:
    """Issue 15: type into optional fields of Run > Custom run, clear them again, submit: a run, not a 409."""
    camera = Camera(page)
    sent: list[Any] = []

    def record(request: Any) -> None:
        if _is_create_flow_run_request(request):
            sent.append(request.post_data_json)

    page.on("request", record)
    with camera.on_failure("run-form-cleared-fields"):
        deployment_id = httpx.get(f"{stack.api_url}/deployments/name/deflect-calls/deflect-calls", timeout=10).json()[
            "id"
        ]
        page.goto(f"{stack.ui_url}/v2/deployments/deployment/{deployment_id}")
        page.get_by_role("button", name="Run", exact=True).wait_for()

        def fill_clear_and_submit() -> None:
            page.get_by_label(re.compile(r"^CSV file")).fill("docs/examples/callers.csv")
            page.get_by_label(re.compile(r"^Credentials block")).fill(README_BLOCK)
            page.get_by_label(re.compile(r"^Dry run")).click()
            for title, value in CLEARED_FIELDS.items():
                field = page.get_by_label(re.compile(rf"^{re.escape(title)}"))
                field.click()
                field.press("Control+a")  # the field may hold its default (0): the user types over it
                field.press_sequentially(value)
                assert field.input_value() == value
                field.press("Control+a")
                field.press("Backspace")
                assert field.input_value() == ""
            camera.shot("run-form-cleared-fields")
            page.get_by_role("button", name="Submit").click()

        before = len(readme_sandbox_requests(readme))
        flow_run_id = start_run(page, stack, "Custom run", submit=fill_clear_and_submit)
        print(f"\n[e2e] the Run form sent, after clearing {sorted(CLEARED_FIELDS)}: {sent[-1]}")
        run = stack.wait_until_final(flow_run_id)
        assert run["state"]["type"] == "COMPLETED", (run["state"], stack.logs(run["id"])[-10:])
        assert run["parameters"]["dry_run"] is True
        assert run["parameters"].get("concurrency") in (None, 0) and run["parameters"].get("batch_key") in (None, "")
        assert readme_sandbox_requests(readme)[before:] == []  # a dry run sends nothing


def _is_create_flow_run_request(request: Any) -> bool:
    return request.method == "POST" and request.url.endswith("/create_flow_run")


def test_a_deflect_calls_run_with_an_unknown_outcome_shows_failed_and_a_warning_on_its_run_page(
    stack: Stack, deflect_calls_runs: DeflectCallsRuns, page: Any
) -> None:
    """Issue 15: a row whose answer was a 503 (the SMS may have gone out) makes the run Failed, with a WARNING line."""
    camera = Camera(page)
    with camera.on_failure("unknown-outcome"):
        flow_run_id, run = deflect_calls_runs.unknown.id, deflect_calls_runs.unknown.run
        assert (run["state"]["type"], run["state"]["name"]) == ("FAILED", "Failed"), run["state"]
        assert "1 unknown" in run["state"]["message"], run["state"]
        assert run["run_count"] == 1, run  # no automatic retry: it would end "Completed with problems"
        received = httpx.get(f"{deflect_calls_runs.faulty_sandbox_url}/sandbox/requests", timeout=10).json()
        assert [(request["status"], request["fault"]) for request in received] == [(503, "503")], received
        with deflect_calls_runs.unknown.report.open(encoding="utf-8", newline="") as file:
            assert [row["outcome"] for row in csv.DictReader(file)] == ["unknown"]

        open_run_tab(page, stack, flow_run_id, "Failed", "Logs")
        line = "1 row(s) unknown (may have been texted): row 2"
        message = log_line_at_level(page, line, "WARNING")
        message.scroll_into_view_if_needed()
        camera.shot("unknown-outcome-run-logs", full_page=False)
        shown = shown_text(page, line)
        assert "4155550130" not in shown  # the phone is masked
