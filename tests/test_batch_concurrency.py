"""The concurrency limit (`prefect_intercom.batch.concurrency`): fixed, or rate x latency with headroom."""

from __future__ import annotations

import asyncio

import pytest

from prefect_intercom.batch.concurrency import INTERCOM_DEFAULT_RATE, ConcurrencyLimit


async def test_a_fixed_concurrency_never_changes() -> None:
    limit = ConcurrencyLimit(7)
    await limit.acquire()
    limit.release(5.0)
    assert limit.limit == 7 and not limit.adaptive
    assert limit.latency == 5.0  # measured all the same: the ledger fits its linger to it


@pytest.mark.parametrize(
    ("latency", "rate", "expected"),
    [
        (0.3, None, 67),  # Intercom's 1,667 per 10 s at 300 ms: ceil(166.7 x 0.3 x 1.3) + 2
        (0.15, 166.7, 35),
        (0.4, 166.7, 89),
        (2.0, 166.7, 100),  # capped at the maximum (the connection pool)
        (0.001, 166.7, 4),  # never below the minimum
        (0.2, 10.0, 5),  # a small app's limit needs few
    ],
)
async def test_adaptive_concurrency_is_rate_times_latency_with_headroom(
    latency: float, rate: float | None, expected: int
) -> None:
    limit = ConcurrencyLimit(None, maximum=100, allowed_rate=lambda: rate)
    for _ in range(200):  # the smoothed latency settles on the measured one
        await limit.acquire()
        limit.release(latency)
    assert limit.limit == expected
    assert INTERCOM_DEFAULT_RATE == pytest.approx(166.67, abs=0.01)


async def test_the_limit_holds_at_most_its_size_in_flight_and_wakes_waiters_as_it_grows() -> None:
    limit = ConcurrencyLimit(None, maximum=50, allowed_rate=lambda: 100.0)
    inside = 0
    most = 0

    async def worker() -> None:
        nonlocal inside, most
        await limit.acquire()
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.01)
        inside -= 1
        limit.release(0.3)  # each measured at 300 ms: the limit grows to ceil(100 x 0.3 x 1.3) + 2 = 41

    await asyncio.gather(*(worker() for _ in range(400)))
    assert limit.limit == 41 and most <= 41 and limit.peak == most > 16
