"""The Prefect global rate limit: slots taken in chunks from a global concurrency limit with slot decay, and its sizing.

Any number of processes, workers and flow runs share one budget kept by the Prefect server
(`prefect gcl create ... --slot-decay-per-second ...`; `rate_limit_settings` sizes it).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from prefect_intercom.errors import IntercomConfigurationError

# Acquisitions per second aimed for when sizing a global rate limit (see `rate_limit_settings`).
ACQUISITIONS_PER_SECOND = 4


@dataclass(frozen=True)
class RateLimitSettings:
    """Settings for a Prefect global concurrency limit that paces one Intercom app.

    Attributes:
        limit: The limit's size (`--limit`): slots taken per acquisition plus a little headroom.
        slot_decay_per_second: Its decay (`--slot-decay-per-second`): the shared sending rate.
        slots_per_acquire: Slots each process takes per call to the Prefect server.
    """

    limit: int
    slot_decay_per_second: float
    slots_per_acquire: int

    def cli(self, name: str) -> str:
        """The `prefect gcl create` command that creates this limit."""
        return f"prefect gcl create {name} --limit {self.limit} --slot-decay-per-second {self.slot_decay_per_second:g}"


def rate_limit_settings(requests_per_window: int, window_seconds: float, *, share: float = 0.96) -> RateLimitSettings:
    """Size a Prefect rate limit so that all processes together stay under Intercom's limit.

    Slots are taken in chunks of `requests_per_window / (window_seconds * 4)` (about four
    calls to the Prefect server per second in all), and the limit's size is one chunk plus
    a small headroom, so that a slightly late acquisition loses nothing. In any window the
    server grants at most `limit + rate * window` slots, i.e. a whole number of chunks; the
    rate is `share` of Intercom's, lowered if needed so that those chunks fit in
    `requests_per_window` (with 2% of the window to spare). A granted chunk is sent within one
    acquisition period, so a window can also see the end of the chunk granted just before
    it: each process's `HeaderPacer` holds back any send beyond what Intercom says remains.

    Args:
        requests_per_window: Intercom's `X-RateLimit-Limit` (e.g. 1667 for 10,000 a minute).
        window_seconds: The window's length (Intercom counts in 10-second windows).
        share: Fraction of Intercom's rate to use at most.

    Returns:
        The limit's settings; `settings.cli(name)` prints the command that creates it.

    Example:
        ```python
        >>> rate_limit_settings(1667, 10).cli("intercom-app")
        'prefect gcl create intercom-app --limit 44 --slot-decay-per-second 160'
        ```
    """
    if requests_per_window < 1 or window_seconds <= 0 or not 0 < share <= 1:
        raise ValueError("requests_per_window >= 1, window_seconds > 0 and 0 < share <= 1 are required")
    chunks = max(1, round(window_seconds * ACQUISITIONS_PER_SECOND))
    chunk = max(1, requests_per_window // chunks)
    limit = chunk + max(1, min(3, chunk // 8))
    fits = ((chunks + 1) * chunk - limit) / (window_seconds * 1.02)
    rate = math.floor(min(share * requests_per_window / window_seconds, fits) * 10) / 10
    if rate <= 0:
        raise ValueError(f"{requests_per_window} per {window_seconds:g} s is too small to share in chunks")
    return RateLimitSettings(limit=limit, slot_decay_per_second=rate, slots_per_acquire=chunk)


def default_slots_per_acquire(limit: int) -> int:
    """Slots taken per acquisition from a limit of size `limit` (the inverse of `rate_limit_settings`)."""
    return max(1, limit - max(1, min(3, limit // 9)))


class GlobalRateLimit:
    """Takes slots from a Prefect global concurrency limit with slot decay, shared by all senders.

    Slots are taken in chunks (a few Prefect server calls per second, not one per send) and
    handed to the sends of this process; unused ones expire after one acquisition period
    (`chunk / rate`), so no process hoards slots. When the limit is full, the wait is
    computed from the limit's decay, not guessed.

    This uses the Prefect server's own rate-limit accounting (`/v2/concurrency_limits/increment`
    with `mode="rate_limit"`, what `prefect.concurrency.asyncio.rate_limit` calls); only the
    client-side waiting differs, because Prefect's generic back-off reached a fraction of the
    limit's rate in our measurements (see the README).

    Args:
        name: The global concurrency limit's name; it must exist and have slot decay.
        slots_per_acquire: Slots per call to the Prefect server; default: a little less than
            the limit's size.

    Example:
        ```bash
        prefect gcl create intercom-app --limit 44 --slot-decay-per-second 160
        ```
        ```python
        pacer = Pacer(global_rate_limit="intercom-app")
        ```
    """

    def __init__(self, name: str, *, slots_per_acquire: int | None = None) -> None:
        if not name:
            raise ValueError("the global rate limit needs a name")
        self.name = name
        self.slots_per_acquire: int | None = slots_per_acquire  # as asked for, until the limit is read
        self.slot_decay_per_second: float | None = None
        self.limit: int | None = None
        self._tokens = 0
        self._tokens_expire = 0.0
        self._next_try = 0.0
        self._thread_lock = threading.Lock()
        self._fetching: asyncio.Future[None] | None = None
        self._async_client: Any = None
        self.acquisitions = 0
        self.denials = 0

    def __repr__(self) -> str:
        return f"GlobalRateLimit(name={self.name!r}, slots_per_acquire={self.slots_per_acquire})"

    # --- async ---------------------------------------------------------------------------

    async def aacquire(self) -> None:
        """Wait for one slot (async).

        One waiter fetches a chunk from the Prefect server; the others wait for that fetch
        and then all take their slot in the same turn of the event loop, so a chunk is
        spent at once rather than handed on from waiter to waiter.
        """
        while not self._take():
            if self._fetching is not None:
                await asyncio.shield(self._fetching)
                continue
            self._fetching = asyncio.get_running_loop().create_future()
            try:
                await self._afetch()
            finally:
                fetching, self._fetching = self._fetching, None
                fetching.set_result(None)

    async def _afetch(self) -> None:
        if self._async_client is None:
            from prefect.client.orchestration import get_client

            self._async_client = get_client()
            await self._async_client.__aenter__()
        client = self._async_client
        if self.slot_decay_per_second is None:
            self._configure(await self._aread(client))
        while True:
            await asyncio.sleep(max(0.0, self._next_try - time.time()))
            started = time.time()
            try:
                return self._after_grant(await client.increment_concurrency_slots(**self._increment), started)
            except httpx.HTTPStatusError as error:
                self._check_denied(error)
            self._after_denial(time.time(), await self._aread(client), time.time())

    async def aclose(self) -> None:
        """Close the connection to the Prefect server."""
        if self._async_client is not None:
            client, self._async_client = self._async_client, None
            await client.__aexit__(None, None, None)

    async def _aread(self, client: Any) -> Any:
        try:
            return await client.read_global_concurrency_limit_by_name(self.name)
        except Exception as error:  # ObjectNotFound, or the server refusing
            raise self._missing(error) from None

    # --- sync ----------------------------------------------------------------------------

    def acquire(self) -> None:
        """Wait for one slot (blocking)."""
        with self._thread_lock:
            while not self._take():
                self._fetch()

    def _fetch(self) -> None:
        """Sync twin of `_afetch`, over a connection of its own."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            if self.slot_decay_per_second is None:
                self._configure(self._read(client))
            while True:
                time.sleep(max(0.0, self._next_try - time.time()))
                started = time.time()
                try:
                    return self._after_grant(client.increment_concurrency_slots(**self._increment), started)
                except httpx.HTTPStatusError as error:
                    self._check_denied(error)
                self._after_denial(time.time(), self._read(client), time.time())

    def _read(self, client: Any) -> Any:
        try:
            return client.read_global_concurrency_limit_by_name(self.name)
        except Exception as error:
            raise self._missing(error) from None

    # --- shared bookkeeping --------------------------------------------------------------

    @property
    def _increment(self) -> dict[str, Any]:
        """The arguments of a request for one chunk of slots."""
        return {"names": [self.name], "slots": self.slots_per_acquire, "mode": "rate_limit"}

    def _take(self) -> bool:
        if self._tokens > 0 and time.monotonic() < self._tokens_expire:
            self._tokens -= 1
            return True
        self._tokens = 0
        return False

    def _configure(self, limit: Any) -> None:
        if not limit.active or not limit.slot_decay_per_second or limit.slot_decay_per_second <= 0:
            raise IntercomConfigurationError(
                f"the global concurrency limit {self.name!r} is inactive or has no slot decay; a rate "
                "limit needs one, e.g. `prefect gcl create NAME --limit 44 --slot-decay-per-second 160`"
            )
        self.limit = int(limit.limit)
        self.slot_decay_per_second = float(limit.slot_decay_per_second)
        chunk = self.slots_per_acquire or default_slots_per_acquire(self.limit)
        self.slots_per_acquire = max(1, min(chunk, self.limit))

    def _after_grant(self, response: httpx.Response, started: float) -> None:
        if not response.json():  # the server grants anything when no limit has the name
            raise self._missing(None)
        self.acquisitions += 1
        chunk, rate = self.slots_per_acquire or 1, self.slot_decay_per_second or 1.0
        self._tokens = chunk
        self._tokens_expire = time.monotonic() + max(0.05, chunk / rate)
        # In steady state the limit is full again after our grant: the next chunk frees one
        # period later. Counting from when the request left puts the next one on the server
        # about when the period ends (if others took slots meanwhile, the server says 423).
        self._next_try = started + chunk / rate

    def _after_denial(self, started: float, limit: Any, finished: float) -> None:
        """Plan the next try from the limit's state: when its decay frees a chunk.

        The server decays whole slots at `updated + j / rate`; the read happened between
        `started` and `finished` (the arguments come in that order). The next try is sent half a
        round trip before the slot we need frees, so it arrives about then; early is harmless (a
        denial decays nothing away), late loses what decays below zero.
        """
        self.denials += 1
        rate, chunk = float(limit.slot_decay_per_second), self.slots_per_acquire or 1
        middle, half_trip = (started + finished) / 2, (finished - started) / 2
        needed = limit.active_slots + chunk - limit.limit  # slots that must still decay
        if limit.updated is None or needed <= 0:
            self._next_try = finished
            return
        updated = limit.updated.timestamp()
        decayed = math.floor(rate * max(0.0, middle - updated))
        target = updated + (decayed + needed) / rate
        self._next_try = min(max(target - half_trip, finished), finished + (chunk + 1) / rate)

    def _check_denied(self, error: httpx.HTTPStatusError) -> None:
        if error.response.status_code != 423:
            raise IntercomConfigurationError(
                f"the Prefect server refused slots of the global rate limit {self.name!r} "
                f"(HTTP {error.response.status_code}: {error.response.text[:200]})"
            ) from None

    def _missing(self, error: Exception | None) -> IntercomConfigurationError:
        reason = f" ({type(error).__name__})" if error is not None else ""
        return IntercomConfigurationError(
            f"no usable global concurrency limit named {self.name!r} on the Prefect server{reason}; "
            f"create it, e.g. `{rate_limit_settings(1667, 10).cli(self.name)}`"
        )
