"""The header pacer: hold sends back when Intercom's `X-RateLimit-*` headers say the window is used up.

It knows only its own process, so it is exact for one sender and a safety net for many (see
`prefect_intercom.pacing.global_limit` for a budget shared by every process).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable

from prefect_intercom.responses import RateLimit

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


def _checked(rate_limit: RateLimit | None, now: float) -> tuple[int | None, int, float] | None:
    """The answer's headers if they can be used for pacing, else `None` (missing or nonsense).

    Returns:
        The limit (positive, or `None`), what remains (0 or more) and the reset (UNIX seconds).
    """
    if rate_limit is None or rate_limit.remaining is None or rate_limit.reset_at is None:
        return None
    reset = rate_limit.reset_at.timestamp()
    if not math.isfinite(reset) or reset > now + MAX_RESET_AHEAD or rate_limit.remaining > MAX_COUNT:
        return None
    limit = rate_limit.limit if rate_limit.limit is not None and 0 < rate_limit.limit <= MAX_COUNT else None
    # "-3 left": the window is spent (more than the limit left is cut to it when counted, `_count`)
    return limit, max(0, rate_limit.remaining), reset


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
        keep_free: Requests to leave unused in each window (for other senders of the same app).
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
        self, *, keep_free: int = 0, margin: float = DEFAULT_MARGIN, clock: Callable[[], float] = time.time
    ) -> None:
        self.keep_free = keep_free
        self.margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._probing = True  # until the first answer (or `PROBE_TIMEOUT`); paced once a window is known
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
            return None if self._limit is None else self._limit / (self._window or DEFAULT_WINDOW)

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
            if self._probing:
                if self._inflight == 0:
                    self._probe_sent = now
                    self._inflight += 1
                    return 0.0, None
                if now - (self._probe_sent or now) < PROBE_TIMEOUT:
                    return PROBE_INTERVAL, None
                self._probing = False  # the probe is slow or lost: stop waiting for it
            if self._reset is None:  # no window known: nothing to pace by
                self._inflight += 1
                return 0.0, None
            self._roll(now)
            if (self._limit or 0) - self._sent - max(0, self._others or 0) > self.keep_free:
                self._sent += 1
                self._inflight += 1
                return 0.0, None
            reset = self._reset or now
            return max(PROBE_INTERVAL, reset + self.margin - now), dt.datetime.fromtimestamp(reset, dt.UTC)

    def release(self, rate_limit: RateLimit | None) -> None:
        """Give the slot back and learn from the answer's headers (`None`: no answer came)."""
        with self._lock:
            self._inflight = max(0, self._inflight - 1)
            self._probing = False  # any outcome ends the probe; headers below start pacing
            now = self._clock()
            checked = _checked(rate_limit, now)
            if checked is None:
                return
            limit, remaining, reset = checked
            if self._reset is None:
                if reset <= now:
                    return  # the window it speaks of is over: nothing to pace by
                self._start(reset, sent=self._inflight + 1)
            elif reset <= self._previous if self._previous is not None else reset < self._reset:  # an older window
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
            self._count(limit, remaining)

    # --- bookkeeping (under the lock) -------------------------------------------------------

    def _start(self, reset: float, *, sent: int) -> None:
        """Begin a window ending at `reset` (announced by an answer), with `sent` of our sends in it."""
        if self._last_reset is None:
            self._last_reset = reset
        self._reset = reset
        self._sent, self._others = sent, None

    def _count(self, limit: int | None, remaining: int) -> None:
        """Learn from an answer about the current window: the limit, and what others used."""
        if limit is not None:
            self._limit = limit
        elif self._limit is None:
            self._limit = remaining + self._sent
        remaining = min(remaining, self._limit)
        others = self._limit - remaining - self._sent
        self._others = others if self._others is None else max(self._others, others)

    def _older(self) -> None:
        """An answer counted in an earlier window: its send does not count in this one."""
        if self._sent > 0:
            self._sent -= 1
            if self._others is not None:
                self._others += 1  # the answers that set `_others` had counted it as ours

    def _learn_window(self, reset: float) -> None:
        """Learn the window's length from a later reset (the first one was kept by `_start`)."""
        if self._last_reset is not None and reset > self._last_reset:
            step = reset - self._last_reset
            self._window = min(MAX_WINDOW, max(1.0, step if self._window is None else min(self._window, step)))
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
