"""How many requests a batch keeps in flight: fixed, or adapted to Intercom's rate and the measured latency.

Reaching a rate limit of R requests a second when each request holds its slot for L seconds
takes R x L requests in flight (Little's law): Intercom's 1,667 per 10 s at 150-400 ms needs
25-70. By default the batch measures L (from the end of any pacing wait, so the ledger's write
announcing it included, to the moment its outcome is recorded) and reads R from Intercom's rate-limit
headers, and keeps `ceil(R x L x headroom) + 2` in flight, between `minimum` and `maximum`;
the pacer, not the concurrency, keeps the batch under the limit.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

INTERCOM_DEFAULT_RATE = 10_000 / 60  # requests a second: Intercom's default limit for an app
DEFAULT_MAX_CONCURRENCY = 100
MIN_ADAPTIVE_CONCURRENCY = 4
HEADROOM = 1.3
_SMOOTHING = 0.1


class ConcurrencyLimit:
    """A semaphore whose size may change while it is held: fixed, or adaptive (see the module docstring).

    Args:
        fixed: A fixed number of requests in flight; `None` adapts it.
        maximum: The most requests in flight when adapting (the connection pool's size).
        rate: Returns the requests a second Intercom allows, when known (the pacer's view).

    Attributes:
        limit: Requests in flight allowed now.
        peak: The most requests that were in flight at once.
    """

    def __init__(
        self,
        fixed: int | None = None,
        *,
        maximum: int = DEFAULT_MAX_CONCURRENCY,
        rate: Callable[[], float | None] | None = None,
    ) -> None:
        if (fixed is not None and fixed < 1) or maximum < 1:
            raise ValueError("concurrency must be at least 1")
        self.adaptive = fixed is None
        self.maximum = maximum if fixed is None else fixed
        self.limit = fixed if fixed is not None else min(maximum, 16)
        self._rate = rate
        self._held = 0
        self.peak = 0
        self._latency: float | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        mode = "adaptive" if self.adaptive else "fixed"
        return f"ConcurrencyLimit({mode}, limit={self.limit}, maximum={self.maximum})"

    @property
    def latency(self) -> float | None:
        """The smoothed seconds a request holds its slot once sent, when measured."""
        return self._latency

    async def acquire(self) -> None:
        """Wait for a slot."""
        while self._held >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        self._held += 1
        self.peak = max(self.peak, self._held)

    def release(self, service_seconds: float | None = None) -> None:
        """Give a slot back; `service_seconds` is how long the request held it once sent (to adapt)."""
        self._held -= 1
        if service_seconds is not None and service_seconds >= 0 and self.adaptive:
            self._observe(service_seconds)
        free = self.limit - self._held
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _observe(self, seconds: float) -> None:
        self._latency = seconds if self._latency is None else self._latency + _SMOOTHING * (seconds - self._latency)
        rate = (self._rate() if self._rate is not None else None) or INTERCOM_DEFAULT_RATE
        wanted = math.ceil(rate * self._latency * HEADROOM) + 2
        self.limit = max(min(MIN_ADAPTIVE_CONCURRENCY, self.maximum), min(self.maximum, wanted))
