"""Shared pieces of the benchmarks: a zero-latency loopback server and small timing helpers.

The sandbox in its own process comes from `prefect_intercom.sandbox.process`. Everything binds
127.0.0.1 only."""

from __future__ import annotations

import asyncio
import re
import secrets
import statistics
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

TOKEN = "bench-token"


def fresh_batch_key(prefix: str) -> str:
    """A new batch key per run, in letters only: a run of digits would be refused as a phone number."""
    return f"{prefix}-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))


HOST = "127.0.0.1"

_BODY = b'{"type":"phone_call_redirect","phone":"+14155550100"}'
_ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: application/json\r\n"
    b"x-request-id: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n"
    b"x-ratelimit-limit: 1000000\r\nx-ratelimit-remaining: 999999\r\nx-ratelimit-reset: 4102444800\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


class _Answer(asyncio.Protocol):
    """HTTP/1.1 keep-alive: reads each request (headers + Content-Length body) and answers at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            found = re.search(rb"(?i)content-length:\s*(\d+)", self.buffer[:end])
            length = int(found.group(1)) if found else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(_ANSWER)  # type: ignore[attr-defined]


def serve_zero_latency(port_file: str) -> None:
    """Entry point of the zero-latency server process (writes its port to `port_file`)."""

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Answer, HOST, 0)
        with open(port_file, "w") as handle:
            handle.write(str(server.sockets[0].getsockname()[1]))
        await server.serve_forever()

    asyncio.run(main())


@contextmanager
def zero_latency_server(tmp_dir: str) -> Iterator[str]:
    """A loopback HTTP server in its own process that answers every request at once; yields its URL."""
    port_file = f"{tmp_dir}/port"
    code = f"import sys; sys.path.insert(0, {sys.path[0]!r}); import common; common.serve_zero_latency({port_file!r})"
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with open(port_file) as handle:
                    port = int(handle.read())
                break
            except (FileNotFoundError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError("the zero-latency server did not start") from None
                time.sleep(0.05)
        yield f"http://{HOST}:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def median(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)
