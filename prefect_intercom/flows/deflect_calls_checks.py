"""What `prefect-intercom deflect-calls` checks before the first send, and how it prints text from the input.

Each check raises `ValueError` with one sentence; the command line shows it as is, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from prefect_intercom.batch.csv_input import CsvScan, scan_csv
from prefect_intercom.batch.report import BatchItemResult
from prefect_intercom.flows.deflect_calls import write_report_csv

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    r"""`text` with every control character escaped (`\x1b`, `\x00`, `\u202e`), safe for a terminal."""
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (`prog: error: ...; see --help`), exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print the error as one line and exit 2.

        Args:
            message: What is wrong with the arguments.
        """
        self.exit(2, f"{self.prog}: error: {printable(message)} (see --help)\n")


def positive_count(text: str) -> int:
    """An argparse type: a whole number of 1 or more (so `--concurrency 0` is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def check_csv(csv_path: str, phone_column: str, attributes: list[str] | None) -> CsvScan:
    """Read the whole file once, strictly: its rows and their numbers, or one sentence why it cannot be sent.

    Raises:
        ValueError: The file cannot be opened or read, lacks a column, names the phone column
            twice, or breaks a bound (`prefect_intercom.batch.csv_input`).
    """
    try:
        return scan_csv(csv_path, phone_column=phone_column, attribute_columns=attributes)
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"cannot read the CSV {csv_path}: {_sentence(error)}") from None


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
    path = Path(_local(report)).expanduser()
    if not _is_url(csv_path) and _same_file(path, Path(_local(csv_path)).expanduser()):
        raise ValueError(f"{where} is the input file {csv_path}: it would overwrite the callers; name another file")
    if path.is_dir():
        raise ValueError(f"{where} is a directory: name a file in it")
    try:
        _try_writing(path)
    except OSError as error:
        raise ValueError(f"cannot write {where}: {_sentence(error)}") from None


def write_report(results: list[BatchItemResult], report: str, row_numbers: Callable[[int], int]) -> str | None:
    """Write the report file after the run.

    Returns:
        `None`, or one sentence saying why it could not be written (the command still prints
        the counts and how to resume).
    """
    try:
        write_report_csv(results, report, row_numbers)
    except (OSError, ValueError) as error:
        return f"cannot write the report {report}: {_sentence(error)}"
    return None


def _try_writing(path: Path) -> None:
    """Open `path` for writing without changing a file that exists; write a byte to a device."""
    if not path.exists():
        if not path.parent.is_dir():
            raise FileNotFoundError(f"no folder {path.parent}")
        with open(path, "xb"):
            pass
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


def _local(text: str) -> str:
    return text.removeprefix("file://")


def _sentence(error: BaseException) -> str:
    """An error as one line: the first line of its message, or its type's name."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__
