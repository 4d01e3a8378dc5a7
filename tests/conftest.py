"""Shared fixtures: a real Prefect server (test harness), a real sandbox over loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from prefect_intercom import IntercomCredentials
from prefect_intercom.sandbox import Sandbox

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Intercom's own OpenAPI description (MIT, notice in its README), copied from ../shared.
OPENAPI_DIR = PROJECT_ROOT / "tests" / "data" / "intercom-openapi"
# A distinctive token: tests search logs, errors and artifacts for it.
SECRET_TOKEN = "tok_SECRET_6f1c9e2a7b4d4e0f8a1b2c3d4e5f6a7b"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real Prefect API server (Prefect's own test harness) for the whole session."""
    with prefect_test_harness(server_startup_timeout=60):
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
