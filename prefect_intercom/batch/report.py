"""The report of a batch run: counts in memory, every item's result in a file as it happens (`items()` reads it).

Memory stays flat at any size: see "Outcomes" in docs/batches.md.
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import IO, Any

from prefect_intercom.outcomes import Outcome

DEFAULT_TABLE_ROWS = 500
TABLE_MESSAGE_CHARS = 80
"""Characters of a message the table artifact shows at most (the results file and the report CSV hold it whole)."""
_PROBLEMS_FIRST = (Outcome.UNKNOWN, Outcome.NOT_SENT, Outcome.REJECTED, Outcome.SKIPPED, Outcome.SENT)
_PROBLEM_ORDER = {outcome: rank for rank, outcome in enumerate(_PROBLEMS_FIRST)}


@dataclass(frozen=True)
class BatchItemResult:
    """What happened to one input item.

    Attributes:
        index: Position of the item in the input (0-based).
        outcome: Its one outcome.
        phone: The phone number, masked (`+1415•••0100`), when the item had one.
        status: Intercom's HTTP status, when Intercom answered.
        error_code: Intercom's error code (`invalid_phone_number`, `rate_limit_exceeded`...),
            or this package's reason for `skipped` (`already_sent`, `unknown_in_earlier_run`,
            `duplicate_in_batch`) and `not_sent` (`not_attempted`, `no_connection`,
            `rate_limit_wait`).
        request_id: Intercom's request id.
        message: Details: validation errors, Intercom's message, why the item was skipped.
        attempts: How many times it was sent in this run (0 when it never was).
    """

    index: int
    outcome: Outcome
    phone: str | None = None
    status: int | None = None
    error_code: str | None = None
    request_id: str | None = None
    message: str | None = None
    attempts: int = 0

    @property
    def reason(self) -> str:
        """Why the item ended so, in short: Intercom's status and code (`400 invalid_phone_number`) or the package's."""
        reason = " ".join(str(part) for part in (self.status, self.error_code) if part is not None)
        return reason or ("invalid" if self.outcome is Outcome.REJECTED else "")

    def row(self, row_number: int | None = None) -> dict[str, Any]:
        """The result as a table row: outcome, reason, item and message first; the message shortened at a word.

        Args:
            row_number: The item's row number: the column `row`, in place of `item` (its index).
        """
        number = {"item": self.index} if row_number is None else {"row": row_number}
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            **number,
            "message": shorten(self.message or "", TABLE_MESSAGE_CHARS),
            "phone": self.phone or "",
            "attempts": self.attempts,
            "request_id": self.request_id or "",
        }


def shorten(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut after a whole word with an ellipsis (`...the number…`)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:  # a word boundary not too far back; else a very long word is cut
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


_FIELDS_OF = attrgetter(*(field.name for field in fields(BatchItemResult)))  # a result as a tuple, as the file has it


def read_results(path: str | Path) -> Iterator[BatchItemResult]:
    """The results a batch wrote to its `results_path` (JSON Lines), in the order outcomes were reached.

    A line is the `BatchItemResult` fields in order, as `BatchReport.add` writes it; no file, no results.
    """
    if not Path(path).exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            index, outcome, *rest = json.loads(line)
            yield BatchItemResult(index, Outcome(outcome), *rest)


@dataclass
class BatchReport:
    """The report of one batch run: every input item in exactly one outcome.

    Attributes:
        batch_key: The batch key (what a re-run must pass to skip what this run sent).
        run: The run number of this batch key (0 for the first).
        counts: Items per outcome (every `Outcome` value is present).
        reasons: Items per `outcome status error_code` (e.g. `not_sent 400 invalid_phone_number`).
        retries: Attempts beyond the first, over all items.
        rate_limited: 429 answers that were retried (a 429 beyond the retry budget is a
            `not_sent` item with status 429).
        stopped: Why the batch stopped sending early, if it did (remaining items are `not_sent`).
        expected_total: How many items the caller announced, if it did (for progress).
        elapsed: Seconds from start to end.
        concurrency: Requests in flight at most, as finally chosen (adaptive by default).
        results_path: The JSON Lines file holding every item's result (`items()` reads it);
            a temporary file, removed with the report, unless the caller named one.
        max_table_rows: Rows kept for the table artifact (problems first).
        ledger_note: What to know about where the ledger is (local disk), if anything.
        first_row: What people call item 0 (e.g. 2 for CSV rows, the header being row 1), or
            the row number of each item (`scan_csv(...).row_numbers`: blank lines counted, the
            one numbering of the command line, the report file and the artifacts): the table
            says `row` and messages `row N`; `None`: `item` from 0.
        total: Items with an outcome so far.
    """

    batch_key: str
    run: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {outcome.value: 0 for outcome in Outcome})
    reasons: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    rate_limited: int = 0
    stopped: str | None = None
    expected_total: int | None = None
    elapsed: float = 0.0
    concurrency: int = 0
    results_path: str | None = None
    max_table_rows: int = DEFAULT_TABLE_ROWS
    ledger_note: str | None = None
    first_row: int | Callable[[int], int] | None = None
    total: int = 0
    _table: list[tuple[int, int, BatchItemResult]] = field(default_factory=list, repr=False)
    _file: IO[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.results_path is None:
            handle, path = tempfile.mkstemp(prefix="prefect-intercom-batch-", suffix=".jsonl")
            os.close(handle)
            self.results_path = path
            weakref.finalize(self, Path(path).unlink, missing_ok=True)
        self._file = open(self.results_path, "w", encoding="utf-8")

    def __getstate__(self) -> dict[str, Any]:
        self.flush()
        return {**self.__dict__, "_file": None}

    def add(self, result: BatchItemResult) -> None:
        """Record the outcome of one item (counted, written to the results file, kept for the table if it ranks)."""
        self.total += 1
        self.counts[result.outcome.value] += 1
        if result.outcome is not Outcome.SENT:
            parts = (result.outcome.value, result.status, result.error_code)
            self.reasons[" ".join(str(part) for part in parts if part is not None)] += 1
        if self._file is not None:
            self._file.write(json.dumps(_FIELDS_OF(result), ensure_ascii=False) + "\n")
        # Keep the `max_table_rows` first rows by (problem order, index): a bounded max-heap.
        rank = (-_PROBLEM_ORDER[result.outcome], -result.index, result)
        if len(self._table) < self.max_table_rows:
            heapq.heappush(self._table, rank)
        elif rank[:2] > self._table[0][:2]:
            heapq.heapreplace(self._table, rank)

    def flush(self) -> None:
        """Write buffered results to the results file."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the results file (the report stays readable)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def iter_items(self) -> Iterator[BatchItemResult]:
        """Every item's result in the order outcomes were reached, streamed from the results file."""
        self.flush()
        return read_results(str(self.results_path))

    def items(self, outcome: Outcome | str | None = None) -> list[BatchItemResult]:
        """Every item's result in input order (or only those with `outcome`); read from the results file."""
        wanted = Outcome(outcome) if outcome is not None else None
        return sorted((item for item in self.iter_items() if wanted in (None, item.outcome)), key=attrgetter("index"))

    def table_rows(self, max_rows: int | None = None) -> list[dict[str, Any]]:
        """Rows for a table artifact: problems first (unknown, not sent, rejected, skipped), then sent."""
        kept = sorted(self._table, key=lambda rank: (-rank[0], -rank[1]))
        results = [rank[2] for rank in kept[: max_rows if max_rows is not None else self.max_table_rows]]
        return [result.row(None if self.first_row is None else self.row_number(result.index)) for result in results]

    def row_number(self, index: int) -> int:
        """The row number of the item `index` (`first_row`; without it, the index)."""
        return self.first_row(index) if callable(self.first_row) else index + (self.first_row or 0)

    def label(self, index: int) -> str:
        """How people call the item `index`: `row 2` (with `first_row`) or `item 0`."""
        return f"item {index}" if self.first_row is None else f"row {self.row_number(index)}"

    def summary_markdown(self, max_rows: int | None = None) -> str:
        """A Markdown summary: counts, reasons, rate, and what a re-run would do."""
        rate = self.total / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"**Batch** `{self.batch_key}` (run {self.run}): {self.total:,} items in {self.elapsed:.1f} s "
            f"({rate:,.1f} items/s, up to {self.concurrency} in flight), {self.retries:,} retries "
            f"({self.rate_limited:,} after a 429).",
            "",
            "| outcome | items |",
            "| --- | ---: |",
            *(f"| {name} | {count:,} |" for name, count in self.counts.items()),
        ]
        if self.reasons:
            lines += ["", "| reason (outcome, status, code) | items |", "| --- | ---: |"]
            lines += [f"| {reason} | {count:,} |" for reason, count in self.reasons.most_common(20)]
        if self.ledger_note:
            lines += ["", f"**Warning:** {self.ledger_note}"]
        if self.stopped:
            lines += ["", f"**Stopped early:** {self.stopped}. The items not attempted are `not_sent`."]
        unknown = self.counts[Outcome.UNKNOWN.value]
        lines += [
            "",
            "A re-run with the same batch key sends only the `not_sent` items"
            + (f"; the {unknown:,} `unknown` ones only with `resend_unknown=True`." if unknown else "."),
        ]
        if max_rows is not None and self.total > max_rows:
            lines.append(f"The table shows {max_rows:,} of {self.total:,} items, problems first.")
        return "\n".join(lines)

    def progress_text(self) -> str:
        """One line for a progress artifact."""
        total = f" of {self.expected_total:,}" if self.expected_total is not None else ""
        parts = ", ".join(f"{count:,} {name}" for name, count in self.counts.items() if count)
        return f"{self.total:,}{total} items: {parts or 'none yet'}"
