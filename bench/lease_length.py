"""What a batch lease costs the Prefect server, and whether it survives server stalls.

Against a real Prefect server (Prefect's own test harness: a server process on loopback, SQLite):

1. **Cost.** One renewal is one `PATCH /v2/concurrency_limits/{id}`; one confirmation is one
   `GET` of the same row. Measured sequentially (ms each) and with 20 leases at once
   (renewals per second the server sustains). A batch costs `3 / lease_seconds` renewals and
   at most 1 confirmation per second.
2. **Stalls.** A holder with `lease_seconds` L confirms like a busy sender (every 20 ms) while
   the server process is stopped (SIGSTOP) for S seconds, starting just before a renewal is
   due (the worst moment), then resumed (SIGCONT); it runs on for another third of the lease.
   Printed: whether the lease was lost, and the longest a sender waited in `confirm()`.

Run: `.venv/bin/python bench/lease_length.py [--renewals 200]` (about 5 minutes).
The last line says which stalls each lease length survives.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.server.api.server import SubprocessASGIServer
from prefect.testing.utilities import prefect_test_harness

from prefect_intercom.batch.lease import hold_batch_key
from prefect_intercom.errors import BatchKeyLostError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fresh_batch_key


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return (
        f"median {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )


async def _cost(renewals: int) -> dict[str, float]:
    """Sequential renewal and confirmation latency, and concurrent renewals per second."""
    async with get_client() as client, hold_batch_key(fresh_batch_key("bench"), lease_seconds=600) as lease:
        update = GlobalConcurrencyLimitUpdate(active_slots=1)
        patch, read = [], []
        for _ in range(renewals):
            started = time.perf_counter()
            await client.update_global_concurrency_limit(str(lease.limit_id), update)
            patch.append(time.perf_counter() - started)
            started = time.perf_counter()
            await client.read_global_concurrency_limit_by_name(str(lease.limit_id))
            read.append(time.perf_counter() - started)
        print(f"renewal (PATCH by id), sequential, {renewals}: {_ms(patch)}; {len(patch) / sum(patch):.0f}/s")
        print(f"confirmation (GET by id), sequential, {renewals}: {_ms(read)}; {len(read) / sum(read):.0f}/s")
    async with get_client() as client:
        holds = [hold_batch_key(fresh_batch_key("bench"), lease_seconds=600) for _ in range(20)]
        leases = [await hold.__aenter__() for hold in holds]
        done = 0
        deadline = time.monotonic() + 5

        async def renew(limit_id: uuid.UUID) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await client.update_global_concurrency_limit(
                    str(limit_id), GlobalConcurrencyLimitUpdate(active_slots=1)
                )
                done += 1

        await asyncio.gather(*(renew(lease.limit_id) for lease in leases))
        for hold in holds:
            await hold.__aexit__(None, None, None)
    rate = done / 5
    print(f"renewals, 20 leases at once for 5 s: {rate:.0f}/s")
    return {"patch_ms": statistics.median(patch) * 1000, "read_ms": statistics.median(read) * 1000, "rate": rate}


async def _stall(pid: int, lease_seconds: float, stall: float) -> tuple[str | None, float]:
    """Stop the server for `stall` seconds just before the first renewal; why lost (or None), longest wait."""
    slowest = 0.0
    lost: str | None = None
    async with hold_batch_key(fresh_batch_key("bench"), lease_seconds=lease_seconds) as lease:
        every = lease_seconds / 3
        started = time.monotonic()
        stopped_at = started + every - 0.2
        resume_at = stopped_at + stall
        end = started + 2 * every + stall + 0.5
        phase = "before"  # -> "stopped" -> "resumed", once each
        try:
            while time.monotonic() < end:
                now = time.monotonic()
                if phase == "before" and now >= stopped_at:
                    os.kill(pid, signal.SIGSTOP)
                    phase = "stopped"
                if phase == "stopped" and now >= resume_at:
                    os.kill(pid, signal.SIGCONT)
                    phase = "resumed"
                before = time.monotonic()
                try:
                    await lease.confirm()
                except BatchKeyLostError:
                    lost = f"{lease._lost} after {time.monotonic() - started:.1f} s"
                    break
                slowest = max(slowest, time.monotonic() - before)
                await asyncio.sleep(0.02)
        finally:
            os.kill(pid, signal.SIGCONT)
    return lost, slowest


async def main(renewals: int) -> None:
    logging.getLogger("prefect").setLevel(logging.ERROR)
    cost = await _cost(renewals)
    process = SubprocessASGIServer._instances[None].server_process
    assert process is not None
    results: dict[tuple[float, float], Any] = {}
    for lease_seconds, stall in [(6, 2), (6, 4), (30, 1), (30, 2), (30, 5), (30, 8), (30, 11), (60, 2)]:
        lost, slowest = await _stall(process.pid, lease_seconds, stall)
        results[lease_seconds, stall] = lost
        margin = lease_seconds - min(lease_seconds / 4, 10) - lease_seconds / 3
        print(
            f"lease {lease_seconds:g} s, server stopped {stall:g} s at a renewal: "
            f"{f'LOST ({lost}; the batch stops)' if lost else 'kept'}; longest confirm() wait {slowest:.2f} s "
            f"(survives stalls up to ~{margin:.1f} s by design)"
        )
    per_batch = 3 / 30 + 1
    print(
        f"summary: renewal {cost['patch_ms']:.1f} ms, confirmation {cost['read_ms']:.1f} ms, "
        f"{cost['rate']:.0f} renewals/s with 20 leases; a 30 s lease costs {per_batch:.1f} requests/s per batch; "
        f"stalls kept: "
        + ", ".join(f"L={key[0]:g} S={key[1]:g}: {'no' if lost else 'yes'}" for key, lost in results.items())
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renewals", type=int, default=200)
    arguments = parser.parse_args()
    with prefect_test_harness(server_startup_timeout=120):
        asyncio.run(main(arguments.renewals))
