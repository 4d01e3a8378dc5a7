"""Run the sandbox as its own process (`python -m prefect_intercom.sandbox`).

In a separate process the sandbox has a CPU core of its own (load tests, benchmarks) and its
command line is exercised as users run it. What it received is read back over HTTP from
`GET /sandbox/requests`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from prefect_intercom.sandbox.state import DEFAULT_HOST, DEFAULT_TOKEN

START_TIMEOUT = 60.0
"""Seconds to wait until the sandbox answers `GET /sandbox/health`."""
_LISTENING = re.compile(r"(http://[^\s/]+)/")


@dataclass
class SandboxProcess:
    """A sandbox running in a child process.

    Attributes:
        url: Base URL of the sandbox, e.g. `http://127.0.0.1:54321`.
        process: The child process.
    """

    url: str
    process: subprocess.Popen[str]

    def records(self) -> list[dict[str, Any]]:
        """Every request it received (Authorization redacted)."""
        return httpx.get(f"{self.url}/sandbox/requests", timeout=60).json()

    def accepted_phones(self) -> Counter[str]:
        """How many SMS each phone would have received."""
        return Counter(record["body"]["phone"] for record in self.records() if record["accepted"])


@contextmanager
def sandbox_process(*flags: str, token: str = DEFAULT_TOKEN) -> Iterator[SandboxProcess]:
    """Start the sandbox CLI on a free port with extra command-line `flags`; stop it afterwards.

    Args:
        *flags: More sandbox options, e.g. `"--rate-limit", "100", "--latency", "0.05"`.
        token: The bearer token the sandbox accepts.

    Raises:
        RuntimeError: The sandbox did not say where it listens.
        httpx.TransportError: It did not answer its health check in time.

    Example:
        ```python
        with sandbox_process("--latency", "0.05", token="t") as sandbox:
            ...  # send to sandbox.url
            assert sum(sandbox.accepted_phones().values()) == 1
        ```
    """
    command = [sys.executable, "-m", "prefect_intercom.sandbox", "--host", DEFAULT_HOST, "--port", "0"]
    command += ["--token", token, "--log-level", "warning", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # noqa: S603 - our own interpreter and module
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not (found := _LISTENING.search(line)):
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        url = found.group(1)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                httpx.get(f"{url}/sandbox/health", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield SandboxProcess(url=url, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
