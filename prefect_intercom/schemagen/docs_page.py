"""Parser for API reference pages in the integration catalogue's text format (docs/schema.md).

This module only reads a page into plain records (`DocsPage`, `FieldRow`); `generator` turns
them into JSON Schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from pathlib import Path

from prefect_intercom.errors import DocsPageError

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
FIELD_TYPES = ("String", "Object", "Array", "Integer", "Number", "Boolean")
TABLE_HEADER = "Name Type Required Description"

SECTION_SERVERS = "Servers"
SECTION_HEADERS = "Request headers"
SECTION_BODY = "Request body fields"
SECTION_STEPS = "How to start integrating"
TABLE_SECTIONS = (SECTION_HEADERS, SECTION_BODY, "Query parameters", "Path parameters")
SECTIONS = (SECTION_SERVERS, *TABLE_SECTIONS, SECTION_STEPS)

_ENDPOINT_LINE = re.compile(r"^(?P<method>[A-Z]+) (?P<path>/\S*)$")
_ROW = re.compile(r"^(?P<name>\S+) (?P<type>[A-Za-z]+) (?P<required>Yes|No)(?: (?P<rest>.*))?$")
_FIELD_NAME = re.compile(r"^[A-Za-z_][\w-]*(?:\[\])?(?:\.[A-Za-z_][\w-]*(?:\[\])?)*$")
_BULLET_VALUE = re.compile(r'^\s*[•*-]\s*"(?P<value>[^"]*)"\s*$')
_DEFAULT_VALUE = re.compile(r'^Default value: "(?P<value>[^"]*)"\s*$')
_STEP = re.compile(r"^\s*(?P<number>\d+)\.\s+(?P<text>.+)$")
_SUB_STEP = re.compile(r"^\s*[•*-]\s+(?P<text>.+)$")


@dataclass
class FieldRow:
    """One row of a field table.

    Attributes:
        name: Dotted path as written on the page, e.g. `a.b[].c`.
        type: One of `FIELD_TYPES`.
        required: Whether the page marks the field required.
        description: The description text, paragraphs joined by blank lines.
        enum: Values listed under "Possible values", in page order.
        default: The "Default value", if any.
        line: Line number of the row on the page.
    """

    name: str
    type: str
    required: bool
    description: str = ""
    enum: list[str] = field(default_factory=list)
    default: str | None = None
    line: int = 0


@dataclass
class DocsPage:
    """Everything a documentation page says about one endpoint.

    Attributes:
        method: HTTP method, e.g. `POST`.
        path: URL path, e.g. `/phone_call_redirects`.
        description: The free text below the endpoint line.
        servers: Server URLs listed under "Servers" (often empty).
        tables: Field rows per table section (`Request headers`, `Request body fields`, ...).
        steps: The numbered "How to start integrating" steps, each with its sub-points.
    """

    method: str
    path: str
    description: str
    servers: list[str] = field(default_factory=list)
    tables: dict[str, list[FieldRow]] = field(default_factory=dict)
    steps: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def headers(self) -> list[FieldRow]:
        """Rows of the request header table."""
        return self.tables.get(SECTION_HEADERS, [])

    @property
    def body_fields(self) -> list[FieldRow]:
        """Rows of the request body table."""
        return self.tables.get(SECTION_BODY, [])


def parse_docs_page(text: str, source: str = "<page>") -> DocsPage:
    """Parse a documentation page.

    Args:
        text: The page's text.
        source: A name for the page used in error messages (usually its file name).

    Returns:
        The parsed page.

    Raises:
        DocsPageError: The page breaks the format; the message names the line.

    Example:
        ```python
        page = parse_docs_page(Path("schemas/phone_call_redirects.txt").read_text())
        assert page.method == "POST"
        ```
    """
    broken = partial(DocsPageError, source=source)  # broken(line, reason)
    lines = _split_lines(text)
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise broken(0, "the page is empty; expected an endpoint line such as 'POST /path'")
    match = _ENDPOINT_LINE.match(lines[first].strip())
    if not match or match["method"] not in HTTP_METHODS:
        raise broken(first + 1, f"expected an endpoint line such as 'POST /path', found {lines[first].strip()!r}")
    page = DocsPage(method=match["method"], path=match["path"], description="")
    section: str | None = None
    description: list[str] = []
    no_header_yet: dict[str, int] = {}  # the table sections whose header is still to come, and their heading's line
    current: FieldRow | None = None
    row_text: list[str] = []  # the description lines of the current row
    row_texts: list[tuple[FieldRow, list[str]]] = []
    in_possible_values = False
    for number, raw in enumerate(lines[first + 1 :], start=first + 2):
        stripped = raw.strip()
        if stripped in SECTIONS:
            current, row_text, in_possible_values = None, [], False
            if stripped in page.tables or (stripped == SECTION_STEPS and page.steps):
                raise broken(number, f"section {stripped!r} appears twice")
            section = stripped
            if section in TABLE_SECTIONS:
                page.tables[section] = []
                no_header_yet[section] = number
        elif section is None:
            description.append(stripped)
        elif section == SECTION_SERVERS:
            if stripped:
                page.servers.append(stripped)
        elif section == SECTION_STEPS:  # a numbered step, a sub-point of the last step, or more of its text
            if step := _STEP.match(raw):
                page.steps.append((step["text"].strip(), []))
            elif stripped and not page.steps:
                raise broken(number, f"expected a numbered step such as '1. ...', found {stripped!r}")
            elif sub := _SUB_STEP.match(raw):
                page.steps[-1][1].append(sub["text"].strip())
            elif stripped:
                page.steps[-1] = (f"{page.steps[-1][0]} {stripped}", page.steps[-1][1])
        # Below: a table section.
        elif not stripped:
            row_text.append("")
        elif stripped == TABLE_HEADER:
            if no_header_yet.pop(section, None) is None:
                raise broken(number, f"a second table header in {section!r}")
        elif (row := _ROW.match(stripped)) and _FIELD_NAME.match(row["name"]):
            if section in no_header_yet:
                raise broken(number, f"a field row before the table header {TABLE_HEADER!r} in {section!r}")
            if row["type"] not in FIELD_TYPES:
                types = ", ".join(FIELD_TYPES)
                raise broken(number, f"field {row['name']!r} has unknown type {row['type']!r}; expected one of {types}")
            current = FieldRow(name=row["name"], type=row["type"], required=row["required"] == "Yes", line=number)
            row_text = [row["rest"].strip()] if row["rest"] else []
            in_possible_values = False
            row_texts.append((current, row_text))
            _check_new_row(page.tables[section], current, source)
            page.tables[section].append(current)
        elif current is None:
            if section in no_header_yet:
                raise broken(number, f"expected the table header {TABLE_HEADER!r} in {section!r}, found {stripped!r}")
            expected = f"a field row 'name Type Yes|No [description]' in {section!r}"
            raise broken(number, f"expected {expected}, found {stripped!r}")
        elif stripped == "Possible values:":
            in_possible_values = True
        elif default := _DEFAULT_VALUE.match(stripped):
            current.default = default["value"]
            in_possible_values = False
        elif in_possible_values and (bullet := _BULLET_VALUE.match(raw)):
            if bullet["value"] in current.enum:
                raise broken(number, f"value {bullet['value']!r} is listed twice")
            current.enum.append(bullet["value"])
        else:
            in_possible_values = False
            row_text.append(stripped)
    for field_row, text in row_texts:
        field_row.description = _join_paragraphs(text)
    page.description = _join_paragraphs(description)
    for name, line in no_header_yet.items():
        raise broken(line, f"section {name!r} has no table header {TABLE_HEADER!r}")
    return page


def read_docs_page(path: Path) -> DocsPage:
    """Read and parse the documentation page at `path` (errors name the file and line)."""
    raw = path.read_bytes()
    try:  # a byte order mark, as some editors write, is fine
        return parse_docs_page(raw.decode("utf-8-sig"), source=path.name)
    except UnicodeDecodeError as error:
        line = len(_split_lines(raw[: error.start].decode("utf-8", errors="replace")))
        raise DocsPageError(
            line, f"byte {raw[error.start]:#04x} is not UTF-8; save the page as UTF-8", path.name
        ) from None


def _split_lines(text: str) -> list[str]:
    """The page's lines numbered as an editor numbers them: only LF, CRLF and CR end a line.

    (`str.splitlines` also breaks at form feeds, U+2028 and other separators that a page
    copied from the web may carry inside a line, which would shift every line number after.)
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _join_paragraphs(lines: list[str]) -> str:
    """Stripped lines as paragraphs: the lines of a paragraph joined by spaces, paragraphs by a blank line."""
    return "\n\n".join(" ".join(group) for text, group in groupby(lines, key=bool) if text)


def _check_new_row(rows: list[FieldRow], row: FieldRow, source: str) -> None:
    """Refuse a row listed twice, or nested under a row that is missing, later or not an object or array."""
    broken = partial(DocsPageError, row.line, source=source)  # broken(reason)
    by_name = {existing.name: existing for existing in rows}
    if row.name in by_name:
        raise broken(f"field {row.name!r} is listed twice")
    if "." not in row.name:
        return
    parent = row.name.rsplit(".", 1)[0]  # `a.b[].c` -> `a.b[]`, `a.b[]` -> `a`
    if parent not in by_name and parent.endswith("[]") and parent[:-2] in by_name:
        parent = parent[:-2]  # the array row may be written without its "[]"
    if parent not in by_name:
        raise broken(f"field {row.name!r} comes before its parent {parent!r}")
    expected = "Array" if row.name.startswith(parent + "[]") or parent.endswith("[]") else "Object"
    if by_name[parent].type != expected:
        raise broken(f"field {row.name!r} is nested under {parent!r}, which is {by_name[parent].type}, not {expected}")
