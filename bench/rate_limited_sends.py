"""2,000 sends through the sandbox at 100 per 1-second window with 50 ms latency.

The batch (`asend_batch`, as the task runs it: default `RetryPolicy`, header pacing) sends
2,000 phone call redirects to the sandbox running in its own process with Intercom-style
windows of 100 requests per second and 50 ms of latency before every answer. The best any
sender can do is 20 windows, i.e. 20 s; the pacer should get close without a single 429.

Run: `.venv/bin/python bench/rate_limited_sends.py [--sends 2000] [--limit 100] [--latency 0.05]`.
Goals: wall time / theoretical <= 1.10, and 0 answers 429. The ratio is printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from prefect.filesystems import LocalFileSystem

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TOKEN, fresh_batch_key

from prefect_intercom import IntercomCredentials, Pacer, RetryPolicy
from prefect_intercom.batch import asend_batch
from prefect_intercom.sandbox.process import sandbox_process


async def run(url: str, sends: int, concurrency: int | None, ledger: str) -> tuple[float, dict[str, int]]:
    credentials = IntercomCredentials(access_token=TOKEN, base_url=url)
    bodies = ({"phone": f"+1415{n:07d}", "custom_attributes": {"row": str(n)}} for n in range(sends))
    started = time.perf_counter()
    async with credentials.get_client(retry=RetryPolicy(), pacer=Pacer(), max_connections=concurrency or 100) as client:
        report = await asend_batch(
            client,
            bodies,
            batch_key=fresh_batch_key("bench"),
            ledger_storage=LocalFileSystem(basepath=ledger),
            concurrency=concurrency,
            lock=False,  # the batch-key lease needs a Prefect API; bench/intercom_shape.py runs it in a flow
        )
    return time.perf_counter() - started, report.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=100, help="requests per 1-second window")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before every answer")
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight (default: adaptive)")
    args = parser.parse_args()
    flags = ["--rate-limit", str(args.limit), "--rate-limit-window", "1", "--latency", str(args.latency)]
    with tempfile.TemporaryDirectory() as ledger, sandbox_process(*flags, token=TOKEN) as sandbox:
        wall, counts = asyncio.run(run(sandbox.url, args.sends, args.concurrency, ledger))
        records = sandbox.records()
    statuses = Counter(record["status"] for record in records)
    per_window = Counter(int(record["received_at"]) for record in records if record["status"] == 200)
    theoretical = args.sends / args.limit
    print(f"outcomes: {counts}")
    print(f"sandbox answers: {dict(statuses)}; busiest window: {max(per_window.values())} of {args.limit} allowed")
    print(f"wall time {wall:.2f} s for {args.sends:,} sends; theoretical {theoretical:.0f} s; 429s: {statuses[429]}")
    print(f"RATIO wall/theoretical = {wall / theoretical:.3f} (goal <= 1.10); 429s = {statuses[429]} (goal 0)")


if __name__ == "__main__":
    main()
