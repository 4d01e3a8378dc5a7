"""Pacing: send no faster than Intercom allows, before Intercom has to say 429 (docs/retries-and-pacing.md).

`HeaderPacer` (`headers`) follows Intercom's `X-RateLimit-*` headers in this process;
`GlobalRateLimit` (`global_limit`, sized by `rate_limit_settings`) shares a Prefect rate limit
among every process; `Pacer` (`pacer`) combines them around every attempt.
"""

from prefect_intercom.pacing.global_limit import GlobalRateLimit, RateLimitSettings, rate_limit_settings
from prefect_intercom.pacing.headers import HeaderPacer
from prefect_intercom.pacing.pacer import Pacer

__all__ = ["GlobalRateLimit", "HeaderPacer", "Pacer", "RateLimitSettings", "rate_limit_settings"]
