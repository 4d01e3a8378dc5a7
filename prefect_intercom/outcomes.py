"""The one outcome vocabulary: what a send did for the person at the other end.

Every layer speaks it: an error's `.outcome`, the retry policy, a batch item, the batch ledger
(the table: docs/errors.md).
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


class BatchSummary(Protocol):
    """What the runtime layer reads of a batch's report (`batch.report.BatchReport` is one)."""

    batch_key: str
    run: int
    stopped: str | None
    elapsed: float

    @property
    def counts(self) -> Mapping[str, int]:
        """Items per outcome value."""
