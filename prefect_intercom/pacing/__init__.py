"""Pacing: send no faster than Intercom allows, before Intercom has to say 429 (docs/retries-and-pacing.md).

Two independent brakes, both optional, before every attempt of every send: `HeaderPacer`
(`headers`) reads Intercom's `X-RateLimit-*` headers and holds this process's sends back when
the window is used up; `GlobalRateLimit` (`global_limit`) takes slots from a Prefect global
concurrency limit with slot decay shared by every process, sized by `rate_limit_settings`.
`Pacer` (`pacer`) combines them; `IntercomClient(pacer=...)` calls it around every attempt.
"""

from prefect_intercom.pacing.global_limit import GlobalRateLimit, RateLimitSettings, rate_limit_settings
from prefect_intercom.pacing.headers import HeaderPacer
from prefect_intercom.pacing.pacer import Pacer

__all__ = ["GlobalRateLimit", "HeaderPacer", "Pacer", "RateLimitSettings", "rate_limit_settings"]
