"""CSV input for batches: request bodies streamed one row at a time, never the whole file."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import fsspec


def read_requests_csv(
    path: str | Path,
    *,
    phone_column: str = "phone",
    attribute_columns: Iterable[str] | None = None,
    encoding: str = "utf-8-sig",
) -> Iterator[dict[str, Any]]:
    """Stream request bodies from a CSV file, one row at a time (never the whole file).

    Every column but `phone_column` becomes a custom attribute (string values; empty cells
    are left out), or only `attribute_columns` when given.

    Args:
        path: The CSV file, with a header row: a path or any URL fsspec reads (`s3://...`, `memory://...`).
        phone_column: The column with the phone numbers (E.164).
        attribute_columns: The columns to send as custom attributes (default: all others).
        encoding: The file's encoding (default: UTF-8, with or without a byte-order mark).

    Yields:
        `{"phone": ..., "custom_attributes": {...}}` per row (`custom_attributes` only when
        a row has some).

    Raises:
        ValueError: The file has no `phone_column` (or an attribute column is missing).

    Example:
        ```python
        report = create_phone_call_redirects(credentials, read_requests_csv("callers.csv"))
        ```
    """
    with _open_text(path, encoding) as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if phone_column not in header:
            raise ValueError(f"{path}: no {phone_column!r} column (columns: {', '.join(header) or 'none'})")
        others = [name for name in header if name != phone_column]
        columns = others if attribute_columns is None else list(attribute_columns)
        missing = [name for name in columns if name not in header]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(map(repr, missing))}")
        for row in reader:
            body: dict[str, Any] = {"phone": (row.get(phone_column) or "").strip()}
            attributes = {name: row[name] for name in columns if row.get(name) not in (None, "")}
            if attributes:
                body["custom_attributes"] = attributes
            yield body


def count_csv_rows(path: str | Path, encoding: str = "utf-8-sig") -> int:
    """The number of data rows of a CSV file or fsspec URL (streamed; for progress reporting)."""
    with _open_text(path, encoding) as handle:
        return max(0, sum(1 for _ in csv.reader(handle)) - 1)


def _open_text(path: str | Path, encoding: str) -> IO[str]:
    """Open a local path or any fsspec URL as text, for the csv module (`newline=""`)."""
    return fsspec.open(str(path), "rt", newline="", encoding=encoding).open()
