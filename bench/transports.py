"""Which async transport moves the batch's bytes: rate and client CPU per item, one fresh process per row.

The same batch (`asend_batch`, through an `IntercomClient` built with the candidate
transport, `retry=RetryPolicy()`, a fixed `concurrency`; no pacer: the sandbox has no rate
limit, so a pacer would only add its own cost to every row alike; no batch-key lease: it needs
a Prefect API, and starting one would weigh on every row alike) sends to the sandbox running
in its own process with 200 ms of latency before every answer, at concurrency 16, 50 and 100.
The best any sender can do is C / 0.2 s. Each row runs in a fresh child process against a
fresh sandbox; its client CPU is `time.process_time()` of that child around the batch, divided by the items.

Candidates through the batch (httpx stays the API; only the transport changes):

- `httpx`: httpx's default async pool (httpcore), `Limits(max_connections=C)`: the client's
  async transport before this benchmark.
- `aiohttp`: `httpx_aiohttp.AiohttpTransport` as shipped (`TCPConnector(limit=C)`).
- `httpcore2`: the httpx2 fork's connection pool (`httpcore2.AsyncConnectionPool`) behind a
  small `httpx.AsyncBaseTransport` adapter written here (httpx2's own client and transports
  take and return `httpx2` types, so they cannot plug into `httpx.AsyncClient`).
- `project`: what the client uses by default now (`prefect_intercom.transport`).

Reference rows (a bare `asyncio.gather` loop of the same POSTs, at most C in flight, no batch,
no `IntercomClient`): `bare-httpx`, `bare-httpx2` (httpx2's `AsyncClient`), `bare-aiohttp`.

Run: `.venv/bin/python bench/transports.py [--concurrency 16 50 100] [--candidates ...] [--sends 2000]`.
The last line names the fastest batch candidate at the highest concurrency and its CPU ratio to httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import inspect
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TOKEN, fresh_batch_key

LATENCY = 0.2
BATCH_CANDIDATES = ("httpx", "aiohttp", "httpcore2", "project")
REFERENCE_CANDIDATES = ("bare-httpx", "bare-httpx2", "bare-aiohttp")
# Candidates that need a package the project does not depend on (`pip install httpx2`).
NEEDS = {"httpcore2": "httpcore2", "bare-httpx2": "httpx2"}


# --- the httpcore2 adapter ------------------------------------------------------------------


@contextlib.contextmanager
def _map_httpcore2_errors() -> Iterator[None]:
    """httpcore2's exceptions as the httpx exceptions of the same name (as httpx maps httpcore's)."""
    import httpcore2

    try:
        yield
    except httpcore2.ConnectionNotAvailable:  # pragma: no cover - pool internals
        raise
    except Exception as error:
        mapped = getattr(httpx, type(error).__name__, None) if type(error).__module__.startswith("httpcore2") else None
        if mapped is None or not (isinstance(mapped, type) and issubclass(mapped, httpx.TransportError)):
            raise
        raise mapped(str(error)) from None


class _Httpcore2Stream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _map_httpcore2_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


class Httpcore2Transport(httpx.AsyncBaseTransport):
    """httpx requests over `httpcore2.AsyncConnectionPool` (HTTP/1.1)."""

    def __init__(self, max_connections: int) -> None:
        import httpcore2

        self._httpcore2 = httpcore2
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core = self._httpcore2
        url = core.URL(
            scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port, target=request.url.raw_path
        )
        core_request = core.Request(
            method=request.method, url=url, headers=request.headers.raw, content=request.stream,
            extensions=request.extensions,
        )  # fmt: skip
        with _map_httpcore2_errors():
            answer = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=answer.status, headers=answer.headers, stream=_Httpcore2Stream(answer.stream),
            extensions=answer.extensions,
        )  # fmt: skip

    async def aclose(self) -> None:
        await self._pool.aclose()


# --- one row, in a child process ------------------------------------------------------------


def _transport(candidate: str, concurrency: int) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if candidate == "httpx":
        return httpx.AsyncHTTPTransport(limits=limits, trust_env=False)  # what the client used before
    if candidate == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(limits=limits, trust_env=False)
    if candidate == "httpcore2":
        return Httpcore2Transport(concurrency)
    if candidate == "project":
        from prefect_intercom.transport import IntercomAsyncTransport

        return IntercomAsyncTransport(concurrency)
    raise ValueError(candidate)


async def _batch_row(candidate: str, url: str, sends: int, concurrency: int, ledger: str) -> dict[str, Any]:
    from prefect.filesystems import LocalFileSystem

    from prefect_intercom import RetryPolicy
    from prefect_intercom.batch import asend_batch
    from prefect_intercom.client import IntercomClient

    bodies = ({"phone": f"+1415{n:07d}"} for n in range(sends))
    client = IntercomClient(
        TOKEN,
        base_url=url,
        intercom_version="2.12",
        retry=RetryPolicy(),
        max_connections=concurrency,
        async_transport=_transport(candidate, concurrency),
    )
    options: dict[str, Any] = {}
    if "lock" in inspect.signature(asend_batch).parameters:
        # The batch key's lease needs a Prefect API: without one, Prefect starts a temporary
        # server inside this process, whose start-up (seconds of CPU, a blocked loop) is the
        # same for every candidate and says nothing about the transport.
        options["lock"] = False
    started, cpu = time.perf_counter(), time.process_time()
    async with client:
        report = await asend_batch(
            client,
            bodies,
            batch_key=fresh_batch_key("bench-transports"),
            ledger_storage=LocalFileSystem(basepath=ledger),
            concurrency=concurrency,
            **options,
        )
    return {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu, "counts": report.counts}


async def _bare_row(candidate: str, url: str, sends: int, concurrency: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}", "Intercom-Version": "2.12", "Content-Type": "application/json"}
    target = f"{url}/phone_call_redirects"
    statuses: dict[str, int] = {}

    async def one(post: Any, n: int) -> None:
        async with gate:
            try:
                status = str(await post(n))
            except Exception as error:  # counted, as the batch counts its failures
                status = type(error).__name__
        statuses[status] = statuses.get(status, 0) + 1

    def body(n: int) -> bytes:
        return json.dumps({"phone": f"+1415{n:07d}"}).encode()

    started, cpu = time.perf_counter(), time.process_time()
    if candidate in ("bare-httpx", "bare-httpx2"):
        module: Any = httpx
        if candidate == "bare-httpx2":
            import httpx2 as module
        limits = module.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with module.AsyncClient(limits=limits, trust_env=False, timeout=30) as session:

            async def post(n: int) -> int:
                return (await session.post(target, content=body(n), headers=headers)).status_code

            await asyncio.gather(*(one(post, n) for n in range(sends)))
    else:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post(n: int) -> int:
                async with session.post(target, data=body(n), headers=headers) as answer:
                    await answer.read()
                    return answer.status

            await asyncio.gather(*(one(post, n) for n in range(sends)))
    return {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu, "counts": statuses}


def _child(args: argparse.Namespace) -> None:
    [concurrency] = args.concurrency
    if args.candidate in REFERENCE_CANDIDATES:
        row = asyncio.run(_bare_row(args.candidate, args.url, args.sends, concurrency))
    else:
        with tempfile.TemporaryDirectory() as ledger:
            row = asyncio.run(_batch_row(args.candidate, args.url, args.sends, concurrency, ledger))
    print("ROW " + json.dumps(row), flush=True)


# --- the parent: one fresh sandbox and one fresh process per row ------------------------------


def _run_row(candidate: str, concurrency: int, sends: int) -> dict[str, Any]:
    from prefect_intercom.sandbox.process import sandbox_process

    flags = ["--rate-limit", "0", "--latency", str(LATENCY)]
    with sandbox_process(*flags, token=TOKEN) as sandbox:
        command = [sys.executable, __file__, "--child", candidate, "--url", sandbox.url]
        command += ["--sends", str(sends), "--concurrency", str(concurrency)]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
        lines = [line for line in finished.stdout.splitlines() if line.startswith("ROW ")]
        if finished.returncode != 0 or not lines:
            raise RuntimeError(f"{candidate} at C={concurrency} failed:\n{finished.stderr[-3000:]}")
        row = json.loads(lines[-1][4:])
        texts = sandbox.accepted_phones()
    row["twice"] = sum(1 for count in texts.values() if count > 1)
    row["accepted"] = sum(texts.values())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 50, 100])
    parser.add_argument("--candidates", nargs="+", default=[*BATCH_CANDIDATES, *REFERENCE_CANDIDATES])
    parser.add_argument("--sends", type=int, default=2000, help="items per row (C=16 rows send 40%% of it)")
    parser.add_argument("--child", metavar="CANDIDATE", dest="candidate", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.candidate:
        _child(args)
        return
    print(f"{'candidate':<13} {'C':>4} {'items':>6} {'items/s':>8} {'of C/0.2s':>9} {'CPU ms/item':>11}  outcomes")
    results: dict[tuple[str, int], dict[str, Any]] = {}
    missing = [name for name in args.candidates if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None]
    for name in missing:
        print(f"{name}: skipped, `pip install {NEEDS[name]}` to measure it")
    args.candidates = [name for name in args.candidates if name not in missing]
    for concurrency in args.concurrency:
        sends = args.sends if concurrency > 16 else max(1, int(args.sends * 0.4))
        for candidate in args.candidates:
            row = _run_row(candidate, concurrency, sends)
            results[candidate, concurrency] = row
            rate = sends / row["wall"]
            ideal = concurrency / LATENCY
            print(
                f"{candidate:<13} {concurrency:>4} {sends:>6} {rate:>8.1f} {rate / ideal:>9.2f} "
                f"{row['cpu'] * 1000 / sends:>11.2f}  {row['counts']} accepted={row['accepted']} twice={row['twice']}",
                flush=True,
            )
    top = max(args.concurrency)
    batch = [name for name in args.candidates if name in BATCH_CANDIDATES and (name, top) in results]
    if "httpx" in batch and len(batch) > 1:
        best = min((name for name in batch if name != "httpx"), key=lambda name: results[name, top]["cpu"])
        ratio = results["httpx", top]["cpu"] / results[best, top]["cpu"]
        speed = results["httpx", top]["wall"] / results[best, top]["wall"]
        print(
            f"RATIO at C={top}: {best} uses {ratio:.1f}x less client CPU than httpx's pool and is {speed:.1f}x faster"
        )


if __name__ == "__main__":
    main()
