"""The batch report (`prefect_intercom.batch.report`): counts in memory, every result in its file."""

from __future__ import annotations

import pickle
from pathlib import Path

from prefect_intercom.batch.report import BatchItemResult, BatchReport
from prefect_intercom.outcomes import Outcome


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


def test_with_a_first_row_the_table_says_row_where_it_said_item_and_messages_say_row_n() -> None:
    report = BatchReport(batch_key="k", first_row=2)
    report.add(result(3, Outcome.REJECTED, message="bad"))
    [row] = report.table_rows()
    assert list(row) == ["outcome", "reason", "row", "message", "phone", "attempts", "request_id"]
    assert (row["row"], row["reason"], report.label(3)) == (5, "invalid", "row 5")
    assert BatchReport(batch_key="k").label(3) == "item 3"
