"""Session fixtures: one distributed cluster (PostgreSQL, Prefect server, S3, two workers, sandbox) for all tests here.

A failing test prints the tail of every process's log and, for each flow run it started, the
states and logs the Prefect API holds (see `cluster.py`).
"""

from __future__ import annotations

import importlib.util
import secrets
import time
from collections.abc import Iterator

import pytest

from . import cluster as parts
from .cluster import Cluster

# The sandbox: 100 requests a second (1-second windows, as Intercom's rate-limit headers say) and
# 50 ms per answer, so 1,000 phones take about 10 s.
SANDBOX_FLAGS = ("--rate-limit", "100", "--rate-limit-window", "1", "--latency", "0.05")


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is missing: install the distributed tests' tools with `bash .ci/setup --full`")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Everything running, the deployment made, both workers online; stopped at the end of the session."""
    for module in ("moto", "prefect_aws", "boto3", "psutil"):
        _require(module)
    try:
        parts.postgres_bin()
    except RuntimeError as error:
        pytest.fail(str(error))
    started = time.monotonic()
    running = Cluster(base=tmp_path_factory.mktemp("distributed"))
    token = f"dist_{secrets.token_hex(16)}"
    steps: list[str] = []

    def step(name: str) -> None:
        steps.append(f"{name} {time.monotonic() - started:.1f}s")

    try:
        parts.launch_moto(running)  # these start while PostgreSQL and the server do
        parts.launch_sandbox(running, token, *SANDBOX_FLAGS)
        database_url = parts.start_postgres(running)
        step("postgres")
        parts.launch_prefect_server(running, database_url)
        parts.launch_set_up(running, token)  # imports while the server migrates its database
        parts.wait_for_moto(running)
        parts.wait_for_sandbox(running)
        step("moto+sandbox")
        parts.wait_for_prefect_server(running)
        step("server")
        parts.create_pool_and_queues(running)
        for machine in parts.MACHINES:
            parts.start_worker(running, machine)
        parts.wait_for_set_up(running)  # while the workers start
        step("blocks+deployment")
        parts.wait_for_workers(running)
        step("workers")
    except BaseException:
        print(running.tails())
        running.stop_all()
        parts.remove_postgres_data(running)
        raise
    print(f"\n[distributed] cluster ready ({', '.join(steps)}; logs in {running.logs})")
    yield running
    running.stop_all()
    parts.remove_postgres_data(running)  # the rest stays in pytest's temp dir (its last 3 sessions are kept)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def diagnostics(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[None]:
    """On failure: every process's log tail and each flow run's states and logs (from the API)."""
    cluster.runs.clear()
    cluster.clear_sandbox()
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print("\n" + "\n\n".join(cluster.describe(run) for run in cluster.runs))
        print("\n" + cluster.tails())
