"""10,000 phones through the Prefect task at Intercom's real shape: 1,667 per 10-s window, 150-400 ms.

Each variant runs in a fresh process: Prefect's own test harness (`prefect_test_harness`: a
temporary Prefect server in a child process, so its CPU is not the client's), the sandbox in a
process of its own (`prefect_intercom.sandbox.process`) with Intercom's limit of 1,667 requests
per wall-clock 10-second window (windows aligned on multiples of 10 s) and each answer's latency
drawn uniformly from 150-400 ms, and a `@flow` that calls `create_phone_call_redirects` once on
a generator of N bodies (the ledger in a temporary directory).

Variants: every answer carries the rate-limit headers, or 30% of the answers carry none (as
Intercom says some do); the default concurrency (nothing passed) and `concurrency=100`; and
`headers/default/s3-slow` (run only when named): the ledger in S3-compatible storage (moto's
server in its own process, prefect-aws's `S3Bucket` with `endpoint_url`, each write and read
delayed 30-80 ms as S3's take tens of ms: `bench/s3_storage.py`) instead of local disk.

Printed per variant:
- wall time of the task call over the theoretical N / 166.7 s. The windows are wall-clock
  aligned, so a run that starts inside a window gets that window's whole budget at once:
  10,000 phones are six windows' worth, so the best finish is 50 s after the start of the
  first window plus the time to send the last window's share, and the ratio can be well
  below 1 (the start's offset into its window is printed);
- the answers 429 the sandbox gave (from its own records);
- client CPU per item: `time.process_time()` of the flow's process around the task call,
  over N (everything the process does: the engine, the pacer, the transport, Prefect's
  logging and events);
- peak in flight: the most requests the sandbox held at once (from its records: each request
  is held from its arrival for its drawn latency);
- ledger records: the record files the batch wrote (local ledger only), what a campaign leaves
  on disk besides a few snapshots.

Run: `.venv/bin/python bench/intercom_shape.py [--phones 10000] [--variants all] [--keep-alive 5]`
(about 75 s a variant). `--keep-alive` sets the sandbox's idle keep-alive timeout (uvicorn's 5 s
by default, as long as the client keeps idle connections: see bench/README.md).
Goals: wall/theoretical <= 1.05, 0 answers 429, <= 2 ms client CPU per item at concurrency 100.
The last line sums up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TOKEN, fresh_batch_key

LIMIT, WINDOW = 1667, 10.0
LATENCY = (0.15, 0.4)
VARIANTS = {
    "headers/default": (0.0, None, "local"),
    "headers/100": (0.0, 100, "local"),
    "30%-bare/default": (0.3, None, "local"),
    "30%-bare/100": (0.3, 100, "local"),
    # The ledger in S3-compatible storage (moto's server in its own process) whose writes (and
    # reads) take 30-80 ms, as S3's do; needs `pip install 'moto[server]' prefect-aws`.
    "headers/default/s3-slow": (0.0, None, "s3-slow"),
}
DEFAULT_VARIANTS = ["headers/default", "headers/100", "30%-bare/default", "30%-bare/100"]
S3_DELAY = (0.03, 0.08)


def run_variant(
    phones: int, omit: float, concurrency: int | None, seed: int, keep_alive: float, storage: str = "local"
) -> dict[str, Any]:
    """One variant in this process: harness, sandbox, flow, task; returns the measurements."""
    from contextlib import nullcontext

    from prefect import flow
    from prefect.filesystems import LocalFileSystem
    from prefect.testing.utilities import prefect_test_harness

    from prefect_intercom import IntercomCredentials, create_phone_call_redirects
    from prefect_intercom.sandbox.process import sandbox_process

    flags = ["--rate-limit", str(LIMIT), "--rate-limit-window", f"{WINDOW:g}", "--seed", str(seed)]
    flags += ["--keep-alive", str(keep_alive)]
    flags += ["--latency", str(LATENCY[0]), "--latency-max", str(LATENCY[1]), "--omit-rate-limit-headers", str(omit)]
    measured: dict[str, Any] = {}

    @flow(name="intercom-shape-bench")
    def deflect(url: str, ledger: Any) -> None:
        credentials = IntercomCredentials(access_token=TOKEN, base_url=url)
        bodies = ({"phone": f"+1415{n:07d}", "custom_attributes": {"row": str(n)}} for n in range(phones))
        options: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
        started_cpu, started = time.process_time(), time.time()
        try:
            report = create_phone_call_redirects(
                credentials,
                bodies,
                batch_key=fresh_batch_key("bench"),
                ledger_storage=ledger,
                **options,
            )
        except Exception as error:  # a stopped batch is still measured; say why
            report = getattr(error, "report", None)
            measured["error"] = f"{type(error).__name__}: {str(error)[:200]}"
        measured.update(started=started, wall=time.time() - started, cpu=time.process_time() - started_cpu)
        measured["counts"] = dict(getattr(report, "counts", None) or {})
        measured["unknown_reasons"] = _unknown_reasons(report)

    if storage == "s3-slow":
        from s3_storage import moto_server, s3_block

        s3 = moto_server()
    else:
        s3 = nullcontext()
    harness = prefect_test_harness(server_startup_timeout=180)  # a loaded machine starts it slowly
    with harness, sandbox_process(*flags, token=TOKEN) as sandbox, s3 as s3_url:
        with tempfile.TemporaryDirectory() as directory:
            if storage == "s3-slow":
                ledger: Any = s3_block(s3_url, write_delay=S3_DELAY, read_delay=S3_DELAY)
            else:
                ledger = LocalFileSystem(basepath=directory)
            deflect(sandbox.url, ledger)
            if storage != "s3-slow":
                measured["ledger_records"] = sum(1 for _ in Path(directory).rglob("record-*"))
        records = sandbox.records()
    statuses = Counter(record["status"] for record in records)
    return {
        **measured,
        "counts": {str(key): value for key, value in (measured.get("counts") or {}).items()},
        "statuses": {str(key): value for key, value in statuses.items()},
        "without_headers": sum(not record["rate_limit_headers"] for record in records),
        "peak_in_flight": _peak_in_flight(records),
        "texted": sum(record["accepted"] for record in records),
    }


def _unknown_reasons(report: Any) -> dict[str, int]:
    """Why items ended `unknown` (their messages, shortened), when the report lists them."""
    try:
        items = report.items("unknown")
    except Exception:  # no report, or one that does not list items
        return {}
    return dict(Counter(f"{item.error_code}: {(item.message or '')[:80]}" for item in items))


def _peak_in_flight(records: list[dict[str, Any]]) -> int:
    """The most requests the sandbox held at once (arrival to arrival + drawn latency)."""
    events = sorted(
        [(record["received_at"], 1) for record in records]
        + [(record["received_at"] + record["latency"], -1) for record in records]
    )
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, default=10_000)
    parser.add_argument(
        "--variants",
        default="all",
        help=f"comma-separated, of: {', '.join(VARIANTS).replace('%', '%%')} (default: all: the first four)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep-alive", type=float, default=5.0, help="the sandbox's keep-alive timeout (default: 5, uvicorn's)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        omit, concurrency, storage = VARIANTS[args.one]
        print(json.dumps(run_variant(args.phones, omit, concurrency, args.seed, args.keep_alive, storage)))
        return
    names = DEFAULT_VARIANTS if args.variants == "all" else args.variants.split(",")
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores", flush=True)
    theoretical = args.phones / (LIMIT / WINDOW)
    rows = []
    for name in names:
        command = [sys.executable, __file__, "--phones", str(args.phones), "--seed", str(args.seed), "--one", name]
        command += ["--keep-alive", str(args.keep_alive)]
        output = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if output.returncode != 0:
            print(f"{name}: failed\n{output.stderr[-3000:]}")
            continue
        result = json.loads(output.stdout.strip().splitlines()[-1])
        offset = result["started"] % WINDOW
        row = {
            "variant": name,
            "wall_s": round(result["wall"], 2),
            "ratio": round(result["wall"] / theoretical, 3),
            "start_offset_s": round(offset, 2),
            "429s": result["statuses"].get("429", 0),
            "cpu_ms_per_item": round(result["cpu"] * 1000 / args.phones, 2),
            "peak_in_flight": result["peak_in_flight"],
            "ledger_records": result.get("ledger_records"),
            "without_headers": result["without_headers"],
            "texted": result["texted"],
            "counts": result["counts"],
            "unknown_reasons": result.get("unknown_reasons"),
            "error": result.get("error"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{args.phones:,} phones; theoretical {theoretical:.1f} s at {LIMIT} per {WINDOW:g} s")
    print(
        "| variant | wall s | wall / theoretical | start offset s | 429s | CPU ms/item | peak in flight "
        "| ledger records | unknown |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['variant']} | {row['wall_s']} | {row['ratio']} | {row['start_offset_s']} | {row['429s']} "
            f"| {row['cpu_ms_per_item']} | {row['peak_in_flight']} | {row['ledger_records'] or '-'} "
            f"| {row['counts'].get('unknown', '-')} |" + (" stopped early" if row["error"] else "")
        )
    for row in rows:
        ok = row["ratio"] <= 1.05 and not row["error"]
        print(f"{'PASS' if ok else 'MISS'} {row['variant']}: wall/theoretical {row['ratio']} (goal <= 1.05)")
        print(f"{'PASS' if row['429s'] == 0 else 'MISS'} {row['variant']}: {row['429s']} answers 429 (goal 0)")
    if rows:
        worst = max(row["ratio"] for row in rows)
        stopped = sum(bool(row["error"]) for row in rows)
        print(
            f"RESULT worst wall/theoretical = {worst:.3f} (goal <= 1.05; {stopped} run(s) stopped early); "
            f"429s = {sum(row['429s'] for row in rows)} "
            f"(goal 0); CPU ms/item at concurrency 100 = "
            f"{[row['cpu_ms_per_item'] for row in rows if row['variant'].endswith('/100')]} (goal <= 2)"
        )


if __name__ == "__main__":
    main()
