"""`Pacer`: the header pacer and, optionally, the Prefect global rate limit, with a bounded wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from prefect_intercom.errors import IntercomRateLimitWaitError
from prefect_intercom.pacing.global_limit import GlobalRateLimit
from prefect_intercom.pacing.headers import HeaderPacer
from prefect_intercom.responses import RateLimit
from prefect_intercom.retry import DEFAULT_RETRY_POLICY

# How long `Pacer` may hold one send back, unless told otherwise: the retry policy's default budget.
DEFAULT_MAX_WAIT = DEFAULT_RETRY_POLICY.max_wait


class Pacer:
    """Everything that paces sends: Intercom's headers and, optionally, a Prefect rate limit.

    Waiting for the header pacer is bounded: when the window resets further away than what
    is left of the budget (`max_wait`, counting every wait for a reset of this acquisition),
    `acquire` raises `IntercomRateLimitWaitError` at once instead of sleeping, and nothing is
    sent. (While the first answer is awaited, other sends poll for at most `PROBE_TIMEOUT`.)

    Args:
        headers: Pace from the `X-RateLimit-*` headers (`HeaderPacer`).
        global_rate_limit: Name of a Prefect global concurrency limit with slot decay
            shared by every sender of the same Intercom app (`GlobalRateLimit`).
        keep_free: Requests per window the header pacer leaves unused.
        slots_per_acquire: Chunk size for the global rate limit (default from its size).
        max_wait: Seconds one acquisition may wait for the header pacer when the caller
            names no budget (default: the retry policy's default, 120 s).

    Example:
        ```python
        from prefect_intercom import IntercomCredentials
        from prefect_intercom.pacing import Pacer

        credentials = IntercomCredentials.load("intercom")
        with credentials.get_client(pacer=Pacer(global_rate_limit="intercom-app")) as client:
            ...
        ```
    """

    def __init__(
        self,
        *,
        headers: bool = True,
        global_rate_limit: str | None = None,
        keep_free: int = 0,
        slots_per_acquire: int | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        if not max_wait >= 0:
            raise ValueError("max_wait must not be negative")
        self.header_pacer = HeaderPacer(keep_free=keep_free) if headers else None
        self.global_limit = (
            GlobalRateLimit(global_rate_limit, slots_per_acquire=slots_per_acquire) if global_rate_limit else None
        )
        self.max_wait = max_wait

    def __repr__(self) -> str:
        return f"Pacer(header_pacer={self.header_pacer!r}, global_limit={self.global_limit!r})"

    def acquire(self, max_wait: float | None = None) -> None:
        """Block until one send may go out.

        Args:
            max_wait: Seconds this send may wait for the rate-limit window (default: the
                pacer's `max_wait`).

        Raises:
            IntercomRateLimitWaitError: The wait would go past `max_wait`; nothing was sent.
        """
        for wait in self._waits(max_wait):
            time.sleep(wait)
        if self.global_limit is not None:
            try:
                self.global_limit.acquire()
            except BaseException:
                self.release(None)
                raise

    async def aacquire(self, max_wait: float | None = None) -> None:
        """Wait until one send may go out (async); see `acquire`."""
        for wait in self._waits(max_wait):
            await asyncio.sleep(wait)
        if self.global_limit is not None:
            try:
                await self.global_limit.aacquire()
            except BaseException:
                self.release(None)
                raise

    def _waits(self, max_wait: float | None) -> Iterator[float]:
        """The header pacer's waits before one send may go out (it holds a slot once they end).

        Waits for a window to reset count against the budget, and one past it is refused; the
        short polls while the first answer is awaited are bounded apart (`PROBE_TIMEOUT`).
        """
        if self.header_pacer is None:
            return
        waited, budget = 0.0, self.max_wait if max_wait is None else max_wait
        while True:
            wait, reset_at = self.header_pacer.next_send()
            if wait <= 0:
                return
            if reset_at is not None:
                if waited + wait > budget:
                    raise IntercomRateLimitWaitError(reset_at, wait, budget, waited)
                waited += wait
            yield wait

    def rate(self) -> float | None:
        """Requests per second this pacer lets out, `None` until known.

        The lower of what the header pacer learned and the shared Prefect rate limit's decay.
        """
        header_rate = self.header_pacer.rate() if self.header_pacer is not None else None
        global_rate = self.global_limit.slot_decay_per_second if self.global_limit is not None else None
        return min(filter(None, (header_rate, global_rate)), default=None)

    def release(self, rate_limit: RateLimit | None) -> None:
        """Report the answer's rate-limit headers (`None` when no answer came)."""
        if self.header_pacer is not None:
            self.header_pacer.release(rate_limit)

    async def aclose(self) -> None:
        """Close the connection to the Prefect server, if one was opened."""
        if self.global_limit is not None:
            await self.global_limit.aclose()
