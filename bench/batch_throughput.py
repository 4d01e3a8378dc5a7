"""The batch through the Prefect task at 100 in flight: items/s over concurrency / latency, and client CPU per item.

Cases, each in a fresh child process with the sandbox in a process of its own (no rate limit,
every answer after a fixed latency) and, for the task, Prefect's `prefect_test_harness` (a
temporary Prefect server in another child, so its CPU is not the client's):

- `task`: `create_phone_call_redirects(credentials, bodies, concurrency=100, ledger_storage=
  LocalFileSystem(tmp))` called once in a `@flow` (pacing, retry policy and the batch key's lease
  as shipped);
- `aiohttp`: the same POSTs (same bodies, same `Authorization`) with a bare `aiohttp.ClientSession`
  (connector limit 100) and 100 coroutines taking items from one iterator: no ledger, no
  validation, no Prefect: what this machine's client and sandbox can do at all.

At 50 ms the best possible rate is 100 / 0.05 = 2,000 items/s; at 200 ms, 500 items/s. Printed per
case: items/s, its ratio to that best rate, and client CPU per item (`time.process_time()` of the
child around the sends, over the items). Goal: the task at >= 0.8 of the best rate at 50 ms. The
bare aiohttp row of the same run is the ceiling of this machine (the sandbox answers from one
Python process, and other people's tests share the 2 cores).

`--profile` runs the task case at 50 ms once more under cProfile and prints the functions with the
most own time and selected cumulative costs, per item (cProfile's overhead inflates everything;
read the shares, not the absolute times).

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

from common import TOKEN

CONCURRENCY = 100
GOAL = 0.8


def bodies(items: int) -> Any:
    """The request bodies: distinct valid phones."""
    return ({"phone": f"+1415{n:07d}", "custom_attributes": {"row": str(n)}} for n in range(items))


def run_task(url: str, items: int, profile: str | None) -> dict[str, Any]:
    """The batch through the Prefect task in a flow (this process holds the harness)."""
    from prefect import flow
    from prefect.filesystems import LocalFileSystem

    from prefect_intercom import IntercomCredentials, create_phone_call_redirects

    measured: dict[str, Any] = {}

    @flow(name="batch-throughput-bench")
    def deflect(ledger: str) -> None:
        credentials = IntercomCredentials(access_token=TOKEN, base_url=url)
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started_cpu, started = time.process_time(), time.perf_counter()
        report = create_phone_call_redirects(
            credentials,
            bodies(items),
            batch_key=f"bench-{time.time_ns()}",
            concurrency=CONCURRENCY,
            ledger_storage=LocalFileSystem(basepath=ledger),
        )
        measured.update(wall=time.perf_counter() - started, cpu=time.process_time() - started_cpu)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        measured["counts"] = {str(key): value for key, value in report.counts.items()}
        measured["peak_concurrency"] = report.concurrency

    with tempfile.TemporaryDirectory() as ledger:
        deflect(ledger)
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

        started_cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return {"wall": wall, "cpu": cpu, "counts": statuses}


def one(case: str, latency: float, items: int, profile: str | None) -> dict[str, Any]:
    """One case in this process: sandbox (and harness for the task), the sends, the measurements."""
    from prefect_intercom.sandbox.process import sandbox_process

    flags = ["--latency", str(latency), "--keep-alive", "65"]
    with sandbox_process(*flags, token=TOKEN) as sandbox:
        if case == "task":
            from prefect.testing.utilities import prefect_test_harness

            with prefect_test_harness(server_startup_timeout=60):
                result = run_task(sandbox.url, items, profile)
        else:
            result = asyncio.run(run_aiohttp(sandbox.url, items))
        result["received"] = len(sandbox.records())
    return result


def print_profile(path: str, items: int) -> None:
    """The profile's top costs, per item."""
    import pstats

    stats = pstats.Stats(path)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\nprofile of the task at 50 ms: {total:.2f} s of CPU-in-Python (profiled) for {items:,} items")
    entries = stats.stats  # type: ignore[attr-defined]
    rows = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:25]
    print("top own time: µs/item (share) function")
    for (filename, line, name), (_, _, own, _, _) in rows:
        where = filename.split("site-packages/")[-1].split("wt-bench/")[-1]
        print(f"  {own * 1e6 / items:8.1f} ({own / total:5.1%}) {where}:{line}({name})")
    print("selected cumulative time: µs/item (share)")
    wanted = [
        ("ledger.py", "announce"),
        ("ledger.py", "complete"),
        ("ledger.py", "_write_loop"),
        ("ledger_format.py", "encode_record"),
        ("ledger_store.py", "write"),
        ("validation.py", None),
        ("client.py", "prepare"),
        ("client.py", "asend"),
        ("report.py", "add"),
        ("run.py", "send"),
        ("run.py", "admit"),
        ("logging/", None),
        ("json/encoder.py", None),
        ("json/decoder.py", None),
        ("events/", None),
        ("httpx_aiohttp", None),
        ("aiohttp/", None),
        ("pacing/", None),
        ("lease.py", None),
    ]
    for fragment, function in wanted:
        matches = [
            (key, value)
            for key, value in entries.items()
            if fragment in key[0] and (function is None or key[2] == function)
        ]
        if not matches:
            continue
        if function is None:  # a module: its own time, summed
            cost = sum(value[2] for _, value in matches)
            label = f"{fragment} (own time of all its functions)"
        else:
            cost = max(value[3] for _, value in matches)
            label = f"{fragment} {function} (cumulative)"
        print(f"  {cost * 1e6 / items:8.1f} ({cost / total:5.1%}) {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 4_000], help="items per latency")
    parser.add_argument("--cases", nargs="+", default=["aiohttp", "task"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        case, latency, items, profile = args.one
        print(json.dumps(one(case, float(latency), int(items), None if profile == "-" else profile)))
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
        profile_path = f"{tempfile.gettempdir()}/batch-throughput-{os.getpid()}.prof"
        runs.append(("task", 0.05, args.items[0], profile_path))
    for case, latency, items, profile in runs:
        command = [sys.executable, __file__, "--one", case, str(latency), str(items), profile]
        output = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if output.returncode != 0:
            print(f"{case} at {latency:g} s: failed\n{output.stderr[-3000:]}")
            continue
        result = json.loads(output.stdout.strip().splitlines()[-1])
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
            "received": result["received"],
            "counts": result["counts"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"\n| case | latency | items | items/s | of {CONCURRENCY}/latency | client CPU ms/item |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['case']} | {row['latency_s'] * 1000:g} ms | {row['items']:,} | {row['items_per_s']} "
            f"| {row['of_best']} | {row['cpu_ms_per_item']} |"
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
