"""What `prefect-intercom deflect-calls` checks before the first send, and how it prints text from the input.

Each check raises `ValueError` with one sentence; the command line shows it as is, exit code 2.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import NoReturn

from prefect_intercom.batch.csv_input import CsvScan, scan_csv
from prefect_intercom.batch.report import BatchItemResult
from prefect_intercom.flows.report_file import one_line, write_report_csv

__all__ = ["OneLineParser", "check_csv", "positive_count", "printable", "write_report"]

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
        raise ValueError(f"cannot read the CSV {csv_path}: {one_line(error)}") from None


def write_report(results: list[BatchItemResult], report: str, row_numbers: Callable[[int], int]) -> str | None:
    """Write the report file after the run.

    Returns:
        `None`, or one sentence saying why it could not be written (the command still prints
        the counts and how to resume).
    """
    try:
        write_report_csv(results, report, row_numbers)
    except (OSError, ValueError) as error:
        return f"cannot write the report {report}: {one_line(error)}"
    return None
