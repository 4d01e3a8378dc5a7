"""Peak memory of a batch read from a CSV file: 10,000 rows vs 1,000,000 rows.

Each size runs in a fresh process: it streams the CSV with `read_requests_csv`, sends every
row through the batch (`asend_batch`, default retry policy and header pacing, the ledger in
a temporary directory, 100 requests in flight; the batch-key lease is off: it needs a Prefect
API and costs no memory per item) to a zero-latency loopback server, and reports its peak
resident set size (`ru_maxrss`). The CSV is never loaded whole and every item's result goes to
a file as it happens, so the growth between the two sizes is what the batch keeps per item:
the compact table of item keys (12 bytes a slot).

Run: `.venv/bin/python bench/csv_memory.py [--small 10000] [--large 1000000]` (about ten
minutes: the large run sends a million requests over loopback).
Goal: peak RSS growth < 50 MB. The growth is printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TOKEN, fresh_batch_key, zero_latency_server


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone", "issue_type", "priority", "account"])
        for number in range(rows):
            writer.writerow([f"+1415{number:07d}", "Billing", "High" if number % 3 else "Low", f"acct-{number}"])


async def send_csv(url: str, path: str, ledger: str) -> dict:
    from prefect.filesystems import LocalFileSystem

    from prefect_intercom import IntercomCredentials, Pacer, RetryPolicy, read_requests_csv
    from prefect_intercom.batch import asend_batch

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    credentials = IntercomCredentials(access_token=TOKEN, base_url=url)
    started = time.perf_counter()
    async with credentials.get_client(retry=RetryPolicy(), pacer=Pacer(), max_connections=100) as client:
        report = await asend_batch(
            client,
            read_requests_csv(path),
            batch_key=fresh_batch_key("memory"),
            ledger_storage=LocalFileSystem(basepath=ledger),
            concurrency=100,
            lock=False,
        )
    return {
        "rows": report.total,
        "sent": report.counts["sent"],
        "seconds": round(time.perf_counter() - started, 1),
        "baseline_mb": round(baseline / 1024, 1),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure(url: str, rows: int, tmp: Path) -> dict:
    path = tmp / f"callers-{rows}.csv"
    write_csv(path, rows)
    ledger = tmp / f"ledger-{rows}"
    output = subprocess.run(
        [sys.executable, __file__, "--child", url, str(path), str(ledger)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["csv_mb"] = round(path.stat().st_size / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, metavar=("URL", "CSV", "LEDGER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(send_csv(*args.child))))
        return
    with tempfile.TemporaryDirectory() as tmp, zero_latency_server(tmp) as url:
        small = measure(url, args.small, Path(tmp))
        print(f"{args.small:>7,} rows: {small}", flush=True)
        large = measure(url, args.large, Path(tmp))
        print(f"{args.large:>7,} rows: {large}", flush=True)
    growth = large["peak_mb"] - small["peak_mb"]
    per_item = growth * 2**20 / (args.large - args.small)
    print(f"peak RSS {small['peak_mb']} MB -> {large['peak_mb']} MB ({per_item:.0f} bytes per extra row)")
    print(f"RATIO peak RSS growth {args.small:,} -> {args.large:,} rows = {growth:.1f} MB (goal < 50 MB)")


if __name__ == "__main__":
    main()
