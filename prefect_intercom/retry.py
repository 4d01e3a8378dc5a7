"""The retry policy: when a failed send may be repeated, and how long to wait first.

Each call texts a person: only what provably did not take effect (429, a connection refused) is
repeated by default, within one bounded budget per request. `IntercomClient(retry=...)` applies
it to every send (the table: docs/retries-and-pacing.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prefect_intercom.errors import IntercomError, IntercomRateLimitError, IntercomTransportError
from prefect_intercom.outcomes import Outcome

T = TypeVar("T")
RetryCallback = Callable[[IntercomError, int, float], None]


def outcome_of(error: BaseException) -> Outcome:
    """What a failed send means for the person: `NOT_SENT` or `UNKNOWN` (the retry decision rests on it).

    Args:
        error: What the pipeline raised.

    Returns:
        `UNKNOWN` when it may have taken effect (5xx, read timeout, dropped connection), else
        `NOT_SENT` (429, connect failures, any other 4xx, invalid bodies, configuration errors).
    """
    outcome = getattr(error, "outcome", None) if isinstance(error, IntercomError) else None
    return Outcome.UNKNOWN if outcome is Outcome.UNKNOWN else Outcome.NOT_SENT


@dataclass(frozen=True)
class RetryPolicy:
    """When to repeat a failed send, stated once for the single task and the batch.

    Attributes:
        max_attempts: Attempts per request, the first included (1 means never retry).
        max_wait: Seconds one request may spend waiting between its attempts, in total. A
            429 whose reset is further away than what is left is not waited for.
        retry_unknown: Also retry failures that may have taken effect (5xx, read timeouts,
            connections dropped after sending). Off by default: a retry may text the
            person twice. Turn on only when a duplicate text is better than none.
        backoff: First wait after a connection failure (or an opted-in unknown), doubled
            on each further attempt; also the wait for a 429 that names no time.
        max_backoff: Cap of one backoff wait.
        jitter: Each wait is stretched by a random amount of up to this fraction (of the
            wait, and at least of `backoff`), so that many senders do not retry together.

    Example:
        ```python
        from prefect_intercom import IntercomCredentials, RetryPolicy

        policy = RetryPolicy(max_attempts=4, max_wait=60)  # 429s and connect failures only
        with IntercomCredentials.load("intercom").get_client(retry=policy) as client:
            client.request("phone_call_redirects", {"phone": "+14155550100"})
        ```
    """

    max_attempts: int = 6
    max_wait: float = 120.0
    retry_unknown: bool = False
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.max_wait, self.backoff, self.max_backoff, self.jitter) < 0:
            raise ValueError("waits and jitter must not be negative")

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that sends once and never retries."""
        return cls(max_attempts=1)

    def delay(
        self,
        error: BaseException,
        attempt: int,
        waited: float,
        *,
        now: dt.datetime | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or `None` to give up and raise `error`.

        Args:
            error: The failure of attempt number `attempt`.
            attempt: How many attempts were made so far (1 after the first).
            waited: Seconds already spent waiting between earlier attempts of this request.
            now: The current time (for `X-RateLimit-Reset`); default: the clock.
            rng: Source of the jitter; default: the `random` module.
        """
        if attempt >= self.max_attempts:
            return None
        # Only what provably never reached the server (refused, connect timeout), unless unknowns may be repeated.
        never_left = isinstance(error, IntercomTransportError) and error.outcome is Outcome.NOT_SENT
        if isinstance(error, IntercomRateLimitError):
            base = _rate_limit_wait(error, now)
            if base is None:
                base = self._backoff(attempt)
        elif never_left or (outcome_of(error) is Outcome.UNKNOWN and self.retry_unknown):
            base = self._backoff(attempt)
        else:
            return None
        wait = base + (rng or random).uniform(0.0, self.jitter * max(base, self.backoff))
        return None if waited + wait > self.max_wait else wait

    def _backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** (attempt - 1))


DEFAULT_RETRY_POLICY = RetryPolicy()
"""The tasks' default: retry 429s and connect failures only, never what may have texted."""


def _rate_limit_wait(error: IntercomRateLimitError, now: dt.datetime | None) -> float | None:
    if error.retry_after is not None:
        return error.retry_after
    if error.reset_at is not None:
        return max(0.0, (error.reset_at - (now or dt.datetime.now(dt.UTC))).total_seconds()) or None
    return None


def call_with_retry(
    send_once: Callable[[], T],
    policy: RetryPolicy | None,
    *,
    on_retry: RetryCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `send_once` until it succeeds or `policy` says to stop.

    Args:
        send_once: One attempt; raises an `IntercomError` on failure.
        policy: The retry policy; `None` sends once.
        on_retry: Called as `on_retry(error, attempt, wait)` before each wait (for logging).
        sleep: How to wait (tests pass a fake).

    Returns:
        What the successful attempt returned.

    Raises:
        IntercomError: The last failure, with `.attempts` set to the number of attempts.
    """
    attempt, waited = 1, 0.0
    while True:
        try:
            return send_once()
        except IntercomError as error:
            wait = _next_wait(error, policy, attempt, waited, on_retry)
        sleep(wait)
        attempt, waited = attempt + 1, waited + wait


async def acall_with_retry(
    send_once: Callable[[], Awaitable[T]],
    policy: RetryPolicy | None,
    *,
    on_retry: RetryCallback | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Async twin of `call_with_retry`."""
    attempt, waited = 1, 0.0
    while True:
        try:
            return await send_once()
        except IntercomError as error:
            wait = _next_wait(error, policy, attempt, waited, on_retry)
        await sleep(wait)
        attempt, waited = attempt + 1, waited + wait


def _next_wait(
    error: IntercomError, policy: RetryPolicy | None, attempt: int, waited: float, on_retry: RetryCallback | None
) -> float:
    """The wait before the next attempt (`on_retry` told), or `error` raised with `.attempts` set."""
    wait = policy.delay(error, attempt, waited) if policy is not None else None
    if wait is None:
        error.attempts = attempt
        raise error
    if on_retry is not None:
        on_retry(error, attempt, wait)
    return wait
