"""CSV input for batches: request bodies streamed one row at a time, never the whole file.

Read strictly and within bounds (`FIELD_LIMIT`, `LINE_LIMIT`, no NUL byte), each refusal one sentence
naming the line; rows are numbered as the file has them (docs/csv-format.md).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import fsspec

from prefect_intercom.batch.attribute_types import RefusedRow, attribute_names, row_attributes, typed_columns
from prefect_intercom.errors import causes

FIELD_LIMIT = 64 * 1024
"""Characters a field may hold at most."""
LINE_LIMIT = 1024 * 1024
"""Characters a line (or a row spanning lines) may hold at most."""
# A quoted field: a quote at the start of a field, doubled quotes or any other character, its closing quote if any.
_QUOTED_FIELD = re.compile(r'(?:^|(?<=[,\r\n]))"(?:[^"]|"")*(?P<close>"?)')


@dataclass
class RowNumbers:
    """The file's row number of each data row (item 0 is row 2 unless blank lines come first).

    Only the places where the numbering jumps (blank lines) are kept, so any file fits.

    Attributes:
        jumps: `(index, row)` where the row of `index` is not the row of `index - 1` plus one (from `(0, 2)`).
    """

    jumps: list[tuple[int, int]] = field(default_factory=lambda: [(0, 2)])

    def add(self, index: int, row: int) -> None:
        """Record that the data row `index` (0-based, added in order) is the file's row `row`."""
        if row != self(index):
            self.jumps.append((index, row))

    def __call__(self, index: int) -> int:
        """The file's row number of the data row `index`."""
        first, row = self.jumps[bisect.bisect_right(self.jumps, index, key=itemgetter(0)) - 1]
        return row + index - first


def read_requests_csv(
    path: str | Path,
    *,
    phone_column: str = "phone",
    attribute_columns: Iterable[str] | None = None,
    encoding: str = "utf-8-sig",
    workspace_types: Mapping[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream request bodies from a CSV file, one row at a time (never the whole file).

    Every column but `phone_column` becomes a custom attribute (empty cells are left out), or
    only `attribute_columns` when given. A value is text unless a type says otherwise: the
    column's declared type (`vip:boolean`, the attribute's name is the part before the colon)
    or the workspace's (`workspace_types`); see `prefect_intercom.batch.attribute_types`. A row
    with a cell that is not of its column's type comes as a `RefusedRow` (a batch rejects it
    with the reason `attribute_type`; nothing is sent for it). Blank lines are skipped.

    Args:
        path: The CSV file, with a header row: a path or any URL fsspec reads (`s3://...`, `memory://...`).
        phone_column: The column with the phone numbers (E.164).
        attribute_columns: The columns to send as custom attributes (default: all others), by
            attribute name (`vip` for a column `vip:boolean`).
        encoding: The file's encoding (default: UTF-8, with or without a byte-order mark).
        workspace_types: The workspace's custom attribute types by name (`fetch_workspace_types`),
            for the columns whose header declares none.

    Yields:
        `{"phone": ..., "custom_attributes": {...}}` per row (`custom_attributes` only when
        a row has some).

    Raises:
        ValueError: The file has no `phone_column`, names it twice, lacks an attribute column,
            declares an unknown type or one the workspace contradicts, or cannot be read within
            bounds (see the module).
        OSError: The file cannot be opened (`open_csv`).

    Example:
        ```python
        report = create_phone_call_redirects(credentials, read_requests_csv("callers.csv"))
        ```
    """
    with open_csv(path) as raw:
        handle = io.TextIOWrapper(raw, encoding=encoding, newline="")
        for _, body in numbered_requests(handle, str(path), phone_column, attribute_columns, workspace_types):
            yield body


def numbered_requests(
    handle: IO[str],
    name: str,
    phone_column: str | None,
    attribute_columns: Iterable[str] | None = None,
    workspace_types: Mapping[str, str] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The request body of every data row of an open CSV text stream, with its row number in the file.

    Args:
        handle: The text stream (opened with `newline=""`).
        name: The file's name, for messages.
        phone_column: The phone column (`None`: any header, the bodies' phones empty).
        attribute_columns: The columns to send as custom attributes (default: all others).
        workspace_types: The workspace's custom attribute types by name.

    Yields:
        `(row, body)`: the file's row number (the header is row 1) and the request body.

    Raises:
        ValueError: See `read_requests_csv`.
    """
    records = _records(handle)
    found = next(((first, fields) for _, first, fields in records if fields), None)  # blank lines before it skipped
    if found is None:
        raise ValueError(f"{name} has no header row")
    header_line, header = found
    where = f"{name}, line {header_line} (the header)"
    columns = _columns(name, where, attribute_names(header, phone_column), phone_column, attribute_columns)
    typed = typed_columns(where, header, columns, workspace_types)
    phone_at = header.index(phone_column) if phone_column is not None else None
    for row, _, fields in records:
        if not fields:
            continue
        phone = (fields[phone_at] if phone_at is not None and phone_at < len(fields) else "").strip()
        attributes, problem = row_attributes(typed, fields)
        if problem is not None:
            yield row, RefusedRow(phone, problem)
        else:
            yield row, {"phone": phone, "custom_attributes": attributes} if attributes else {"phone": phone}


def _columns(
    name: str, where: str, header: list[str], phone_column: str | None, attribute_columns: Iterable[str] | None
) -> list[tuple[str, int]]:
    """The attribute columns and their places; `ValueError` when a column is missing or ambiguous."""
    wanted = None if attribute_columns is None else list(attribute_columns)
    for column in [*([] if phone_column is None else [phone_column]), *(wanted or [])]:
        same = [repr(title) for title in header if title.strip().casefold() == column.strip().casefold()]
        if len(same) > 1:
            raise ValueError(
                f"{where} has {len(same)} columns named like {column!r} ({', '.join(same)}): "
                "which one is meant is ambiguous, so nothing was sent; rename or remove all but one"
            )
    if phone_column is not None and phone_column not in header:
        raise ValueError(f"{name}: no {phone_column!r} column (columns: {', '.join(header) or 'none'})")
    missing = [column for column in wanted or [] if column not in header]
    if missing:
        raise ValueError(f"{name}: no column {', '.join(map(repr, missing))}")
    if wanted is None:
        return [(title, at) for at, title in enumerate(header) if title != phone_column]
    return [(title, header.index(title)) for title in wanted]


@dataclass(frozen=True)
class CsvScan:
    """What one streaming pass over a CSV file found.

    Attributes:
        rows: The number of data rows (the header row and blank lines not counted).
        sha256: The SHA-256 of the file's bytes, in hex (what `campaign_key` is derived from).
        row_numbers: The file's row number of each data row.
    """

    rows: int
    sha256: str
    row_numbers: RowNumbers = field(default_factory=RowNumbers, compare=False)


def scan_csv(
    path: str | Path,
    encoding: str = "utf-8-sig",
    *,
    phone_column: str | None = None,
    attribute_columns: Iterable[str] | None = None,
    workspace_types: Mapping[str, str] | None = None,
) -> CsvScan:
    """Read a whole CSV file or fsspec URL strictly, count its rows and hash its bytes, in one streamed pass.

    Args:
        path: The CSV file: a path or any URL fsspec reads.
        encoding: The file's encoding (default: UTF-8, with or without a byte-order mark).
        phone_column: Also check the header has this column once (and `attribute_columns`).
        attribute_columns: The columns to send as custom attributes (default: all others).
        workspace_types: Also check the header's declared types against these (`read_requests_csv`).

    Returns:
        The number of data rows, the SHA-256 of the bytes read and the rows' numbers.

    Raises:
        ValueError: See `read_requests_csv`.
        OSError: The file cannot be opened or read.
    """
    digest = hashlib.sha256()
    numbers = RowNumbers()
    rows = 0
    with open_csv(path) as raw:
        text = io.TextIOWrapper(io.BufferedReader(_Hashing(raw, digest)), encoding=encoding, newline="")
        rows_read = numbered_requests(text, str(path), phone_column, attribute_columns, workspace_types)
        for rows, (row, _) in enumerate(rows_read, 1):
            numbers.add(rows - 1, row)
        while text.buffer.read(1 << 16):  # the bytes after the last row the csv module needed, if any
            pass
    return CsvScan(rows=rows, sha256=digest.hexdigest(), row_numbers=numbers)


def count_csv_rows(path: str | Path, encoding: str = "utf-8-sig") -> int:
    """The number of data rows of a CSV file or fsspec URL (streamed; for progress reporting)."""
    return scan_csv(path, encoding).rows


def open_csv(path: str | Path) -> IO[bytes]:
    """Open a local path or any fsspec URL for reading bytes, with one-sentence errors.

    Raises:
        OSError: It cannot be opened: the message says why (a filesystem package to install, the
            network's reason), not only the URL.
    """
    url = str(path)
    try:
        return fsspec.open(url, "rb").open()
    except ImportError as error:
        protocol = url.split("://", 1)[0]
        package = _PACKAGES.get(protocol)
        need = f"the {package} package (pip install {package})" if package else "a filesystem package"
        raise OSError(f"{protocol}:// URLs need {need}: {error}") from None
    except OSError as error:
        reason = _reason(error)
        if reason and reason not in str(error):
            raise OSError(f"{error}: {reason}") from None
        raise


_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def _reason(error: BaseException) -> str:
    """Why `error` happened: the first OS reason among its causes (a host's), else the last cause, or ''."""
    inner = list(causes(error))[1:]
    for cause in inner:
        if isinstance(cause, OSError) and cause.strerror:
            return str(cause.strerror)
    return (str(inner[-1]) or type(inner[-1]).__name__) if inner else ""


def _records(handle: IO[str]) -> Iterator[tuple[int, int, list[str]]]:
    """Every record of the stream, blank ones included: `(row, first line, fields)`, within bounds."""
    record: list[str] = []  # the lines of the record being read

    def lines() -> Iterator[str]:
        """The stream's lines for the csv module, each at most `LINE_LIMIT` characters, no NUL."""
        size = 0
        for number, line in enumerate(iter(lambda: handle.readline(LINE_LIMIT + 1), ""), 1):
            if len(line) > LINE_LIMIT:
                raise ValueError(f"line {number} is longer than {LINE_LIMIT // 1024} KiB: is it a CSV file?")
            if "\x00" in line:
                raise ValueError(f"line {number} holds a NUL byte: is it a text CSV file?")
            size = (size if record else 0) + len(line)
            if size > LINE_LIMIT:
                quote = _open_quote_line("".join(record), number - len(record))
                where = f"a quoted field opened on line {quote} is never closed" if quote else "a row is too long"
                raise ValueError(f"line {number}: {where} (over {LINE_LIMIT // 1024} KiB)")
            record.append(line)
            yield line

    reader = csv.reader(lines(), strict=True)
    first = 1  # the line the record being read starts on
    try:
        for row, fields in enumerate(reader, 1):
            if any(len(value) > FIELD_LIMIT for value in fields):
                raise _record_error("field larger than field limit", first, reader.line_num, record)
            yield row, first, fields
            record.clear()
            first = reader.line_num + 1
    except csv.Error as error:
        raise _record_error(str(error), first, reader.line_num, record) from None


def _record_error(reason: str, first: int, last: int, record: list[str]) -> ValueError:
    """One sentence for a record (lines `first` to `last`) the csv module (or a limit) refused, naming the line."""
    quote = _open_quote_line("".join(record), first)
    if reason.startswith(("field larger", "unexpected end")):
        if quote is not None:
            runs = "to the end of the file" if reason.startswith("unexpected") else f"past {FIELD_LIMIT // 1024} KiB"
            return ValueError(
                f"line {quote}: a quoted field starts there and is never closed (it runs {runs}); close its quote"
            )
        return ValueError(f"line {first}: a field is longer than {FIELD_LIMIT // 1024} KiB")
    return ValueError(f"line {last}: not valid CSV ({reason})")


def _open_quote_line(text: str, first: int) -> int | None:
    """The line where a quoted field of the record `text` (starting on line `first`) opens and never closes."""
    for quoted in _QUOTED_FIELD.finditer(text):
        if not quoted["close"]:
            return first + text.count("\n", 0, quoted.start())
    return None


class _Hashing(io.RawIOBase):
    """A readable binary stream that feeds every byte it reads to a hash."""

    def __init__(self, raw: IO[bytes], digest: Any) -> None:
        self._raw, self._digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._digest.update(data)
        return len(data)
