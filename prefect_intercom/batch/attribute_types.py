"""Typed custom attributes: a CSV column's type, declared (`vip:boolean`) or the workspace's, and strict parsing.

A cell is converted only when a type says so; what each type accepts and refuses: docs/csv-format.md.
A refused cell refuses its row (`RefusedRow`, reason `attribute_type`): nothing is sent for it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect_intercom.client import IntercomClient
from prefect_intercom.errors import IntercomError
from prefect_intercom.privacy import mask_phone_numbers
from prefect_intercom.redaction import cut
from prefect_intercom.violations import with_article

TYPES = ("string", "integer", "float", "boolean", "date")
"""The custom attribute types a column may declare (`name:type`), as Intercom names them."""
REASON = "attribute_type"
"""The reason code of a row refused because a cell does not parse as its column's type."""
DATA_ATTRIBUTES_PATH = "/data_attributes"
_WORKSPACE_ALIASES = {"datetime": "date"}  # what Intercom may call a date attribute
_DECLARATION = re.compile(r"^(?P<name>.*\S)\s*:\s*(?P<type>[A-Za-z_]+)\s*$")
_INTEGER = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")
_LEADING_ZERO = re.compile(r"^[+-]?0[0-9]+$")
_FLOAT = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_DATETIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})$"
)
_NAIVE_DATETIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")
_INT64 = 2**63
_SHOWN = 40  # characters of a refused value a message shows at most


class RefusedRow(dict[str, Any]):
    """A row its reader refused: the phone only, and a `refused` field no request schema allows.

    A batch records it `rejected` with `code` and `message`; any other path that validates it
    (`IntercomClient.prepare`) refuses it too, so it can never be sent by mistake.

    Args:
        phone: The row's phone, as read.
        message: Why the row is refused (one sentence).
        code: The reason code (`REASON`).
    """

    def __init__(self, phone: str, message: str, code: str = REASON) -> None:
        super().__init__(phone=phone, refused=message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class TypedColumn:
    """An attribute column and the type its cells are parsed as.

    Attributes:
        name: The custom attribute's name (the title before `:type`).
        at: The column's place in the row.
        type: One of `TYPES` but `string`, or `None` (sent as text, as it is).
        source: Where the type comes from: `declared in the header` or `the workspace's type`.
    """

    name: str
    at: int
    type: str | None = None
    source: str = ""


def split_title(title: str) -> tuple[str, str | None]:
    """A header title as `(attribute name, declared type or None)`: `vip:boolean` -> `("vip", "boolean")`.

    Only a final `:word` is a declaration; the word is returned lower-cased, checked by `typed_columns`.
    """
    found = _DECLARATION.match(title)
    return (found["name"], found["type"].lower()) if found else (title, None)


def attribute_names(header: Sequence[str], phone_column: str | None) -> list[str]:
    """The header with every title but the phone column's cut to its attribute name."""
    return [title if title == phone_column else split_title(title)[0] for title in header]


def typed_columns(
    where: str,
    header: Sequence[str],
    columns: Sequence[tuple[str, int]],
    workspace: Mapping[str, str] | None = None,
) -> list[TypedColumn]:
    """Each attribute column with its type: declared in the header, else the workspace's, else none.

    Args:
        where: The header's place, for messages (`callers.csv, line 1 (the header)`).
        header: The header's titles, as in the file.
        columns: `(attribute name, place)` of the attribute columns.
        workspace: The workspace's custom attribute types by name (`fetch_workspace_types`).

    Raises:
        ValueError: A column declares a type that is not one of `TYPES`, or one that contradicts
            the workspace's type for that attribute, or two columns name one attribute differently
            (`vip`, `vip:boolean`); one sentence, nothing is sent.
    """
    typed = []
    seen: dict[str, str] = {}
    for name, at in columns:
        declared = split_title(header[at])[1]
        if name in seen and seen[name] == header[at]:
            continue  # the same title again: its first column is sent, as it always was
        other = seen.setdefault(name, header[at])
        if other != header[at]:
            raise ValueError(
                f"{where}: columns {other!r} and {header[at]!r} both name the custom attribute {name!r}: "
                "which one is meant is ambiguous, so nothing was sent; keep one"
            )
        known = (workspace or {}).get(name)
        if declared is not None and declared not in TYPES:
            raise ValueError(
                f"{where}: column {header[at]!r} declares the type {declared!r}, which is not one of "
                f"{', '.join(TYPES)} (e.g. {name}:boolean); nothing was sent"
            )
        if declared is not None and known is not None and declared != known:
            raise ValueError(
                f"{where}: column {header[at]!r} declares {name!r} {with_article(declared)}, but the Intercom "
                f"workspace defines the custom attribute {name!r} as {with_article(known)}; declare {name}:{known} "
                "(or change the attribute in Intercom), nothing was sent"
            )
        type_, source = (declared, "declared in the header") if declared else (known, "the workspace's type")
        typed.append(TypedColumn(name, at, None if type_ == "string" else type_, source))
    return typed


def row_attributes(columns: Sequence[TypedColumn], fields: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    """A row's custom attributes, each converted as its column's type says; empty cells left out.

    Returns:
        `(attributes, None)`, or `({}, problem)` when a cell is not a value of its column's type:
        one sentence naming the first such column, its value, the type and what to write.
    """
    attributes: dict[str, Any] = {}
    for column in columns:
        text = fields[column.at] if column.at < len(fields) else ""
        if column.type is None:
            if text:
                attributes[column.name] = text  # sent as it is
            continue
        text = text.strip()
        if not text:
            continue
        try:
            attributes[column.name] = parse_value(text, column.type, column.name)
        except ValueError as error:
            shown = mask_phone_numbers(cut(text, _SHOWN))
            kind = with_article(column.type)
            return {}, f"column {column.name!r}: {shown!r} is not {kind} ({column.source}): {error}"
    return attributes, None


def parse_value(text: str, type_: str, name: str = "name") -> Any:
    """`text` (stripped, not empty) as a value of `type_`, strictly (the table in docs/csv-format.md).

    Args:
        text: The cell, without surrounding spaces.
        type_: One of `TYPES`.
        name: The column's attribute name, for the hint of a refusal.

    Raises:
        ValueError: It is not; the message says what was expected.
    """
    if type_ == "string":
        return text
    if type_ == "boolean":
        if text.casefold() not in ("true", "false"):
            raise ValueError("write true or false")
        return text.casefold() == "true"
    if type_ == "integer":
        if _LEADING_ZERO.match(text):
            raise ValueError(f"an integer would lose its leading zero; declare the column {name}:string to keep it")
        if not _INTEGER.match(text):
            raise ValueError("write whole digits only, e.g. 1001 (no decimal point, exponent or separators)")
        number = int(text)
        if not -_INT64 <= number < _INT64:
            raise ValueError("it is outside the 64-bit range")
        return number
    if type_ == "float":
        if not _FLOAT.match(text):
            raise ValueError("write a decimal number with a point, e.g. 3.5 or 1e3")
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("it is too large")
        return value
    if type_ != "date":
        raise ValueError(f"unknown type {type_!r}")
    try:  # an ISO 8601 date (midnight UTC) or a date and time with a zone, as UNIX seconds
        if _DATE.match(text):
            return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())
        if _DATETIME.match(text):
            return math.floor(datetime.fromisoformat(text).timestamp())
    except ValueError:
        raise ValueError("no such day or time") from None
    if _NAIVE_DATETIME.match(text):
        raise ValueError("a time needs its zone, e.g. 2026-12-03T14:30:00Z or 2026-12-03T14:30:00+01:00")
    raise ValueError("write an ISO 8601 date, e.g. 2026-12-03 or 2026-12-03T14:30:00Z")


def workspace_types(answer: Mapping[str, Any]) -> dict[str, str]:
    """The contact custom attributes' types from a `GET /data_attributes` answer (`{type: list, data: [...]}`).

    Standard (non-custom) attributes, archived ones, other models and types outside `TYPES`
    are left out: their columns are sent as text.
    """
    types: dict[str, str] = {}
    entries = answer.get("data")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping) or entry.get("custom") is not True or entry.get("archived") is True:
            continue
        if entry.get("model", "contact") != "contact":
            continue
        name, type_ = entry.get("name"), entry.get("data_type")
        type_ = _WORKSPACE_ALIASES.get(type_, type_) if isinstance(type_, str) else None
        if isinstance(name, str) and type_ in TYPES:
            types[name] = type_
    return types


def fetch_workspace_types(
    client: IntercomClient, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> dict[str, str] | None:
    """The workspace's contact custom attribute types: one `GET /data_attributes?model=contact`.

    Sent through the client's pipeline (its host, `Intercom-Version`, retry policy, error
    mapping and redaction).

    Args:
        client: The pipeline of the batch's credentials.
        logger: Where the one WARNING line goes when the answer cannot be had.

    Returns:
        The types by attribute name, or `None` when Intercom could not be asked or refused
        (e.g. 403: the token lacks the `read_users_companies` scope); then only the types
        declared in the CSV header apply.
    """
    try:
        response = client.send(client.prepare_get(DATA_ATTRIBUTES_PATH, {"model": "contact"}))
    except IntercomError as error:
        status = getattr(error, "status_code", None)
        if status == 401:  # the token itself is refused: no send would go through
            raise
        reason = cut(str(error).splitlines()[0] if str(error) else type(error).__name__, 200)
        scope = " (does the token have the read_users_companies scope?)" if status == 403 else ""
        logger.warning(
            "Could not read the workspace's custom attribute types with GET %s: %s%s; only the types the CSV "
            "header declares (name:type) are applied, other columns are sent as text",
            DATA_ATTRIBUTES_PATH,
            reason,
            scope,
        )
        return None
    return workspace_types(response.data)
