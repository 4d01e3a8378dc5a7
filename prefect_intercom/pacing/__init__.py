"""Pacing: send no faster than Intercom allows, before Intercom has to say 429.

Two independent brakes, both optional, applied before every attempt of every send:

- `HeaderPacer` reads `X-RateLimit-Limit/Remaining/Reset` from each answer and holds sends
  back when the current window is used up, until the reset time. It knows only its own
  process, so it is exact for one sender and a safety net for many.
- `GlobalRateLimit` takes slots from a Prefect global concurrency limit with slot decay
  (Prefect's rate limit, `prefect gcl create ... --slot-decay-per-second ...`), so any
  number of processes, workers and flow runs share one budget kept by the Prefect server.

`Pacer` combines them; `IntercomClient(pacer=...)` calls it around every attempt.

The package, one job per module: `headers` (`HeaderPacer`), `global_limit` (`GlobalRateLimit`),
`sizing` (`rate_limit_settings`), `pacer` (`Pacer`).
"""

from prefect_intercom.pacing.global_limit import GlobalRateLimit
from prefect_intercom.pacing.headers import (
    DEFAULT_MARGIN,
    DEFAULT_WINDOW,
    MAX_COUNT,
    MAX_RESET_AHEAD,
    MAX_WINDOW,
    PROBE_INTERVAL,
    PROBE_TIMEOUT,
    HeaderPacer,
)
from prefect_intercom.pacing.pacer import DEFAULT_MAX_WAIT, Pacer
from prefect_intercom.pacing.sizing import (
    ACQUISITIONS_PER_SECOND,
    RateLimitSettings,
    default_slots_per_acquire,
    rate_limit_settings,
)

__all__ = [
    "ACQUISITIONS_PER_SECOND",
    "DEFAULT_MARGIN",
    "DEFAULT_MAX_WAIT",
    "DEFAULT_WINDOW",
    "MAX_COUNT",
    "MAX_RESET_AHEAD",
    "MAX_WINDOW",
    "PROBE_INTERVAL",
    "PROBE_TIMEOUT",
    "GlobalRateLimit",
    "HeaderPacer",
    "Pacer",
    "RateLimitSettings",
    "default_slots_per_acquire",
    "rate_limit_settings",
]
