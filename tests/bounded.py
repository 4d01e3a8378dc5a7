"""Bounded example counts for the hypothesis and schemathesis tests, so the suite stays fast.

`FUZZ_SCALE=10 .venv/bin/pytest tests/test_fuzz_*.py tests/contract` multiplies every count
for a deeper run on a developer's machine; CI runs the default counts.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def examples(count: int) -> int:
    """`count` scaled by `FUZZ_SCALE` (at least 1)."""
    return max(1, int(count * SCALE))


def bounded(count: int, **options: Any) -> settings:
    """Hypothesis settings for at most `count` (scaled) examples, without deadlines."""
    return settings(
        max_examples=examples(count),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
        **options,
    )
