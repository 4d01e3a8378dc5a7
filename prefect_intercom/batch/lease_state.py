"""The state of a held batch key lease: its local deadline (`check()`) and its server confirmation (`confirm()`).

`prefect_intercom.batch.lease.hold_batch_key` takes, renews and releases it (docs/batch-lease.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import InitVar, dataclass, field
from typing import Any

from prefect import get_run_logger
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import MissingContextError, ObjectNotFound

from prefect_intercom.errors import BatchKeyLostError

MAX_GUARD_SECONDS = 10.0
CONFIRM_EVERY_SECONDS = 1.0  # at most one confirmation (one read) per second
CONFIRM_WAIT_SECONDS = 1.0  # senders wait this long at most for a read, then go on under the local deadline


@dataclass(eq=False, repr=False)
class BatchLease:
    """The lease on a batch key, while `hold_batch_key` holds it.

    Attributes:
        batch_key: The batch key.
        name: Its global concurrency limit on the Prefect server.
        lease_seconds: How long the lease outlives its last renewal on the server.
        limit_id: The limit's id (renewals, confirmations and the release work by id).
        confirmations: Reads that the server answered (for tests and benchmarks).
    """

    batch_key: str
    name: str
    lease_seconds: float
    limit_id: uuid.UUID
    sent_at: InitVar[float]  # when the request that created the limit was sent
    _client: PrefectClient
    confirmations: int = field(default=0, init=False)
    _lost: str | None = field(default=None, init=False)
    _confirming: asyncio.Future[None] | None = field(default=None, init=False)
    _record_id: uuid.UUID | None = field(default=None, init=False)

    def __post_init__(self, sent_at: float) -> None:
        self.guard_seconds = min(self.lease_seconds / 4, MAX_GUARD_SECONDS)
        self._valid_until = sent_at + self.lease_seconds - self.guard_seconds
        self._confirm_due = sent_at + CONFIRM_EVERY_SECONDS  # the create itself confirmed it
        self._confirm_started = sent_at

    def __repr__(self) -> str:
        return f"BatchLease(name={self.name!r}, lease_seconds={self.lease_seconds}, lost={self.lost})"

    @property
    def lost(self) -> bool:
        """Whether the lease is lost (or about to expire without a renewal)."""
        return self._lost is not None or time.monotonic() >= self._valid_until

    @property
    def valid_for(self) -> float:
        """Seconds left before this run must stop sending unless a renewal succeeds (0 once lost)."""
        return 0.0 if self._lost is not None else max(0.0, self._valid_until - time.monotonic())

    def check(self) -> None:
        """Raise if the lease is known to be lost; local only (no network call).

        Raises:
            BatchKeyLostError: The lease was not renewed in time, or a renewal or confirmation
                found it removed or changed on the server.
        """
        if self._lost is None and time.monotonic() >= self._valid_until:
            self._lose("it was not renewed in time")
        if self._lost is not None:
            raise BatchKeyLostError(
                f"This run lost its lease on batch key {self.batch_key!r} ({self._lost}; Prefect global "
                f"concurrency limit {self.name!r}), so it stops before sending more: another run may take "
                f"the key now. Items already sent are in the ledger; re-run with batch_key={self.batch_key!r} "
                "to send the rest.",
                batch_key=self.batch_key,
                lease_name=self.name,
                lease_seconds=self.lease_seconds,
            )

    async def confirm(self) -> None:
        """Confirm the lease with the server before a group of sends; raise if it is lost.

        At most once per `CONFIRM_EVERY_SECONDS` it reads the limit by its id (concurrent
        callers share the one read in progress); otherwise it only compares the clock. Senders
        wait for a read at most `CONFIRM_WAIT_SECONDS` after it started, then go on under the
        local deadline while it stays pending; its answer counts whenever it comes. A server
        that does not answer (a stall, a 5xx) is not a loss: the local deadline decides.

        Raises:
            BatchKeyLostError: The lease ran out, or the server says the limit is gone,
                renamed, deactivated, freed, or its limit or decay changed.
        """
        self.check()
        now = time.monotonic()
        if now < self._confirm_due:
            return
        if self._confirming is None:
            self._confirming = asyncio.ensure_future(self._confirm_once())
            self._confirm_started = now
        wait = self._confirm_started + CONFIRM_WAIT_SECONDS - now
        if wait > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._confirming), wait)
        self.check()

    # --- used by hold_batch_key -------------------------------------------------------------

    async def _confirm_once(self) -> None:
        started = time.monotonic()
        try:  # bounded by the local deadline: past it the lease is lost whatever the answer
            read = self._client.read_global_concurrency_limit_by_name(str(self.limit_id))
            row = await asyncio.wait_for(read, timeout=max(0.01, self.valid_for))
        except ObjectNotFound:
            self._lose("its Prefect global concurrency limit was removed or taken over")
            return
        except Exception as error:  # no answer is not a loss: the local deadline decides
            run_logger().debug("Could not confirm the lease %r (%s)", self.name, type(error).__name__)
            self._confirm_due = time.monotonic() + CONFIRM_EVERY_SECONDS
            return
        finally:
            self._confirming = None
        self.confirmations += 1
        self._confirm_due = started + CONFIRM_EVERY_SECONDS
        if time.monotonic() >= self._valid_until:  # a stalled server: its slot decayed, our renewals came late
            self._lose("it was not renewed in time")
        elif changed := _changed(row, self.name, self.lease_seconds):
            self._lose(f"its Prefect global concurrency limit {changed}")

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason

    def _renewed(self, sent_at: float) -> None:
        self._valid_until = max(self._valid_until, sent_at + self.lease_seconds - self.guard_seconds)


def _changed(row: Any, name: str, lease_seconds: float) -> str | None:
    """What about the limit read back says it is no longer this lease, or `None`."""
    changes = [
        (row.name != name, "was renamed"),
        (not row.active, "was deactivated"),
        (row.limit != 1, f"had its limit changed to {row.limit}"),
        (row.active_slots < 1, "had its active slot freed"),
        (not math.isclose(row.slot_decay_per_second, 1 / lease_seconds, rel_tol=1e-6), "had its slot decay changed"),
    ]
    return next((change for changed, change in changes if changed), None)


def run_logger(name: str = "prefect_intercom.batch.lease") -> Any:
    """The run's logger inside a Prefect run, else the logger `name`."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)
