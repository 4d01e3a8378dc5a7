"""The one outcome vocabulary: what a send did for the person at the other end.

Every layer speaks it: an error's `.outcome`, the retry policy's decisions, a batch item's
outcome, and the batch ledger's records.

| outcome | meaning | texted? |
| --- | --- | --- |
| `SENT` | Intercom accepted it (2xx) | yes |
| `REJECTED` | the body broke the schema; never sent | no |
| `NOT_SENT` | Intercom provably did not act (refused connection, 4xx, 429), or it was never attempted | no |
| `UNKNOWN` | it may have been acted on (5xx, timeout or reset after sending) | maybe |
| `SKIPPED` | a batch left it out: sent (or unknown) in an earlier run, or a duplicate in the batch | - |
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    """What a send did for the person at the other end (see the module table)."""

    SENT = "sent"
    REJECTED = "rejected"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"

    @property
    def may_have_texted(self) -> bool:
        """Whether the person may have been texted (`SENT` or `UNKNOWN`): never send it again blindly."""
        return self in (Outcome.SENT, Outcome.UNKNOWN)


class BatchSummary(Protocol):
    """What the runtime layer reads of a batch's report (`batch.report.BatchReport` is one)."""

    batch_key: str
    run: int
    stopped: str | None
    elapsed: float

    @property
    def counts(self) -> Mapping[str, int]:
        """Items per outcome value."""
