"""Kill a deflect-calls flow run on a process worker, resume it, count texts per phone at the sandbox.

The cluster (`conftest.py`): PostgreSQL, `prefect server start`, moto's S3, a `process` pool with
two workers standing for two machines (own PREFECT_HOME, working directory and TMPDIR each;
work queues `machine-a` and `machine-b`), the sandbox in its own process. A run is SIGKILLed
(its `infrastructure_pid`, with any children) once ~30 % of the phones were texted, then resumed.
Every phone must end texted exactly once, except those in flight at the kill (at most
`CONCURRENCY`), which the ledger records as unknown and must never be resent.

Measured numbers are printed (`[distributed] ...`) and written to
`test-output/distributed/measurements.json`; docs/deployments.md quotes them.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest

from prefect_intercom.batch.lease import lease_name

from .cluster import PROJECT_ROOT, S3_BLOCK, Cluster, local_storage, wait_for

pytestmark = pytest.mark.e2e

COUNT = 1_000
KILL_AT = 0.3
CONCURRENCY = 20
WORKER_LOGGER = "prefect.flow_runs.worker - "
MEASUREMENTS = PROJECT_ROOT / "test-output" / "distributed" / "measurements.json"


def record(name: str, **values: Any) -> None:
    """Print a measurement and keep it in test-output/distributed/measurements.json."""
    print(f"\n[distributed] {name}: " + ", ".join(f"{key}={value}" for key, value in values.items()))
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(MEASUREMENTS.read_text()) if MEASUREMENTS.exists() else {}
    kept[name] = {**values, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    MEASUREMENTS.write_text(json.dumps(kept, indent=2) + "\n")


def phones(offset: int) -> list[str]:
    return [f"+1415{offset + index:07d}" for index in range(COUNT)]


def write_csv(cluster: Cluster, name: str, offset: int) -> str:
    """A CSV of COUNT distinct phones at a path both machines read (standing for a shared volume)."""
    path = cluster.base / "shared" / f"{name}.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text("phone\n" + "".join(f"{phone}\n" for phone in phones(offset)))
    return str(path)


def accepted(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(entry["body"]["phone"] for entry in records if entry["accepted"])


def kill_at_fraction(cluster: Cluster, flow_run_id: str, *, await_worker_report: bool = False) -> tuple[int, float]:
    """SIGKILL the run's process (and its children) once KILL_AT of the phones were texted.

    With `await_worker_report`, also wait for the worker's own crash report: the runner reports
    CRASHED at once and the worker a few seconds later, and a state set in between (a Retry)
    may be turned back to CRASHED.

    Returns:
        How many phones had been texted, and when (wall clock) the kill was sent.
    """
    import psutil  # installed by `.ci/setup --full`; imported here so a plain set-up still collects the tests

    worker_log = cluster.logs / f"worker-{machine_of(cluster, flow_run_id)}.log"

    def far_enough() -> bool:
        run = cluster.flow_run(flow_run_id)
        state = (run.get("state") or {}).get("type")
        assert state not in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, f"the run ended before the kill: {state}"
        return sum(accepted(cluster.sandbox_records()).values()) >= COUNT * KILL_AT

    wait_for(f"{KILL_AT:.0%} of the phones to be texted", far_enough, seconds=120, interval=0.1)
    pid = int(str(cluster.flow_run(flow_run_id)["infrastructure_pid"]).rsplit(":", 1)[-1])
    process = psutil.Process(pid)
    seen = worker_log.read_text(errors="replace").count(WORKER_LOGGER)
    killed_at = time.time()
    for child in [*process.children(recursive=True), process]:
        child.send_signal(signal.SIGKILL)
    psutil.wait_procs([process], timeout=30)
    texted = sum(accepted(cluster.sandbox_records()).values())
    wait_for("CRASHED", lambda: cluster.flow_run(flow_run_id)["state"]["type"] == "CRASHED", seconds=30)
    if await_worker_report:  # watched in the worker's own output: the API gets its logs 2-3 s later

        def worker_reported() -> bool:
            return worker_log.read_text(errors="replace").count(WORKER_LOGGER) > seen

        try:
            wait_for("the worker's crash report", worker_reported, seconds=20, interval=0.1)
        except TimeoutError:
            print("\n[distributed] no crash report from the worker within 20 s of the kill; going on")
    return texted, killed_at


def machine_of(cluster: Cluster, flow_run_id: str) -> str:
    queue = cluster.flow_run(flow_run_id)["work_queue_name"]
    assert queue in cluster.machines, queue
    return queue


def timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def release_crashed_lease(cluster: Cluster, batch_key: str) -> None:
    """What an operator does once sure the holder is dead (`prefect gcl delete intercom-batch-...`).

    Without it a re-run within 60 s of the kill is refused until the crashed holder's lease
    decays (docs/batch-lease.md); scenario c measures the take-over without this help.
    """
    response = httpx.delete(f"{cluster.api_url}/v2/concurrency_limits/{lease_name(batch_key)}", timeout=30)
    assert response.status_code in (200, 204, 404), response.text


def first_send_after(cluster: Cluster, before: int, since: float, flow_run_id: str, seconds: float) -> float | None:
    """Seconds from `since` (wall clock) to the first request the sandbox received after its first `before`."""

    def new_send() -> float | None:
        records = cluster.sandbox_records()
        if len(records) > before:
            return records[before]["received_at"] - since
        state = (cluster.flow_run(flow_run_id).get("state") or {}).get("type")
        if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            records = cluster.sandbox_records()  # it may have sent just before it ended
            return records[before]["received_at"] - since if len(records) > before else -1.0
        return None

    try:
        found = wait_for("a new send", new_send, seconds=seconds, interval=0.25)
    except TimeoutError:
        return None
    return None if found == -1.0 else found


def running_since(cluster: Cluster, flow_run_id: str) -> float | None:
    """Wall-clock time of the run's last RUNNING state (its latest start)."""
    starts = [state["timestamp"] for state in cluster.states(flow_run_id) if state["type"] == "RUNNING"]
    return timestamp(starts[-1]) if starts else None


def assert_nobody_twice(texted: Counter[str], what: str) -> None:
    twice = {phone: count for phone, count in texted.items() if count > 1}
    assert not twice, f"{what}: {len(twice)} phones texted more than once"


def assert_nobody_lost(texted: Counter[str], offset: int, what: str) -> None:
    never = set(phones(offset)) - set(texted)
    # Only those in flight at the kill may be unknown (and must then not be resent).
    assert len(never) <= CONCURRENCY, f"{what}: {len(never)} phones never texted (in flight at most {CONCURRENCY})"


def assert_once_each(texted: Counter[str], offset: int, what: str) -> None:
    assert_nobody_twice(texted, what)
    assert_nobody_lost(texted, offset, what)


def ledger_storage_parameter(cluster: Cluster) -> None:
    deployment = cluster.api("GET", f"/deployments/{cluster.deployment_id}")
    if "ledger_storage" not in (deployment.get("parameter_openapi_schema") or {}).get("properties", {}):
        pytest.fail("deflect_calls has no `ledger_storage` parameter yet (issue 14: being added by another engineer)")


def test_a_default_ledger_on_a_process_pool_warns_and_a_rerun_on_another_machine_is_refused(
    cluster: Cluster,
) -> None:
    """Default ledger (each machine's local result storage): machine B cannot see A's ledger.

    Before issue 14 the re-run on B texted again, silently, everyone A texted. Now the first run
    says once, at WARNING in its logs, where its ledger is and that a re-run on another machine
    would not see it; and the re-run on B, whose storage holds fewer runs than the Prefect server
    has on record for that ledger, sends nothing and says where the ledger is (machine A).
    """
    offset, key = 1_000_000, "distributed-default-ledger"
    csv_path = write_csv(cluster, "default-ledger", offset)
    first = cluster.create_run("machine-a", csv_path=csv_path, batch_key=key, concurrency=CONCURRENCY)
    texted_by_first, _ = kill_at_fraction(cluster, first)
    release_crashed_lease(cluster, key)
    second = cluster.create_run("machine-b", csv_path=csv_path, batch_key=key, concurrency=CONCURRENCY)
    run = cluster.wait_final(second)
    texted = accepted(cluster.sandbox_records())
    twice = sum(count > 1 for count in texted.values())
    record("a_default_ledger_other_machine", texted_before_kill=texted_by_first, texted_twice=twice)
    assert_nobody_twice(texted, "default ledger, re-run on machine B")
    storage_a = str(local_storage(cluster, "machine-a"))

    def warnings_of(flow_run_id: str, words: str) -> list[dict[str, Any]]:
        return [e for e in cluster.logs_of(flow_run_id) if e["level"] >= 30 and words in e["message"]]

    warned = wait_for(
        "the ledger-location warning in the first run's logs",
        lambda: warnings_of(first, "The batch ledger is on local disk"),
        seconds=10,
        interval=0.25,
    )
    assert len(warned) == 1 and storage_a in warned[0]["message"], warned
    assert run["state"]["type"] in ("FAILED", "CRASHED"), cluster.describe(second)
    refusal = wait_for(
        "the refusal in the re-run's logs", lambda: warnings_of(second, "the ledger is elsewhere"), seconds=10
    )
    assert storage_a in refusal[0]["message"], refusal


def test_b_ledger_in_s3_rerun_on_another_machine_texts_nobody_twice(cluster: Cluster) -> None:
    """`ledger_storage="s3-bucket/<block>"`: killed on machine A at ~30 %, re-run on B: nobody twice, nobody lost."""
    ledger_storage_parameter(cluster)
    offset, key = 2_000_000, "distributed-s3-ledger"
    csv_path = write_csv(cluster, "s3-ledger", offset)
    parameters = {
        "csv_path": csv_path,
        "batch_key": key,
        "concurrency": CONCURRENCY,
        "ledger_storage": f"s3-bucket/{S3_BLOCK}",
    }
    first = cluster.create_run("machine-a", **parameters)
    texted_by_first, _ = kill_at_fraction(cluster, first)
    release_crashed_lease(cluster, key)
    before = len(cluster.sandbox_records())
    created = time.time()
    second = cluster.create_run("machine-b", **parameters)
    to_first_send = first_send_after(cluster, before, created, second, seconds=90)
    run = cluster.wait_final(second)
    started = running_since(cluster, second)
    records = cluster.sandbox_records()
    from_start = None if started is None or len(records) <= before else records[before]["received_at"] - started
    record(
        "b_s3_ledger_other_machine",
        texted_before_kill=texted_by_first,
        seconds_from_create_to_first_new_send=None if to_first_send is None else round(to_first_send, 2),
        seconds_from_running_to_first_new_send=None if from_start is None else round(from_start, 2),
    )
    assert run["state"]["type"] == "COMPLETED", cluster.describe(second)
    assert_once_each(accepted(records), offset, "S3 ledger, re-run on machine B")


def test_c_ui_retry_of_the_crashed_run_takes_the_lease_at_once_and_resends_nothing(cluster: Cluster) -> None:
    """The UI's Retry on the crashed run (same flow run, same batch key): the lease is taken at once, nobody twice."""
    offset = 3_000_000
    csv_path = write_csv(cluster, "ui-retry", offset)
    run_id = cluster.create_run("machine-a", csv_path=csv_path, concurrency=CONCURRENCY)
    texted_by_first, killed_at = kill_at_fraction(cluster, run_id, await_worker_report=True)
    reported_at = time.time()
    before = len(cluster.sandbox_records())
    retried = 0
    while True:
        retry_at = time.time()
        retried += 1
        # What the UI's Retry button sends (the newer UI: force=true).
        cluster.api(
            "POST",
            f"/flow_runs/{run_id}/set_state",
            json={"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": True},
        )
        time.sleep(1.0)
        state = cluster.flow_run(run_id)["state"]["type"]
        if state != "CRASHED" or retried == 3:
            break  # a late crash report from the worker can turn the Retry back to CRASHED: click again
    to_first_send = first_send_after(cluster, before, retry_at, run_id, seconds=90)
    run = cluster.wait_final(run_id, seconds=150)
    started = running_since(cluster, run_id)  # the retried attempt's RUNNING: its process is up
    record(
        "c_ui_retry",
        texted_before_kill=texted_by_first,
        seconds_from_kill_to_worker_report=round(reported_at - killed_at, 2),
        retry_clicks=retried,
        seconds_from_retry_to_running=None if started is None else round(started - retry_at, 2),
        seconds_from_retry_to_first_new_send=None if to_first_send is None else round(to_first_send, 2),
        final_state=run["state"]["type"],
    )
    texted = accepted(cluster.sandbox_records())
    assert_nobody_twice(texted, "UI Retry")
    assert to_first_send is not None, (
        f"no new send after the Retry; the run ended {run['state']['type']}: {run['state'].get('message')}"
    )
    # The retried attempt never waits the crashed holder's lease out: when it reaches its batch while
    # that lease would still be live (30 s after the holder's last renewal, at most 30 s before the
    # kill), it takes it over at once (Prefect knows the holder CRASHED, and it is an earlier attempt
    # of the same flow run). On a slow machine the worker's start-up alone may outlast the lease; then
    # the lease has expired by itself and there is nothing to take over. The time from the Retry to the
    # first send is recorded above (goal <= 15 s; most of it is the worker starting a new process).
    logs = cluster.logs_of(run_id)
    holds = [timestamp(e["timestamp"]) for e in logs if "Holding the batch key's lease" in e["message"]]
    assert len(holds) == 2, holds  # the crashed attempt, then the retried one
    if holds[1] - killed_at < 25:
        takeovers = [e for e in logs if "Taking over the batch key's lease" in e["message"]]
        assert takeovers, f"the retried run did not take the crashed holder's lease at once: {cluster.describe(run_id)}"
    record("c_ui_retry_lease", seconds_from_kill_to_retried_lease=round(holds[1] - killed_at, 2))
    assert "BatchKeyBusyError" not in str(run["state"].get("message")), run["state"]
    assert run["state"]["type"] == "COMPLETED", cluster.describe(run_id)
    assert_nobody_lost(texted, offset, "UI Retry")
