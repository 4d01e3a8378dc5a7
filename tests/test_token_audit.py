"""Token audit: the access token appears nowhere a user, a log or a database could show it.

A dedicated `prefect server start` (its own PREFECT_HOME and SQLite file) receives the runs of
`tests/audit_scenarios.py`, which uses the distinctive `SECRET_TOKEN` in the test-request flow,
the deflect-calls flow and the tasks, for success, validation failure, 401 and 500. Then the
audit searches, for the token, its distinctive part and its base64 forms:

- every text the scenarios could show (block, client, results, states, exceptions, tracebacks);
- every log line of the scenario process (all loggers, DEBUG and up, httpx included);
- through the API: flow runs (parameters, states), task runs, logs, artifacts, block
  documents and events;
- after the server stopped: the bytes of every file in PREFECT_HOME (SQLite database, WAL,
  result storage) and the server's own output.

Prefect stores a block's secret fields encrypted (Fernet) in its database, with the key in the
same database by default: the audit proves the raw token bytes are absent, which is what
encryption at rest gives; it is not a defence against someone who can read the whole database.
A positive control (a marker sent next to the token everywhere) must be found in the same
places, so the search cannot pass by seeing nothing.

Then hostile servers (`tests/hostile_scenarios.py`): answers that echo the token (as it is,
JSON-escaped, URL-encoded) across the 300-character cut of error texts, in headers and the
reason phrase, while httpx, httpcore and aiohttp log at DEBUG into the same server
(`PREFECT_LOGGING_EXTRA_LOGGERS`). No 10-character piece of that token, and no full phone
number the tasks texted, may be in any text, log line, API view, file under PREFECT_HOME or
the database; the controls (httpcore's DEBUG record of the echoed headers, the masked phone,
a marker) must be.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .audit_scenarios import MARKER
from .conftest import PROJECT_ROOT, SECRET_TOKEN
from .hostile_scenarios import (
    CANARY_HEADER,
    CANARY_TOKEN,
    PARAMETER_PHONE,
    SHAPES,
    TASK_PHONE,
    TASK_PHONE_MASKED,
)
from .hostile_scenarios import MARKER as HOSTILE_MARKER
from .leaks import exposed, phone_shown

pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 120
SCENARIO_SECONDS = 420
NEEDLES = {
    "token": SECRET_TOKEN.encode(),
    "distinctive part": SECRET_TOKEN.split("_")[-1].encode(),
    "base64": base64.b64encode(SECRET_TOKEN.encode()).rstrip(b"="),
    "base64 url": base64.urlsafe_b64encode(SECRET_TOKEN.encode()).rstrip(b"="),
    "bearer base64": base64.b64encode(f"Bearer {SECRET_TOKEN}".encode()).rstrip(b"="),
    "utf-16": SECRET_TOKEN.encode("utf-16-le"),
}


def _found(data: bytes) -> list[str]:
    return [name for name, needle in NEEDLES.items() if needle in data]


@dataclass
class AuditServer:
    """A Prefect server of the audit's own."""

    api_url: str
    home: Path
    database: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def post(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        response = httpx.post(f"{self.api_url}{path}", json=payload or {}, timeout=30)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def audit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditServer]:
    """`prefect server start` on a free loopback port with its own home and SQLite file."""
    root = tmp_path_factory.mktemp("token-audit")
    home, database, port = root / "prefect-home", root / "audit.db", _free_port()
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{database}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="DEBUG",
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore",
    )
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = AuditServer(f"http://127.0.0.1:{port}/api", home, database, log_path, process, env)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the Prefect server exited:\n{log_path.read_text(errors='replace')}", pytrace=False)
            try:
                if httpx.get(f"{server.api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the Prefect server did not start:\n{log_path.read_text(errors='replace')}", pytrace=False)
            time.sleep(0.5)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def audit(audit_server: AuditServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the scenarios against the audit server; returns what they report, plus their logs."""
    output = tmp_path_factory.mktemp("audit-output") / "report.json"
    finished = subprocess.run(
        [sys.executable, "-m", "tests.audit_scenarios", str(output)],
        cwd=PROJECT_ROOT,
        env=audit_server.env,
        capture_output=True,
        timeout=SCENARIO_SECONDS,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr.decode(errors="replace")[-5000:]
    report = json.loads(output.read_text())
    report["process output"] = finished.stdout + finished.stderr
    return report


def test_the_scenarios_ran(audit: dict[str, Any]) -> None:
    assert len(audit["flow_runs"]) == 15
    assert audit["received"] >= 10  # requests that reached the three sandboxes
    logs = audit["process output"].decode(errors="replace")
    assert "Intercom answered 200" in logs and "HTTP 401" in logs and "HTTP 500" in logs
    assert "nothing was sent" in logs


def test_no_text_a_user_sees_holds_the_token(audit: dict[str, Any]) -> None:
    texts = "\n".join(audit["texts"]).encode()
    assert MARKER.encode() in texts
    assert _found(texts) == []


def test_no_log_line_of_the_run_holds_the_token(audit: dict[str, Any]) -> None:
    output: bytes = audit["process output"]
    assert MARKER.encode() in output or b"httpcore" in output
    assert b"httpx" in output and b"DEBUG" in output  # every logger was captured
    leaking = [line for line in output.splitlines() if _found(line)]
    assert leaking == []


def test_the_api_shows_no_token(audit: dict[str, Any], audit_server: AuditServer) -> None:
    flow_run_ids = list(audit["flow_runs"].values())
    views = {
        "flow runs": audit_server.post("/flow_runs/filter", {"flow_runs": {"id": {"any_": flow_run_ids}}}),
        "task runs": audit_server.post("/task_runs/filter", {"limit": 200}),
        "logs": audit_server.post("/logs/filter", {"limit": 200})
        + audit_server.post("/logs/filter", {"limit": 200, "offset": 200})
        + audit_server.post("/logs/filter", {"limit": 200, "offset": 400}),
        "artifacts": audit_server.post("/artifacts/filter", {"limit": 200}),
        "block documents": audit_server.post("/block_documents/filter", {"include_secrets": False}),
        "events": audit_server.post("/events/filter", {"limit": 50}),
    }
    flow_runs = views["flow runs"]
    assert len(flow_runs) == len(flow_run_ids)
    assert {run["state"]["type"] for run in flow_runs} == {"COMPLETED", "FAILED"}
    assert any(MARKER in json.dumps(run["parameters"]) for run in flow_runs)  # parameters are stored ...
    assert any(run["name"] == "audit-ok" for run in views["block documents"])
    assert views["logs"] and views["artifacts"]
    for name, view in views.items():
        assert _found(json.dumps(view).encode()) == [], name  # ... and none holds the token


@pytest.fixture(scope="module")
def hostile(audit_server: AuditServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the hostile scenarios against the audit server, the HTTP libraries logging into it at DEBUG."""
    output = tmp_path_factory.mktemp("hostile-output") / "report.json"
    env = {**audit_server.env, "PREFECT_LOGGING_EXTRA_LOGGERS": "httpx,httpcore,aiohttp"}
    finished = subprocess.run(
        [sys.executable, "-m", "tests.hostile_scenarios", str(output)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        timeout=SCENARIO_SECONDS,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr.decode(errors="replace")[-5000:]
    report = json.loads(output.read_text())
    report["process output"] = (finished.stdout + finished.stderr).decode(errors="replace")
    return report


def _dump(view: Any) -> str:
    return json.dumps(view, ensure_ascii=False)


def test_hostile_answers_leave_no_piece_of_the_token_and_no_full_phone_in_what_a_user_sees(
    hostile: dict[str, Any],
) -> None:
    assert len(hostile["flow_runs"]) == 2 * len(SHAPES) + 3
    assert hostile["received"] == 2 * len(SHAPES) + 2  # the invalid phone sent nothing
    texts = hostile["texts"]
    assert any(f"remove spaces: {TASK_PHONE_MASKED}" in text for text in texts)  # the control
    assert exposed(texts, CANARY_TOKEN) == []
    assert not phone_shown(texts, TASK_PHONE)


def test_debug_logs_of_the_http_libraries_hold_no_piece_of_the_token(hostile: dict[str, Any]) -> None:
    lines = hostile["process output"].splitlines()
    assert any(CANARY_HEADER in line and "httpcore" in line for line in lines)  # DEBUG headers were logged
    assert any("HTTP Request: POST" in line for line in lines)  # ... and httpx's line with the reason phrase
    assert exposed(lines, CANARY_TOKEN) == []
    assert not phone_shown(lines, TASK_PHONE)


def _all_logs(audit_server: AuditServer, flow_run_ids: list[str]) -> list[Any]:
    logs: list[Any] = []
    for page in range(100):  # bounded
        batch = audit_server.post(
            "/logs/filter",
            {"logs": {"flow_run_id": {"any_": flow_run_ids}}, "limit": 200, "offset": 200 * page},
        )
        logs += batch
        if len(batch) < 200:
            break
    return logs


def test_the_api_shows_no_piece_of_an_echoed_token_and_phones_only_masked(
    hostile: dict[str, Any], audit_server: AuditServer
) -> None:
    flow_run_ids = list(hostile["flow_runs"].values())
    by_run = {"flow_run_id": {"any_": flow_run_ids}}
    views = {
        "flow runs": audit_server.post("/flow_runs/filter", {"flow_runs": {"id": {"any_": flow_run_ids}}}),
        "task runs": audit_server.post("/task_runs/filter", {"flow_runs": {"id": {"any_": flow_run_ids}}}),
        "logs": _all_logs(audit_server, flow_run_ids),
        "artifacts": audit_server.post("/artifacts/filter", {"artifacts": by_run, "limit": 200}),
        "events": audit_server.post("/events/filter", {"limit": 50}),
    }
    logs, artifacts = _dump(views["logs"]), _dump(views["artifacts"])
    assert CANARY_HEADER in logs  # the control: httpcore's DEBUG records reached Prefect's API
    assert TASK_PHONE_MASKED in logs and HOSTILE_MARKER in logs
    assert PARAMETER_PHONE in _dump(views["flow runs"])  # parameters are stored as given (docs/security.md)
    assert "+1415•••0123" in artifacts and PARAMETER_PHONE not in artifacts  # ... artifacts mask them
    for name, view in views.items():
        text = _dump(view)
        assert exposed(text, CANARY_TOKEN) == [], name
        assert not phone_shown(text, TASK_PHONE), name


def test_the_database_and_every_file_of_the_server_hold_no_token(
    audit: dict[str, Any], audit_server: AuditServer
) -> None:
    audit_server.stop()  # the database is complete on disk (WAL checkpointed) once the server is gone
    files = [path for path in audit_server.home.rglob("*") if path.is_file()]
    files += [path for path in audit_server.database.parent.glob(audit_server.database.name + "*")]
    files.append(audit_server.log_path)
    assert audit_server.database in files
    database = audit_server.database.read_bytes()
    assert MARKER.encode() in database  # the control: parameters, logs and artifacts are in this file
    assert b"audit-ok" in database  # the block documents too (their secret field encrypted)
    leaking = {str(path): _found(path.read_bytes()) for path in files}
    assert {path: found for path, found in leaking.items() if found} == {}


def test_the_database_and_every_file_hold_no_piece_of_an_echoed_token_and_no_full_task_phone(
    hostile: dict[str, Any], audit_server: AuditServer
) -> None:
    audit_server.stop()
    files = [path for path in audit_server.home.rglob("*") if path.is_file()]
    files += [path for path in audit_server.database.parent.glob(audit_server.database.name + "*")]
    files.append(audit_server.log_path)
    database = audit_server.database.read_bytes()
    assert CANARY_HEADER.encode() in database  # the controls: DEBUG records of httpcore ...
    assert TASK_PHONE_MASKED.encode() in database  # ... the masked phone of the tasks' logs
    assert HOSTILE_MARKER.encode() in database
    leaking = {}
    for path in files:
        text = path.read_bytes().decode("latin-1")
        found = exposed(text, CANARY_TOKEN) + (["the task phone"] if phone_shown(text, TASK_PHONE) else [])
        if found:
            leaking[str(path)] = found
    assert leaking == {}
