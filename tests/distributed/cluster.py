"""Real distributed parts for the tests: PostgreSQL, `prefect server start`, moto's S3, process workers.

Everything runs on loopback, in temp dirs, as child processes of the test session:

- a PostgreSQL cluster made with Debian's `initdb` in a temp dir owned by `postgres` and started
  as that user (initdb refuses root) on a free port;
- `prefect server start` on that database (UI and analytics off);
- moto's S3 server (`python -m moto.server`) with one bucket;
- a `process` work pool with one work queue per "machine" and one worker per machine, each with
  its own `PREFECT_HOME` (so its own local result storage, where the batch ledger goes by
  default), working directory and `TMPDIR`; the machines share only the Prefect API and the bucket;
- the Intercom sandbox in its own process.

Every process writes its output to `<base>/logs/<name>.log`; `Cluster.tails()` is what a failing
test prints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = "flows/deflect_calls.py:deflect_calls"
FLOW_NAME = "deflect-calls"
DEPLOYMENT_NAME = "deflect-calls-distributed"
POOL = "distributed"
MACHINES = ("machine-a", "machine-b")
INTERCOM_BLOCK = "distributed-sandbox"
S3_BLOCK = "distributed-ledger"
BUCKET = "intercom-ledger"
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
STARTUP_SECONDS = 120


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin() -> Path:
    """The newest Debian PostgreSQL's bin directory (`apt-get install postgresql`)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is missing: `bash .ci/setup --full` installs Debian's postgresql")
    return found[-1].parent


def wait_for(what: str, probe: Callable[[], T | None], *, seconds: float, interval: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy; raise naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {seconds:.0f} s")
        time.sleep(interval)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any PREFECT_ setting, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="INFO", **extra)
    return env


@dataclass
class Cluster:
    """The running processes, where they listen and where their files are."""

    base: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_url: str = ""
    s3_url: str = ""
    sandbox_url: str = ""
    deployment_id: str = ""
    machines: dict[str, Path] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    set_up: subprocess.Popen[bytes] | None = None

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    # --- processes --------------------------------------------------------------------------

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        """Start `command` in its own process group, its output to `logs/<name>.log`."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command, cwd=cwd or PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        """Workers first, then the server, then the storage and the database."""
        if self.set_up is not None and self.set_up.poll() is None:
            self.set_up.kill()
            self.set_up.wait(timeout=20)
        order = [name for name in self.processes if name.startswith("worker")]
        order += [name for name in ("prefect-server", "sandbox", "moto") if name in self.processes]
        order += [name for name in self.processes if name not in order]
        for name in order:
            self.stop(name, signal.SIGINT if name == "postgres" else signal.SIGTERM)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def tails(self, lines: int = 40) -> str:
        """The last lines of every process's log (what a failing test prints)."""
        return "\n".join(
            f"----- {name} (last {lines} lines of {self.logs / (name + '.log')}) -----\n{self.tail(name, lines)}"
            for name in self.processes
        )

    # --- the API --------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def create_run(self, queue: str, **parameters: Any) -> str:
        """A flow run of the deployment on work queue `queue` (one machine's); returns its id."""
        run = self.api(
            "POST",
            f"/deployments/{self.deployment_id}/create_flow_run",
            json={"parameters": parameters, "work_queue_name": queue},
        )
        self.runs.append(run["id"])
        return run["id"]

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/flow_runs/{flow_run_id}")

    def states(self, flow_run_id: str) -> list[dict[str, Any]]:
        """The run's state history, oldest first."""
        states = self.api("GET", "/flow_run_states/", params={"flow_run_id": flow_run_id})
        return sorted(states, key=lambda state: state["timestamp"])

    def logs_of(self, flow_run_id: str) -> list[dict[str, Any]]:
        """Every log entry of the run stored by the API (level, message, timestamp), oldest first."""
        entries: list[dict[str, Any]] = []
        while True:
            page = self.api(
                "POST",
                "/logs/filter",
                json={
                    "logs": {"flow_run_id": {"any_": [flow_run_id]}},
                    "sort": "TIMESTAMP_ASC",
                    "offset": len(entries),
                    "limit": 200,
                },
            )
            entries += page
            if len(page) < 200:
                return entries

    def artifacts_of(self, flow_run_id: str) -> list[dict[str, Any]]:
        return self.api("POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})

    def wait_final(self, flow_run_id: str, seconds: float = 120) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            run = self.flow_run(flow_run_id)
            return run if (run.get("state") or {}).get("type") in FINAL_STATES else None

        return wait_for(f"flow run {flow_run_id} to end", final, seconds=seconds, interval=0.5)

    def describe(self, flow_run_id: str, log_lines: int = 30) -> str:
        """The run's states and its last log lines, as stored by the API (for failure messages)."""
        try:
            states = [
                f"{state['type']}/{state['name']}: {state.get('message') or ''}" for state in self.states(flow_run_id)
            ]
            logs = [f"{entry['level']:>2} {entry['message'][:400]}" for entry in self.logs_of(flow_run_id)][-log_lines:]
        except httpx.HTTPError as error:
            return f"(flow run {flow_run_id} unreadable: {error})"
        return f"flow run {flow_run_id}\n states: {states}\n logs:\n  " + "\n  ".join(logs)

    # --- the sandbox ----------------------------------------------------------------------------

    def sandbox_records(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.sandbox_url}/sandbox/requests", timeout=60).json()

    def clear_sandbox(self) -> None:
        httpx.delete(f"{self.sandbox_url}/sandbox/requests", timeout=30).raise_for_status()


# --- starting each part ---------------------------------------------------------------------------


def start_postgres(cluster: Cluster) -> str:
    """A fresh cluster in a temp dir owned by `postgres`, on a free port; returns the asyncpg URL."""
    bin_dir = postgres_bin()
    data = Path(tempfile.mkdtemp(prefix="intercom-pg-"))  # under /tmp, reachable by `postgres`
    cluster.base.joinpath("pgdata").write_text(str(data))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse root: run them as `postgres`
        shutil.chown(data, "postgres", "postgres")
        as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    env = clean_env(LC_ALL="C.UTF-8")
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "prefect", "--auth=trust", "-E", "UTF8",
         "--no-sync"],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    cluster.start(
        "postgres",
        [*as_user, str(bin_dir / "postgres"), "-D", str(data / "db"), "-p", str(port), "-k", str(data),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=200"],
        env=env,
    )  # fmt: skip

    def ready() -> bool:
        cluster.check_alive("postgres")
        probe = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "-q"]
        return subprocess.run(probe, env=env, check=False, timeout=10).returncode == 0

    wait_for("PostgreSQL", ready, seconds=60)
    subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "prefect"],
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"


def remove_postgres_data(cluster: Cluster) -> None:
    marker = cluster.base / "pgdata"
    if marker.exists():
        shutil.rmtree(marker.read_text(), ignore_errors=True)


def launch_prefect_server(cluster: Cluster, database_url: str) -> None:
    """Start `prefect server start` on the database (UI and analytics off); `wait_for_prefect_server` waits."""
    port = free_port()
    cluster.api_url = f"http://127.0.0.1:{port}/api"
    home = cluster.base / "server-home"
    home.mkdir()
    env = clean_env(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=database_url,
        PREFECT_UI_ENABLED="false",
        PREFECT_API_URL=cluster.api_url,
    )
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    cluster.start("prefect-server", [*command, "--no-ui"], env=env)


def wait_for_prefect_server(cluster: Cluster) -> None:
    def healthy() -> bool:
        cluster.check_alive("prefect-server")
        try:
            return httpx.get(f"{cluster.api_url}/health", timeout=2).is_success
        except httpx.HTTPError:
            return False

    wait_for("the Prefect server", healthy, seconds=STARTUP_SECONDS, interval=0.25)


def launch_moto(cluster: Cluster) -> None:
    """Start moto's S3 server; `wait_for_moto` waits for it and makes the bucket."""
    port = free_port()
    cluster.s3_url = f"http://127.0.0.1:{port}"
    cluster.start("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=clean_env())


def wait_for_moto(cluster: Cluster) -> None:
    def answering() -> bool:
        cluster.check_alive("moto")
        return _answers(f"{cluster.s3_url}/moto-api/")

    wait_for("moto's S3 server", answering, seconds=60)
    import boto3

    boto3.client(
        "s3",
        endpoint_url=cluster.s3_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)


def launch_sandbox(cluster: Cluster, token: str, *flags: str) -> None:
    """Start the Intercom sandbox in its own process; `wait_for_sandbox` waits."""
    port = free_port()
    cluster.sandbox_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "prefect_intercom.sandbox", "--host", "127.0.0.1", "--port", str(port)]
    cluster.start("sandbox", [*command, "--token", token, "--log-level", "warning", *flags], env=clean_env())


def wait_for_sandbox(cluster: Cluster) -> None:
    def healthy() -> bool:
        cluster.check_alive("sandbox")
        return _answers(f"{cluster.sandbox_url}/sandbox/health")

    wait_for("the sandbox", healthy, seconds=60)


def create_pool_and_queues(cluster: Cluster) -> None:
    """The `process` work pool (its job template filled in by the first worker) and one queue per machine."""
    cluster.api("POST", "/work_pools/", json={"name": POOL, "type": "process"})
    for machine in MACHINES:
        cluster.api("POST", f"/work_pools/{POOL}/queues", json={"name": machine})


SET_UP = """
import json, os, time
import httpx
from prefect_aws import AwsCredentials, S3Bucket
from prefect_intercom import IntercomCredentials
from prefect_intercom.flows.deflect_calls import deflect_calls

config = json.loads(os.environ["DISTRIBUTED_CONFIG"])
# Started while the server migrates its database: import first, then wait for the work pool.
deadline = time.monotonic() + 180
while True:
    try:
        if httpx.get(f"{os.environ['PREFECT_API_URL']}/work_pools/{config['pool']}", timeout=5).is_success:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        raise SystemExit("the work pool never appeared")
    time.sleep(0.2)
IntercomCredentials(access_token=os.environ["DISTRIBUTED_TOKEN"], base_url=config["sandbox_url"]).save(
    config["intercom_block"], overwrite=True
)
S3Bucket(
    bucket_name=config["bucket"],
    bucket_folder="ledgers",
    credentials=AwsCredentials(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        aws_client_parameters={"endpoint_url": config["s3_url"]},
    ),
).save(config["s3_block"], overwrite=True)

deployment_id = deflect_calls.from_source(source=config["root"], entrypoint=config["entrypoint"]).deploy(
    name=config["deployment"], work_pool_name=config["pool"], work_queue_name=config["machines"][0],
    parameters={"block_name": config["intercom_block"]}, build=False, push=False, print_next_steps=False,
)
print(json.dumps({"deployment_id": str(deployment_id)}))
"""


def launch_set_up(cluster: Cluster, token: str) -> None:
    """Start a script that saves the sandbox's `IntercomCredentials` and the bucket's `S3Bucket` and deploys the flow.

    It imports Prefect and prefect-aws while the server starts, then waits for the work pool.
    """
    config = {
        "sandbox_url": cluster.sandbox_url,
        "s3_url": cluster.s3_url,
        "bucket": BUCKET,
        "intercom_block": INTERCOM_BLOCK,
        "s3_block": S3_BLOCK,
        "pool": POOL,
        "machines": list(MACHINES),
        "root": str(PROJECT_ROOT),
        "entrypoint": ENTRYPOINT,
        "deployment": DEPLOYMENT_NAME,
    }
    home = cluster.base / "control-home"
    home.mkdir()
    env = clean_env(
        PREFECT_API_URL=cluster.api_url,
        PREFECT_HOME=str(home),
        DISTRIBUTED_CONFIG=json.dumps(config),
        DISTRIBUTED_TOKEN=token,
    )
    cluster.logs.mkdir(parents=True, exist_ok=True)
    with (cluster.logs / "set-up.log").open("wb") as log:
        cluster.set_up = subprocess.Popen(
            [sys.executable, "-c", SET_UP], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=log
        )


def wait_for_set_up(cluster: Cluster) -> None:
    """Wait for `launch_set_up`'s script; keep the deployment's id."""
    assert cluster.set_up is not None
    out, _ = cluster.set_up.communicate(timeout=240)
    if cluster.set_up.returncode != 0:
        raise RuntimeError(f"saving the blocks or deploying failed:\n{cluster.tail('set-up', 60)}")
    cluster.deployment_id = json.loads(out.decode().strip().splitlines()[-1])["deployment_id"]


def start_worker(cluster: Cluster, machine: str) -> None:
    """A process worker standing for one machine: its own PREFECT_HOME, working directory and TMPDIR."""
    root = cluster.base / machine
    home, work, tmp = root / "prefect-home", root / "work", root / "tmp"
    for path in (home, work, tmp):
        path.mkdir(parents=True, exist_ok=True)
    cluster.machines[machine] = root
    env = clean_env(
        PREFECT_API_URL=cluster.api_url,
        PREFECT_HOME=str(home),
        TMPDIR=str(tmp),
        # Poll every second (default 10 s): a run is picked up, and a Retry is acted on, at once.
        PREFECT_WORKER_QUERY_SECONDS="1",
    )
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--work-queue", machine]
    cluster.start(f"worker-{machine}", [*command, "--name", machine, "--type", "process"], env=env, cwd=work)


def wait_for_workers(cluster: Cluster) -> None:
    def online() -> bool:
        for machine in MACHINES:
            cluster.check_alive(f"worker-{machine}")
        workers = cluster.api("POST", f"/work_pools/{POOL}/workers/filter", json={})
        return {worker["name"] for worker in workers if worker.get("status") == "ONLINE"} >= set(MACHINES)

    wait_for("both workers to be online", online, seconds=STARTUP_SECONDS, interval=0.5)


def local_storage(cluster: Cluster, machine: str) -> Path:
    """Where a flow run on `machine` keeps its results, and so the batch ledger, by default."""
    return cluster.machines[machine] / "prefect-home" / "storage"
