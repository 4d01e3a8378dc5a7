"""Shared fixtures: a real Prefect server (test harness), a real sandbox over loopback."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from prefect_intercom import IntercomCredentials
from prefect_intercom.sandbox import Sandbox

# Every Prefect server the tests start (the harness, `prefect server start`, temporary servers of
# child commands) inherits this: no telemetry heartbeat writing to their SQLite files while tests
# do, and no DNS look-ups on a machine without internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Intercom's own OpenAPI description (MIT, notice in its README), copied from ../shared.
OPENAPI_DIR = PROJECT_ROOT / "tests" / "data" / "intercom-openapi"
# A distinctive token: tests search logs, errors and artifacts for it.
SECRET_TOKEN = "tok_SECRET_6f1c9e2a7b4d4e0f8a1b2c3d4e5f6a7b"


def batch_key_of_test(prefix: str) -> str:
    """`prefix` and letters drawn from the running test's id: one batch key per test.

    A sandbox's URL (its port) can be reused by a later test on the same Prefect server, and a
    ledger's scope is its URL: a shared key would then meet an earlier test's run on record.
    """
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    digest = hashlib.sha256(test.encode()).digest()[:8]
    return f"{prefix}-" + "".join(chr(ord("a") + byte % 26) for byte in digest)  # letters: never phone-like


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real Prefect API server (Prefect's own test harness) for the whole session."""
    # Up to 3 minutes: on a loaded 2-core CI machine the server's start (imports, migrations) took 60 s.
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A running sandbox on a free loopback port that accepts `SECRET_TOKEN`."""
    with Sandbox(token=SECRET_TOKEN) as running:
        yield running


@pytest.fixture
def credentials(sandbox: Sandbox) -> IntercomCredentials:
    """Credentials pointing at the sandbox."""
    return IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)


def clear_of_window_edge(window: float, margin: float) -> None:
    """Wait past the next wall-clock window edge when fewer than `margin` seconds are left before it.

    The sandbox aligns its rate-limit windows on multiples of their length (as Intercom's UNIX
    reset time implies). A test that counts what one window lets through must not straddle two:
    run at 21:59:58, a 2-hour window lets two sends through before 22:00 and two more after.
    """
    left = window - time.time() % window
    if left < margin:
        time.sleep(left + 0.05)


# The slowest test files, slowest first (seconds of one CI run, measured with PYTEST_TIMINGS below).
# `.ci/test` runs whole files side by side (`--dist loadfile --no-loadscope-reorder`): starting the
# longest first keeps one worker from being left with a three-minute file at the end.
SLOWEST_FILES_FIRST = (
    "tests/e2e/test_ui_browser.py",
    "tests/test_packaging.py",
    "tests/test_deflect_calls_resume.py",
    "tests/test_batch_crash.py",
    "tests/test_batch_lease.py",
    "tests/test_cli_answers.py",
    "tests/test_deflect_calls_input.py",
    "tests/test_token_audit.py",
    "tests/test_hostile_server.py",
    "tests/test_batch.py",
    "tests/test_test_request_flow.py",
    "tests/distributed/test_kill_and_resume.py",
    "tests/test_hosts.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (see `SLOWEST_FILES_FIRST`); the order within a file is kept."""
    rank = {path: place for place, path in enumerate(SLOWEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """With `PYTEST_TIMINGS=<file>`, append each phase's duration as it ends (to refresh the list above)."""
    import os

    if (path := os.environ.get("PYTEST_TIMINGS")) and not os.environ.get("PYTEST_XDIST_WORKER"):
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{report.duration:.2f}\t{report.when}\t{report.nodeid}\n")
