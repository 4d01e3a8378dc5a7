"""Does the second JSON Schema engine (jsonschema-rs) matter for a batch at Intercom's shape?

Validation explains every refusal with `jsonschema` (Draft202012Validator). A fast path puts
`jsonschema_rs` in front (`prefect_intercom.fast_verdict`): a plain-JSON body it accepts is valid
at once, only a refused body goes through `jsonschema`. It was removed in issue 10 after this
script measured 1.026x at Intercom's paced shape (under the 1.10x bar), and restored in issue 14:
at 100 requests in flight and 50 ms latency (goal (d)) validation was 13% of the batch's
event-loop CPU, and the fast path (with the numbering-plan cache) cut a valid body's check from
about 118 µs to about 8 µs. This script still measures what it saves at Intercom's paced shape.

Two variants, each run in a fresh process (like `bench/intercom_shape.py --one`), alternating
one / two engines in every round (`--rounds`, 3 by default, round r uses seed `--seed` + r for
both variants):

- **one engine**: `jsonschema` only: `validation._Validator.confirms` is patched to return
  `False` in that process (older packages: `_fast_verdict` patched to `False`).
- **two engines**: the package as shipped, its own fast path in front. A package without one
  (between issue 10 and issue 14) gets `validation._issues` wrapped so that a body
  `jsonschema_rs.Draft202012Validator(schema).is_valid()` accepts returns `[]` at once. No known
  entry point: the script stops and says so. Without `jsonschema_rs` installed the variant is
  skipped and the one-engine variant is measured alone.

Measured per run, and printed per variant as the median over the rounds:

- (a) microseconds per `validate_request("phone_call_redirects", body)` for valid bodies of
  the batch's shape (distinct phones), in the run's process with its variant in place;
- (b) client CPU per item: `time.process_time()` of the flow's process around the call of
  `create_phone_call_redirects` inside a `@flow` under `prefect_test_harness`, over N, against
  the sandbox in its own process at Intercom's shape: 1,667 requests per wall-clock 10-s
  window, 150-400 ms latency, the default concurrency (`run_variant` of
  `bench/intercom_shape.py`, variant `headers/default`);
- (c) wall time of the task call over the theoretical N / 166.7 s (below 1 is possible: the
  run gets the whole budget of the window it starts in, see `bench/intercom_shape.py`).

The last line gives the ratio of CPU per item (one engine / two engines) and the share of
per-item CPU that validation takes in each variant ((a) / (b)).

Decision rule (issue 10): the second engine stays only if one-engine CPU per item is more than
1.10x the two-engine CPU per item at Intercom's shape. The last line still prints that verdict,
for this shape; issue 14 kept jsonschema-rs for goal (d), which this shape does not measure.

Run: `.venv/bin/python bench/validation_engines.py [--phones 5000] [--rounds 3] [--seed 1]`
(about 35 s of sending plus the harness's start-up per run, so about 5 minutes with the
defaults). Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median
from intercom_shape import LIMIT, VARIANTS, WINDOW, run_variant

ONE, TWO = "one engine", "two engines"
SHAPE = "headers/default"  # every answer with its rate-limit headers, default concurrency
DECISION = 1.10


def _bodies(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Valid bodies of the batch's shape (as `bench/intercom_shape.py` sends them)."""
    return [{"phone": f"+1415{n:07d}", "custom_attributes": {"row": str(n)}} for n in range(start, start + count)]


def use_one_engine(validation: ModuleType) -> str:
    """Make validation use `jsonschema` only; returns what was done.

    Args:
        validation: The `prefect_intercom.validation` module.

    Returns:
        A short description of the change, for the run's record.
    """
    if hasattr(validation, "_Validator"):
        validation._Validator.confirms = lambda self, instance: False
        return "_Validator.confirms patched to False"
    if hasattr(validation, "_fast_verdict"):
        validation._fast_verdict = lambda schema, instance: False
        return "_fast_verdict patched to False"
    return "package has no fast path: jsonschema only as shipped"


def use_two_engines(validation: ModuleType) -> str:
    """Put `jsonschema_rs` in front of `jsonschema`; returns what was done.

    Args:
        validation: The `prefect_intercom.validation` module.

    Returns:
        A short description of the change, for the run's record.

    Raises:
        SystemExit: The module has neither `_fast_verdict` nor `_issues` (this script must be
            told the new entry point).
    """
    if hasattr(validation, "_Validator"):
        return "package's own fast path (prefect_intercom.fast_verdict)"
    if hasattr(validation, "_fast_verdict"):
        return "package's own _fast_verdict"
    entry = getattr(validation, "_issues", None)
    if entry is None:
        raise SystemExit(
            "prefect_intercom.validation has neither _fast_verdict nor _issues: point "
            "bench/validation_engines.py's use_two_engines() at the function that validates a body"
        )
    import jsonschema_rs

    # The package's not-JSON check ran before the fast path: keep it, wherever it lives now.
    if hasattr(validation, "not_json_issues"):
        not_json = validation.not_json_issues
    elif hasattr(validation, "_not_json_issues"):
        not_json = lambda instance: validation._not_json_issues(instance, ())  # noqa: E731
    else:
        not_json = None
    compiled: dict[int, tuple[Any, Any]] = {}

    def issues(validator: Any, instance: Any) -> Any:
        schema = validator.schema
        cached = compiled.get(id(schema))
        if cached is None or cached[0] is not schema:
            cached = compiled[id(schema)] = (schema, jsonschema_rs.Draft202012Validator(schema))
        try:
            clean = not_json is None or next(iter(not_json(instance)), None) is None
            if clean and cached[1].is_valid(instance):
                return []
        except Exception:  # a value jsonschema_rs cannot convert: the full path explains it
            pass
        return entry(validator, instance)

    validation._issues = issues
    return "_issues wrapped with jsonschema_rs in front"


def validate_microseconds(calls: int = 2000, blocks: int = 7) -> float:
    """Median microseconds per `validate_request` of a valid body, over `blocks` blocks of `calls`.

    Args:
        calls: Calls per timed block (each on a distinct body).
        blocks: Timed blocks; the median block is kept.

    Returns:
        Microseconds per call.
    """
    from prefect_intercom import validate_request

    bodies = _bodies(calls, start=9_000_000)
    for body in bodies[:200]:  # warm up: compiled validators, caches; a refusal fails here
        validate_request("phone_call_redirects", body)
    timings = []
    for _ in range(blocks):
        started = time.perf_counter()
        for body in bodies:
            validate_request("phone_call_redirects", body)
        timings.append((time.perf_counter() - started) / calls * 1e6)
    return median(timings)


def run_one(variant: str, phones: int, seed: int, keep_alive: float) -> dict[str, Any]:
    """One run in this process: set the variant up, time validation, then the batch."""
    import prefect_intercom
    from prefect_intercom import validation

    setup = use_one_engine(validation) if variant == ONE else use_two_engines(validation)
    micro = validate_microseconds()
    omit, concurrency = VARIANTS[SHAPE]
    result = run_variant(phones, omit, concurrency, seed, keep_alive)
    return {"setup": setup, "package": prefect_intercom.__file__, "validate_us": micro, **result}


def main() -> None:
    """Run every variant in fresh processes, alternating over the rounds, and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1, help="round r uses seed + r, the same for both variants")
    parser.add_argument(
        "--keep-alive", type=float, default=5.0, help="the sandbox's keep-alive timeout (default: 5, uvicorn's)"
    )
    parser.add_argument("--one", choices=[ONE, TWO], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.phones, args.seed, args.keep_alive)))
        return
    variants = [ONE, TWO]
    if importlib.util.find_spec("jsonschema_rs") is None:
        print(f"{TWO}: skipped, jsonschema_rs is not installed (`pip install jsonschema-rs` to measure it)")
        variants = [ONE]
    theoretical = args.phones / (LIMIT / WINDOW)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for round_number in range(args.rounds):
        seed = args.seed + round_number
        for name in variants:
            command = [sys.executable, __file__, "--phones", str(args.phones), "--seed", str(seed)]
            command += ["--keep-alive", str(args.keep_alive), "--one", name]
            output = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
            if output.returncode != 0:
                print(f"round {round_number + 1} {name}: failed\n{output.stderr[-3000:]}", flush=True)
                continue
            result = json.loads(output.stdout.strip().splitlines()[-1])
            row = {
                "round": round_number + 1,
                "variant": name,
                "setup": result["setup"],
                "package": result["package"],
                "validate_us": round(result["validate_us"], 2),
                "cpu_ms_per_item": round(result["cpu"] * 1000 / args.phones, 3),
                "wall_s": round(result["wall"], 2),
                "ratio": round(result["wall"] / theoretical, 3),
                "start_offset_s": round(result["started"] % WINDOW, 2),
                "429s": result["statuses"].get("429", 0),
                "texted": result["texted"],
                "counts": result["counts"],
                "error": result.get("error"),
            }
            runs[name].append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.phones:,} phones a run; theoretical {theoretical:.1f} s at {LIMIT} per {WINDOW:g} s; medians")
    print("| variant | runs | (a) µs per validate_request | (b) client CPU ms/item | (c) wall / theoretical |")
    print("| --- | --- | --- | --- | --- |")
    summary: dict[str, dict[str, float]] = {}
    for name, rows in runs.items():
        if not rows:
            continue
        summary[name] = {key: median([row[key] for row in rows]) for key in ("validate_us", "cpu_ms_per_item", "ratio")}
        stopped = sum(bool(row["error"]) for row in rows)
        print(
            f"| {name} | {len(rows)}{f' ({stopped} stopped early)' if stopped else ''} "
            f"| {summary[name]['validate_us']:.2f} | {summary[name]['cpu_ms_per_item']:.3f} "
            f"| {summary[name]['ratio']:.3f} |"
        )
    shares = "; ".join(
        f"validation share of CPU/item, {name}: {values['validate_us'] / (values['cpu_ms_per_item'] * 1000):.1%}"
        for name, values in summary.items()
    )
    if ONE in summary and TWO in summary:
        ratio = summary[ONE]["cpu_ms_per_item"] / summary[TWO]["cpu_ms_per_item"]
        verdict = "keep jsonschema-rs" if ratio > DECISION else "remove jsonschema-rs"
        print(
            f"RESULT CPU/item one engine / two engines = {ratio:.3f}x "
            f"(keep only if > {DECISION:.2f}: {verdict}); {shares}"
        )
    else:
        print(f"RESULT ratio not measured (needs both variants); {shares or 'no run succeeded'}")


if __name__ == "__main__":
    main()
