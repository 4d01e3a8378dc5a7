"""The batch's parts on their own: the key table, the report's file, the concurrency limit."""

from __future__ import annotations

import asyncio
import pickle
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefect_intercom.batch.concurrency import INTERCOM_DEFAULT_RATE, ConcurrencyLimit
from prefect_intercom.batch.keys import KeyTable, key64
from prefect_intercom.batch.report import BatchItemResult, BatchReport
from prefect_intercom.outcomes import Outcome

from .bounded import bounded

# --- the key table --------------------------------------------------------------------------


@bounded(50)
@given(st.lists(st.tuples(st.integers(1, 2**64 - 1), st.integers(0, 2**32 - 1)), max_size=3000))
def test_the_key_table_behaves_like_a_dict(pairs: list[tuple[int, int]]) -> None:
    table, reference = KeyTable(capacity=4), {}
    for key, value in pairs:
        assert table.setdefault(key, value) == reference.setdefault(key, value)
    assert len(table) == len(reference)
    for key, value in reference.items():
        assert table.get(key) == value and key in table
    for key, value in pairs[: len(pairs) // 2]:
        table.put(key, value ^ 1)
        reference[key] = value ^ 1
    assert all(table.get(key) == value for key, value in reference.items())
    assert table.get(12345678901234567) == reference.get(12345678901234567)


def test_a_digest_never_maps_to_the_empty_slot_marker() -> None:
    assert key64(bytes(12)) == 1
    assert key64(bytes.fromhex("00" * 7 + "05" + "ff" * 4)) == 5


def test_the_key_table_keeps_a_hundred_thousand_keys_in_about_twelve_bytes_a_slot() -> None:
    table = KeyTable()
    for index in range(100_000):
        table.setdefault(random.getrandbits(64) | 1, index)
    slots = table._mask + 1
    assert len(table) == 100_000 and slots <= 2 * 100_000 / 0.7
    assert table._keys.itemsize + table._values.itemsize == 12


# --- the report -----------------------------------------------------------------------------


def result(index: int, outcome: Outcome, **fields: object) -> BatchItemResult:
    return BatchItemResult(index, outcome, phone=f"+1415•••{index:04d}", **fields)  # type: ignore[arg-type]


def test_the_report_writes_every_result_to_its_file_and_reads_them_back_in_input_order(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    report = BatchReport(batch_key="k", results_path=str(path))
    outcomes = [Outcome.SENT, Outcome.UNKNOWN, Outcome.REJECTED, Outcome.SENT, Outcome.NOT_SENT]
    for index in (4, 0, 3, 1, 2):
        report.add(result(index, outcomes[index], status=200 if outcomes[index] is Outcome.SENT else None))
    report.flush()
    assert len(path.read_text().splitlines()) == 5
    assert [item.index for item in report.items()] == [0, 1, 2, 3, 4]
    assert [item.outcome for item in report.items()] == outcomes
    assert [item.index for item in report.items("sent")] == [0, 3]
    assert report.total == 5 and report.counts["sent"] == 2


def test_the_table_keeps_only_the_first_rows_problems_first_whatever_the_size() -> None:
    report = BatchReport(batch_key="k", max_table_rows=3)
    for index in range(1000):
        outcome = Outcome.UNKNOWN if index in (700, 5) else Outcome.SKIPPED if index == 999 else Outcome.SENT
        report.add(result(index, outcome))
    rows = report.table_rows()
    assert [(row["item"], row["outcome"]) for row in rows] == [(5, "unknown"), (700, "unknown"), (999, "skipped")]
    assert len(report._table) == 3  # bounded memory
    assert "shows 3 of 1,000" in report.summary_markdown(3)


def test_a_temporary_results_file_goes_with_the_report_and_a_pickled_report_still_reads_it() -> None:
    report = BatchReport(batch_key="k")
    report.add(result(0, Outcome.SENT))
    path = Path(str(report.results_path))
    copy = pickle.loads(pickle.dumps(report))
    assert [item.index for item in copy.items()] == [0]
    del report, copy
    import gc

    gc.collect()
    assert not path.exists()


# --- concurrency ----------------------------------------------------------------------------


async def test_a_fixed_concurrency_never_changes() -> None:
    limit = ConcurrencyLimit(7)
    await limit.acquire()
    limit.release(5.0)
    assert limit.limit == 7 and not limit.adaptive


@pytest.mark.parametrize(
    ("latency", "rate", "expected"),
    [
        (0.3, None, 67),  # Intercom's 1,667 per 10 s at 300 ms: ceil(166.7 x 0.3 x 1.3) + 2
        (0.15, 166.7, 35),
        (0.4, 166.7, 89),
        (2.0, 166.7, 100),  # capped at the maximum (the connection pool)
        (0.001, 166.7, 4),  # never below the minimum
        (0.2, 10.0, 5),  # a small app's limit needs few
    ],
)
async def test_adaptive_concurrency_is_rate_times_latency_with_headroom(
    latency: float, rate: float | None, expected: int
) -> None:
    limit = ConcurrencyLimit(None, maximum=100, allowed_rate=lambda: rate)
    for _ in range(200):  # the smoothed latency settles on the measured one
        await limit.acquire()
        limit.release(latency)
    assert limit.limit == expected
    assert INTERCOM_DEFAULT_RATE == pytest.approx(166.67, abs=0.01)


async def test_the_limit_holds_at_most_its_size_in_flight_and_wakes_waiters_as_it_grows() -> None:
    limit = ConcurrencyLimit(None, maximum=50, allowed_rate=lambda: 100.0)
    inside = 0
    most = 0

    async def worker() -> None:
        nonlocal inside, most
        await limit.acquire()
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.01)
        inside -= 1
        limit.release(0.3)  # each measured at 300 ms: the limit grows to ceil(100 x 0.3 x 1.3) + 2 = 41

    await asyncio.gather(*(worker() for _ in range(400)))
    assert limit.limit == 41 and most <= 41 and limit.peak == most > 16
