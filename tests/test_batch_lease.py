"""One run per batch key (`prefect_intercom.batch.lease`), against a real Prefect server.

The races run in separate OS processes (this module is also the child program: `python -m
tests.test_batch_lease ...`), released at the same instant by a start time written to a file;
each child "sends" by appending a line to a shared file.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from prefect_intercom.batch.lease import hold_batch_key, lease_name
from prefect_intercom.batch.lease_state import BatchLease
from prefect_intercom.errors import BatchKeyBusyError, BatchKeyLostError, IntercomError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 6
FILE_TIMEOUT = 90.0


def _key(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


async def _row_exists(name: str) -> bool:
    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return False
        return True


# --- one process ------------------------------------------------------------------------------


async def test_a_free_key_is_taken_and_released_leaving_nothing_on_the_server(prefect_server: None) -> None:
    key = _key("campaign")
    async with hold_batch_key(key) as lease:
        assert isinstance(lease, BatchLease)
        assert lease.batch_key == key
        lease.check()
        assert await _row_exists(lease_name(key))
    assert not await _row_exists(lease_name(key))


async def test_who_holds_is_read_while_the_limit_is_read_and_known_before_it_is_created(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import PrefectClient

    from prefect_intercom.batch import holder

    steps: list[str] = []
    read_limit = PrefectClient.read_global_concurrency_limit_by_name
    create_limit = PrefectClient.create_global_concurrency_limit

    async def slow_attempt(client: PrefectClient) -> None:
        steps.append("attempt read")
        await asyncio.sleep(0.3)
        steps.append("attempt known")

    async def reading(self: PrefectClient, name: str) -> object:
        steps.append("limit read")
        return await read_limit(self, name)

    async def creating(self: PrefectClient, create: GlobalConcurrencyLimitCreate) -> uuid.UUID:
        steps.append("limit created")
        return await create_limit(self, create)

    monkeypatch.setattr(holder, "this_attempt", slow_attempt)
    monkeypatch.setattr(PrefectClient, "read_global_concurrency_limit_by_name", reading)
    monkeypatch.setattr(PrefectClient, "create_global_concurrency_limit", creating)
    async with hold_batch_key(_key("overlap")):
        pass
    assert sorted(steps[:2]) == ["attempt read", "limit read"]  # both under way before either is over
    assert steps[2:] == ["attempt known", "limit created"]


async def test_a_failure_to_read_who_holds_leaves_no_lease_behind(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_intercom.batch import holder

    async def broken(client: object) -> None:
        await asyncio.sleep(0.1)
        raise RuntimeError("broken flow run read")

    monkeypatch.setattr(holder, "this_attempt", broken)
    key = _key("broken-attempt")
    with pytest.raises(RuntimeError, match="broken flow run read"):
        async with hold_batch_key(key):
            pass
    assert not await _row_exists(lease_name(key))


async def test_the_name_on_the_server_is_a_hash_never_the_batch_key(prefect_server: None) -> None:
    key = "campaign for +14155550100"
    async with hold_batch_key(key) as lease:
        async with get_client() as client:
            names = [limit.name for limit in await client.read_global_concurrency_limits(limit=200)]
    assert re.fullmatch(r"intercom-batch-[0-9a-f]{24}", lease.name)
    assert lease.name in names
    assert not [name for name in names if "4155550100" in name or "campaign" in name]
    assert "4155550100" not in repr(lease)


async def test_a_second_run_is_refused_at_once_naming_the_key_and_how_to_resume(prefect_server: None) -> None:
    key = _key("refused")
    async with hold_batch_key(key, lease_seconds=30):
        with pytest.raises(BatchKeyBusyError) as refused:
            async with hold_batch_key(key):
                pytest.fail("two holders of one batch key")
    error = refused.value
    assert isinstance(error, IntercomError)
    assert error.batch_key == key
    assert key in str(error)
    assert f"re-run later with batch_key={key!r}" in str(error)
    assert "expires 30 s after its last renewal" in str(error)
    assert "sent nothing" in str(error)


async def test_a_waiting_run_takes_the_key_when_the_holder_finishes(prefect_server: None) -> None:
    key = _key("waiting")
    order: list[str] = []

    async def second() -> None:
        async with hold_batch_key(key, wait=30):
            order.append("second holds")

    async with hold_batch_key(key):
        waiter = asyncio.ensure_future(second())
        await asyncio.sleep(0.5)
        assert not waiter.done()
        order.append("first releases")
    await asyncio.wait_for(waiter, 30)
    assert order == ["first releases", "second holds"]


async def test_a_waiting_run_gives_up_after_its_timeout(prefect_server: None) -> None:
    key = _key("timeout")
    async with hold_batch_key(key):
        with pytest.raises(BatchKeyBusyError, match="after waiting"):
            async with hold_batch_key(key, wait=0.5):
                pytest.fail("two holders of one batch key")


async def test_the_key_is_released_when_the_block_raises_or_is_cancelled(prefect_server: None) -> None:
    key = _key("released")
    with pytest.raises(RuntimeError):
        async with hold_batch_key(key):
            raise RuntimeError("the batch failed")
    assert not await _row_exists(lease_name(key))

    held = asyncio.Event()

    async def hold_forever() -> None:
        async with hold_batch_key(key):
            held.set()
            await asyncio.sleep(3600)

    holder = asyncio.ensure_future(hold_forever())
    await asyncio.wait_for(held.wait(), 30)
    holder.cancel()
    await asyncio.wait({holder})
    assert holder.cancelled()
    async with hold_batch_key(key):
        pass


async def test_renewals_keep_the_key_well_past_one_lease(prefect_server: None) -> None:
    key = _key("renewed")
    async with hold_batch_key(key, lease_seconds=3) as lease:
        await asyncio.sleep(6.5)  # over two leases: without renewals the slot would have decayed
        lease.check()
        with pytest.raises(BatchKeyBusyError):
            async with hold_batch_key(key, lease_seconds=3):
                pytest.fail("took over a lease that was being renewed")


async def test_check_raises_once_the_lease_was_removed_on_the_server(prefect_server: None) -> None:
    key = _key("removed")
    async with hold_batch_key(key, lease_seconds=6) as lease:
        async with get_client() as client:
            await client.delete_global_concurrency_limit_by_name(lease.name)
        for _ in range(200):  # the next renewal (every 2 s) finds the row gone
            if lease.lost:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(BatchKeyLostError) as lost:
            lease.check()
    assert "removed or taken over" in str(lost.value)  # told by the server, not by the lease running out
    assert key in str(lost.value)
    assert f"batch_key={key!r}" in str(lost.value)


async def test_a_stalled_holder_stops_before_another_run_takes_over(prefect_server: None) -> None:
    key = _key("stalled")
    first_hold = hold_batch_key(key, lease_seconds=1.5)
    first = await first_hold.__aenter__()
    time.sleep(1.6)  # the event loop is blocked: no renewal can run
    with pytest.raises(BatchKeyLostError):
        first.check()  # at once: the lease is counted from the last renewal's sending, without asking the server
    async with hold_batch_key(key, wait=10, lease_seconds=1.5) as second:
        # the first run's release (by its own id) must not free the second run's lease
        await first_hold.__aexit__(None, None, None)
        second.check()
        with pytest.raises(BatchKeyBusyError):
            async with hold_batch_key(key):
                pytest.fail("a late release freed another run's lease")
    assert not await _row_exists(lease_name(key))


async def test_an_expired_leftover_is_taken_over_and_a_live_one_is_not(prefect_server: None) -> None:
    key = _key("leftover")
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=lease_name(key), limit=1, active_slots=1, slot_decay_per_second=1 / 600)
        )
        with pytest.raises(BatchKeyBusyError, match="expires 600 s after its last renewal"):
            async with hold_batch_key(key):
                pytest.fail("took over a live lease")
        await client.delete_global_concurrency_limit_by_name(lease_name(key))
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=lease_name(key), limit=1, active_slots=0, slot_decay_per_second=1 / 60)
        )
    async with hold_batch_key(key) as lease:
        lease.check()
    assert not await _row_exists(lease_name(key))


@pytest.mark.parametrize(
    ("key", "options"), [("", {}), ("k", {"wait": -1.0}), ("k", {"lease_seconds": 0.5})], ids=["key", "wait", "lease"]
)
async def test_nonsense_arguments_are_refused(key: str, options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        async with hold_batch_key(key, **options):
            pass


# --- separate processes -----------------------------------------------------------------------


def _wait_for(path: Path, timeout: float = FILE_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.005)
    return path.read_text()


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _child_env(api_url: str | None, home: Path | None = None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    # A temporary server on a busy CI machine can take longer than Prefect's default 20 s to answer.
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "200"
    if api_url:
        env["PREFECT_API_URL"] = api_url
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    return env


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(30)


def _start(children: list[subprocess.Popen[bytes]], env: dict[str, str], *args: str | float) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.test_batch_lease", *map(str, args)], cwd=PROJECT_ROOT, env=env
    )
    children.append(child)
    return child


def _race(workdir: Path, key: str, names: list[str], rounds: int, leftovers: bool) -> list[str]:
    """Run the rounds; each round both children try the key at the same instant. Returns the winners."""
    winners = []
    for round_ in range(rounds):
        if leftovers and round_ % 2:
            # an expired lease left by a crashed run: both children race to take it over
            with get_client(sync_client=True) as client:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=lease_name(key), limit=1, active_slots=0, slot_decay_per_second=1)
                )
        _write(workdir / f"go-{round_}", str(time.time() + 0.2))
        results = {name: _wait_for(workdir / f"result-{round_}-{name}") for name in names}
        held = [name for name, result in results.items() if result == "held"]
        busy = [result for result in results.values() if result.startswith("busy ")]
        assert len(held) == 1, f"round {round_}: {results}"
        assert len(busy) == 1, f"round {round_}: {results}"
        assert key in busy[0] and f"batch_key={key!r}" in busy[0]
        winners.append(held[0])
        _write(workdir / f"release-{round_}", "")
        for name in names:
            _wait_for(workdir / f"done-{round_}-{name}")
    sent = (workdir / "sent").read_text().splitlines()
    assert sent == [f"{round_} {winner}" for round_, winner in enumerate(winners)]
    return winners


def test_two_processes_released_at_the_same_instant_never_both_send(
    prefect_server: None, tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    key = _key("race")
    env = _child_env(PREFECT_API_URL.value())
    names = ["a", "b"]
    for name in names:
        _start(children, env, "race", tmp_path, name, key, ROUNDS)
    urls = {_wait_for(tmp_path / f"ready-{name}") for name in names}
    assert len(urls) == 1  # one server
    winners = _race(tmp_path, key, names, ROUNDS, leftovers=True)
    for child in children:
        assert child.wait(60) == 0
    print("winners per round:", winners)


@pytest.mark.e2e
def test_two_processes_with_their_own_ephemeral_servers_over_one_database_never_both_send(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    # No PREFECT_API_URL: each child starts its own ephemeral Prefect server over PREFECT_HOME's
    # SQLite database. They start one after the other (the first one creates the database).
    key = _key("ephemeral")
    env = _child_env(None, home=tmp_path / "prefect-home")
    names = ["a", "b"]
    urls = set()
    for name in names:
        _start(children, env, "race", tmp_path, name, key, 4)
        urls.add(_wait_for(tmp_path / f"ready-{name}", timeout=240))
    assert len(urls) == 2  # two servers (two ports)
    assert (tmp_path / "prefect-home" / "prefect.db").exists()  # over one database
    _race(tmp_path, key, names, 4, leftovers=False)
    for child in children:
        assert child.wait(60) == 0


async def test_a_holder_killed_with_sigkill_frees_the_key_after_its_lease(
    prefect_server: None, tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    key = _key("killed")
    holder = _start(children, _child_env(PREFECT_API_URL.value()), "hold", tmp_path, "holder", key, 4.0)
    await asyncio.to_thread(_wait_for, tmp_path / "held-holder")
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(30) == -signal.SIGKILL

    with pytest.raises(BatchKeyBusyError, match="expires 4 s after its last renewal"):
        async with hold_batch_key(key):
            pytest.fail("took a crashed run's lease before it expired")
    async with hold_batch_key(key, wait=30) as lease:
        lease.check()
    assert not await _row_exists(lease_name(key))


# --- the child program ------------------------------------------------------------------------


async def _race_child(workdir: Path, name: str, key: str, rounds: int) -> None:
    async with get_client() as client:  # connect first (and start the ephemeral server, if any)
        await client.read_global_concurrency_limits(limit=1)
        api_url = str(client.api_url)
    _write(workdir / f"ready-{name}", api_url)
    for round_ in range(rounds):
        start = float(await asyncio.to_thread(_wait_for, workdir / f"go-{round_}"))
        await asyncio.sleep(max(0.0, start - time.time()))
        try:
            async with hold_batch_key(key, lease_seconds=10) as lease:
                lease.check()
                with (workdir / "sent").open("a") as sent:
                    sent.write(f"{round_} {name}\n")
                _write(workdir / f"result-{round_}-{name}", "held")
                await asyncio.to_thread(_wait_for, workdir / f"release-{round_}")
                lease.check()
        except BatchKeyBusyError as error:
            _write(workdir / f"result-{round_}-{name}", f"busy {error}")
        _write(workdir / f"done-{round_}-{name}", "")


async def _hold_child(workdir: Path, name: str, key: str, lease_seconds: float) -> None:
    async with hold_batch_key(key, lease_seconds=lease_seconds):
        _write(workdir / f"held-{name}", "")
        await asyncio.sleep(FILE_TIMEOUT)  # killed long before


def _child_main(mode: str, workdir: str, name: str, key: str, number: str) -> None:
    if mode == "race":
        asyncio.run(_race_child(Path(workdir), name, key, int(number)))
    else:
        asyncio.run(_hold_child(Path(workdir), name, key, float(number)))
    if os.environ.get("PREFECT_API_URL"):
        # Done (leases released, files written): skip Prefect's exit hooks, which take seconds. Not
        # with an ephemeral server: its exit hook stops that server.
        os._exit(0)


if __name__ == "__main__":
    _child_main(*sys.argv[1:])
