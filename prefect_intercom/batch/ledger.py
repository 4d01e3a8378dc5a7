"""The batch ledger: a write-ahead journal of each run of a batch, in storage its re-runs read.

The journal and its guarantees (write-ahead, snapshots, fail closed, one app's ledger): docs/batches.md;
where to keep it when runs move between machines: docs/deployments.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from prefect.filesystems import WritableFileSystem
from prefect.results import aget_default_result_storage, get_result_store

from prefect_intercom.batch import ledger_format as fmt
from prefect_intercom.batch.keys import KeyTable, key64
from prefect_intercom.batch.ledger_history import LedgerHistory, LedgerPaths
from prefect_intercom.batch.ledger_marker import check_marker, record_marker
from prefect_intercom.batch.ledger_secret import digest_key, key_check, load_ledger_key, token_tag
from prefect_intercom.batch.ledger_store import LedgerStore, store_for
from prefect_intercom.errors import LedgerError
from prefect_intercom.outcomes import Outcome

LEDGER_FOLDER = "prefect-intercom-ledger"
DIGEST_SIZE = 12
MAX_RUNS = 10_000
# An announcement waits for the next write, up to a linger after the last one. That wait costs about
# linger / latency of the rate (measured at 100 in flight and 50 ms: a 5 ms linger held the batch to 0.75
# of 100 / 50 ms, 1 ms to 0.82); a longer one groups more (at Intercom's 150-400 ms, 5 ms wrote 0.6 records
# an item, 1 ms 1.0). So the linger is 1.5% of the requests' latency, within 1-5 ms (`fit_linger`).
DEFAULT_LINGER = 0.001  # until the latency is known
LINGER_SHARE, MIN_LINGER, MAX_LINGER = 0.015, 0.001, 0.005
SNAPSHOT_EVERY = 64  # records between snapshots at least (more for large ledgers: entries / 2048), 5 s apart at least
ACCEPT_OTHER_TOKEN_ENV = "PREFECT_INTERCOM_LEDGER_ACCEPT_OTHER_TOKEN"  # noqa: S105 - a setting's name
_OUTCOMES = {fmt.SENT: Outcome.SENT, fmt.UNKNOWN: Outcome.UNKNOWN}
_CODES = {Outcome.SENT: fmt.SENT, Outcome.UNKNOWN: fmt.UNKNOWN, Outcome.NOT_SENT: fmt.NOT_SENT}


@dataclass(frozen=True)
class LedgerEntry:
    """What earlier runs recorded for one item key.

    Attributes:
        outcome: `Outcome.SENT` or `Outcome.UNKNOWN`.
        run: The run number that recorded it.
    """

    outcome: Outcome
    run: int


@dataclass(frozen=True)
class LedgerApp:
    """The Intercom app a ledger belongs to: its API root, and the token (never stored, only a keyed tag).

    Attributes:
        api_url: The API root requests go to (`https://api.intercom.io`, the sandbox's URL...).
        token: The access token.
    """

    api_url: str
    token: str = field(repr=False)

    @classmethod
    def of(cls, client: Any) -> LedgerApp:
        """The app an `IntercomClient` sends to."""
        return cls(api_url=client.base_url, token=client._token.get_secret_value())

    @property
    def scope(self) -> str:
        """The API root without scheme or trailing slash: a ledger's folder is per scope."""
        return self.api_url.split("://", 1)[-1].rstrip("/").lower()


class BatchLedger:
    """The write-ahead journal of one batch run.

    Use `await BatchLedger.open(batch_key, storage, app=...)`; `digest()` each item key,
    `first_seen()` it, and look it up with `previous()`; `await announce(...)` before an
    item's attempt goes out, `retract(...)` when an attempt provably did not take effect,
    `await complete(...)` with its outcome; `await close()` at the end.

    Attributes:
        batch_key: The batch key, as given.
        run: This run's number (0 for the first run of the batch key).
        records: Records this run has written.
        snapshots: Snapshots this run has written.
        where: Where the ledger is kept, for people.
        local: Whether the ledger is on this machine's disk.
    """

    def __init__(
        self, batch_key: str, store: LedgerStore, *, scope: str, digest_secret: bytes, linger: float | None = None
    ) -> None:
        if not batch_key:
            raise ValueError("the batch key must not be empty")
        self.batch_key = batch_key
        self.folder = f"{LEDGER_FOLDER}/{hashlib.sha256(f'ledger|{scope}|{batch_key}'.encode()).hexdigest()[:32]}"
        self._store = store
        self.paths = LedgerPaths(self.folder)
        self._history = LedgerHistory(store, self.paths)
        self.where, self.local = store.where, store.local
        self._digest_secret = digest_secret
        self.linger = DEFAULT_LINGER if linger is None else linger
        self._linger_fitted = linger is None  # a linger given is kept
        self.run = 0
        self.records = 0
        self.snapshots = 0
        self._previous = KeyTable()  # earlier runs: key -> run << 2 | word
        self._current = KeyTable()  # this run: key -> index << 2 | word (0: seen, nothing written)
        self._owner = uuid.uuid4().hex
        self._sending: list[bytes] = []
        self._done: list[tuple[bytes, int]] = []
        self._waiting: list[asyncio.Future[None]] = []  # one per caller waiting for the next write
        self._wake = asyncio.Event()  # set when there is something to write (or the ledger closes)
        self._writer: asyncio.Task[None] | None = None
        self._snapshot: asyncio.Task[None] | None = None
        self._snapshot_at = (0, 0.0)  # records covered by the last snapshot, and when it was taken
        self._failure: LedgerError | None = None
        self._last_write = 0.0
        self._closing = False

    def __repr__(self) -> str:
        return f"BatchLedger(folder={self.folder!r}, run={self.run}, previous={len(self._previous)})"

    @classmethod
    async def open(
        cls,
        batch_key: str,
        storage: WritableFileSystem | None = None,
        *,
        app: LedgerApp | None = None,
        linger: float | None = None,
        ledger_key: Awaitable[bytes] | None = None,
    ) -> BatchLedger:
        """Read every earlier run of `batch_key` in `app`'s scope and claim the next run number.

        Args:
            batch_key: Identifies the batch across runs.
            storage: Where records go; default: the current run's result storage (the
                flow's or task's `result_storage`, else Prefect's default result storage).
            app: The Intercom app the batch sends to; its ledger is its own. `None`: no app
                (tests and tools that send nowhere).
            linger: Seconds the writer waits to group records (at most one write per linger);
                default: fitted to the requests' latency (`fit_linger`).
            ledger_key: The ledger key's load, if the caller started it (the engine reads it while
                the lease is taken); default: loaded from the Prefect server, created there on first use.

        Raises:
            LedgerError: The ledger is damaged, has a gap, belongs to another token or ledger
                key, cannot be read, or another run claimed the same run number at once.
        """
        if storage is None:
            storage = get_result_store().result_storage or await aget_default_result_storage()
        # the key from the Prefect server while the store's client is made (boto's: a fraction of a second)
        secret, store = await asyncio.gather(ledger_key or load_ledger_key(), asyncio.to_thread(store_for, storage))
        scope, tag = (app.scope, token_tag(secret, app.token)) if app is not None else ("", "")
        ledger = cls(batch_key, store, scope=scope, digest_secret=digest_key(secret, scope, batch_key), linger=linger)
        await ledger._load(key_check(secret), tag)
        return ledger

    def digest(self, item_key: str) -> bytes:
        """The keyed hash that stands for `item_key` in the ledger (useless without the ledger key)."""
        return hashlib.blake2b(item_key.encode(), digest_size=DIGEST_SIZE, key=self._digest_secret).digest()

    def first_seen(self, digest: bytes, index: int) -> int:
        """The index of the first item of this run with this digest (`index` itself the first time)."""
        return self._current.setdefault(key64(digest), index << 2) >> 2

    def previous(self, digest: bytes) -> LedgerEntry | None:
        """What earlier runs recorded for the item (`sent` or `unknown`), or `None`."""
        packed = self._previous.get(key64(digest), 0)
        outcome = _OUTCOMES.get(packed & 3)
        return LedgerEntry(outcome=outcome, run=packed >> 2) if outcome is not None else None

    @property
    def previous_count(self) -> int:
        """Items earlier runs recorded as sent or unknown."""
        return sum(1 for value in self._previous.items()[1] if value & 3 in _OUTCOMES)

    # --- the journal -----------------------------------------------------------------------

    def fit_linger(self, latency: float) -> None:
        """Group records for 1.5% of a request's `latency` (seconds), within 1-5 ms (unless a linger was given).

        An announcement waits up to the linger for its write: at 50 ms latency a 5 ms linger cost 8% of
        the rate; at Intercom's 150-400 ms it costs nothing and writes 40% fewer records than 1 ms.
        """
        if self._linger_fitted:
            self.linger = min(MAX_LINGER, max(MIN_LINGER, latency * LINGER_SHARE))

    async def announce(self, index: int, digest: bytes) -> None:
        """Record that the item is about to be sent; returns once that is written (write-ahead)."""
        self._sending.append(digest)
        await self._next_commit()

    def retract(self, digest: bytes) -> None:
        """Record that an announced attempt provably did not take effect (429, refused connection)."""
        self._done.append((digest, fmt.NOT_SENT))
        self._wake.set()

    async def complete(self, index: int, digest: bytes, outcome: Outcome, *_details: Any) -> None:
        """Record an announced item's outcome; returns once that is written."""
        self.record_outcome(digest, outcome)
        await self._next_commit()

    def record_outcome(self, digest: bytes, outcome: Outcome) -> None:
        """Queue an announced item's outcome for the next record, without waiting for it to be written.

        The batch frees the item's slot at once: the next announcement (of the item that takes the
        slot) is queued after this outcome, so it lands in the same record or a later one, and at
        any written state at most `concurrency` items are announced without an outcome.

        Raises:
            LedgerError: An earlier write failed (the batch must stop).
        """
        if self._failure is not None:
            raise self._failure
        self._done.append((digest, _CODES[outcome]))
        self._wake.set()

    async def close(self) -> None:
        """Write what is pending and a final snapshot, and stop the writer."""
        self._closing = True
        if self._writer is not None:
            self._wake.set()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self._snapshot is not None:  # read after the writer ended: its last record may have started one
            await asyncio.gather(self._snapshot, return_exceptions=True)
        if self._failure is None:
            try:
                if self.records or self.snapshots:
                    await self._write_snapshot(self._capture(), closed=True)
                else:  # nothing written: the next run starts from the run before this one
                    await self._write_head(0, closed=True, snapshot=False)
            except LedgerError as error:
                self._failure = error
        if self._failure is not None:
            raise self._failure

    def _next_commit(self) -> asyncio.Future[None]:
        """A future of the caller's own, done once the next record is written.

        Each caller has its own (not one shared and shielded): the write wakes each waiter
        directly, one event-loop turn sooner, and a cancelled caller cancels only its own.
        """
        if self._failure is not None:
            raise self._failure
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop())
        self._wake.set()
        return waiter

    async def _write_loop(self) -> None:
        while True:
            if not self._closing:  # closing: write what is left and stop, never wait for another kick
                await self._wake.wait()
            self._wake.clear()
            if not (self._sending or self._done):
                if self._closing:
                    return
                continue
            pause = self._last_write + self.linger - time.monotonic()
            if pause > 0 and not self._closing:
                await asyncio.sleep(pause)
            sending, done, waiting = self._sending, self._done, self._waiting
            self._sending, self._done, self._waiting = [], [], []
            self._last_write = time.monotonic()
            try:
                record = fmt.encode_record(self.run, self.records, sending, done)
                await self._store.write(self.paths.record(self.run, self.records), record)
                self.records += 1
            except LedgerError as error:
                self._failure = error
                waiting += self._waiting  # those who came while it was written wait for no later write
                self._waiting = []
                for waiter in waiting:
                    if not waiter.done():  # a cancelled caller's is done
                        waiter.set_exception(error)
                        waiter.exception()  # retrieved: its caller gets it; no "never retrieved" warning
                return
            for digest, word in done:  # this run's last word per item, as written: outcomes, then announcements
                self._current.set_word(key64(digest), word)
            for digest in sending:
                self._current.set_word(key64(digest), fmt.UNKNOWN)
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_result(None)
            self._maybe_snapshot()  # what came meanwhile has kicked the writer again

    # --- snapshots -------------------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        covered, taken = self._snapshot_at
        due = snapshot_due(len(self._previous) + len(self._current))
        if self._snapshot is not None and not self._snapshot.done():
            return
        if self.records - covered >= due and time.monotonic() - taken >= 5.0:
            self._snapshot = asyncio.create_task(self._snapshot_quietly(self._capture()))

    def _capture(self) -> tuple[int, bytes]:
        """This run's state after its last written record, as a snapshot's bytes."""
        self._snapshot_at = (self.records, time.monotonic())
        return self.records, fmt.encode_snapshot(self.run, self.records, self._previous.items(), self._current.items())

    async def _snapshot_quietly(self, captured: tuple[int, bytes]) -> None:
        with contextlib.suppress(LedgerError):  # a failed snapshot costs the next run a longer tail, never an item
            await self._write_snapshot(captured, closed=False)

    async def _write_snapshot(self, captured: tuple[int, bytes], *, closed: bool) -> None:
        """Write the snapshot, then point the next head slot at it (slots alternate: never both torn)."""
        records, content = captured
        await self._store.write(self.paths.snapshot(self.run, records), content)
        await self._write_head(records, closed=closed, snapshot=True)

    async def _write_head(self, records: int, *, closed: bool, snapshot: bool) -> None:
        fields = {"records": records, "closed": closed, "snapshot": snapshot}
        head = fmt.encode_json("head", self.run, self.snapshots, fields)
        await self._store.write(self.paths.head(self.run, self.snapshots % 2), head)
        self.snapshots += 1

    # --- reading earlier runs --------------------------------------------------------------

    async def _load(self, check: str, tag: str) -> None:
        legacy = hashlib.sha256(b"folder|" + self.batch_key.encode()).hexdigest()[:32]
        legacy_run, claims = await asyncio.gather(
            self._store.read(f"{LEDGER_FOLDER}/{legacy}/run-00000/started"), self._history.read_claims()
        )
        if legacy_run is not None:
            raise LedgerError(
                f"batch key {self.batch_key!r} has a ledger written by an earlier version of prefect-intercom "
                "(0.1.0 before issue 14); nothing is sent. Finish the campaign with that version, or use a new key."
            )
        for run, claim in enumerate(claims):
            if claim is None:
                continue
            if claim.get("key_check") != check:
                raise LedgerError(
                    f"the batch ledger {self.folder} (run {run}) was written with another ledger key (the Prefect "
                    "Secret block 'prefect-intercom-ledger-key' differs: a rebuilt Prefect server, or another one); "
                    "nothing is sent. Restore that block's value, or use a new batch key (which texts everyone again)."
                )
            if tag and claim.get("token") != tag and os.environ.get(ACCEPT_OTHER_TOKEN_ENV) != "1":
                raise LedgerError(
                    f"batch key {self.batch_key!r} was used with another access token for this Intercom host (run "
                    f"{run}); nothing is sent. If it is another Intercom workspace, give this campaign its own batch "
                    f"key. If you rotated the token of the same workspace, set {ACCEPT_OTHER_TOKEN_ENV}=1 to resume."
                )
        marked, self._previous = await asyncio.gather(  # both must pass before this run claims its number
            check_marker(self.folder, len(claims), self.where), self._history.state_after(len(claims) - 1)
        )
        self.run = len(claims)
        if self.run >= MAX_RUNS:
            raise LedgerError(f"the batch ledger {self.folder} holds {MAX_RUNS} runs; use a new batch key")
        claim = fmt.encode_json("claim", self.run, 0, {"owner": self._owner, "key_check": check, "token": tag})
        await self._store.write(self.paths.claim(self.run), claim)
        written = await self._store.read(self.paths.claim(self.run))
        owner = None
        with contextlib.suppress(LedgerError):  # a torn or foreign claim is not ours
            if written is not None:
                owner = fmt.decode_json(written, self.paths.claim(self.run), "claim", self.run, 0).get("owner")
        if owner != self._owner:
            raise LedgerError(
                f"another run with the same batch key started at the same time ({self.folder}, run {self.run}); "
                "runs of one batch key must not overlap"
            )
        await record_marker(self.folder, self.run + 1, self.where, local=self.local, exists=marked)


def snapshot_due(entries: int) -> int:
    """Records between periodic snapshots for a ledger of `entries` items (the longest tail a crash leaves)."""
    return max(SNAPSHOT_EVERY, entries // 2048)
