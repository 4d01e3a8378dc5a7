"""Run the sandbox as its own process (`python -m prefect_intercom.sandbox`), for load tests.

In a separate process the sandbox has a CPU core of its own, and its command line is
exercised as users run it. What it received is read back from `GET /sandbox/requests`.
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


@dataclass
class SandboxProcess:
    """A sandbox running in a child process."""

    url: str
    process: subprocess.Popen[str]

    def records(self) -> list[dict[str, Any]]:
        """Every request it received (Authorization redacted)."""
        return httpx.get(f"{self.url}/sandbox/requests", timeout=60).json()

    def accepted_phones(self, records: list[dict[str, Any]] | None = None) -> Counter[str]:
        """How many SMS each phone would have received."""
        return Counter(record["body"]["phone"] for record in (records or self.records()) if record["accepted"])


@contextmanager
def sandbox_process(*flags: str, token: str) -> Iterator[SandboxProcess]:
    """Start the sandbox CLI on a free loopback port with `flags`; stop it afterwards."""
    command = [sys.executable, "-m", "prefect_intercom.sandbox", "--host", "127.0.0.1", "--port", "0"]
    command += ["--token", token, "--log-level", "warning", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if not found:
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        url = found.group(1)
        deadline = time.monotonic() + 20
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
