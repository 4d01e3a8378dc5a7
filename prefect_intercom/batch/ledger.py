"""The batch ledger: a write-ahead journal of each run of a batch, kept in Prefect's result storage.

A batch is identified by its *batch key*; each item by its *item key* (by default its phone
number), stored only as a keyed hash (BLAKE2b keyed by the batch key): no phone number is
written. Each run appends numbered records to its own folder; a record holds

- `sending`: items about to go on the wire. An item is released to the network only once the
  record naming it is written (write-ahead), so a crash can never hide a send;
- `done`: items with their outcome (`sent`, `not_sent`, `unknown`, with status, code and
  request id). A 429 or a refused connection that will be retried is written as `not_sent`
  until its next attempt is announced again.

Records are written by one writer that groups whatever is waiting (group commit): at most one
write every `linger` seconds, however many items are in flight, so writes do not scale with
items. A sender holds its slot of concurrency from its announcement until its outcome is
written, so at any moment at most `concurrency` items are announced without an outcome: after
a crash (even SIGKILL), only those, the requests actually in flight, are `unknown`; an item
waiting for a rate-limit window was never announced and is sent by the next run.

A later run with the same batch key reads every record first (a torn last record of a run is
ignored: nothing it announced was released) and does not send again what is recorded as
`sent`, nor what is `unknown` unless the caller opts in with `resend_unknown=True`; `not_sent`
items are sent again. Any other unreadable record stops the batch before anything is sent (fail
closed); so is a torn run claim (a crash while claiming a run number: that run announced
nothing). What keeps two runs of one batch key from overlapping is the key's lease
(`prefect_intercom.batch.lease`), held by the engine for the whole run: the run-number claim in
storage only catches runs that start apart, so with `lock=False` the caller must make sure that
one run of a key goes at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import inspect
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from prefect.filesystems import WritableFileSystem
from prefect.results import aget_default_result_storage, get_result_store

from prefect_intercom.batch.keys import KeyTable, key64
from prefect_intercom.errors import LedgerError
from prefect_intercom.outcomes import Outcome

LEDGER_FOLDER = "prefect-intercom-ledger"
LEDGER_VERSION = 2
DIGEST_SIZE = 12
MAX_RUNS = 10_000
DEFAULT_LINGER = 0.02
_MISSING_HINTS = ("does not exist", "not found", "notfound", "nosuchkey", "no such file", "404", "blobnotfound")
# What a run recorded last for an item, packed with the run number in a KeyTable value.
_CODES = {Outcome.SENT.value: 1, Outcome.UNKNOWN.value: 2}
_OUTCOMES = {code: Outcome(value) for value, code in _CODES.items()}


@dataclass(frozen=True)
class LedgerEntry:
    """What earlier runs recorded for one item key.

    Attributes:
        outcome: `Outcome.SENT` or `Outcome.UNKNOWN`.
        run: The run number that recorded it.
    """

    outcome: Outcome
    run: int


class BatchLedger:
    """The write-ahead journal of one batch run (see the module docstring for the guarantee).

    Use `await BatchLedger.open(batch_key)`; `digest()` each item key and look it up with
    `previous()`; `await announce(...)` before an item's attempt goes out, `retract(...)` when
    an attempt provably did not take effect, `await complete(...)` with its outcome; `await
    close()` at the end.

    Attributes:
        batch_key: The batch key, as given.
        run: This run's number (0 for the first run of the batch key).
        records: Records this run has written.
    """

    def __init__(self, batch_key: str, storage: WritableFileSystem, *, linger: float = DEFAULT_LINGER) -> None:
        if not batch_key:
            raise ValueError("the batch key must not be empty")
        self.batch_key = batch_key
        self._salt = hashlib.sha256(batch_key.encode()).digest()
        self.folder = f"{LEDGER_FOLDER}/{hashlib.sha256(b'folder|' + batch_key.encode()).hexdigest()[:32]}"
        self._storage = storage
        self.linger = linger
        self.run = 0
        self.records = 0
        self._previous = KeyTable()
        self._owner = uuid.uuid4().hex
        self._sending: list[list[Any]] = []
        self._done: list[list[Any]] = []
        self._commit: asyncio.Future[None] | None = None
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._failure: LedgerError | None = None
        self._last_write = 0.0
        self._closing = False

    def __repr__(self) -> str:
        return f"BatchLedger(folder={self.folder!r}, run={self.run}, previous={len(self._previous)})"

    @classmethod
    async def open(
        cls, batch_key: str, storage: WritableFileSystem | None = None, *, linger: float = DEFAULT_LINGER
    ) -> BatchLedger:
        """Read every earlier run of `batch_key` and claim the next run number.

        Args:
            batch_key: Identifies the batch across runs.
            storage: Where records go; default: the current run's result storage (the
                flow's or task's `result_storage`, else Prefect's default result storage).
            linger: Seconds the writer waits to group records (at most one write per linger).

        Raises:
            LedgerError: A record exists but cannot be read, or another run claimed the same
                run number at the same moment.
        """
        if storage is None:
            storage = get_result_store().result_storage or await aget_default_result_storage()
        ledger = cls(batch_key, storage, linger=linger)
        await ledger._load()
        return ledger

    def digest(self, item_key: str) -> bytes:
        """The keyed hash that stands for `item_key` in the ledger."""
        return hashlib.blake2b(item_key.encode(), digest_size=DIGEST_SIZE, key=self._salt).digest()

    def previous(self, digest: bytes) -> LedgerEntry | None:
        """What earlier runs recorded for the item (`sent` or `unknown`), or `None`."""
        packed = self._previous.get(key64(digest))
        if packed is None:
            return None
        return LedgerEntry(outcome=_OUTCOMES[packed & 3], run=packed >> 2)

    @property
    def previous_count(self) -> int:
        """Items earlier runs recorded as sent or unknown."""
        return len(self._previous)

    # --- the journal -----------------------------------------------------------------------

    async def announce(self, index: int, digest: bytes) -> None:
        """Record that the item is about to be sent; returns once that is written (write-ahead)."""
        self._sending.append([index, digest.hex()])
        await self._next_commit()

    def retract(self, index: int, digest: bytes, status: int | None, code: str | None) -> None:
        """Record that an announced attempt provably did not take effect (429, refused connection)."""
        self._done.append([index, digest.hex(), Outcome.NOT_SENT.value, status, code, None])
        self._kick()

    async def complete(
        self,
        index: int,
        digest: bytes,
        outcome: Outcome,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Record an announced item's outcome; returns once that is written."""
        self._done.append([index, digest.hex(), outcome.value, status, code, request_id])
        await self._next_commit()

    async def close(self) -> None:
        """Write what is pending and stop the writer."""
        self._closing = True
        if self._writer is not None:
            self._kick()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self._failure is not None:
            raise self._failure

    def _next_commit(self) -> asyncio.Future[None]:
        if self._failure is not None:
            raise self._failure
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
        if self._writer is None:
            self._wake = asyncio.Event()
            self._writer = asyncio.create_task(self._write_loop())
        self._kick()
        return asyncio.shield(self._commit)

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _write_loop(self) -> None:
        assert self._wake is not None
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
            sending, done, commit = self._sending, self._done, self._commit
            self._sending, self._done, self._commit = [], [], None
            self._last_write = time.monotonic()
            try:
                await self._write(self._record_key(self.records), {"sending": sending, "done": done})
                self.records += 1
            except LedgerError as error:
                self._failure = error
                if commit is not None and not commit.done():
                    commit.set_exception(error)
                    commit.exception()  # retrieved: waiters get it; no "never retrieved" warning
                return
            if commit is not None and not commit.done():
                commit.set_result(None)
            if self._sending or self._done:
                self._wake.set()

    # --- storage ---------------------------------------------------------------------------

    def _run_key(self, run: int) -> str:
        return f"{self.folder}/run-{run:05d}/started"

    def _record_key(self, record: int, run: int | None = None) -> str:
        return f"{self.folder}/run-{self.run if run is None else run:05d}/record-{record:08d}"

    async def _load(self) -> None:
        run = 0
        while (await self._read_claim(run)) is not None:
            states: dict[int, int] = {}  # this run's last word per item key
            record = 0
            while True:
                try:
                    payload = await self._read(self._record_key(record, run))
                except LedgerError:
                    # A torn last record is harmless: what it announced was never released.
                    if await self._read_quietly(self._record_key(record + 1, run)) is None:
                        break
                    raise
                if payload is None:
                    break
                self._merge(payload, states)
                record += 1
            for key, code in states.items():
                if code in _OUTCOMES:
                    known = self._previous.get(key)
                    if known is None or (known & 3 == _CODES[Outcome.UNKNOWN.value] and code == 1):
                        self._previous.put(key, (run << 2) | code)
            run += 1
            if run >= MAX_RUNS:
                raise LedgerError(f"the batch ledger {self.folder} holds {MAX_RUNS} runs; use a new batch key")
        self.run = run
        await self._write(self._run_key(run), {"owner": self._owner})
        claim = await self._read(self._run_key(run))
        if not claim or claim.get("owner") != self._owner:
            raise LedgerError(
                f"another run with the same batch key started at the same time ({self.folder}, run {run}); "
                "runs of one batch key must not overlap"
            )

    @staticmethod
    def _merge(payload: dict[str, Any], states: dict[int, int]) -> None:
        """Apply one record: outcomes first, then announcements (a retried item's latest word)."""
        for _index, digest_hex, outcome, *_rest in payload.get("done", []):
            states[key64(bytes.fromhex(digest_hex))] = _CODES.get(outcome, 0)
        for _index, digest_hex in payload.get("sending", []):
            states[key64(bytes.fromhex(digest_hex))] = _CODES[Outcome.UNKNOWN.value]

    async def _write(self, key: str, payload: dict[str, Any]) -> None:
        payload = {"version": LEDGER_VERSION, "written_at": dt.datetime.now(dt.timezone.utc).isoformat(), **payload}
        try:
            await _awrite(self._storage, key, json.dumps(payload, separators=(",", ":")).encode())
        except Exception as error:
            raise LedgerError(f"could not write the batch ledger record {key}: {type(error).__name__}") from error

    async def _read_claim(self, run: int) -> dict[str, Any] | None:
        """A run's claim, or `None`; a torn claim (a crash while claiming) is a claimed run that announced nothing."""
        try:
            return await self._read(self._run_key(run))
        except LedgerError:
            return {}

    async def _read_quietly(self, key: str) -> dict[str, Any] | None:
        try:
            return await self._read(key)
        except LedgerError:
            return {}

    async def _read(self, key: str) -> dict[str, Any] | None:
        try:
            raw = await _aread(self._storage, key)
        except Exception as error:
            if isinstance(error, FileNotFoundError) or any(hint in str(error).lower() for hint in _MISSING_HINTS):
                return None
            raise LedgerError(f"the batch ledger record {key} cannot be read ({type(error).__name__})") from error
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict) or payload.get("version") != LEDGER_VERSION:
            raise LedgerError(
                f"the batch ledger record {key} is unreadable; nothing more is sent. "
                "Inspect it: if its items may have been sent, keep them out of the next run."
            )
        return payload


async def _awrite(storage: WritableFileSystem, path: str, content: bytes) -> None:
    """`awrite_path` where the block has it (Prefect's own file systems), else `write_path` (maybe a coroutine)."""
    method = getattr(storage, "awrite_path", None)
    result = method(path, content) if method is not None else storage.write_path(path, content)
    if inspect.isawaitable(result):
        await result


async def _aread(storage: WritableFileSystem, path: str) -> bytes:
    """`aread_path` where the block has it, else `read_path` (maybe a coroutine)."""
    method = getattr(storage, "aread_path", None)
    result = method(path) if method is not None else storage.read_path(path)
    return await result if inspect.isawaitable(result) else result
