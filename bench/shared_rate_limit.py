"""Two processes share one Intercom rate limit through a Prefect global concurrency limit.

A real Prefect server (Prefect's own test harness: a server process on loopback) holds a
global concurrency limit with slot decay sized by `rate_limit_settings(100, 1)`; the sandbox
(its own process) allows 100 requests per 1-second window and answers after 50 ms. Two
worker processes, started together, each send their own phones through the batch with
`Pacer(global_rate_limit=...)`. Neither knows the other; only the Prefect server does.

Run: `.venv/bin/python bench/shared_rate_limit.py [--sends 1000] [--limit 100]`.
Goals: 0 answers 429, and a combined rate >= 90% of the limit. The ratio is printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TOKEN, fresh_batch_key

from prefect_intercom import IntercomCredentials, Pacer, RetryPolicy
from prefect_intercom.batch import asend_batch
from prefect_intercom.pacing import rate_limit_settings
from prefect_intercom.sandbox.process import sandbox_process

WORKERS = 2


async def worker(url: str, limit_name: str, first: int, sends: int, start_at: float, ledger: str) -> dict:
    from prefect.filesystems import LocalFileSystem

    credentials = IntercomCredentials(access_token=TOKEN, base_url=url)
    pacer = Pacer(global_rate_limit=limit_name)
    bodies = ({"phone": f"+1415{n:07d}"} for n in range(first, first + sends))
    await asyncio.sleep(max(0.0, start_at - time.time()))
    started = time.perf_counter()
    async with credentials.get_client(retry=RetryPolicy(), pacer=pacer, max_connections=32) as client:
        report = await asend_batch(
            client,
            bodies,
            batch_key=fresh_batch_key("bench"),
            ledger_storage=LocalFileSystem(basepath=ledger),
            concurrency=32,
            lock=False,  # two batch keys: no lease to share; the limit under test is the rate limit
        )
        limiter = pacer.global_limit
    return {
        "wall": time.perf_counter() - started,
        "counts": report.counts,
        "acquisitions": limiter.acquisitions if limiter else 0,
        "denials": limiter.denials if limiter else 0,
    }


async def create_limit(name: str, per_window: int) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    settings = rate_limit_settings(per_window, 1)
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name=name, limit=settings.limit, slot_decay_per_second=settings.slot_decay_per_second
            )
        )
    return settings.cli(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=1000, help="sends per worker process")
    parser.add_argument("--limit", type=int, default=100, help="Intercom's requests per 1-second window")
    worker_arguments = ("URL", "LIMIT", "FIRST", "START_AT", "LEDGER")
    parser.add_argument("--worker", nargs=5, metavar=worker_arguments, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, name, first, start_at, ledger = args.worker
        print(json.dumps(asyncio.run(worker(url, name, int(first), args.sends, float(start_at), ledger))))
        return

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    flags = ["--rate-limit", str(args.limit), "--rate-limit-window", "1", "--latency", "0.05"]
    with prefect_test_harness(server_startup_timeout=60), sandbox_process(*flags, token=TOKEN) as sandbox:
        with tempfile.TemporaryDirectory() as ledger:
            name = f"intercom-bench-{os.getpid()}"
            print("Prefect global rate limit:", asyncio.run(create_limit(name, args.limit)))
            environment = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
            start_at = time.time() + 8  # both import Prefect first, then start together
            command = [sys.executable, __file__, "--sends", str(args.sends), "--worker", sandbox.url, name]
            workers = [
                subprocess.Popen(
                    [*command, str(index * args.sends), str(start_at), ledger],
                    stdout=subprocess.PIPE,
                    env=environment,
                    text=True,
                )
                for index in range(WORKERS)
            ]
            outputs = [process.communicate(timeout=600)[0] for process in workers]
            results = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
        records = sandbox.records()
    statuses = Counter(record["status"] for record in records)
    arrivals = sorted(record["received_at"] for record in records if record["status"] == 200)
    per_window = Counter(int(arrival) for arrival in arrivals)
    full_windows = [count for second, count in per_window.items() if int(arrivals[0]) < second < int(arrivals[-1])]
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    for index, result in enumerate(results):
        print(f"worker {index}: {result}")
    print(f"sandbox answers: {dict(statuses)}; busiest window {max(per_window.values())} of {args.limit} allowed")
    print(f"full windows: min {min(full_windows)}, median {sorted(full_windows)[len(full_windows) // 2]}")
    print(f"combined rate {rate:.1f}/s over {arrivals[-1] - arrivals[0]:.1f} s; 429s: {statuses[429]}")
    print(f"RATIO combined/limit = {rate / args.limit:.3f} (goal >= 0.90); 429s = {statuses[429]} (goal 0)")


if __name__ == "__main__":
    main()
