"""Pacing: the header pacer's decisions (fake clock), sizing a shared rate limit, and the
Prefect global rate limit against a real Prefect server."""

from __future__ import annotations

import datetime as dt
import math
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from prefect_intercom import IntercomConfigurationError, IntercomCredentials, Pacer, RetryPolicy
from prefect_intercom.pacing import (
    PROBE_INTERVAL,
    GlobalRateLimit,
    HeaderPacer,
    default_slots_per_acquire,
    rate_limit_settings,
)
from prefect_intercom.responses import RateLimit
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def headers(remaining: int, reset: float, limit: int = 10) -> RateLimit:
    return RateLimit(limit=limit, remaining=remaining, reset_at=dt.datetime.fromtimestamp(reset, dt.timezone.utc))


def test_first_send_probes_alone_until_an_answer_arrives() -> None:
    pacer = HeaderPacer(clock=Clock())
    assert pacer.reserve() == 0
    assert pacer.reserve() == PROBE_INTERVAL  # a second one waits for the first answer
    pacer.release(headers(remaining=9, reset=1_010))
    assert pacer.reserve() == 0


def test_holds_sends_back_when_the_window_is_used_up_until_its_reset() -> None:
    clock = Clock(1_000.0)
    pacer = HeaderPacer(clock=clock, margin=0.02)
    assert pacer.reserve() == 0
    pacer.release(headers(remaining=3, reset=1_010))
    assert [pacer.reserve() for _ in range(3)] == [0, 0, 0]
    wait = pacer.reserve()
    assert wait == pytest.approx(10.02)  # no budget left: wait for the reset (and the margin)
    clock.now = 1_010.03
    assert pacer.reserve() == 0  # a new window: go
    for _ in range(4):
        pacer.release(headers(remaining=5, reset=1_010))  # late answers from the old window
    pacer.release(headers(remaining=8, reset=1_020))  # the first answer of the new window
    assert pacer.reserve() == 0


def test_in_flight_requests_count_against_the_budget() -> None:
    pacer = HeaderPacer(clock=Clock())
    pacer.reserve()
    pacer.release(headers(remaining=5, reset=1_010))
    for _ in range(4):
        assert pacer.reserve() == 0
    pacer.release(headers(remaining=4, reset=1_010))  # 3 still in flight: 4 - 3 = 1 left
    assert pacer.reserve() == 0
    assert pacer.reserve() > PROBE_INTERVAL


def test_a_429_with_remaining_zero_stops_everyone_until_the_reset() -> None:
    pacer = HeaderPacer(clock=Clock())
    pacer.reserve()
    pacer.release(headers(remaining=100, reset=1_010))
    pacer.reserve()
    pacer.release(headers(remaining=0, reset=1_010))
    assert pacer.reserve() == pytest.approx(10 + pacer.margin)


def test_reserve_keeps_requests_for_other_senders() -> None:
    pacer = HeaderPacer(reserve=2, clock=Clock())
    pacer.reserve()
    pacer.release(headers(remaining=4, reset=1_010))
    assert [pacer.reserve() == 0 for _ in range(3)] == [True, True, False]


def test_steps_aside_when_answers_carry_no_rate_limit_headers() -> None:
    pacer = HeaderPacer(clock=Clock())
    pacer.reserve()
    pacer.release(RateLimit())
    assert all(pacer.reserve() == 0 for _ in range(50))


def test_a_failed_attempt_gives_its_slot_back() -> None:
    pacer = HeaderPacer(clock=Clock())
    pacer.reserve()
    pacer.release(None)  # no answer: still nothing known, the next probe may go
    assert pacer.reserve() == 0


def test_pacer_keeps_a_real_sandbox_free_of_429s() -> None:
    with Sandbox(token=SECRET_TOKEN, rate_limit=5, rate_limit_window=1) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
        with credentials.get_client(pacer=Pacer(), retry=RetryPolicy.never()) as client:
            for number in range(12):
                client.request("phone_call_redirects", {"phone": f"+1415555{number:04d}"})
        statuses = [entry.status for entry in sandbox.received]
    assert statuses == [200] * 12


# --- sizing a shared rate limit -------------------------------------------------------------


@pytest.mark.parametrize(("per_window", "window"), [(1667, 10), (100, 1), (167, 10), (10, 1), (25_000 // 6, 10)])
def test_rate_limit_settings_never_exceed_intercoms_window(per_window: int, window: float) -> None:
    settings = rate_limit_settings(per_window, window)
    chunk, limit, rate = settings.slots_per_acquire, settings.limit, settings.slot_decay_per_second
    # Any window (with 2% slack for late sends) holds at most limit + rate * window slots, in whole chunks.
    assert math.floor((limit + rate * window * 1.02) / chunk) * chunk <= per_window
    assert rate <= 0.96 * per_window / window
    assert default_slots_per_acquire(limit) == chunk  # each process derives the chunk from the limit alone
    assert settings.cli("intercom-app").startswith(f"prefect gcl create intercom-app --limit {limit} ")


def test_intercoms_default_limit_keeps_most_of_its_rate() -> None:
    settings = rate_limit_settings(1667, 10)
    assert settings.slot_decay_per_second >= 0.9 * 166.7


# --- the Prefect global rate limit, on a real Prefect server --------------------------------


async def _create_limit(name: str, limit: int, decay: float) -> None:
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay)
        )


async def test_global_rate_limit_hands_out_slots_in_chunks(prefect_server: None) -> None:
    name = f"intercom-{uuid.uuid4().hex[:8]}"
    await _create_limit(name, limit=6, decay=200)
    limiter = GlobalRateLimit(name)
    try:
        for _ in range(15):
            await limiter.aacquire()
    finally:
        await limiter.aclose()
    assert limiter.slots_per_acquire == default_slots_per_acquire(6) == 5
    assert limiter.acquisitions == 3  # 15 sends, 3 calls to the Prefect server


def test_global_rate_limit_works_from_sync_code(prefect_server: None) -> None:
    from prefect.utilities.asyncutils import run_coro_as_sync

    name = f"intercom-{uuid.uuid4().hex[:8]}"
    run_coro_as_sync(_create_limit(name, limit=3, decay=100))
    limiter = GlobalRateLimit(name, slots_per_acquire=1)
    for _ in range(4):
        limiter.acquire()
    assert limiter.acquisitions == 4


async def test_a_missing_limit_is_a_configuration_error_not_a_free_pass(prefect_server: None) -> None:
    limiter = GlobalRateLimit(f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(IntercomConfigurationError, match="prefect gcl create"):
        await limiter.aacquire()
    await limiter.aclose()


async def test_a_limit_without_slot_decay_is_refused(prefect_server: None) -> None:
    name = f"plain-{uuid.uuid4().hex[:8]}"
    await _create_limit(name, limit=5, decay=0.0)
    limiter = GlobalRateLimit(name)
    with pytest.raises(IntercomConfigurationError, match="slot decay"):
        await limiter.aacquire()
    await limiter.aclose()
