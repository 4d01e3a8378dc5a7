"""Fixtures of the contract tests: a Stoplight Prism mock of Intercom's description.

Prism (npm `@stoplight/prism-cli`, pinned in `.ci/package.json`) is installed by the README's
test command (`bash .ci/test` runs `.ci/setup --full`). A missing Prism fails the Prism tests
with the command that installs it; it never skips them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..conftest import PROJECT_ROOT
from .description import DESCRIPTION_2_12

PRISM_LOCAL = PROJECT_ROOT / ".ci" / "tools" / "node_modules" / ".bin" / "prism"
# Dynamic answers (`Prefer: dynamic=true`) are drawn from this seed, so runs repeat.
PRISM_SEED = "prefect-intercom"
PRISM_STARTUP_SECONDS = 90
_VIOLATION_LINE = re.compile(r"Violation: (?P<what>.*)$")


def prism_executable() -> str:
    """The `prism` command: on PATH (`.ci/test` puts `.ci/tools` there) or in `.ci/tools`."""
    found = shutil.which("prism") or (str(PRISM_LOCAL) if os.access(PRISM_LOCAL, os.X_OK) else None)
    if found is None:
        pytest.fail(
            "Stoplight Prism is not installed. Install it with `bash .ci/setup --full` (npm installs "
            ".ci/package.json into .ci/tools), or run the whole suite with `bash .ci/test`.",
            pytrace=False,
        )
    return found


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PrismServer:
    """A running Prism mock server and its log.

    Attributes:
        url: Base URL, e.g. `http://127.0.0.1:41234`.
        log_path: Everything Prism printed.
        expected_violations: Substrings of violations a test provoked on purpose (they are
            the documented disagreements); any other violation in the log fails the module.
    """

    url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    expected_violations: list[str] = field(default_factory=list)

    def log(self) -> str:
        """Prism's output so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def violations(self) -> list[str]:
        """Every violation Prism logged so far (request or response)."""
        return [match["what"] for line in self.log().splitlines() if (match := _VIOLATION_LINE.search(line))]

    def unexpected_violations(self) -> list[str]:
        """Logged violations that no test provoked on purpose."""
        return [
            violation
            for violation in self.violations()
            if not any(expected in violation for expected in self.expected_violations)
        ]


def _wait_until_listening(server: PrismServer, port: int) -> None:
    deadline = time.monotonic() + PRISM_STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            code = server.process.returncode
            pytest.fail(f"Prism exited with {code} before listening:\n{server.log()}", pytrace=False)
        if "Prism is listening" in server.log():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                pass
        time.sleep(0.1)
    pytest.fail(f"Prism did not listen within {PRISM_STARTUP_SECONDS} s:\n{server.log()}", pytrace=False)


@pytest.fixture(scope="module")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrismServer]:
    """Prism mocking Intercom's 2.12 description on a free loopback port.

    `--errors` turns every request violation into an error answer (and an `sl-violations`
    header), so a request that breaks the description cannot pass unnoticed. At the end of
    the module the log must hold no violation other than the ones tests provoked on purpose.
    """
    executable = prism_executable()
    port = free_port()
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    command = [
        executable, "mock", str(DESCRIPTION_2_12),
        "--host", "127.0.0.1", "--port", str(port), "--errors", "--seed", PRISM_SEED,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    server = PrismServer(url=f"http://127.0.0.1:{port}", log_path=log_path, process=process)
    try:
        _wait_until_listening(server, port)
        yield server
        time.sleep(0.5)  # Prism logs a violation just after answering
        unexpected = server.unexpected_violations()
        assert not unexpected, "Prism found violations:\n" + "\n".join(unexpected)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
