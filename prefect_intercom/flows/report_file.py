"""The deflect-calls report file: one CSV line per input row, checked before the first send, written after the run.

Cells a spreadsheet would run as a formula are neutralised (`spreadsheet_safe`).
"""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import fsspec

from prefect_intercom.batch.csv_input import RowNumbers
from prefect_intercom.batch.report import BatchItemResult

REPORT_COLUMNS = ("row", "outcome", "status", "intercom_code", "request_id", "message")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def write_report_csv(
    results: Iterable[BatchItemResult], url: str, row_numbers: Callable[[int], int] | None = None
) -> int:
    """Write one CSV line per item (row, outcome, status, Intercom code, request id, message).

    Every text cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a
    tab or a carriage return) is prefixed with a single quote, as OWASP recommends.

    Args:
        results: The items' results, in input order.
        url: A path or any URL fsspec writes.
        row_numbers: The file's row number of each item (`scan_csv`'s `row_numbers`; default:
            a file without blank lines, item 0 on row 2).

    Returns:
        The number of rows written.
    """
    number = row_numbers or RowNumbers()
    written = 0
    with fsspec.open(url, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REPORT_COLUMNS)
        for result in results:
            texts = (spreadsheet_safe(text or "") for text in (result.error_code, result.request_id, result.message))
            status = "" if result.status is None else result.status
            writer.writerow([number(result.index), result.outcome.value, status, *texts])
            written += 1
    return written


def write_report(results: Iterable[BatchItemResult], report: str, row_numbers: Callable[[int], int]) -> str | None:
    """Write the report file after the run: `None`, or one sentence saying why it could not be written."""
    try:
        write_report_csv(results, report, row_numbers)
    except (OSError, ValueError) as error:
        return f"cannot write the report {report}: {one_line(error)}"
    return None


def spreadsheet_safe(text: str) -> str:
    """`text` as a spreadsheet cell that is never run: a leading `=`, `+`, `-`, `@`, tab or CR gets a `'`."""
    return "'" + text if text[:1] in _FORMULA_STARTS and text else text


def check_report(report: str, csv_path: str) -> None:
    """Check the report file can be written, and is not the input, before anything is sent.

    A local path must not be a directory or the input file (under any spelling or link), its
    folder must exist and be writable; a device is written one byte (`/dev/full` fails). A
    URL (`s3://...`) is only compared with the input's.

    Raises:
        ValueError: One sentence saying why the report cannot be written there.
    """
    where = f"the report {report}"
    if _is_url(report):
        if report.rstrip("/") == csv_path.rstrip("/"):
            raise ValueError(f"{where} is the input file: it would overwrite the callers; name another file")
        return
    path = Path(report.removeprefix("file://")).expanduser()
    if not _is_url(csv_path) and _same_file(path, Path(csv_path.removeprefix("file://")).expanduser()):
        raise ValueError(f"{where} is the input file {csv_path}: it would overwrite the callers; name another file")
    if path.is_dir():
        raise ValueError(f"{where} is a directory: name a file in it")
    try:
        _try_writing(path)
    except OSError as error:
        raise ValueError(f"cannot write {where}: {one_line(error)}") from None


def one_line(error: BaseException) -> str:
    """An error as one line: the first line of its message, or its type's name."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _try_writing(path: Path) -> None:
    """Open `path` for writing without changing a file that exists; write a byte to a device."""
    if not path.exists():
        if not path.parent.is_dir():
            raise FileNotFoundError(f"no folder {path.parent}")
        path.touch(exist_ok=False)
        path.unlink()
        return
    mode = path.stat().st_mode
    if stat.S_ISFIFO(mode):  # opening it would wait for a reader
        return
    with open(path, "ab", buffering=0) as handle:
        if stat.S_ISCHR(mode) and not handle.isatty():
            handle.write(b"\n")  # /dev/full says no space left; /dev/null takes it


def _same_file(one: Path, other: Path) -> bool:
    try:
        if one.exists() and other.exists():
            return os.path.samefile(one, other)
        return os.path.realpath(one) == os.path.realpath(other)
    except OSError:
        return False


def _is_url(text: str) -> bool:
    return "://" in text and not text.startswith("file://")
