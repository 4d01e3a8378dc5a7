"""The batch through the Prefect task at 100 in flight: items/s over concurrency / latency, and client CPU per item.

Cases, each in a fresh child process with the sandbox in a process of its own (no rate limit,
every answer after a fixed latency) and, for the task, Prefect's `prefect_test_harness` (a
temporary Prefect server in another child, so its CPU is not the client's):

- `task`: `create_phone_call_redirects(credentials, bodies, concurrency=100, ledger_storage=
  LocalFileSystem(tmp))` called once in a `@flow` (pacing, retry policy and the batch key's lease
  as shipped), on a Prefect server that holds the ledger key already, as one does after its first
  batch ever (which creates the key: about 70 ms once per server);
- `aiohttp`: the same POSTs (same bodies, same `Authorization`) with a bare `aiohttp.ClientSession`
  (connector limit 100) and 100 coroutines taking items from one iterator: no ledger, no
  validation, no Prefect: what this machine's client and sandbox can do at all.

At 50 ms the best possible rate is 100 / 0.05 = 2,000 items/s; at 200 ms, 500 items/s. Printed per
case: items/s over the whole call and its ratio to that best rate; the same ratio while sending (from
the sandbox's first arrival to its last) and the call's fixed cost outside that (the task run, the
lease, the ledger's opening, the first request alone, the closing writes and artifacts); and client
CPU per item (`time.process_time()` of the child around the call, over the items); the record
files the ledger wrote. Goal: the task at
>= 0.8 of the best rate at 50 ms, over the whole call (the verdict line). The
bare aiohttp row of the same run is the ceiling of this machine (the sandbox answers from one
Python process, and other people's tests share the 2 cores).

`--profile` runs the task case at 50 ms once more under py-spy (`pip install py-spy`; it samples
every thread of the child: the task's event loop runs in a thread of its own, which cProfile would
not see) and prints the shares of on-CPU samples: per thread, the top functions by own time in the
batch's event-loop thread, and selected inclusive costs (the ledger, validation, JSON, logging...).

Run: `.venv/bin/python bench/batch_throughput.py [--latencies 0.05 0.2] [--items 10000 4000] [--profile]`
(about 2-3 minutes; 1 more with --profile).
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TOKEN, fresh_batch_key

CONCURRENCY = 100
RATE = 200  # py-spy samples per second
GOAL = 0.8


def bodies(items: int) -> Any:
    """The request bodies: distinct valid phones."""
    return ({"phone": f"+1415{n:07d}", "custom_attributes": {"row": str(n)}} for n in range(items))


def run_task(url: str, items: int) -> dict[str, Any]:
    """The batch through the Prefect task in a flow (this process holds the harness)."""
    from prefect import flow
    from prefect.filesystems import LocalFileSystem

    from prefect_intercom import IntercomCredentials, create_phone_call_redirects

    measured: dict[str, Any] = {}

    @flow(name="batch-throughput-bench")
    def deflect(ledger: str) -> None:
        credentials = IntercomCredentials(access_token=TOKEN, base_url=url)
        measured["started_at"] = time.time()
        started_cpu, started = time.process_time(), time.perf_counter()
        report = create_phone_call_redirects(
            credentials,
            bodies(items),
            batch_key=fresh_batch_key("bench"),
            concurrency=CONCURRENCY,
            ledger_storage=LocalFileSystem(basepath=ledger),
        )
        measured.update(wall=time.perf_counter() - started, cpu=time.process_time() - started_cpu)
        measured["counts"] = {str(key): value for key, value in report.counts.items()}
        measured["peak_concurrency"] = report.concurrency

    with tempfile.TemporaryDirectory() as ledger:
        deflect(ledger)
        measured["ledger_records"] = sum(1 for _ in Path(ledger).rglob("record-*"))
    return measured


async def run_aiohttp(url: str, items: int) -> dict[str, Any]:
    """The same POSTs with a bare aiohttp session: the ceiling of client and sandbox on this machine."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json", "Intercom-Version": "2.14"}
    statuses: dict[str, int] = {}
    source = iter(bodies(items))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(f"{url}/", connector=connector, headers=headers) as session:

        async def worker() -> None:
            for body in source:
                async with session.post("phone_call_redirects", json=body) as answer:
                    await answer.read()
                    statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1

        started_at, started_cpu, started = time.time(), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return {"wall": wall, "cpu": cpu, "counts": statuses, "started_at": started_at}


def one(case: str, latency: float, items: int) -> dict[str, Any]:
    """One case in this process: sandbox (and harness for the task), the sends, the measurements."""
    from prefect_intercom.sandbox.process import sandbox_process

    flags = ["--latency", str(latency), "--keep-alive", "65", "--rate-limit", "0"]  # no limit
    with sandbox_process(*flags, token=TOKEN) as sandbox:
        if case == "task":
            from prefect.testing.utilities import prefect_test_harness

            with prefect_test_harness(server_startup_timeout=180):
                # A server that has run a batch before holds the ledger key (the first batch ever makes it, ~70 ms)
                from prefect.utilities.asyncutils import run_coro_as_sync

                from prefect_intercom.batch.ledger_secret import load_ledger_key

                run_coro_as_sync(load_ledger_key())
                result = run_task(sandbox.url, items)
        else:
            result = asyncio.run(run_aiohttp(sandbox.url, items))
        arrivals = sorted(record["received_at"] for record in sandbox.records())
        result["received"] = len(arrivals)
        # Sending: from the first request's arrival to the last one's; the rest of the call is fixed cost.
        result["sending"] = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
        result["fixed"] = result["wall"] - result["sending"]
    return result


def print_profile(path: str, items: int) -> None:
    """The py-spy profile's top costs: the batch's event-loop thread (own and inclusive) and other threads."""
    from collections import Counter

    threads: dict[str, list[tuple[list[str], int]]] = {}
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        threads.setdefault(frames[0], []).append((frames[1:], int(count)))
    total = sum(count for samples in threads.values() for _, count in samples)
    batch = max(threads, key=lambda t: sum(c for f, c in threads[t] if any("asend_batch" in x for x in f)))
    samples = threads[batch]
    in_batch = sum(count for _, count in samples)
    print(f"\nprofile (py-spy, on-CPU samples at 200/s) of the task at 50 ms, {items:,} items: {total} samples")
    # py-spy counts a thread that could run as busy, even when a loaded machine gives it no CPU:
    # read shares, not times (the unprofiled rows above give the CPU per item).
    print(f"  the batch's event-loop thread: {in_batch / total:.0%}; other threads (start-up and imports included):")
    for thread, other in sorted(threads.items(), key=lambda item: -sum(c for _, c in item[1])):
        if thread != batch:
            top = Counter()
            for frames, count in other:
                top[_short(frames[min(len(frames) - 1, 6)]) if frames else "-"] += count
            share = sum(c for _, c in other) / total
            example = top.most_common(1)[0][0] if top else ""
            print(f"    {share:5.1%} {thread[:30]} e.g. {example}")
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in samples:
        own[_short(frames[-1])] += count
        for frame in set(map(_short, frames)):
            inclusive[frame] += count
    print("  top own time in the batch's thread (share of that thread's samples):")
    for frame, count in own.most_common(20):
        print(f"    {count / in_batch:5.1%} {frame}")
    print("  inclusive, selected (share of the batch's thread; a frame counts when on the stack):")
    wanted = (
        "announce",
        "complete",
        "_write_loop",
        "encode_record",
        "_write_by_rename",
        "send (prefect_intercom/batch/run",
        "admit",
        "prepare",
        "validate",
        "asend",
        "_parse",
        "redact",
        "record (",
        "emit",
        "logging",
        "json",
        "pacing",
        "aiohttp",
        "confirm",
    )
    for fragment in wanted:
        matched = [(frame, count) for frame, count in inclusive.items() if fragment in frame]
        if matched:
            frame, count = max(matched, key=lambda item: item[1])
            print(f"    {count / in_batch:5.1%} {frame}")


def _short(frame: str) -> str:
    """`function (path:line)` with the path cut after site-packages or the repository."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").split("site-packages/")[-1].split("wt-bench/")[-1]
    return f"{name} ({where.rsplit(':', 1)[0]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 4_000], help="items per latency")
    parser.add_argument("--cases", nargs="+", default=["aiohttp", "task"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        case, latency, items, _ = args.one
        print(json.dumps(one(case, float(latency), int(items))))
        return
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores", flush=True)
    rows = []
    runs = [
        (case, latency, items, "-")
        for latency, items in zip(args.latencies, args.items, strict=True)
        for case in args.cases
    ]
    profile_path = None
    if args.profile:
        profile_path = f"{tempfile.gettempdir()}/batch-throughput-{os.getpid()}.txt"
        runs.append(("task", 0.05, args.items[0], profile_path))
    for case, latency, items, profile in runs:
        command = [sys.executable, __file__, "--one", case, str(latency), str(items), "-"]
        if profile != "-":  # py-spy samples every thread of the child (cProfile would see one)
            spy = str(Path(sys.executable).with_name("py-spy"))
            command = [spy, "record", "--threads", "--format", "raw", "-r", str(RATE), "-o", profile, "--", *command]
        output = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if output.returncode != 0:
            print(f"{case} at {latency:g} s: failed\n{output.stderr[-3000:]}")
            continue
        result = json.loads([line for line in output.stdout.splitlines() if line.startswith("{")][-1])
        best = CONCURRENCY / latency
        rate = items / result["wall"]
        row = {
            "case": case + (" (profiled)" if profile != "-" else ""),
            "latency_s": latency,
            "items": items,
            "wall_s": round(result["wall"], 2),
            "items_per_s": round(rate),
            "of_best": round(rate / best, 3),
            "cpu_ms_per_item": round(result["cpu"] * 1000 / items, 3),
            "sending_of_best": round((items - 1) / result["sending"] / best, 3) if result["sending"] else None,
            "fixed_s": round(result["fixed"], 2),
            "received": result["received"],
            "counts": result["counts"],
            "ledger_records": result.get("ledger_records"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"\n| case | latency | items | items/s | of {CONCURRENCY}/latency | while sending, of {CONCURRENCY}/latency "
        "| fixed s | client CPU ms/item | ledger records |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['case']} | {row['latency_s'] * 1000:g} ms | {row['items']:,} | {row['items_per_s']} "
            f"| {row['of_best']} | {row['sending_of_best']} | {row['fixed_s']} | {row['cpu_ms_per_item']} "
            f"| {row['ledger_records'] or '-'} |"
        )
    for row in rows:
        if row["case"] != "task":
            continue
        ceiling = next(
            (other for other in rows if other["case"] == "aiohttp" and other["latency_s"] == row["latency_s"]), None
        )
        versus = f"; bare aiohttp {ceiling['of_best']} in the same run" if ceiling else ""
        print(
            f"{'PASS' if row['of_best'] >= GOAL else 'MISS'} task at {row['latency_s'] * 1000:g} ms, "
            f"{CONCURRENCY} in flight: {row['items_per_s']} items/s = {row['of_best']} of "
            f"{CONCURRENCY / row['latency_s']:g}/s (goal >= {GOAL}){versus}"
        )
    if profile_path and Path(profile_path).exists():
        print_profile(profile_path, args.items[0])


if __name__ == "__main__":
    main()
