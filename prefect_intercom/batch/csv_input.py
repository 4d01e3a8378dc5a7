"""CSV input for batches: request bodies streamed one row at a time, never the whole file."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CsvScan:
    """What one streaming pass over a CSV file found.

    Attributes:
        rows: The number of data rows (the header row not counted).
        sha256: The SHA-256 of the file's bytes, in hex (what `campaign_key` is derived from).
    """

    rows: int
    sha256: str


def scan_csv(path: str | Path, encoding: str = "utf-8-sig") -> CsvScan:
    """Count the data rows of a CSV file or fsspec URL and hash its bytes, in one streamed pass.

    Args:
        path: The CSV file: a path or any URL fsspec reads.
        encoding: The file's encoding (default: UTF-8, with or without a byte-order mark).

    Returns:
        The number of data rows and the SHA-256 of the bytes read.
    """
    digest = hashlib.sha256()
    with fsspec.open(str(path), "rb") as raw:
        text = io.TextIOWrapper(io.BufferedReader(_Hashing(raw, digest)), encoding=encoding, newline="")
        rows = max(0, sum(1 for _ in csv.reader(text)) - 1)
        while text.buffer.read(1 << 16):  # the bytes after the last row the csv module needed, if any
            pass
    return CsvScan(rows=rows, sha256=digest.hexdigest())


def count_csv_rows(path: str | Path, encoding: str = "utf-8-sig") -> int:
    """The number of data rows of a CSV file or fsspec URL (streamed; for progress reporting)."""
    with _open_text(path, encoding) as handle:
        return max(0, sum(1 for _ in csv.reader(handle)) - 1)


class _Hashing(io.RawIOBase):
    """A readable binary stream that feeds every byte it reads to a hash."""

    def __init__(self, raw: IO[bytes], digest: Any) -> None:
        self._raw = raw
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self._digest.update(data)
        return size


def _open_text(path: str | Path, encoding: str) -> IO[str]:
    """Open a local path or any fsspec URL as text, for the csv module (`newline=""`)."""
    return fsspec.open(str(path), "rt", newline="", encoding=encoding).open()
