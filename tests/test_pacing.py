"""Pacing: the header pacer's decisions (fake clock), sizing a shared rate limit, and the
Prefect global rate limit against a real Prefect server."""

from __future__ import annotations

import datetime as dt
import math
import pickle
import time
import uuid
from collections.abc import Callable

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from prefect_intercom import IntercomConfigurationError, IntercomCredentials, Pacer, RetryPolicy
from prefect_intercom.errors import IntercomError, IntercomRateLimitWaitError
from prefect_intercom.outcomes import Outcome
from prefect_intercom.pacing import GlobalRateLimit, HeaderPacer, rate_limit_settings
from prefect_intercom.pacing.global_limit import default_slots_per_acquire
from prefect_intercom.pacing.headers import DEFAULT_MARGIN, DEFAULT_WINDOW, PROBE_INTERVAL, PROBE_TIMEOUT
from prefect_intercom.responses import RateLimit
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN, clear_of_window_edge


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def headers(remaining: int, reset: float, limit: int = 10) -> RateLimit:
    return RateLimit(limit=limit, remaining=remaining, reset_at=dt.datetime.fromtimestamp(reset, dt.UTC))


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


def test_keep_free_leaves_requests_for_other_senders() -> None:
    pacer = HeaderPacer(keep_free=2, clock=Clock())
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
    pacer.release(None)  # no answer: still nothing known, the others may go
    assert pacer.reserve() == 0


# --- answers without headers, timeouts, nonsense headers (fake clock) -----------------------


def raw(limit: str | None, remaining: str | None, reset: str | None) -> RateLimit:
    """Headers as a server sends them, through the real parser."""
    values = {"x-ratelimit-limit": limit, "x-ratelimit-remaining": remaining, "x-ratelimit-reset": reset}
    return RateLimit.from_headers({name: value for name, value in values.items() if value is not None})


def drive(pacer: HeaderPacer, clock: Clock, answer: Callable[[float], RateLimit], sends: int) -> list[float]:
    """Send `sends` requests one after the other, each answered at once; returns the waits asked for."""
    waits: list[float] = []
    for _ in range(sends):
        while (wait := pacer.reserve()) > 0:
            waits.append(wait)
            clock.now += wait
            assert len(waits) < 1_000, f"the pacer spins: {waits[-5:]}"
        pacer.release(answer(clock.now))
    return waits


def test_a_first_answer_without_headers_does_not_turn_pacing_off_for_good() -> None:
    pacer = HeaderPacer(clock=Clock())
    pacer.reserve()
    pacer.release(RateLimit())  # Intercom says some answers carry no rate-limit headers
    assert [pacer.reserve() for _ in range(3)] == [0, 0, 0]  # nothing known yet: no brake
    pacer.release(headers(remaining=0, reset=1_010))  # the window is spent
    assert pacer.reserve() == pytest.approx(10 + pacer.margin)


def test_once_the_window_is_known_an_answer_without_headers_just_gives_its_slot_back() -> None:
    pacer = HeaderPacer(clock=Clock())
    pacer.reserve()
    pacer.release(headers(remaining=3, reset=1_010))
    assert [pacer.reserve() for _ in range(3)] == [0, 0, 0]
    for _ in range(3):
        pacer.release(RateLimit())
    assert pacer.reserve() == pytest.approx(10 + pacer.margin)  # the three still count in the window


def test_a_timeout_does_not_fall_back_to_one_request_at_a_time() -> None:
    pacer = HeaderPacer(clock=Clock())
    pacer.reserve()
    pacer.release(None)  # the first request timed out: no answer, no headers
    assert [pacer.reserve() for _ in range(5)] == [0] * 5


def test_a_lost_first_answer_holds_the_others_back_for_a_bounded_time() -> None:
    clock = Clock()
    pacer = HeaderPacer(clock=clock)
    pacer.reserve()
    assert pacer.reserve() == PROBE_INTERVAL
    clock.now += PROBE_TIMEOUT
    assert [pacer.reserve() for _ in range(5)] == [0] * 5


def test_a_timeout_once_paced_keeps_the_window_counted() -> None:
    pacer = HeaderPacer(clock=Clock())
    pacer.reserve()
    pacer.release(headers(remaining=5, reset=1_010))
    assert [pacer.reserve() for _ in range(5)] == [0] * 5
    pacer.release(None)  # it may have been counted by Intercom
    assert pacer.reserve() > PROBE_INTERVAL


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda now: raw("0", "0", f"{now + 5:.0f}"), id="limit-0"),
        pytest.param(lambda now: raw("-10", "-3", f"{now + 5:.0f}"), id="negative-counts"),
        pytest.param(lambda now: raw("10", "-1", f"{now + 5:.0f}"), id="negative-remaining"),
        pytest.param(lambda now: raw("10", "5", "253402300799"), id="reset-in-year-9999"),
        pytest.param(lambda now: raw("10", "0", "99999999999999999999"), id="reset-beyond-any-date"),
        pytest.param(lambda now: raw("10", "0", f"{now - 100:.0f}"), id="reset-in-the-past"),
        pytest.param(lambda now: raw("10", "0", "1000"), id="reset-stuck-in-the-past"),
        pytest.param(lambda now: raw("10", "0", "0"), id="reset-1970"),
        pytest.param(lambda now: raw("10", "2", f"{now + 5.7}"), id="reset-a-float"),
        pytest.param(lambda now: raw("10", "0", "soon"), id="reset-garbage"),
        pytest.param(lambda now: raw("ten", "nan", "inf"), id="all-garbage"),
        pytest.param(lambda now: raw("10", "1e30", f"{now + 5:.0f}"), id="remaining-huge"),
    ],
)
def test_nonsense_headers_never_spin_nor_hang(answer: Callable[[float], RateLimit]) -> None:
    clock = Clock(1_000.0)
    pacer = HeaderPacer(clock=clock)
    waits = drive(pacer, clock, answer, sends=60)
    assert all(PROBE_INTERVAL <= wait <= DEFAULT_WINDOW + 1 for wait in waits), waits
    assert clock.now - 1_000.0 <= 60 * (DEFAULT_WINDOW + 1)  # at least one send per window


def test_a_reset_two_hours_away_is_waited_for_only_when_asked() -> None:
    clock = Clock(1_000.0)
    pacer = HeaderPacer(clock=clock)
    pacer.reserve()
    pacer.release(headers(remaining=0, reset=1_000 + 7_200))
    wait, reset_at = pacer.next_send()
    assert wait == pytest.approx(7_200 + pacer.margin)  # a real reset, reported as it is
    assert reset_at == dt.datetime.fromtimestamp(8_200, dt.UTC)


# --- many requests in flight, windows rolling, answers out of order ---------------------------


def test_answers_arriving_out_of_order_still_let_the_whole_window_be_spent() -> None:
    pacer = HeaderPacer(clock=Clock())
    pacer.reserve()
    pacer.release(headers(remaining=9, reset=1_010))  # 1 used of 10
    assert [pacer.reserve() for _ in range(4)] == [0] * 4  # Intercom counts them as it receives them: 8, 7, 6, 5 left
    pacer.release(headers(remaining=7, reset=1_010))  # the third answer first: 2 sent before it still in flight
    assert [pacer.reserve() == 0 for _ in range(6)] == [True] * 5 + [False]  # 10 - 5 sent = 5 left, not 4


def test_requests_in_flight_at_a_window_roll_count_in_the_new_window() -> None:
    clock = Clock()
    pacer = HeaderPacer(clock=clock)
    pacer.reserve()
    pacer.release(headers(remaining=99, reset=1_010, limit=100))
    assert all(pacer.reserve() == 0 for _ in range(99))  # 99 in flight
    assert pacer.reserve() > PROBE_INTERVAL
    clock.now = 1_010.03
    assert pacer.reserve() == 0  # 99 in flight may land in the new window: 1 left
    assert pacer.reserve() == pytest.approx(10 - 0.03 + pacer.margin)  # the next window's predicted end


def test_an_older_windows_answer_after_a_newer_one_does_not_reopen_the_budget() -> None:
    clock = Clock()
    pacer = HeaderPacer(clock=clock)
    pacer.reserve()
    pacer.release(headers(remaining=9, reset=1_010))
    assert all(pacer.reserve() == 0 for _ in range(9))  # 9 in flight
    clock.now = 1_010.03
    assert pacer.reserve() == 0  # 10 in flight
    pacer.release(headers(remaining=0, reset=1_020))  # the new window is spent (others used it)
    for remaining in (5, 3, 8, 1, 0, 7, 2, 6, 4):  # the old window's answers, late and out of order
        pacer.release(headers(remaining=remaining, reset=1_010))
        assert pacer.reserve() > PROBE_INTERVAL
    clock.now = 1_020.03
    assert pacer.reserve() == 0


def test_an_answer_from_a_later_window_starts_it_before_the_clock_does() -> None:
    clock = Clock(1_009.5)
    pacer = HeaderPacer(clock=clock)
    pacer.reserve()
    pacer.release(headers(remaining=5, reset=1_010))  # others used 4
    assert [pacer.reserve() == 0 for _ in range(6)] == [True] * 5 + [False]
    clock.now = 1_010.01  # Intercom's window rolled, ours not yet (margin)
    pacer.release(headers(remaining=9, reset=1_020))  # the first one Intercom counted in the next window
    assert [pacer.reserve() == 0 for _ in range(6)] == [True] * 5 + [False]  # the 4 in flight may count there too


def test_rate_is_the_limit_over_the_window_learned_from_successive_resets() -> None:
    clock = Clock()
    pacer = HeaderPacer(clock=clock)
    assert pacer.rate() is None
    pacer.reserve()
    pacer.release(headers(remaining=1_666, reset=1_010, limit=1_667))
    assert pacer.rate() == pytest.approx(166.7)  # 10-second windows until shown otherwise
    clock.now = 1_010.5
    pacer.reserve()
    pacer.release(headers(remaining=1_666, reset=1_012, limit=1_667))
    assert pacer.rate() == pytest.approx(1_667 / 2)
    assert Pacer().rate() is None and Pacer(headers=False).rate() is None


def test_a_window_learned_shorter_than_ten_seconds_is_predicted_as_such() -> None:
    clock = Clock()
    pacer = HeaderPacer(clock=clock)
    pacer.reserve()
    pacer.release(headers(remaining=0, reset=1_001, limit=1))
    clock.now = 1_001.03
    pacer.reserve()
    pacer.release(headers(remaining=0, reset=1_002, limit=1))  # windows of 1 s
    clock.now = 1_002.03
    assert pacer.reserve() == 0
    assert pacer.reserve() == pytest.approx(1 - 0.03 + pacer.margin)


# --- bounded waits: Pacer.acquire(max_wait=...) ---------------------------------------------


def fake_paced(clock: Clock) -> Pacer:
    pacer = Pacer()
    pacer.header_pacer = HeaderPacer(clock=clock)
    return pacer


def test_a_reset_beyond_the_budget_is_refused_at_once_not_slept_through(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(dt.datetime(2026, 11, 29, 19, 0, tzinfo=dt.UTC).timestamp())
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    pacer = fake_paced(clock)
    pacer.acquire()
    pacer.release(headers(remaining=0, reset=clock.now + 7_200))
    with pytest.raises(IntercomRateLimitWaitError) as caught:
        pacer.acquire(max_wait=120)
    error = caught.value
    assert slept == []
    assert error.reset_at == dt.datetime(2026, 11, 29, 21, 0, tzinfo=dt.UTC)
    assert error.wait == pytest.approx(7_200, abs=0.1) and error.max_wait == 120
    assert error.outcome is Outcome.NOT_SENT and isinstance(error, IntercomError)
    assert str(error) == (
        "the rate-limit window resets at 2026-11-29T21:00:00Z, in 7,200 s, beyond the retry budget of 120 s; not sent"
    )
    assert pickle.loads(pickle.dumps(error)).reset_at == error.reset_at


def test_a_reset_within_the_budget_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(time, "sleep", lambda seconds: setattr(clock, "now", clock.now + seconds))
    pacer = fake_paced(clock)
    pacer.acquire()
    pacer.release(headers(remaining=0, reset=1_005))
    pacer.acquire(max_wait=6)
    assert clock.now == pytest.approx(1_005 + DEFAULT_MARGIN)


def test_waits_for_the_rate_limit_add_up_against_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(time, "sleep", lambda seconds: setattr(clock, "now", clock.now + seconds))
    pacer = fake_paced(clock)
    pacer.acquire()
    pacer.release(headers(remaining=0, reset=1_005, limit=1))
    clock.now = 1_005.03
    assert pacer.header_pacer.reserve() == 0  # another send takes the next window
    with pytest.raises(IntercomRateLimitWaitError, match=r"budget of 12 s \(10\.0 s of it already waited\)"):
        pacer.acquire(max_wait=12)  # waits for the next window (10 s), then would wait for one more


def test_the_polls_while_the_first_answer_is_awaited_do_not_count_as_waiting_for_a_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(time, "sleep", lambda seconds: setattr(clock, "now", clock.now + seconds))
    pacer = fake_paced(clock)
    pacer.acquire()
    assert pacer.max_wait == RetryPolicy().max_wait  # the default budget, when the caller names none
    pacer.acquire(max_wait=0)  # the first answer never came: the others go after PROBE_TIMEOUT
    assert clock.now == pytest.approx(1_000 + PROBE_TIMEOUT, abs=2 * PROBE_INTERVAL)


async def test_the_async_acquire_refuses_the_same_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    pacer = fake_paced(clock)
    await pacer.aacquire()
    pacer.release(headers(remaining=0, reset=1_000 + 600))
    with pytest.raises(IntercomRateLimitWaitError, match="in 600 s, beyond the retry budget of 120 s"):
        await pacer.aacquire()  # the pacer's own budget: the retry policy's default


def test_the_client_passes_its_retry_budget_and_sends_nothing_past_it() -> None:
    # One request per window of ~24 hours: the second one would wait for hours.
    clear_of_window_edge(86_000, margin=60)
    with Sandbox(token=SECRET_TOKEN, rate_limit=1, rate_limit_window=86_000) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
        with credentials.get_client(pacer=Pacer(), retry=RetryPolicy(max_wait=30)) as client:
            client.request("phone_call_redirects", {"phone": "+14155550100"})
            with pytest.raises(IntercomRateLimitWaitError) as caught:
                client.request("phone_call_redirects", {"phone": "+14155550101"})
        received = sandbox.received
    assert caught.value.max_wait == 30 and caught.value.reset_at is not None
    assert [entry.body["phone"] for entry in received] == ["+14155550100"]  # not even a 429


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


def test_a_pacer_s_rate_is_the_lower_of_the_headers_and_the_shared_limit() -> None:
    pacer = Pacer(global_rate_limit="intercom-app")
    assert pacer.rate() is None  # neither known yet
    assert pacer.global_limit is not None and pacer.header_pacer is not None
    pacer.global_limit.slot_decay_per_second = 95.0  # read from the Prefect server on first use
    assert pacer.rate() == 95.0
    pacer.header_pacer.reserve()
    pacer.header_pacer.release(headers(remaining=80, reset=time.time() + 5, limit=100))
    assert pacer.rate() == pytest.approx(10.0)  # 100 per 10-second window is slower than the shared limit
