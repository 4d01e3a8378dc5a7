"""The batch ledger: what each run of a batch sent, kept in Prefect's result storage.

A batch is identified by its *batch key*; each item by its *item key* (by default its phone
number). Before a chunk of items is sent, the ledger records that the chunk is being sent
("intent"); once every item of the chunk has an outcome, it records the outcomes. A later
run with the same batch key (a retried flow run, or a re-run on purpose) reads every record
first and does not send again:

- items recorded as *sent*;
- items whose outcome is *unknown* (an answer that may have texted the person, or a chunk
  whose outcomes were never recorded because the process died while sending it), unless
  the caller opts in with `resend_unknown=True`.

Items recorded as *not sent* (refused by Intercom, rate-limited beyond the retry budget,
never connected) are sent again. Records are `ResultRecord`s written through a Prefect
`ResultStore`, to the flow's result storage (or any `WritableFileSystem` block), so a retry
on another machine sees them when that storage is shared (S3, GCS, a network disk...).
Item keys are stored only as keyed hashes (BLAKE2b, keyed by the batch key): no phone
number is written to storage.

The guarantee, and its limits: nothing recorded as sent or unknown is sent again by a run
with the same batch key. A chunk is recorded *before* it is sent, so a crash can turn at
most one chunk of items into *unknown*, never into a duplicate. Two runs with the same batch
key must not run at the same time (the ledger detects the common case when they start).
A record that cannot be read stops the batch before anything is sent (fail closed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prefect.filesystems import WritableFileSystem
from prefect.results import ResultStore, aget_default_result_storage, get_result_store
from prefect.serializers import JSONSerializer

from prefect_intercom.errors import IntercomError

LEDGER_FOLDER = "prefect-intercom-ledger"
LEDGER_VERSION = 1
DIGEST_SIZE = 12
MAX_RUNS = 10_000
_MISSING_HINTS = ("does not exist", "not found", "notfound", "nosuchkey", "no such file", "404")

# Outcomes as recorded (values of `batch.ItemOutcome`); only these two block a resend.
SENT = "sent"
UNKNOWN = "unknown"


class LedgerError(IntercomError):
    """The batch ledger cannot be read or written; nothing more is sent."""


@dataclass(frozen=True)
class LedgerEntry:
    """What an earlier run recorded for one item key.

    Attributes:
        outcome: `"sent"` or `"unknown"`.
        request_id: Intercom's request id of that send, when there was one.
        run: The run number that recorded it.
    """

    outcome: str
    request_id: str | None
    run: int


class BatchLedger:
    """The write-ahead record of one batch (see the module docstring for the guarantee).

    Use `await BatchLedger.open(batch_key)`; then `digest()` each item key, look it up in
    `previous`, and wrap the sending of each chunk in `record_intent` / `record_outcomes`.

    Attributes:
        batch_key: The batch key, as given.
        run: This run's number (0 for the first run of the batch key).
        previous: What earlier runs recorded, by item digest (sent and unknown items only).
    """

    def __init__(self, batch_key: str, store: ResultStore, storage: WritableFileSystem) -> None:
        if not batch_key:
            raise ValueError("the batch key must not be empty")
        self.batch_key = batch_key
        self._salt = hashlib.sha256(batch_key.encode()).digest()
        self.folder = f"{LEDGER_FOLDER}/{hashlib.sha256(b'folder|' + batch_key.encode()).hexdigest()[:32]}"
        self._store = store
        self._storage = storage
        self.run = 0
        self.previous: dict[bytes, LedgerEntry] = {}
        self._owner = uuid.uuid4().hex

    def __repr__(self) -> str:
        return f"BatchLedger(folder={self.folder!r}, run={self.run}, previous={len(self.previous)})"

    @classmethod
    async def open(cls, batch_key: str, storage: WritableFileSystem | None = None) -> BatchLedger:
        """Read every earlier run of `batch_key` and claim the next run number.

        Args:
            batch_key: Identifies the batch across runs.
            storage: Where records go; default: the current run's result storage (the
                flow's or task's `result_storage`, else Prefect's default result storage).

        Raises:
            LedgerError: A record exists but cannot be read, or another run claimed the same
                run number at the same moment.
        """
        if storage is None:
            storage = get_result_store().result_storage or await aget_default_result_storage()
        store = ResultStore(result_storage=storage, serializer=JSONSerializer(), cache_result_in_memory=False)
        ledger = cls(batch_key, store, storage)
        await ledger._load()
        return ledger

    def digest(self, item_key: str) -> bytes:
        """The keyed hash that stands for `item_key` in the ledger."""
        return hashlib.blake2b(item_key.encode(), digest_size=DIGEST_SIZE, key=self._salt).digest()

    async def record_intent(self, chunk: int, items: Iterable[tuple[int, bytes]]) -> None:
        """Record that the items `(index, digest)` of `chunk` are about to be sent."""
        rows = [[index, digest.hex(), UNKNOWN, None, None, None] for index, digest in items]
        await self._write(self._chunk_key(chunk), {"state": "sending", "items": rows})

    async def record_outcomes(
        self, chunk: int, items: Iterable[tuple[int, bytes, str, int | None, str | None, str | None]]
    ) -> None:
        """Record the outcome of every item of `chunk`: `(index, digest, outcome, status, code, request_id)`."""
        rows = [[index, digest.hex(), *rest] for index, digest, *rest in items]
        await self._write(self._chunk_key(chunk), {"state": "done", "items": rows})

    # --- internals -----------------------------------------------------------------------

    def _run_key(self, run: int) -> str:
        return f"{self.folder}/run-{run:05d}/started"

    def _chunk_key(self, chunk: int, run: int | None = None) -> str:
        return f"{self.folder}/run-{self.run if run is None else run:05d}/chunk-{chunk:07d}"

    async def _load(self) -> None:
        run = 0
        while (await self._read(self._run_key(run))) is not None:
            chunk = 0
            while (record := await self._read(self._chunk_key(chunk, run))) is not None:
                self._merge(record, run)
                chunk += 1
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

    def _merge(self, record: dict[str, Any], run: int) -> None:
        for _index, digest_hex, outcome, _status, _code, request_id in record.get("items", []):
            if outcome not in (SENT, UNKNOWN):
                continue
            digest = bytes.fromhex(digest_hex)
            known = self.previous.get(digest)
            if known is None or (known.outcome == UNKNOWN and outcome == SENT):
                self.previous[digest] = LedgerEntry(outcome=outcome, request_id=request_id, run=run)

    async def _write(self, key: str, payload: dict[str, Any]) -> None:
        payload = {"version": LEDGER_VERSION, "written_at": dt.datetime.now(dt.timezone.utc).isoformat(), **payload}
        try:
            await self._store.awrite(payload, key=key)
        except Exception as error:
            raise LedgerError(f"could not write the batch ledger record {key}: {type(error).__name__}") from error

    async def _read(self, key: str) -> dict[str, Any] | None:
        try:
            payload = (await self._store.aread(key)).result
        except Exception as error:
            if isinstance(error, FileNotFoundError) or any(hint in str(error).lower() for hint in _MISSING_HINTS):
                return None
            payload = error
        if not isinstance(payload, dict) or payload.get("version") != LEDGER_VERSION:
            raise LedgerError(
                f"the batch ledger record {key} is unreadable ({type(payload).__name__}); nothing more is sent. "
                "Inspect it: if its chunk may have been sent, keep the record's items out of the next run."
            )
        return payload
