"""The batch lease against the server's word: confirmation, tampering, stalls, and recovery at once.

Companion of `tests/test_batch_lease.py` (kept apart for the 400-line rule), against the same
real Prefect server (`prefect_server`, Prefect's test harness).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.context import FlowRunContext
from prefect.filesystems import LocalFileSystem
from prefect.server.api.server import SubprocessASGIServer
from prefect.states import Crashed

from prefect_intercom import IntercomCredentials, Pacer, RetryPolicy
from prefect_intercom.batch import asend_batch
from prefect_intercom.batch.lease import hold_batch_key, lease_name
from prefect_intercom.batch.lease_state import BatchLease
from prefect_intercom.errors import BatchKeyBusyError, BatchKeyLostError
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN

TAMPERS = ["delete", "zero", "rename", "deactivate", "limit", "decay"]


def _key(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


async def _tamper(name: str, how: str) -> None:
    """Do to the lease's limit what a person on the UI's Concurrency page (or a script) could do."""
    async with get_client() as client:
        if how == "delete":
            await client.delete_global_concurrency_limit_by_name(name)
            return
        change: dict[str, Any] = {
            "zero": {"active_slots": 0},
            "rename": {"name": f"{name}-renamed"},
            "deactivate": {"active": False},
            "limit": {"limit": 5},
            "decay": {"slot_decay_per_second": 0.5},
        }[how]
        await client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(**change))


async def _lost_within(lease: BatchLease, seconds: float) -> float:
    """Confirm like a busy sender until the lease is lost; return how long that took."""
    started = time.monotonic()
    with pytest.raises(BatchKeyLostError) as lost:
        while time.monotonic() - started < seconds:
            await lease.confirm()
            await asyncio.sleep(0.02)
    assert not isinstance(lost.value, BatchKeyBusyError)  # busy promises "sent nothing"; lost comes after sends
    return time.monotonic() - started


# --- confirmation -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", TAMPERS)
async def test_the_holder_notices_within_2_s_that_its_limit_was_tampered_with(prefect_server: None, how: str) -> None:
    async with hold_batch_key(_key(how), lease_seconds=600) as lease:  # no renewal (every 200 s) in sight
        await lease.confirm()
        await _tamper(lease.name, how)
        noticed = await _lost_within(lease, 5)
    assert noticed < 2.0, noticed


async def test_concurrent_senders_share_one_confirmation_at_most_every_second(prefect_server: None) -> None:
    async with hold_batch_key(_key("shared"), lease_seconds=600) as lease:
        started = time.monotonic()
        for _ in range(25):  # 20 senders, 2.5 s
            await asyncio.gather(*(lease.confirm() for _ in range(20)))
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
    assert 1 <= lease.confirmations <= elapsed + 1, lease.confirmations


@pytest.mark.parametrize("how", ["delete", "zero", "rename", "deactivate"])
async def test_a_batch_stops_sending_once_its_lease_was_tampered_with(
    prefect_server: None, tmp_path: Path, how: str
) -> None:
    key, concurrency = _key(f"batch-{how}"), 4
    bodies = ({"phone": f"+1415{index:07d}"} for index in range(2000))
    storage = LocalFileSystem(basepath=str(tmp_path))
    with Sandbox(token=SECRET_TOKEN, latency=0.02) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url, timeout=5)
        async with credentials.get_client(retry=RetryPolicy(), pacer=Pacer(), max_connections=concurrency) as client:
            batch = asyncio.ensure_future(
                asend_batch(client, bodies, batch_key=key, concurrency=concurrency, ledger_storage=storage)
            )
            while len(sandbox.accepted) < 20 and not batch.done():
                await asyncio.sleep(0.01)
            await _tamper(lease_name(key), how)
            tampered_at = time.time()
            report = await asyncio.wait_for(batch, 60)
        accepted = sandbox.accepted
    assert report.stopped is not None and "lost its lease" in report.stopped, report.stopped
    assert report.reasons["not_sent lease_lost"] >= 1 and report.counts["not_sent"] > 1000, report.reasons
    # a confirmation is due at most 1 s after the tamper: what arrived later was already in flight then
    late = [request for request in accepted if request.received_at > tampered_at + 1.5]
    assert len(late) <= concurrency, len(late)


async def test_a_server_stall_shorter_than_the_guard_does_not_lose_the_lease(prefect_server: None) -> None:
    server = SubprocessASGIServer._instances[None].server_process
    assert server is not None
    slowest = 0.0
    # renewed at 4 s and 8 s, valid until 9 s without a renewal (guard 3 s); the server stops
    # from 3.5 s to 5.5 s, over the first renewal, while a sender keeps confirming
    async with hold_batch_key(_key("stall"), lease_seconds=12) as lease:
        taken = time.monotonic()
        phase = "before"
        try:
            while time.monotonic() - taken < 10.0:  # past the first deadline: a renewal got through
                if phase == "before" and time.monotonic() - taken >= 3.5:
                    os.kill(server.pid, signal.SIGSTOP)
                    phase = "stopped"
                elif phase == "stopped" and time.monotonic() - taken >= 5.5:
                    os.kill(server.pid, signal.SIGCONT)
                    phase = "resumed"
                before = time.monotonic()
                await lease.confirm()
                slowest = max(slowest, time.monotonic() - before)
                await asyncio.sleep(0.02)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert not lease.lost
    assert slowest < 1.5, slowest  # a sender waits for one confirmation at most about a second
    assert lease.confirmations >= 5


# --- recovery at once ---------------------------------------------------------------------------


@pytest.fixture
async def abandoned() -> AsyncIterator[list[AbstractAsyncContextManager[BatchLease]]]:
    """Leases entered and never exited (a crashed holder); closed at the end of the test."""
    holds: list[AbstractAsyncContextManager[BatchLease]] = []
    yield holds
    for hold in holds:
        await hold.__aexit__(None, None, None)


async def _take_and_keep(key: str, holds: list[AbstractAsyncContextManager[BatchLease]]) -> BatchLease:
    hold = hold_batch_key(key, lease_seconds=600)
    lease = await hold.__aenter__()
    holds.append(hold)
    return lease


async def test_a_running_holder_is_refused_and_taken_over_at_once_once_crashed(
    prefect_server: None, abandoned: list[AbstractAsyncContextManager[BatchLease]]
) -> None:
    key = _key("crashed")
    held, finish = asyncio.Event(), asyncio.Event()
    leases: list[BatchLease] = []

    @flow
    async def holder() -> uuid.UUID:
        leases.append(await _take_and_keep(key, abandoned))  # never released by the flow run
        held.set()
        await finish.wait()
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        return context.flow_run.id

    running = asyncio.ensure_future(holder())
    await asyncio.wait_for(held.wait(), 60)
    with pytest.raises(BatchKeyBusyError):  # its flow run is Running: it may be sending
        async with hold_batch_key(key):
            pytest.fail("took the lease of a running flow run")
    finish.set()
    flow_run_id = await running
    async with get_client() as client:
        await client.set_flow_run_state(flow_run_id, Crashed(), force=True)
    started = time.monotonic()
    async with hold_batch_key(key) as taken:
        took = time.monotonic() - started
        taken.check()
        assert taken.limit_id != leases[0].limit_id
        await _lost_within(leases[0], 3)  # the old holder, were it still alive, stops at its next confirmation
    assert took < 5, took  # not the 46-60 s of waiting out its lease


async def test_an_earlier_attempt_of_the_same_flow_run_is_taken_over_at_once(
    prefect_server: None, abandoned: list[AbstractAsyncContextManager[BatchLease]]
) -> None:
    key = _key("retried")
    leases: list[BatchLease] = []
    attempts: list[tuple[uuid.UUID, int]] = []

    @flow(retries=1, retry_delay_seconds=0)
    async def retried() -> float:
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        attempts.append((context.flow_run.id, len(attempts) + 1))
        if len(attempts) == 1:
            leases.append(await _take_and_keep(key, abandoned))
            raise RuntimeError("the first attempt dies holding the key")
        started = time.monotonic()
        async with hold_batch_key(key) as lease:  # the second attempt: same flow run, higher run count
            leases.append(lease)
            return time.monotonic() - started

    took = await retried()
    assert attempts[0][0] == attempts[1][0]  # one flow run, two attempts
    assert took < 5, took
    assert leases[1].limit_id != leases[0].limit_id
    with pytest.raises(BatchKeyLostError):
        await leases[0].confirm()


async def test_a_holder_outside_a_flow_run_leaves_no_record_and_a_clean_exit_leaves_nothing(
    prefect_server: None,
) -> None:
    key = _key("records")
    async with get_client() as client:
        async with hold_batch_key(key):
            assert await client.read_variable_by_name(lease_name(key)) is None

        @flow
        async def holds() -> dict[str, Any]:
            async with hold_batch_key(key) as lease:
                record = await client.read_variable_by_name(lease.name)
                assert record is not None
                return {"value": record.value, "limit_id": str(lease.limit_id)}

        seen = await holds()
        assert seen["value"]["limit_id"] == seen["limit_id"]
        assert key not in str(seen["value"])  # only ids: never the batch key
        assert await client.read_variable_by_name(lease_name(key)) is None
