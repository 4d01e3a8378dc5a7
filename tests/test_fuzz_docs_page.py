"""Broken documentation pages into the parser and the schema generator.

A page either parses and generates valid JSON Schema, or raises `DocsPageError` naming the
line at fault (line numbers as an editor counts them); never any other exception.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from prefect_intercom.errors import DocsPageError
from prefect_intercom.schemagen import generate, generate_from_files, main, render
from prefect_intercom.schemagen.docs_page import SECTIONS, TABLE_HEADER, parse_docs_page, read_docs_page

from .bounded import bounded
from .conftest import PROJECT_ROOT

PAGE_LINES = (PROJECT_ROOT / "schemas" / "phone_call_redirects.txt").read_text(encoding="utf-8").split("\n")
TOKENS = [
    "String", "Object", "Array", "Integer", "Number", "Boolean", "Text", "Yes", "No", "Maybe",
    "phone", "custom_attributes", "a", "a.b", "a[]", "a[].b", "custom_attributes.x", "x.y.z", "[]", ".",
    "Possible values:", '  • "v"', '  • "v"', 'Default value: "d"', "E.164", "key-value pairs",
    TABLE_HEADER, *SECTIONS, "  1. step", "    • detail", "",
]  # fmt: skip
SEPARATORS = ["\n", "\r\n", "\r"]
ODD_CHARACTERS = ["\t", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\x00", "\ufeff", "\ud800"]

LINE = st.one_of(
    st.sampled_from(PAGE_LINES),
    st.sampled_from(TOKENS),
    st.lists(st.sampled_from(TOKENS), min_size=1, max_size=5).map(" ".join),
    st.text(max_size=30),
    st.tuples(st.sampled_from(PAGE_LINES), st.sampled_from(ODD_CHARACTERS), st.integers(0, 40)).map(
        lambda parts: parts[0][: parts[2]] + parts[1] + parts[0][parts[2] :]
    ),
)


@st.composite
def mutated_pages(draw: st.DrawFn) -> str:
    """The real page with a few lines deleted, inserted, replaced, duplicated or swapped."""
    lines = list(PAGE_LINES)
    for _ in range(draw(st.integers(1, 6))):
        operation = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "swap"]))
        index = draw(st.integers(0, len(lines)))
        if operation == "insert" or not lines:
            lines.insert(index, draw(LINE))
            continue
        index = min(index, len(lines) - 1)
        if operation == "delete":
            del lines[index]
        elif operation == "replace":
            lines[index] = draw(LINE)
        elif operation == "duplicate":
            lines.insert(index, lines[index])
        else:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
    return draw(st.sampled_from(SEPARATORS)).join(lines)


SEGMENT = st.sampled_from(["a", "b", "a[]", "b[]", "phone", "x-y", "_z", "9", ""])
ROW = st.tuples(
    st.lists(SEGMENT, min_size=1, max_size=4).map(".".join),
    st.sampled_from(["String", "Object", "Array", "Integer", "Number", "Boolean", "Float", "string"]),
    st.sampled_from(["Yes", "No", "yes"]),
    st.sampled_from(["", "key-value pairs", "Phone in E.164 format", "plain words"]),
).map(lambda parts: " ".join(part for part in parts if part))


@st.composite
def table_pages(draw: st.DrawFn) -> str:
    """Pages made of sections and field tables, header rows present or not."""
    lines = [draw(st.sampled_from(["POST /x", "GET /x/{id}", "FETCH /x", "POST x", ""])), "", "Words."]
    for section in draw(st.lists(st.sampled_from(SECTIONS), max_size=4)):
        lines += ["", section, ""]
        if draw(st.booleans()):
            lines.append(TABLE_HEADER)
        for _ in range(draw(st.integers(0, 8))):
            lines.append(draw(st.one_of(ROW, st.sampled_from(TOKENS), st.text(max_size=20))))
    return "\n".join(lines)


def _editor_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _parse_and_generate(text: str) -> None:
    try:
        page = parse_docs_page(text, source="page.txt")
        documents = generate(page, "page")
    except DocsPageError as error:
        lines = _editor_lines(text)
        assert 0 <= error.line <= len(lines), (error.line, len(lines))
        if any(line.strip() for line in lines):
            assert error.line >= 1, f"a page with text, but no line named: {error}"
            assert str(error).startswith(f"page.txt, line {error.line}: ")
        named = re.search(r"field '([^']+)'", error.reason)
        if named and "before its parent" not in error.reason:
            assert named[1] in lines[error.line - 1], (str(error), lines[error.line - 1])
        str(error).encode("utf-8", "backslashreplace")
        return
    for name, document in documents.items():
        render(document)
        if name.endswith(".schema.json"):
            Draft202012Validator.check_schema(document)


@bounded(400)
@given(text=mutated_pages())
def test_mutated_pages_parse_or_name_the_line(text: str) -> None:
    _parse_and_generate(text)


@bounded(400)
@given(text=table_pages())
@example(text="POST /x\n\nRequest body fields\n\n")
@example(text="POST /x\n\nA\u2028B\x0cC\n\nRequest body fields\n\nName Type Required Description\nphone Text Yes\n")
@example(text="POST /x\r\rRequest body fields\r\rName Type Required Description\ra.b String No\r")
def test_table_pages_parse_or_name_the_line(text: str) -> None:
    _parse_and_generate(text)


@bounded(200)
@given(text=st.text(max_size=300))
def test_any_text_parses_or_names_the_line(text: str) -> None:
    _parse_and_generate(text)


def test_a_line_separator_inside_a_line_does_not_shift_line_numbers() -> None:
    page = "POST /x\n\nA\u2028B\x0cC\x85D\n\nRequest body fields\n\nName Type Required Description\nphone Text Yes\n"
    try:
        parse_docs_page(page, source="page.txt")
    except DocsPageError as error:
        assert error.line == 8
    else:
        raise AssertionError("an unknown type parsed")


def test_a_section_without_its_table_header_names_the_section_line() -> None:
    try:
        parse_docs_page("POST /x\n\nwords\n\nRequest headers\n\n", source="page.txt")
    except DocsPageError as error:
        assert error.line == 5
        assert "no table header" in str(error)
    else:
        raise AssertionError("a table without its header parsed")


def _page_bytes(lines: list[str]) -> bytes:
    return "\n".join(lines).encode()


@bounded(100)
@given(raw=st.one_of(st.binary(max_size=200), st.lists(st.sampled_from(PAGE_LINES)).map(_page_bytes)))
@example(raw=b"POST /x\n\nCaf\xe9 words\n")
@example(raw="\ufeffPOST /x\n\nWords.\n".encode())
def test_page_files_of_any_bytes_parse_or_name_the_line(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("pages") / "page.txt"
    path.write_bytes(raw)
    try:
        documents = generate_from_files([path])
    except DocsPageError as error:
        assert error.source == "page.txt"
        assert 0 <= error.line <= raw.count(b"\n") + raw.count(b"\r") + 1
        assert main([str(path), "-o", str(path.parent / "out")]) == 2
        return
    assert main([str(path), "-o", str(path.parent / "out")]) == 0
    assert {file.name for file in (path.parent / "out").iterdir()} == set(documents)


def test_a_page_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"POST /x\n\nCaf\xe9 words\n")
    with pytest.raises(DocsPageError) as caught:
        read_docs_page(path)
    assert str(caught.value) == "latin1.txt, line 3: byte 0xe9 is not UTF-8; save the page as UTF-8"


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffPOST /x\n\nWords.\n".encode())
    assert read_docs_page(path).method == "POST"
