"""The ledger's objects (`prefect_intercom.batch.ledger_format`): sealed, named, refused when misnamed."""

from __future__ import annotations

from array import array

import pytest

from prefect_intercom.batch import ledger_format as fmt
from prefect_intercom.errors import LedgerDamageError


def test_a_record_reads_back_outcomes_first_then_announcements() -> None:
    raw = fmt.encode_record(3, 7, [b"\x01" * 12], [(b"\x02" * 12, fmt.SENT), (b"\x03" * 12, fmt.NOT_SENT)])
    items = fmt.decode_record(raw, "record-7", 3, 7)
    assert items == [(b"\x02" * 12, fmt.SENT), (b"\x03" * 12, fmt.NOT_SENT), (b"\x01" * 12, fmt.UNKNOWN)]


def test_a_flipped_byte_or_another_name_is_refused_naming_the_object() -> None:
    raw = fmt.encode_json("claim", 0, 0, {"owner": "a"})
    assert fmt.decode_json(raw, "claim", "claim", 0, 0)["owner"] == "a"
    flipped = raw[:-2] + bytes([raw[-2] ^ 1]) + raw[-1:]
    with pytest.raises(LedgerDamageError, match="claim-x is damaged"):
        fmt.decode_json(flipped, "claim-x", "claim", 0, 0)
    with pytest.raises(LedgerDamageError, match="does not hold head 0 of run 1"):
        fmt.decode_json(raw, "head-0", "head", 1, 0)


def test_a_snapshot_round_trips_its_two_sections_and_checks_where_it_was_read_from() -> None:
    earlier = (array("Q", [5, 2**64 - 1]), array("I", [(2 << 2) | fmt.SENT, (1 << 2) | fmt.UNKNOWN]))
    this_run = (array("Q", [9]), array("I", [fmt.NOT_SENT]))
    raw = fmt.encode_snapshot(4, 64, earlier, this_run)
    assert fmt.decode_snapshot(raw, "snapshot-64", 4, 64) == (earlier, this_run)
    with pytest.raises(LedgerDamageError, match="not the snapshot of record 65 of run 4"):
        fmt.decode_snapshot(raw, "snapshot-65", 4, 65)
