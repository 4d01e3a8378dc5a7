"""One run per batch key: a lease kept in the Prefect server's database.

`hold_batch_key` takes, renews and releases it; every step and its safety: docs/batch-lease.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any

import anyio
import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from prefect_intercom.batch import holder as records
from prefect_intercom.batch.lease_state import BatchLease, run_logger
from prefect_intercom.errors import BatchKeyBusyError, BatchLeaseError

LEASE_PREFIX = "intercom-batch-"
DEFAULT_LEASE_SECONDS = 30.0  # measured: bench/lease_length.py, docs/batch-lease.md
MIN_LEASE_SECONDS = 1.0
TAKEOVER_SETTLE_SECONDS = 2.0  # after taking over from a gone holder: its confirmation (every 1 s) sees 404
RELEASE_TIMEOUT_SECONDS = 10.0


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


@asynccontextmanager
async def hold_batch_key(
    batch_key: str, *, wait: float = 0.0, lease_seconds: float = DEFAULT_LEASE_SECONDS
) -> AsyncIterator[BatchLease]:
    """Hold the batch key's lease for the duration of the block: one run per batch key.

    The lease lives in the Prefect server's database, so it excludes every run that talks to
    the same Prefect server (the same `PREFECT_API_URL`, or ephemeral servers over the same
    database file), in any process on any machine. Inside a flow run it also records who holds
    it (`prefect_intercom.batch.holder`), so that a re-run takes over at once once Prefect
    knows this run is gone (crashed, failed, cancelled, completed, or retried).

    Args:
        batch_key: The batch key.
        wait: Seconds to keep trying while another run holds the key; `0` refuses at once.
        lease_seconds: How long the lease outlives its last renewal, i.e. how soon after a
            crash that Prefect does not know of another run can take the key. Renewed every
            third of it; at least 1 second.

    Yields:
        The held `BatchLease`; await its `confirm()` before each group of sends.

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
    logger = run_logger()
    async with get_client() as client:
        lease = await _take(client, batch_key, name, wait=wait, lease_seconds=lease_seconds)
        logger.info("Holding the batch key's lease %r (it expires %g s after its last renewal)", name, lease_seconds)
        renewer = asyncio.ensure_future(_renew_until_cancelled(client, lease, logger))
        try:
            yield lease
        finally:
            pending = {renewer} | ({lease._confirming} if lease._confirming is not None else set())
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            await _release(client, lease, logger)


# --- taking ---------------------------------------------------------------------------------


async def _take(client: PrefectClient, batch_key: str, name: str, *, wait: float, lease_seconds: float) -> BatchLease:
    started = time.monotonic()
    # Who this run is, read while the first attempt reads the limit (both are reads: no order between them).
    attempt = asyncio.ensure_future(_this_attempt(client))
    try:
        while True:
            try:
                outcome = await _try_take(client, batch_key, name, lease_seconds, attempt)
            except (httpx.HTTPError, OSError) as error:
                raise BatchLeaseError(
                    f"Could not take the lease on batch key {batch_key!r}: the Prefect server did not answer "
                    f"({type(error).__name__}: {error}); nothing was sent. Re-run with batch_key={batch_key!r}.",
                    batch_key=batch_key,
                    lease_name=name,
                ) from error
            if isinstance(outcome, BatchLease):
                me = attempt.result()  # known before the limit was created
                if me is not None:
                    await _record(client, outcome, me)
                return outcome
            waited = time.monotonic() - started
            remaining = wait - waited
            if remaining <= 0:
                raise _busy(batch_key, name, outcome, waited if wait else 0.0)
            # poll at a twentieth of the holder's lease (0.1 s to 1 s), with jitter
            poll = min(1.0, max(0.1, (outcome.lease_seconds or lease_seconds) / 20))
            await asyncio.sleep(min(remaining, poll * (0.5 + random.random())))
    finally:
        if not attempt.done():
            attempt.cancel()
            await asyncio.wait({attempt})


async def _this_attempt(client: PrefectClient) -> records.Holder | None:
    """`records.this_attempt`; `None` when unknown: no record, no take-over of an earlier attempt."""
    with contextlib.suppress(httpx.HTTPError, OSError, ObjectNotFound):
        return await records.this_attempt(client)
    return None


async def _try_take(
    client: PrefectClient,
    batch_key: str,
    name: str,
    lease_seconds: float,
    attempt: asyncio.Future[records.Holder | None],
) -> BatchLease | _Refusal:
    """One attempt: take a free key, or take over an expired or abandoned lease; otherwise say why not.

    `attempt` is this run's flow run attempt, being read meanwhile; it is known before anything is
    written (its failure leaves no lease behind).
    """
    settle = 0.0
    row = None
    with contextlib.suppress(ObjectNotFound):
        row = await client.read_global_concurrency_limit_by_name(name)
    me = await attempt
    if row is not None:
        holder_lease = 1 / row.slot_decay_per_second if row.slot_decay_per_second > 0 else None
        if not row.active:
            return _Refusal(
                holder_lease, f"the limit is inactive; delete it to free the key: prefect gcl delete {name}"
            )
        if holder_lease is None:
            return _Refusal(None, f"the limit never expires (no slot decay); delete it: prefect gcl delete {name}")
        if row.active_slots >= 1:
            why = await records.gone(client, name, row.id, me)
            if why is None:
                return _Refusal(holder_lease)
            # Prefect knows the holder is gone: delete its row by id, then create ours (of two
            # runs doing this, one create wins and the other gets 409).
            run_logger().warning("Taking over the batch key's lease %r at once: its holder is gone (%s)", name, why)
            await _delete(client, row.id)
            settle = TAKEOVER_SETTLE_SECONDS
        else:
            # The holder's lease expired (its slot decayed). Increment it: the database grants
            # that to one run only, and only while the slot is still free.
            try:
                response = await client.increment_concurrency_slots(names=[name], slots=1, mode="concurrency")
            except httpx.HTTPStatusError as error:
                if error.response.status_code in (HTTPStatus.LOCKED, HTTPStatus.UNPROCESSABLE_ENTITY):
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
    lease = BatchLease(batch_key, name, lease_seconds, limit_id, sent_at, client)
    if settle:
        # A holder marked gone while its process still runs stops at its next confirmation
        # (at most every second); let that happen, and its last announcements land in the ledger.
        await asyncio.sleep(settle)
    return lease


async def _record(client: PrefectClient, lease: BatchLease, me: records.Holder) -> None:
    """Record this attempt as the lease's holder; without a record a crash only recovers slower."""
    try:
        lease._record_id = await records.write_record(client, lease.name, replace(me, limit_id=lease.limit_id))
    except (httpx.HTTPError, OSError, ObjectAlreadyExists) as error:
        run_logger().warning(
            "Could not record the holder of the batch key's lease %r (%s): after a crash, the next run "
            "waits for the lease to expire",
            lease.name,
            type(error).__name__,
        )


def _busy(batch_key: str, name: str, refusal: _Refusal, waited: float) -> BatchKeyBusyError:
    expiry = (
        f"a crashed run's lease expires {refusal.lease_seconds:g} s after its last renewal"
        if refusal.lease_seconds is not None
        else f"a crashed run's lease expires after its lease_seconds ({DEFAULT_LEASE_SECONDS:g} s by default)"
    ) + ", or at once when Prefect shows that run's flow run Crashed, Failed, Cancelled or Completed"
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
    renewal = GlobalConcurrencyLimitUpdate(active_slots=1)
    while True:
        await asyncio.sleep(delay)
        sent_at = time.monotonic()
        if lease.lost:
            lease._lose("it was not renewed in time")
            break
        try:
            renewed = client.update_global_concurrency_limit(str(lease.limit_id), renewal)
            await asyncio.wait_for(renewed, timeout=lease.valid_for)
        except ObjectNotFound:
            lease._lose("its Prefect global concurrency limit was removed or taken over")
            break
        except TimeoutError:
            delay = 0.0
        except (httpx.HTTPError, OSError) as error:
            logger.warning("Could not renew the batch key's lease %r (%s); retrying", lease.name, type(error).__name__)
            delay = min(1.0, every)
        else:
            if time.monotonic() < lease._valid_until:
                lease._renewed(sent_at)
            delay = every
    logger.warning("Lost the batch key's lease %r: %s", lease.name, lease._lost)


async def _release(client: PrefectClient, lease: BatchLease, logger: Any) -> None:
    """Delete the lease's row by its id, shielded from cancellation; a failure only delays the next run."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_TIMEOUT_SECONDS) as scope:
        try:
            await _delete(client, lease.limit_id)
            if lease._record_id is not None:
                await records.delete_record(client, lease._record_id)
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


__all__ = ["DEFAULT_LEASE_SECONDS", "hold_batch_key", "lease_name"]
