"""One run per batch key: a lease kept in the Prefect server's database.

`hold_batch_key(batch_key)` is an async context manager: on entry it takes the batch key's
lease, or refuses at once with `BatchKeyBusyError` (or polls for up to `wait` seconds), renews
the lease in the background while the body runs, and gives it back on exit, also after an
exception or a cancellation. Before each chunk of sends the engine calls `lease.check()`, a
local test with no network call, which raises `BatchKeyLostError` once the lease may have
passed to another run.

How it works: the lease is one Prefect global concurrency limit named
`intercom-batch-<first 24 hex digits of sha256(batch_key)>`, created with `limit=1`, one
active slot and a slot decay of `1 / lease_seconds`, so the database itself frees the slot
`lease_seconds` after the row was last written. Every step is a single statement in the
database shared by every process and machine that talks to that Prefect server:

- **take**: create the limit. The name is unique in the database, so of two runs that create
  it at the same instant exactly one succeeds; the other is refused (409).
- **renew** (every `lease_seconds / 3`): set its active slot to 1 again, by the row's id. The
  write re-bases the decay; a row that no longer exists answers 404 and the lease is lost.
- **expire**: nothing to do. The slot decays to 0 `lease_seconds` after the last write,
  computed by the database with its own clock; no background service is needed (Prefect's
  lease "repossessor" does not run in ephemeral servers nor under `prefect_test_harness`).
- **take over an expired lease**: increment the limit's slot. The database grants it only when
  the slot has decayed, so of several runs only one gets it; that run deletes the stale row by
  its id and creates its own (a fresh id), so a late renewal or release from the crashed run
  can never touch the new holder's row.
- **release**: delete the row by its id. Nothing is left on the server after a clean exit.

The holder counts its lease from the moment it *sent* its last successful renewal, and gives
up a safety margin (`min(lease_seconds / 4, 10)` seconds) before `lease_seconds` has passed:
the database's decay starts later (when the write lands), so the holder always stops believing
it holds the key before any other run can take it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound

from prefect_intercom.errors import BatchKeyBusyError, BatchKeyLostError, BatchLeaseError

LEASE_PREFIX = "intercom-batch-"
MIN_LEASE_SECONDS = 1.0
MAX_GUARD_SECONDS = 10.0
RELEASE_TIMEOUT_SECONDS = 10.0
_LOCKED = 423
_UNPROCESSABLE = 422

_fallback_logger = logging.getLogger(__name__)


def lease_name(batch_key: str) -> str:
    """The name of the batch key's global concurrency limit: a hash, never the key in clear.

    Args:
        batch_key: The batch key.

    Returns:
        `intercom-batch-` and the first 24 hex digits of the key's SHA-256.
    """
    return LEASE_PREFIX + hashlib.sha256(batch_key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class _Refusal:
    """Why a take was refused: the holder's lease length, when the server told it, and a detail."""

    lease_seconds: float | None
    detail: str = ""


class BatchLease:
    """The lease on a batch key, while `hold_batch_key` holds it.

    Attributes:
        batch_key: The batch key.
        name: Its global concurrency limit on the Prefect server.
        lease_seconds: How long the lease outlives its last renewal on the server.
    """

    def __init__(self, batch_key: str, name: str, lease_seconds: float, limit_id: uuid.UUID, sent_at: float) -> None:
        self.batch_key = batch_key
        self.name = name
        self.lease_seconds = lease_seconds
        self.limit_id = limit_id
        self.guard_seconds = min(lease_seconds / 4, MAX_GUARD_SECONDS)
        self._valid_until = sent_at + lease_seconds - self.guard_seconds
        self._lost: str | None = None

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
        """Raise if the lease is lost; cheap (no network call), meant to run before every chunk of sends.

        Raises:
            BatchKeyLostError: The lease was not renewed in time, or was removed on the server.
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

    # --- used by hold_batch_key -------------------------------------------------------------

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason

    def _renewed(self, sent_at: float) -> None:
        self._valid_until = max(self._valid_until, sent_at + self.lease_seconds - self.guard_seconds)


@asynccontextmanager
async def hold_batch_key(
    batch_key: str, *, wait: float = 0.0, lease_seconds: float = 60.0
) -> AsyncIterator[BatchLease]:
    """Hold the batch key's lease for the duration of the block: one run per batch key.

    The lease lives in the Prefect server's database, so it excludes every run that talks to
    the same Prefect server (the same `PREFECT_API_URL`, or ephemeral servers over the same
    database file), in any process on any machine.

    Args:
        batch_key: The batch key.
        wait: Seconds to keep trying while another run holds the key; `0` refuses at once.
        lease_seconds: How long the lease outlives its last renewal, i.e. how soon after a
            crash (SIGKILL, a lost machine) another run can take the key. Renewed every third
            of it; at least 1 second.

    Yields:
        The held `BatchLease`; call its `check()` before each chunk of sends.

    Raises:
        BatchKeyBusyError: Another run holds the key (past `wait`); nothing was sent.
        BatchLeaseError: The Prefect server could not be reached to take the lease; nothing was sent.
        ValueError: An empty batch key, a negative `wait`, or `lease_seconds` below 1.
    """
    if not batch_key:
        raise ValueError("the batch key must not be empty")
    if wait < 0:
        raise ValueError("wait must not be negative")
    if lease_seconds < MIN_LEASE_SECONDS:
        raise ValueError(f"lease_seconds must be at least {MIN_LEASE_SECONDS}")
    name = lease_name(batch_key)
    logger = _logger()
    async with get_client() as client:
        lease = await _take(client, batch_key, name, wait=wait, lease_seconds=lease_seconds)
        logger.info("Holding the batch key's lease %r (it expires %g s after its last renewal)", name, lease_seconds)
        renewer = asyncio.ensure_future(_renew_until_cancelled(client, lease, logger))
        try:
            yield lease
        finally:
            renewer.cancel()
            await asyncio.wait({renewer})
            await _release(client, lease, logger)


# --- taking ---------------------------------------------------------------------------------


async def _take(client: PrefectClient, batch_key: str, name: str, *, wait: float, lease_seconds: float) -> BatchLease:
    started = time.monotonic()
    while True:
        try:
            outcome = await _try_take(client, batch_key, name, lease_seconds)
        except (httpx.HTTPError, OSError) as error:
            raise BatchLeaseError(
                f"Could not take the lease on batch key {batch_key!r}: the Prefect server did not answer "
                f"({type(error).__name__}: {error}); nothing was sent. Re-run with batch_key={batch_key!r}.",
                batch_key=batch_key,
                lease_name=name,
            ) from error
        if isinstance(outcome, BatchLease):
            return outcome
        waited = time.monotonic() - started
        remaining = wait - waited
        if remaining <= 0:
            raise _busy(batch_key, name, outcome, waited if wait else 0.0)
        # poll at a twentieth of the holder's lease (0.1 s to 1 s), with jitter
        poll = min(1.0, max(0.1, (outcome.lease_seconds or lease_seconds) / 20))
        await asyncio.sleep(min(remaining, poll * (0.5 + random.random())))


async def _try_take(client: PrefectClient, batch_key: str, name: str, lease_seconds: float) -> BatchLease | _Refusal:
    """One attempt: take a free key, or take over an expired lease; otherwise say why not."""
    try:
        row = await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        row = None
    if row is not None:
        holder_lease = 1 / row.slot_decay_per_second if row.slot_decay_per_second > 0 else None
        if not row.active:
            return _Refusal(
                holder_lease, f"the limit is inactive; delete it to free the key: prefect gcl delete {name}"
            )
        if holder_lease is None:
            return _Refusal(None, f"the limit never expires (no slot decay); delete it: prefect gcl delete {name}")
        if row.active_slots >= 1:
            return _Refusal(holder_lease)
        # The holder's lease expired (its slot decayed). Increment it: the database grants that
        # to one run only, and only while the slot is still free.
        try:
            response = await client.increment_concurrency_slots(names=[name], slots=1, mode="concurrency")
        except httpx.HTTPStatusError as error:
            if error.response.status_code in (_LOCKED, _UNPROCESSABLE):
                return _Refusal(holder_lease)
            raise
        for taken in response.json():
            # Ours now until we delete it; a fresh row (new id) keeps the old holder's late
            # renewal or release from ever touching the new lease.
            await _delete(client, taken["id"])
    sent_at = time.monotonic()
    create = GlobalConcurrencyLimitCreate(name=name, limit=1, active_slots=1, slot_decay_per_second=1 / lease_seconds)
    try:
        limit_id = await client.create_global_concurrency_limit(create)
    except ObjectAlreadyExists:
        return _Refusal(None)
    return BatchLease(batch_key, name, lease_seconds, limit_id, sent_at)


def _busy(batch_key: str, name: str, refusal: _Refusal, waited: float) -> BatchKeyBusyError:
    expiry = (
        f"a crashed run's lease expires {refusal.lease_seconds:g} s after its last renewal"
        if refusal.lease_seconds is not None
        else "a crashed run's lease expires after its lease_seconds (60 s by default)"
    )
    after = f" after waiting {waited:.1f} s" if waited else ""
    detail = f" ({refusal.detail})" if refusal.detail else ""
    return BatchKeyBusyError(
        f"Another run holds batch key {batch_key!r}{after} (Prefect global concurrency limit {name!r}){detail}; "
        f"this run sent nothing. Wait for it to finish, or re-run later with batch_key={batch_key!r}; {expiry}.",
        batch_key=batch_key,
        lease_name=name,
        lease_seconds=refusal.lease_seconds,
    )


# --- renewing and releasing -----------------------------------------------------------------


async def _renew_until_cancelled(client: PrefectClient, lease: BatchLease, logger: Any) -> None:
    """Renew every third of the lease; on failure retry each second until the lease runs out."""
    every = lease.lease_seconds / 3
    delay = every
    while True:
        await asyncio.sleep(delay)
        sent_at = time.monotonic()
        if lease.lost:
            lease._lose("it was not renewed in time")
            logger.warning("Lost the batch key's lease %r: it was not renewed in time", lease.name)
            return
        try:
            await asyncio.wait_for(
                client.update_global_concurrency_limit(
                    str(lease.limit_id), GlobalConcurrencyLimitUpdate(active_slots=1)
                ),
                timeout=lease.valid_for,
            )
        except ObjectNotFound:
            lease._lose("its Prefect global concurrency limit was removed or taken over")
            logger.warning("Lost the batch key's lease %r: it was removed or taken over", lease.name)
            return
        except asyncio.TimeoutError:
            delay = 0.0
            continue
        except (httpx.HTTPError, OSError) as error:
            logger.warning("Could not renew the batch key's lease %r (%s); retrying", lease.name, type(error).__name__)
            delay = min(1.0, every)
            continue
        if time.monotonic() < lease._valid_until:
            lease._renewed(sent_at)
        delay = every


async def _release(client: PrefectClient, lease: BatchLease, logger: Any) -> None:
    """Delete the lease's row by its id, shielded from cancellation; a failure only delays the next run."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_TIMEOUT_SECONDS) as scope:
        try:
            await _delete(client, lease.limit_id)
        except (httpx.HTTPError, OSError) as error:
            logger.warning(
                "Could not release the batch key's lease %r (%s); it expires %g s after its last renewal",
                lease.name,
                type(error).__name__,
                lease.lease_seconds,
            )
    if scope.cancelled_caught:
        logger.warning("Releasing the batch key's lease %r timed out; it expires by itself", lease.name)


async def _delete(client: PrefectClient, limit_id: uuid.UUID | str) -> None:
    with contextlib.suppress(ObjectNotFound):
        await client.delete_global_concurrency_limit_by_name(str(limit_id))


def _logger() -> Any:
    from prefect import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return _fallback_logger
