"""How many requests a batch keeps in flight: fixed, or adapted to Intercom's rate and the measured latency.

`ceil(rate x latency x HEADROOM) + 2` (Little's law; docs/batches.md, `concurrency`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio

INTERCOM_DEFAULT_RATE = 10_000 / 60  # requests a second: Intercom's default limit for an app
DEFAULT_MAX_CONCURRENCY = 100
MIN_ADAPTIVE_CONCURRENCY = 4
HEADROOM = 1.3
_SMOOTHING = 0.1


class ConcurrencyLimit:
    """anyio's `CapacityLimiter`, sized by hand (fixed) or from the rate and latency (adaptive).

    A thin adapter: a slot is taken in the batch's loop and given back by the send's task, so
    each slot is its own borrower; giving one back may resize the limiter (`total_tokens`).

    Args:
        fixed: A fixed number of requests in flight; `None` adapts it.
        maximum: The most requests in flight when adapting (the connection pool's size).
        allowed_rate: Returns the requests a second Intercom allows, when known (the pacer's view).

    Attributes:
        peak: The most requests that were in flight at once.
    """

    def __init__(
        self,
        fixed: int | None = None,
        *,
        maximum: int = DEFAULT_MAX_CONCURRENCY,
        allowed_rate: Callable[[], float | None] | None = None,
    ) -> None:
        if (fixed is not None and fixed < 1) or maximum < 1:
            raise ValueError("concurrency must be at least 1")
        self.adaptive = fixed is None
        self.maximum = maximum if fixed is None else fixed
        self._limiter = anyio.CapacityLimiter(fixed if fixed is not None else min(maximum, 16))
        self._allowed_rate = allowed_rate
        self._slots: list[object] = []  # the borrowers holding a slot
        self.peak = 0
        self.latency: float | None = None  # the smoothed seconds a request holds its slot once sent

    def __repr__(self) -> str:
        mode = "adaptive" if self.adaptive else "fixed"
        return f"ConcurrencyLimit({mode}, limit={self.limit}, maximum={self.maximum})"

    @property
    def limit(self) -> int:
        """Requests in flight allowed now."""
        return int(self._limiter.total_tokens)

    async def acquire(self) -> None:
        """Wait for a slot."""
        slot = object()
        try:
            self._limiter.acquire_on_behalf_of_nowait(slot)  # no event-loop turn when a slot is free
        except anyio.WouldBlock:
            await self._limiter.acquire_on_behalf_of(slot)
        self._slots.append(slot)
        self.peak = max(self.peak, len(self._slots))

    def release(self, service_seconds: float | None = None) -> None:
        """Give a slot back; `service_seconds` is how long the request held it once sent (to adapt)."""
        self._limiter.release_on_behalf_of(self._slots.pop())
        if service_seconds is not None and service_seconds >= 0:
            self._observe(service_seconds)

    def _observe(self, seconds: float) -> None:
        self.latency = seconds if self.latency is None else self.latency + _SMOOTHING * (seconds - self.latency)
        if not self.adaptive:  # measured all the same: the ledger fits its linger to it
            return
        rate = (self._allowed_rate() if self._allowed_rate is not None else None) or INTERCOM_DEFAULT_RATE
        wanted = math.ceil(rate * self.latency * HEADROOM) + 2
        self._limiter.total_tokens = max(min(MIN_ADAPTIVE_CONCURRENCY, self.maximum), min(self.maximum, wanted))
