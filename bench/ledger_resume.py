"""Resuming from the batch ledger (issue 14): a crashed 1,000,000-item run read back, a campaign resumed.

Part (a), `--parts build,local,s3,s3-slow`: a child process sends N items (1,000,000 by default)
through `BatchLedger` on local disk: `announce` then `complete` of groups of 5,000 items at once
(quick to build), then groups of 4 items (a record of a real campaign holds a few items) until a
periodic snapshot is written, then records after it up to one short of the next snapshot (the
longest tail a crash can leave), and one group announced and never completed (in flight at the
crash); it never calls `close()` and ends with `os._exit`. That ledger is then read by
`BatchLedger.open` in a fresh child process per reading: from local disk; from an S3-compatible
server (moto's server in its own process, the objects uploaded as the builder wrote them,
prefect-aws's `S3Bucket` with `endpoint_url`); and from the same server through `SlowS3Bucket`,
whose every read and write first waits 30-80 ms (moto answers in ms, S3 in tens of ms). The
claim each reading writes is deleted after it, so every reading sees the same ledger. Per
reading: the seconds `BatchLedger.open` took, and the reading process's peak memory over its
baseline: `ru_maxrss` before (after imports, the Prefect client and one read of a missing object,
so boto's models are loaded) and after, and with `--tracemalloc` the peak of Python allocations
during `open` (a second child; tracemalloc slows it, so its time is not reported).
A reading is stopped after `--asis-timeout` seconds (150 by default): before the key tables had
a hash multiplier of their own, re-reading a large crashed run was quadratic and never finished.
Goals: local <= 10 s, S3 <= 60 s, memory over baseline <= 50 MB.

Part (b), `--parts campaign`: 5,000 phones through `create_phone_call_redirects` in a `@flow`, in a
child process, against the sandbox in its own process at Intercom's shape (1,667 per 10-s window,
150-400 ms), the ledger in moto through `SlowS3Bucket` (30-80 ms per write and read). The child
is killed with SIGKILL once the sandbox has received half the phones; a second child re-runs the
flow with the same batch key (`lock_wait` 120 s: the killed run's lease, 60 s, must expire
first). Printed: the re-run's `BatchLedger.open` time and the time from its start (of `open`; and
of the task call, which includes waiting for the lease) to its first request at the sandbox, over
the campaign's own time (the theoretical 5,000 / 166.7 s = 30 s, and the measured sending time of
both runs). Goal: resume <= 10% of the campaign's time. Also: phones texted twice (sandbox's
records; at most the requests in flight at the kill may be, and only if re-sent).

Both parts share one Prefect API (`prefect_test_harness` in this process; the children get its
URL): the ledger's key is a Secret block on it and the batch key's lease uses it.

Run: `.venv/bin/python bench/ledger_resume.py [--items 1000000] [--parts build,local,s3,s3-slow,campaign]`
(about 6-8 minutes). Needs `pip install 'moto[server]' prefect-aws`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TOKEN

BATCH_KEY = "bench-ledger-resume"
API_URL = "https://api.intercom.io"
FOLDER = "results"
BIG_GROUP, SMALL_GROUP = 5_000, 4
GOALS = {"local": 10.0, "s3": 60.0, "s3-slow": 60.0}
MEMORY_GOAL_MB = 50.0
CAMPAIGN_PHONES = 5_000
LIMIT, WINDOW = 1667, 10.0
DELAY = (0.03, 0.08)


# --- part (a): build ----------------------------------------------------------------------


async def build(directory: str, items: int) -> dict[str, Any]:
    """Write a crashed run's ledger of `items` items under `directory` (see the module's docstring)."""
    from prefect.filesystems import LocalFileSystem

    from prefect_intercom.batch.ledger import BatchLedger, LedgerApp, snapshot_due
    from prefect_intercom.outcomes import Outcome

    started = time.perf_counter()
    ledger = await BatchLedger.open(
        BATCH_KEY, LocalFileSystem(basepath=directory), app=LedgerApp(API_URL, TOKEN), linger=0.0
    )
    next_index = 0

    async def group(size: int, *, complete: bool = True) -> None:
        nonlocal next_index
        indexes = range(next_index, next_index + size)
        next_index += size
        digests = [ledger.digest(f"+1{n:010d}") for n in indexes]
        for index, digest in zip(indexes, digests, strict=True):
            ledger.first_seen(digest, index)
        await asyncio.gather(*(ledger.announce(i, d) for i, d in zip(indexes, digests, strict=True)))
        if complete:
            await asyncio.gather(*(ledger.complete(i, d, Outcome.SENT) for i, d in zip(indexes, digests, strict=True)))

    while next_index + BIG_GROUP <= items:
        await group(BIG_GROUP)
    if items - next_index:
        await group(items - next_index)
    bulk_records = ledger.records
    while ledger.snapshots == 0:  # small records until the periodic snapshot is written (its head too)
        await group(SMALL_GROUP)
        if ledger._snapshot is not None:
            await ledger._snapshot
    covered = ledger._snapshot_at[0]
    due = snapshot_due(len(ledger._previous) + len(ledger._current))  # the product's own rule
    while ledger.records - covered < due - 2:
        await group(SMALL_GROUP)
    await group(SMALL_GROUP, complete=False)  # in flight at the crash
    await asyncio.sleep(0.1)
    return {
        "build_s": round(time.perf_counter() - started, 1),
        "items": next_index,
        "records": ledger.records,
        "bulk_records": bulk_records,
        "snapshot_covers": covered,
        "tail_records": ledger.records - covered,
        "snapshots": ledger.snapshots,
    }


# --- part (a): read -----------------------------------------------------------------------


def _peak_rss_kb() -> int:
    """This process's peak resident memory since the last reset (VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def read(where: str, target: str, traced: bool, presized: bool = False) -> dict[str, Any]:
    """`BatchLedger.open` of the built ledger in this process: seconds and memory over the baseline."""
    from prefect.filesystems import LocalFileSystem

    from prefect_intercom.batch.ledger import BatchLedger, LedgerApp
    from prefect_intercom.batch.ledger_secret import load_ledger_key
    from prefect_intercom.batch.ledger_store import store_for

    if where == "local":
        storage: Any = LocalFileSystem(basepath=target)
    else:
        from s3_storage import s3_block

        delay = DELAY if where == "s3-slow" else (0.0, 0.0)
        storage = s3_block(target, folder=FOLDER, write_delay=delay, read_delay=delay)
    await load_ledger_key()  # the Prefect client is warm, as in a flow run
    await store_for(storage).read("prefect-intercom-ledger/warm-up")  # boto's models loaded (S3)
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
    before = _peak_rss_kb()
    if traced:
        import tracemalloc

        tracemalloc.start()
    started = time.perf_counter()
    ledger = await BatchLedger.open(BATCH_KEY, storage, app=LedgerApp(API_URL, TOKEN))
    elapsed = time.perf_counter() - started
    peak_traced = None
    if traced:
        import tracemalloc

        peak_traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    after = _peak_rss_kb()
    return {
        "where": where,
        "presized": presized,
        "open_s": round(elapsed, 3),
        "rss_before_mb": round(before / 1024, 1),
        "peak_rss_mb": round(after / 1024, 1),
        "rss_growth_mb": round((after - before) / 1024, 1),
        "traced_peak_mb": None if peak_traced is None else round(peak_traced / 2**20, 1),
        "previous": ledger.previous_count,
        "run": ledger.run,
        "claim": ledger.paths.claim(ledger.run),
    }


def upload(directory: str, url: str) -> int:
    """Copy every ledger object under `directory` to the bucket's folder, as the builder wrote them."""
    from s3_storage import s3_client

    client = s3_client(url)
    files = [path for path in Path(directory).rglob("*") if path.is_file() and not path.name.startswith(".")]

    def put(path: Path) -> None:
        client.put_object(
            Bucket="ledger", Key=f"{FOLDER}/{path.relative_to(directory).as_posix()}", Body=path.read_bytes()
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))
    return len(files)


def child(env: dict[str, str], *arguments: str, timeout: float = 900) -> dict[str, Any]:
    """Run this script with `arguments` in a fresh process; its last line of output, as JSON."""
    output = subprocess.run(
        [sys.executable, __file__, *arguments], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if output.returncode != 0:
        raise RuntimeError(f"{arguments}: exit {output.returncode}\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def part_a(
    env: dict[str, str], items: int, parts: list[str], traced: bool, work: str, asis_timeout: float
) -> list[str]:
    """Build, then read from each place; returns the PASS/MISS lines."""
    from s3_storage import moto_server

    directory = f"{work}/ledger"
    verdicts = []
    built = child(env, "--build", directory, "--items", str(items))
    size = sum(path.stat().st_size for path in Path(directory).rglob("*") if path.is_file())
    print(json.dumps({**built, "ledger_mb": round(size / 2**20, 1)}), flush=True)
    readings = []
    if "local" in parts:
        readings.append(("local", directory))
    s3_parts = [part for part in ("s3", "s3-slow") if part in parts]
    with moto_server() if s3_parts else _nothing() as url:
        if s3_parts:
            started = time.perf_counter()
            count = upload(directory, url)
            print(f"uploaded {count} objects to moto in {time.perf_counter() - started:.1f} s", flush=True)
            readings += [(part, url) for part in s3_parts]
        for where, target in readings:
            modes = [("--read", False)] + ([("--read-traced", False)] if traced else [])
            for mode, presized in modes:
                arguments = [mode, where, target] + (["--presized"] if presized else [])
                try:
                    result = child(env, *arguments, timeout=asis_timeout)
                except subprocess.TimeoutExpired:
                    print(f"{where}, as shipped: BatchLedger.open did not finish in {asis_timeout:g} s", flush=True)
                    verdicts.append(
                        f"MISS read {items:,}-item crashed ledger from {where} as shipped: not done after "
                        f"{asis_timeout:g} s (goal <= {GOALS[where]:g} s)"
                    )
                    _delete_claims(where, directory, url)
                    continue
                _delete_claims(where, directory, url)
                print(json.dumps({"mode": mode, **result}), flush=True)
                label = where
                if mode == "--read":
                    ok = result["open_s"] <= GOALS[where]
                    verdicts.append(
                        f"{'PASS' if ok else 'MISS'} read {items:,}-item crashed ledger from {label}: "
                        f"{result['open_s']:.2f} s (goal <= {GOALS[where]:g} s)"
                    )
                growth = result["traced_peak_mb"] if mode == "--read-traced" else result["rss_growth_mb"]
                what = "tracemalloc peak" if mode == "--read-traced" else "peak RSS growth"
                verdicts.append(
                    f"{'PASS' if growth <= MEMORY_GOAL_MB else 'MISS'} memory reading from {label} ({what}): "
                    f"{growth:.1f} MB (goal <= {MEMORY_GOAL_MB:g} MB)"
                )
    return verdicts


def _delete_claims(where: str, directory: str, url: str | None) -> None:
    """Remove the claims readings wrote (run 1 on), so that every reading sees the crashed run alone."""
    from s3_storage import s3_client

    _forget_readings_on_the_server(directory)
    if where == "local":
        for claim in Path(directory).glob("*/*/run-0000[1-9]/claim"):
            claim.unlink()
        return
    client = s3_client(url)  # a listing stops at 1,000 keys: delete the claims by name
    folder = next(Path(directory).glob("*/*/run-00000")).parent.relative_to(directory).as_posix()
    for run in range(1, 10):
        client.delete_object(Bucket="ledger", Key=f"{FOLDER}/{folder}/run-{run:05d}/claim")


def _forget_readings_on_the_server(directory: str) -> None:
    """Set the ledger's run count on the Prefect server back to the crashed run's (readings raised it)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableUpdate

    from prefect_intercom.batch.ledger_marker import MARKER_TAGS, marker_name

    folder = next(Path(directory).glob("*/*/run-00000")).parent.relative_to(directory).as_posix()

    async def forget() -> None:
        async with get_client() as client:
            variable = await client.read_variable_by_name(marker_name(folder))
            if variable is not None and isinstance(variable.value, dict):
                value = {**variable.value, "runs": 1}
                await client.update_variable(VariableUpdate(name=variable.name, value=value, tags=MARKER_TAGS))

    asyncio.run(forget())


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


# --- part (b): a campaign killed half-way and resumed -------------------------------------


def campaign_run(sandbox_url: str, s3_url: str, phones: int, marks: str) -> None:
    """One run of the campaign's flow in this process; writes its timestamps to `marks` (JSON)."""
    from prefect import flow
    from s3_storage import s3_block

    from prefect_intercom import IntercomCredentials, create_phone_call_redirects
    from prefect_intercom.batch import ledger as ledger_module

    times: dict[str, float] = {}
    opened = ledger_module.BatchLedger.open.__func__  # type: ignore[attr-defined]

    async def timed_open(cls: Any, *args: Any, **kwargs: Any) -> Any:
        times["open_start"] = time.time()
        try:
            return await opened(cls, *args, **kwargs)
        finally:
            times["open_end"] = time.time()
            Path(marks).write_text(json.dumps(times))

    ledger_module.BatchLedger.open = classmethod(timed_open)  # type: ignore[method-assign]

    @flow(name="ledger-resume-bench")
    def campaign() -> None:
        credentials = IntercomCredentials(access_token=TOKEN, base_url=sandbox_url)
        bodies = ({"phone": f"+1415{n:07d}"} for n in range(phones))
        times["task_start"] = time.time()
        Path(marks).write_text(json.dumps(times))
        report = create_phone_call_redirects(
            credentials,
            bodies,
            batch_key=BATCH_KEY + "-campaign",
            ledger_storage=s3_block(s3_url, folder="campaign", write_delay=DELAY, read_delay=DELAY),
            lock_wait=120.0,
        )
        times["task_end"] = time.time()
        times.update({f"count_{key}": value for key, value in report.counts.items()})
        Path(marks).write_text(json.dumps(times))

    campaign()


def part_b(env: dict[str, str], work: str, seed: int) -> list[str]:
    """The campaign killed at half its phones and re-run; returns the PASS/MISS line."""
    from s3_storage import moto_server

    from prefect_intercom.sandbox.process import sandbox_process

    flags = ["--rate-limit", str(LIMIT), "--rate-limit-window", f"{WINDOW:g}", "--seed", str(seed)]
    flags += ["--latency", "0.15", "--latency-max", "0.4"]
    phones = CAMPAIGN_PHONES
    with moto_server() as s3_url, sandbox_process(*flags, token=TOKEN) as sandbox:
        marks = [f"{work}/first.json", f"{work}/second.json"]
        command = [sys.executable, __file__, "--campaign-run", sandbox.url, s3_url, str(phones)]
        first = subprocess.Popen([*command, marks[0]], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            time.sleep(0.5)
            received = len(sandbox.records())
            if received >= phones // 2 or first.poll() is not None:
                break
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.time()
        at_kill = sandbox.records()
        print(f"killed the first run (SIGKILL) after {len(at_kill)} requests at the sandbox", flush=True)
        second = subprocess.run([*command, marks[1]], env=env, capture_output=True, text=True, timeout=600, check=False)
        if second.returncode != 0:
            print(second.stderr[-3000:])
        records = sandbox.records()
    one, two = (json.loads(Path(mark).read_text()) for mark in marks)
    sent_first = [record["received_at"] for record in at_kill]
    sent_second = sorted(record["received_at"] for record in records if record["received_at"] > killed_at)
    first_send = sent_second[0] if sent_second else float("nan")
    sending = (max(sent_first) - min(sent_first)) + (sent_second[-1] - first_send if sent_second else 0.0)
    theoretical = phones / (LIMIT / WINDOW)
    texts: dict[str, int] = {}
    for record in records:
        if record["accepted"]:
            texts[record["body"]["phone"]] = texts.get(record["body"]["phone"], 0) + 1
    result = {
        "requests_before_kill": len(at_kill),
        "requests_after_kill": len(sent_second),
        "open_s": round(two["open_end"] - two["open_start"], 3),
        "open_to_first_send_s": round(first_send - two["open_start"], 3),
        "task_start_to_first_send_s": round(first_send - two["task_start"], 3),
        "lease_wait_s": round(two["open_start"] - two["task_start"], 3),
        "first_run_open_s": round(one["open_end"] - one["open_start"], 3),
        "campaign_theoretical_s": round(theoretical, 1),
        "campaign_sending_s": round(sending, 1),
        "rerun_counts": {key[6:]: value for key, value in two.items() if key.startswith("count_")},
        "phones_texted": len(texts),
        "phones_texted_twice": sum(count > 1 for count in texts.values()),
        "answers_429": sum(record["status"] == 429 for record in records),
    }
    print(json.dumps(result), flush=True)
    ratio = result["open_to_first_send_s"] / theoretical
    measured = result["open_to_first_send_s"] / sending
    return [
        f"{'PASS' if ratio <= 0.10 else 'MISS'} resume (re-run's BatchLedger.open start -> first send) "
        f"{result['open_to_first_send_s']:.2f} s = {ratio:.1%} of the theoretical {theoretical:.0f} s "
        f"({measured:.1%} of the measured {sending:.1f} s of sending; open alone {result['open_s']:.2f} s; "
        f"goal <= 10%)",
        f"{'PASS' if result['task_start_to_first_send_s'] / theoretical <= 0.10 else 'MISS'} resume from the "
        f"re-run's task call (includes {result['lease_wait_s']:.1f} s waiting for the killed run's lease) "
        f"{result['task_start_to_first_send_s']:.2f} s = {result['task_start_to_first_send_s'] / theoretical:.1%} "
        "(goal <= 10%)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--parts", default="build,local,s3,s3-slow,campaign")
    parser.add_argument("--tracemalloc", action="store_true", help="also measure each reading under tracemalloc")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--read", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--read-traced", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--presized", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--asis-timeout", type=float, default=150.0, help="seconds a reading by the shipped code may take (150)"
    )
    parser.add_argument("--campaign-run", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        print(json.dumps(asyncio.run(build(args.build, args.items))), flush=True)
        os._exit(0)  # a crash: no close(), nothing flushed
    if args.read or args.read_traced:
        where, target = args.read or args.read_traced
        print(json.dumps(asyncio.run(read(where, target, traced=bool(args.read_traced), presized=args.presized))))
        return
    if args.campaign_run:
        sandbox_url, s3_url, phones, marks = args.campaign_run
        campaign_run(sandbox_url, s3_url, int(phones), marks)
        return

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry writes racing its SQLite
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    parts = args.parts.split(",")
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores", flush=True)
    verdicts: list[str] = []
    work = tempfile.mkdtemp(prefix="ledger-resume-")
    try:
        with prefect_test_harness(server_startup_timeout=180):
            env = {**os.environ, "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value())}
            if "build" in parts:
                verdicts += part_a(env, args.items, parts, args.tracemalloc, work, args.asis_timeout)
            if "campaign" in parts:
                verdicts += part_b(env, work, args.seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
