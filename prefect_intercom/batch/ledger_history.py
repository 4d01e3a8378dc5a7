"""Reading a batch ledger's earlier runs: claims, the newest snapshot, and the records after it.

A gap or a damaged object fails closed (docs/batches.md, `ledger_history`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from typing import Any

from prefect_intercom.batch import ledger_format as fmt
from prefect_intercom.batch.keys import KeyTable, key64
from prefect_intercom.batch.ledger_store import LedgerStore
from prefect_intercom.errors import LedgerError

TAIL_WINDOW = 64  # records read at once when reading a run's tail
_RECORD_NUMBER = re.compile(r"[0-9]{8}")


@dataclass(frozen=True)
class LedgerPaths:
    """The names of a ledger folder's objects.

    Attributes:
        folder: The ledger's folder in the storage.
    """

    folder: str

    def claim(self, run: int) -> str:
        """A run's claim."""
        return f"{self.folder}/run-{run:05d}/claim"

    def record(self, run: int, record: int) -> str:
        """A run's record."""
        return f"{self.folder}/run-{run:05d}/record-{record:08d}"

    def snapshot(self, run: int, records: int) -> str:
        """A run's snapshot after `records` records."""
        return f"{self.folder}/run-{run:05d}/snapshot-{records:08d}"

    def head(self, run: int, slot: int) -> str:
        """One of a run's two head slots."""
        return f"{self.folder}/run-{run:05d}/head-{slot}"


class LedgerHistory:
    """The earlier runs of one ledger folder, read from its store."""

    def __init__(self, store: LedgerStore, paths: LedgerPaths) -> None:
        self._store = store
        self.paths = paths
        self.folder = paths.folder

    async def read_claims(self) -> list[dict[str, Any] | None]:
        """Every run's claim, in order (`None`: a torn claim, a run that crashed while claiming and sent nothing)."""
        claims: list[dict[str, Any] | None] = []
        while True:
            names = [self.paths.claim(run) for run in range(len(claims), len(claims) + 8)]
            for name, raw in zip(names, await asyncio.gather(*map(self._store.read, names)), strict=True):
                if raw is None:
                    return claims
                run = len(claims)
                try:
                    claims.append(fmt.decode_json(raw, name, "claim", run, 0))
                except LedgerError:
                    if await self._store.read(self.paths.record(run, 0)) is not None:
                        raise  # a run that wrote records had a whole claim: this one was damaged since
                    claims.append(None)

    async def state_after(self, run: int) -> KeyTable:
        """Earlier runs' merged state after `run`: its latest snapshot and the records after it (none before run 0)."""
        if run < 0:
            return KeyTable()
        head = await self._read_head(run)
        if head is not None and not head.get("snapshot", True):
            if head["records"] != 0 or await self._store.read(self.paths.record(run, 0)) is not None:
                raise LedgerError(f"the batch ledger {self.folder}: run {run} ended with no record, yet has some")
            return await self.state_after(run - 1)
        if head is not None:
            raw = await self._store.read(self.paths.snapshot(run, head["records"]))
            if raw is None:
                raise LedgerError(
                    f"the batch ledger {self.folder} is missing the snapshot of record {head['records']} of run {run} "
                    "that its head names (deleted or not copied); nothing is sent."
                )
            name = self.paths.snapshot(run, head["records"])
            earlier, this_run = fmt.decode_snapshot(raw, name, run, head["records"])
            del raw
            previous, states = KeyTable(len(earlier[0])), KeyTable(len(this_run[0]))
            previous.update(*earlier)
            states.update(*this_run)
            del earlier, this_run
            start, closed = head["records"], head["closed"]
        else:
            previous = await self.state_after(run - 1)
            states, start, closed = KeyTable(), 0, False
        for items in await self._read_tail(run, start, closed, tolerate_torn=not self._store.atomic):
            for digest, word in items:
                states.set_word(key64(digest), word)
        return _merge(previous, states, run)

    async def _read_head(self, run: int) -> dict[str, Any] | None:
        """The newest whole head of the two slots (a torn slot is ignored), or `None`."""
        names = [self.paths.head(run, slot) for slot in (0, 1)]
        heads = []
        for name, raw in zip(names, await asyncio.gather(*(self._store.read(n) for n in names)), strict=True):
            with contextlib.suppress(LedgerError):  # a torn slot
                if raw is not None:
                    heads.append(fmt.decode_json(raw, name, "head", run, None))
        return max(heads, key=lambda head: head["seq"]) if heads else None

    async def _read_tail(self, run: int, start: int, closed: bool, *, tolerate_torn: bool) -> list[Any]:
        """The records of `run` from `start` on; a gap or damage fails closed.

        A storage that lists (S3) says which records exist in one request: every one is checked and read.
        Otherwise records are read `TAIL_WINDOW` at a time until a window past the first missing one.
        """
        prefix = self.paths.record(run, 0)[:-8]
        listed = await self._store.names(prefix, self.paths.record(run, start - 1) if start else prefix)
        last: int | None = None  # the last record, when the storage listed them
        if listed is not None:
            numbers = [int(name[len(prefix) :]) for name in listed if _RECORD_NUMBER.fullmatch(name[len(prefix) :])]
            if closed and numbers:
                raise self._after_end(run)
            for expected, number in enumerate(numbers, start):
                if number != expected:
                    raise self._gap(run, expected, number, None)
            last = start + len(numbers) - 1
        elif closed:  # a run that ended wrote nothing after its last snapshot
            if await self._store.read(self.paths.record(run, start)) is not None:
                raise self._after_end(run)
            return []
        records: list[Any] = []
        end: int | None = None  # the first record that is missing (or torn)
        torn: LedgerError | None = None
        seq = start
        while (seq <= last) if last is not None else (end is None or seq <= end + TAIL_WINDOW):
            stop = seq + TAIL_WINDOW if last is None else min(seq + TAIL_WINDOW, last + 1)
            names = [self.paths.record(run, n) for n in range(seq, stop)]
            raws = await asyncio.gather(*map(self._store.read, names))
            for number, name, raw in zip(range(seq, stop), names, raws, strict=True):
                if raw is None and last is not None:  # listed, then gone: deleted while read
                    raise self._gap(run, number, last, None)
                if raw is None:
                    end = number if end is None else end
                    continue
                if end is not None:
                    raise self._gap(run, end, number, torn)
                try:
                    records.append(fmt.decode_record(raw, name, run, number))
                except LedgerError as error:
                    if not tolerate_torn or (last is not None and number != last):
                        raise
                    end, torn = number, error  # a torn last record announced nothing that was released
            seq = stop
        return records

    def _after_end(self, run: int) -> LedgerError:
        return LedgerError(f"the batch ledger {self.folder} has records after the end of run {run}; nothing is sent.")

    def _gap(self, run: int, missing: int, found: int, torn: LedgerError | None) -> LedgerError:
        what = f"damaged ({torn})" if torn is not None else "missing"
        return LedgerError(
            f"the batch ledger {self.folder} has a gap: record {missing} of run {run} is {what} while record {found} "
            "exists (deleted or not copied: an object-store lifecycle rule, a partial sync); nothing is sent, since "
            "what that record said cannot be known. Restore the folder, or keep its items out of the next run."
        )


def _merge(previous: KeyTable, states: KeyTable, run: int) -> KeyTable:
    """Fold one run's last words into the earlier runs' state (sent wins; unknown stays unless sent).

    Returns whichever of the two tables was reused: the smaller is folded into the larger, so a
    million items never need a third table.
    """
    states.relabel(lambda value: (run << 2) | (value & 3) if value & 3 in (fmt.SENT, fmt.UNKNOWN) else 0)
    if len(states) >= len(previous):
        for key, value in zip(*previous.items(), strict=True):
            mine = states.get(key)
            if mine is None or not mine & 3 or (mine & 3 == fmt.UNKNOWN and value & 3 == fmt.SENT):
                states.put(key, value)
        return states
    for key, value in zip(*states.items(), strict=True):
        if value & 3 == fmt.SENT or (value & 3 == fmt.UNKNOWN and previous.get(key, 0) & 3 != fmt.SENT):
            previous.put(key, value)
    return previous
