"""The batch ledger's objects on storage, each carrying its name and a checksum.

Every object is a checksum, a newline and its body: JSON (records, claims, heads) or a binary snapshot
(docs/batches.md, `ledger_format`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import sys
from array import array
from typing import Any

from prefect_intercom.errors import LedgerDamageError

VERSION = 3
# An item's word in a record: sent, not sent, unknown (an announcement is "unknown" until done).
SENT, UNKNOWN, NOT_SENT = 1, 2, 3
WORDS = {"s": SENT, "u": UNKNOWN, "n": NOT_SENT}
CODE_WORDS = {code: word for word, code in WORDS.items()}
_SNAPSHOT_MAGIC = b"PILS3\n"
_SNAPSHOT_HEADER = struct.Struct("<IQQQ")  # run, records covered, earlier-run entries, this-run entries


_BIG_ENDIAN = sys.byteorder == "big"  # snapshots are little-endian on every machine


def _checksum(*parts: Any) -> bytes:
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part)
    return digest.hexdigest().encode()


def seal(*parts: Any) -> bytes:
    """The object as stored: checksum, newline, body (its bytes-like parts, joined once)."""
    return b"".join([_checksum(*parts), b"\n", *parts])


def unseal(raw: bytes, name: str) -> memoryview:
    """The body of a stored object (a view, not a copy); `LedgerDamageError` naming it on a bad checksum."""
    view = memoryview(raw)
    checksum, newline, body = bytes(view[:16]), bytes(view[16:17]), view[17:]
    if newline != b"\n" or _checksum(body) != checksum:
        raise LedgerDamageError(
            f"the batch ledger object {name} is damaged (its checksum does not match: cut short, changed or "
            "written by another program); nothing is sent. Inspect it: if its items may have been sent, keep "
            "them out of the next run."
        )
    return body


def encode_json(kind: str, run: int, seq: int, fields: dict[str, Any]) -> bytes:
    """A sealed JSON object of `kind` (`record`, `claim`, `head`) for run `run`, position `seq`."""
    body = {"v": VERSION, "kind": kind, "run": run, "seq": seq, **fields}
    return seal(json.dumps(body, separators=(",", ":")).encode())


def decode_json(raw: bytes, name: str, kind: str, run: int, seq: int | None) -> dict[str, Any]:
    """The fields of a sealed JSON object, checked against where it was read from (`seq=None`: any)."""
    body = unseal(raw, name)
    payload = None
    with contextlib.suppress(ValueError):  # not JSON
        payload = json.loads(bytes(body))
    if (
        not isinstance(payload, dict)
        or payload.get("v") != VERSION
        or payload.get("kind") != kind
        or payload.get("run") != run
        or not isinstance(payload.get("seq"), int)
        or (seq is not None and payload["seq"] != seq)
    ):
        raise LedgerDamageError(
            f"the batch ledger object {name} does not hold {kind} {seq} of run {run} (a copy under another name, "
            "or another version); nothing is sent."
        )
    return payload


def encode_record(run: int, seq: int, sending: list[bytes], done: list[tuple[bytes, int]]) -> bytes:
    """A record: the item digests announced as sending, and items with their outcome word."""
    fields = {"sending": [d.hex() for d in sending], "done": [[d.hex(), CODE_WORDS[code]] for d, code in done]}
    return encode_json("record", run, seq, fields)


def decode_record(raw: bytes, name: str, run: int, seq: int) -> list[tuple[bytes, int]]:
    """A record's items in the order they apply: outcomes first, then announcements (a retry's latest word)."""
    payload = decode_json(raw, name, "record", run, seq)
    try:
        items = [(bytes.fromhex(d), WORDS[word]) for d, word in payload["done"]]
        items += [(bytes.fromhex(d), UNKNOWN) for d in payload["sending"]]
    except (KeyError, ValueError, TypeError) as error:
        raise LedgerDamageError(
            f"the batch ledger object {name} holds an item this version cannot read ({type(error).__name__}: "
            f"{str(error)[:80]}); nothing is sent."
        ) from None
    return items


def encode_snapshot(run: int, records: int, earlier: tuple[array, array], this_run: tuple[array, array]) -> bytes:
    """A snapshot after `records` records of `run`: earlier runs' (key, run<<2|word) and this run's (key, word)."""
    header = _SNAPSHOT_HEADER.pack(run, records, len(earlier[0]), len(this_run[0]))
    parts: list[Any] = [_SNAPSHOT_MAGIC, header]
    for keys, values in (earlier, this_run):
        parts += [_little(keys), _little(values)]
    return seal(*parts)


def decode_snapshot(raw: bytes, name: str, run: int, records: int) -> tuple[tuple[array, array], tuple[array, array]]:
    """The two sections of a snapshot, checked against where it was read from."""
    body = unseal(raw, name)
    start = len(_SNAPSHOT_MAGIC) + _SNAPSHOT_HEADER.size
    if bytes(body[: len(_SNAPSHOT_MAGIC)]) != _SNAPSHOT_MAGIC:
        raise LedgerDamageError(f"the batch ledger object {name} is not a snapshot; nothing is sent.")
    found_run, found_records, earlier_count, this_count = _SNAPSHOT_HEADER.unpack(body[len(_SNAPSHOT_MAGIC) : start])
    if (found_run, found_records) != (run, records) or len(body) != start + 12 * (earlier_count + this_count):
        raise LedgerDamageError(
            f"the batch ledger object {name} is not the snapshot of record {records} of run {run}; nothing is sent."
        )
    sections = []
    for count in (earlier_count, this_count):
        keys, values = array("Q"), array("I")
        keys.frombytes(body[start : start + 8 * count])
        values.frombytes(body[start + 8 * count : start + 12 * count])
        start += 12 * count
        if _BIG_ENDIAN:
            keys.byteswap()
            values.byteswap()
        sections.append((keys, values))
    return sections[0], sections[1]


def _little(values: array) -> memoryview:
    if not _BIG_ENDIAN:
        return memoryview(values).cast("B")
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return memoryview(swapped).cast("B")
