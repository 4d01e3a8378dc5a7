"""Pacing: send no faster than Intercom allows, before Intercom has to say 429.

Two independent brakes, both optional, applied before every attempt of every send:

- `HeaderPacer` reads `X-RateLimit-Limit/Remaining/Reset` from each answer and holds sends
  back when the current window is used up, until the reset time. It knows only its own
  process, so it is exact for one sender and a safety net for many.
- `GlobalRateLimit` takes slots from a Prefect global concurrency limit with slot decay
  (Prefect's rate limit, `prefect gcl create ... --slot-decay-per-second ...`), so any
  number of processes, workers and flow runs share one budget kept by the Prefect server.

`Pacer` combines them; `IntercomClient(pacer=...)` calls it around every attempt.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from prefect_intercom.errors import IntercomConfigurationError, IntercomRateLimitWaitError
from prefect_intercom.responses import RateLimit
from prefect_intercom.retry import DEFAULT_RETRY_POLICY

DEFAULT_MARGIN = 0.02
# The shortest wait `HeaderPacer.reserve` ever asks for: waiting is never a busy loop.
PROBE_INTERVAL = 0.005
# A first answer slower than this no longer holds the other sends back.
PROBE_TIMEOUT = 2.0
# Intercom's window length, assumed until two successive resets show the real one.
DEFAULT_WINDOW = 10.0
MAX_WINDOW = 3_600.0
# A reset further ahead than this is nonsense (e.g. year 9999): the answer's headers count as missing.
MAX_RESET_AHEAD = 86_400.0
# Counts beyond this are nonsense too.
MAX_COUNT = 1_000_000_000
# Acquisitions per second aimed for when sizing a global rate limit (see `rate_limit_settings`).
ACQUISITIONS_PER_SECOND = 4
# How long `Pacer` may hold one send back, unless told otherwise: the retry policy's default budget.
DEFAULT_MAX_WAIT = DEFAULT_RETRY_POLICY.max_wait

_PROBE, _OPEN, _PACED = "probe", "open", "paced"


@dataclass(frozen=True)
class _Headers:
    """One answer's rate-limit headers, checked: a positive limit (or `None`), a reset time."""

    limit: int | None
    remaining: int
    reset: float


def _checked(rate_limit: RateLimit | None, now: float) -> _Headers | None:
    """The answer's headers if they can be used for pacing, else `None` (missing or nonsense)."""
    if rate_limit is None or rate_limit.remaining is None or rate_limit.reset_at is None:
        return None
    reset = rate_limit.reset_at.timestamp()
    if not math.isfinite(reset) or reset > now + MAX_RESET_AHEAD or rate_limit.remaining > MAX_COUNT:
        return None
    limit = rate_limit.limit if rate_limit.limit is not None and 0 < rate_limit.limit <= MAX_COUNT else None
    remaining = max(0, rate_limit.remaining)  # "-3 left": the window is spent
    if limit is not None:
        remaining = min(remaining, limit)
    return _Headers(limit=limit, remaining=remaining, reset=reset)


class HeaderPacer:
    """Holds sends back when Intercom's headers say the current window is used up.

    The first request goes alone (a probe, for at most `PROBE_TIMEOUT` seconds), so that even
    the first burst of a batch respects what is left of the window. Once an answer carried
    usable `X-RateLimit-*` headers, sends are paced from what is known: the window's limit,
    its end, how many of this process's sends count in it and how many others used. Answers
    without the headers (Intercom says some have none) or with nonsense in them (a limit of
    0, a reset in year 9999 or in the past, negative counts) just give their slot back. If no
    answer ever carries usable headers, the pacer steps aside.

    Within a window, every send this process made counts against it, and what other senders
    used is learned from `X-RateLimit-Remaining`; when the clock passes the window's end a
    new window starts (its end predicted from the window's length, learned from successive
    resets) in which the requests still in flight count. An answer from an older window only
    corrects that count: it never reopens the budget that newer answers closed.

    Args:
        reserve: Requests to leave unused in each window (for other senders of the same app).
        margin: Seconds to wait past `X-RateLimit-Reset` (clock differences, rounding).
        clock: The wall clock (UNIX seconds); tests pass a fake.

    Example:
        ```python
        pacer = HeaderPacer()
        while (wait := pacer.reserve()) > 0:
            time.sleep(wait)
        ...  # send, then:
        pacer.release(response.rate_limit)
        ```
    """

    def __init__(
        self, *, reserve: int = 0, margin: float = DEFAULT_MARGIN, clock: Callable[[], float] = time.time
    ) -> None:
        self.reserve_count = reserve
        self.margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._phase = _PROBE
        self._probe_sent: float | None = None
        self._inflight = 0
        self._limit: int | None = None
        self._window: float | None = None  # learned from successive resets
        self._last_reset: float | None = None  # latest reset an answer announced
        # The current window's end (announced by an answer, or predicted) and the previous one's.
        self._reset: float | None = None
        self._previous: float | None = None
        self._sent = 0  # this process's sends that count in the current window (in flight included)
        self._others: int | None = None  # what others used in it, at least (None: no answer yet)

    def __repr__(self) -> str:
        return (
            f"HeaderPacer(limit={self._limit}, window={self._window}, sent={self._sent}, "
            f"others={self._others}, inflight={self._inflight})"
        )

    def rate(self) -> float | None:
        """Requests per second Intercom allows, as learned from the headers (`None` until known).

        The limit over the window's length; the length is learned from successive resets
        and taken as `DEFAULT_WINDOW` (10 s) until then.
        """
        with self._lock:
            if self._limit is None:
                return None
            return self._limit / (self._window or DEFAULT_WINDOW)

    def reserve(self) -> float:
        """Take a slot for one send: `0.0` means go; a positive value means wait that long and ask again."""
        return self.next_send()[0]

    def next_send(self) -> tuple[float, dt.datetime | None]:
        """Like `reserve`, and also the reset being waited for (`None` when not waiting for one).

        A wait is never shorter than `PROBE_INTERVAL`, and never longer than the time to a
        reset an answer announced (at most `MAX_RESET_AHEAD`) or to a predicted window end.
        """
        with self._lock:
            now = self._clock()
            if self._phase == _PROBE:
                if self._inflight == 0:
                    self._probe_sent = now
                    self._inflight += 1
                    return 0.0, None
                if now - (self._probe_sent or now) < PROBE_TIMEOUT:
                    return PROBE_INTERVAL, None
                self._phase = _OPEN  # the probe is slow or lost: stop waiting for it
            if self._phase == _OPEN:
                self._inflight += 1
                return 0.0, None
            self._roll(now)
            limit = self._limit or 0
            if limit - self._sent - max(0, self._others or 0) > self.reserve_count:
                self._sent += 1
                self._inflight += 1
                return 0.0, None
            reset = self._reset or now
            return max(PROBE_INTERVAL, reset + self.margin - now), dt.datetime.fromtimestamp(reset, dt.timezone.utc)

    def release(self, rate_limit: RateLimit | None) -> None:
        """Give the slot back and learn from the answer's headers (`None`: no answer came)."""
        with self._lock:
            self._inflight = max(0, self._inflight - 1)
            if self._phase == _PROBE:
                self._phase = _OPEN  # any outcome ends the probe; headers below start pacing
            now = self._clock()
            headers = _checked(rate_limit, now)
            if headers is None:
                return
            reset = headers.reset
            if self._reset is None:
                if reset <= now:
                    return  # the window it speaks of is over: nothing to pace by
                self._start(reset, sent=self._inflight + 1)
            elif (self._previous is not None and reset <= self._previous) or (
                self._previous is None and reset < self._reset
            ):
                self._older()
                return
            elif reset <= now:
                return  # a window that already ended, yet not an older one: nonsense
            elif reset > self._reset:
                self._learn_window(reset)
                self._previous = self._reset
                self._start(reset, sent=self._inflight + 1)
            elif reset < self._reset:  # our predicted end was wrong: the answer knows better
                self._learn_window(reset)
                self._reset = reset
            self._count(headers)

    # --- bookkeeping (under the lock) -------------------------------------------------------

    def _start(self, reset: float, *, sent: int) -> None:
        """Begin a window ending at `reset` (announced by an answer), with `sent` of our sends in it."""
        if self._last_reset is None:
            self._last_reset = reset
        self._phase = _PACED
        self._reset = reset
        self._sent, self._others = sent, None

    def _count(self, headers: _Headers) -> None:
        """Learn from an answer about the current window: the limit, and what others used."""
        if headers.limit is not None:
            self._limit = headers.limit
        elif self._limit is None:
            self._limit = headers.remaining + self._sent
        remaining = min(headers.remaining, self._limit)
        others = self._limit - remaining - self._sent
        self._others = others if self._others is None else max(self._others, others)

    def _older(self) -> None:
        """An answer counted in an earlier window: its send does not count in this one."""
        if self._sent > 0:
            self._sent -= 1
            if self._others is not None:
                self._others += 1  # the answers that set `_others` had counted it as ours

    def _learn_window(self, reset: float) -> None:
        if self._last_reset is not None and reset > self._last_reset:
            step = reset - self._last_reset
            self._window = min(MAX_WINDOW, max(1.0, step if self._window is None else min(self._window, step)))
        if self._last_reset is None or reset > self._last_reset:
            self._last_reset = reset

    def _roll(self, now: float) -> None:
        """Start the next window(s) once the clock has passed the current one's end (+ margin)."""
        if self._reset is None or now < self._reset + self.margin:
            return
        window = self._window or DEFAULT_WINDOW
        skipped = math.floor((now - self.margin - self._reset) / window)
        self._previous = self._reset + skipped * window
        self._reset = self._previous + window
        self._sent, self._others = self._inflight, None  # requests in flight count in the new window


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
        self._requested_chunk = slots_per_acquire
        self.slots_per_acquire: int | None = slots_per_acquire
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
                response = await client.increment_concurrency_slots(
                    names=[self.name], slots=self.slots_per_acquire, mode="rate_limit"
                )
            except httpx.HTTPStatusError as error:
                self._check_denied(error)
                read_at = time.time()
                self._after_denial(await self._aread(client), read_at, time.time())
                continue
            self._after_grant(response, started, time.time())
            return

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
            if self._take():
                return
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                if self.slot_decay_per_second is None:
                    self._configure(self._read(client))
                while True:
                    time.sleep(max(0.0, self._next_try - time.time()))
                    started = time.time()
                    try:
                        response = client.increment_concurrency_slots(
                            names=[self.name], slots=self.slots_per_acquire, mode="rate_limit"
                        )
                    except httpx.HTTPStatusError as error:
                        self._check_denied(error)
                        read_at = time.time()
                        self._after_denial(self._read(client), read_at, time.time())
                        continue
                    self._after_grant(response, started, time.time())
                    self._take()
                    return

    def _read(self, client: Any) -> Any:
        try:
            return client.read_global_concurrency_limit_by_name(self.name)
        except Exception as error:
            raise self._missing(error) from None

    # --- shared bookkeeping --------------------------------------------------------------

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
        chunk = self._requested_chunk or default_slots_per_acquire(self.limit)
        self.slots_per_acquire = max(1, min(chunk, self.limit))

    def _after_grant(self, response: httpx.Response, started: float, finished: float) -> None:
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

    def _after_denial(self, limit: Any, started: float, finished: float) -> None:
        """Plan the next try from the limit's state: when its decay frees a chunk.

        The server decays whole slots at `updated + j / rate`; the read happened between
        `started` and `finished`. The next try is sent half a round trip before the slot we
        need frees, so it arrives about then; early is harmless (a denial decays nothing away),
        late loses what decays below zero.
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
            detail = error.response.text[:200]
            raise IntercomConfigurationError(
                f"the Prefect server refused slots of the global rate limit {self.name!r} "
                f"(HTTP {error.response.status_code}: {detail})"
            ) from None

    def _missing(self, error: Exception | None) -> IntercomConfigurationError:
        reason = f" ({type(error).__name__})" if error is not None else ""
        return IntercomConfigurationError(
            f"no usable global concurrency limit named {self.name!r} on the Prefect server{reason}; "
            f"create it, e.g. `{rate_limit_settings(1667, 10).cli(self.name)}`"
        )


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
        reserve: Requests per window the header pacer leaves unused.
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
        reserve: int = 0,
        slots_per_acquire: int | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        if not max_wait >= 0:
            raise ValueError("max_wait must not be negative")
        self.header_pacer = HeaderPacer(reserve=reserve) if headers else None
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
        if self.header_pacer is not None:
            waited, budget = 0.0, self.max_wait if max_wait is None else max_wait
            while True:
                wait, counted = self._next_wait(waited, budget)
                if wait <= 0:
                    break
                time.sleep(wait)
                waited += counted
        if self.global_limit is not None:
            try:
                self.global_limit.acquire()
            except BaseException:
                self.release(None)
                raise

    async def aacquire(self, max_wait: float | None = None) -> None:
        """Wait until one send may go out (async); see `acquire`."""
        if self.header_pacer is not None:
            waited, budget = 0.0, self.max_wait if max_wait is None else max_wait
            while True:
                wait, counted = self._next_wait(waited, budget)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
                waited += counted
        if self.global_limit is not None:
            try:
                await self.global_limit.aacquire()
            except BaseException:
                self.release(None)
                raise

    def _next_wait(self, waited: float, budget: float) -> tuple[float, float]:
        """Take a header-pacer slot (`0.0`) or say how long to wait; refuse a wait past the budget.

        Returns the wait and the waiting that counts against the budget: waits for a window
        to reset (the short polls while the first answer is awaited are bounded apart).
        """
        wait, reset_at = self.header_pacer.next_send()  # type: ignore[union-attr]
        if reset_at is None:
            return wait, 0.0
        if waited + wait > budget:
            raise IntercomRateLimitWaitError(reset_at, wait, budget, waited)
        return wait, wait

    def rate(self) -> float | None:
        """Requests per second Intercom allows, as the header pacer learned it (`None` until known)."""
        return self.header_pacer.rate() if self.header_pacer is not None else None

    def release(self, rate_limit: RateLimit | None) -> None:
        """Report the answer's rate-limit headers (`None` when no answer came)."""
        if self.header_pacer is not None:
            self.header_pacer.release(rate_limit)

    async def aclose(self) -> None:
        """Close the connection to the Prefect server, if one was opened."""
        if self.global_limit is not None:
            await self.global_limit.aclose()
