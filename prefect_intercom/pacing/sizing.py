"""Sizing a Prefect global concurrency limit with slot decay: every sender together stays under Intercom's limit."""

from __future__ import annotations

import math
from dataclasses import dataclass

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
