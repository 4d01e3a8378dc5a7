"""The generator: documentation pages (and Intercom's OpenAPI descriptions) in, schema files out.

The rules it applies to a page's words are stated once, in docs/schema.md. Beside each page
`NAME.txt` sit copies of Intercom's OpenAPI descriptions of the same endpoint
(`NAME.VERSION.openapi.yaml`): every header value either source lists is accepted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from functools import reduce
from pathlib import Path
from typing import Any

from prefect_intercom.errors import DocsPageError
from prefect_intercom.schema_rules import E164_FORMAT, E164_PATTERN, FORMAT_ANNOTATION
from prefect_intercom.schemagen.docs_page import SECTION_HEADERS, DocsPage, FieldRow, read_docs_page

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_BASE = "urn:prefect-intercom:schemas:"
NO_LINE_BREAKS = {"not": {"pattern": "[\\r\\n]"}}
PLAIN_ATTRIBUTE_VALUE = {"type": ["string", "number", "boolean"]}

_MAP_PHRASE = re.compile(r"key-value pairs", re.IGNORECASE)
_E164_PHRASE = re.compile(r"\bE\.164\b")
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")
OPENAPI_SUFFIX = ".openapi.yaml"


def output_file(name: str, kind: str) -> str:
    """File name of endpoint `name`'s `kind` of document: `request.schema`, `headers.schema` or `endpoint`."""
    return f"{name}.{kind}.json"


def generate(page: DocsPage, name: str) -> dict[str, dict[str, Any]]:
    """Build every generated document for one page.

    Args:
        page: The parsed documentation page.
        name: The endpoint's name, e.g. `phone_call_redirects` (the page's file stem).

    Returns:
        A mapping of output file name to JSON document.
    """
    return {
        output_file(name, "request.schema"): body_schema(page, name),
        output_file(name, "headers.schema"): headers_schema(page, name),
        output_file(name, "endpoint"): endpoint_record(page, name),
    }


def body_schema(page: DocsPage, name: str) -> dict[str, Any]:
    """JSON Schema of the request body described by the page's body table."""
    defs: dict[str, Any] = {}
    tree: dict[str | None, list[FieldRow]] = {}  # rows by their parent's path (`None`: the top); `a[]` parents `a[].b`
    for row in page.body_fields:
        tree.setdefault(row.name.rsplit(".", 1)[0] if "." in row.name else None, []).append(row)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_ID_BASE}{output_file(name, 'request.schema')}",
        "title": f"{page.method} {page.path} request body",
        "description": page.description,
        **_closed_object(tree, None, defs),  # evaluated first: it fills `defs`
        **({"$defs": defs} if defs else {}),
    }


def headers_schema(page: DocsPage, name: str) -> dict[str, Any]:
    """JSON Schema of the request headers described by the page's header table."""
    properties: dict[str, Any] = {}
    for row in page.headers:
        if "." in row.name or row.type != "String":
            raise DocsPageError(row.line, f"header {row.name!r} must be a plain String row", f"{name}.txt")
        properties[row.name] = {**_scalar(row), **NO_LINE_BREAKS}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_ID_BASE}{output_file(name, 'headers.schema')}",
        "title": f"{page.method} {page.path} request headers",
        "type": "object",
        "properties": properties,
        "required": [row.name for row in page.headers if row.required],
    }


def endpoint_record(page: DocsPage, name: str) -> dict[str, Any]:
    """The catalogue record: everything the catalogue needs besides the two schemas."""
    return {
        "name": name,
        "method": page.method,
        "path": page.path,
        "summary": _first_sentence(page.description),
        "description": page.description,
        "servers": page.servers,
        "request_schema": output_file(name, "request.schema"),
        "headers_schema": output_file(name, "headers.schema"),
        "headers": [_row_record(row) for row in page.headers],
        "body_fields": [_row_record(row) for row in page.body_fields],
        "steps": [{"text": text, "details": details} for text, details in page.steps],
    }


def write_outputs(documents: dict[str, dict[str, Any]], output_dir: Path) -> list[Path]:
    """Write generated documents as stable, indented JSON; returns the paths written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for file_name, document in documents.items():
        (output_dir / file_name).write_text(render(document), encoding="utf-8")
    return [output_dir / file_name for file_name in documents]


def render(document: dict[str, Any]) -> str:
    """The exact text a generated document is stored as."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generate_from_files(inputs: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Parse each page (a `.txt` file, or every `.txt` in a directory) and generate its files.

    The OpenAPI descriptions next to each page (`NAME.*.openapi.yaml`) add the header values they list.
    """
    pages = [page for path in inputs for page in (sorted(path.glob("*.txt")) if path.is_dir() else [path])]
    if not pages:
        raise DocsPageError(0, "no documentation pages (*.txt) found", ", ".join(map(str, inputs)))
    documents: dict[str, dict[str, Any]] = {}
    for page_path in pages:
        page = with_described_values(read_docs_page(page_path), descriptions_for(page_path))
        documents.update(generate(page, page_path.stem))
    return documents


def with_described_values(page: DocsPage, descriptions: Sequence[Path]) -> DocsPage:
    """The page with each header's allowed values widened by those the OpenAPI descriptions list.

    Args:
        page: The parsed documentation page.
        descriptions: OpenAPI descriptions of the same operation (e.g. one per API version).

    Returns:
        A copy of the page whose header rows with "Possible values" also list every value a
        description gives for that header, version numbers sorted; the page's default stays.
    """
    described: dict[str, list[str]] = {}
    for path in descriptions:
        for header, values in header_values(path, page.method, page.path).items():
            described.setdefault(header.lower(), []).extend(values)
    rows = []
    for row in page.headers:
        extra = described.get(row.name.lower(), [])
        if row.enum and extra:
            row = replace(row, enum=_version_order(list(dict.fromkeys([*row.enum, *extra]))))
        rows.append(row)
    return replace(page, tables={**page.tables, SECTION_HEADERS: rows})


def _version_order(values: list[str]) -> list[str]:
    """Version numbers (`1.0`, `2.16`) in numeric order, then every other value in its first-seen order."""
    return sorted(values, key=lambda v: (0, *map(int, v.split("."))) if _VERSION.fullmatch(v) else (1,))


def find_drift(documents: dict[str, dict[str, Any]], output_dir: Path) -> list[str]:
    """Names of generated files whose committed copy in `output_dir` is missing or differs."""
    return [
        name
        for name, document in documents.items()
        if not (output_dir / name).exists() or (output_dir / name).read_text(encoding="utf-8") != render(document)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m prefect_intercom.schemagen",
        description="Generate JSON Schema and catalogue records from API documentation pages.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="documentation pages (.txt) or directories of them")
    parser.add_argument("-o", "--output", type=Path, required=True, help="directory to write the files into")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files differ")
    args = parser.parse_args(argv)
    try:
        documents = generate_from_files(args.inputs)
    except (DocsPageError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        drifted = find_drift(documents, args.output)
        for file_name in drifted:
            print(f"drift: {args.output / file_name} differs from what the docs generate", file=sys.stderr)
        return 1 if drifted else 0
    for path in write_outputs(documents, args.output):
        print(f"wrote {path}")
    return 0


def _node(row: FieldRow, tree: dict[str | None, list[FieldRow]], defs: dict[str, Any]) -> dict[str, Any]:
    if row.type == "Array":
        item_path = row.name if row.name.endswith("[]") else f"{row.name}[]"
        items = _closed_object(tree, item_path, defs) if item_path in tree else {}
        return _described({"type": "array", "items": items}, row)
    if row.type != "Object":
        return _scalar(row)
    children = tree.get(row.name, [])
    if _MAP_PHRASE.search(row.description):
        shapes = [{"$ref": f"#/$defs/{_last_segment(child.name)}"} for child in children]
        for child in children:
            defs[_last_segment(child.name)] = _node(child, tree, defs)
        values = {"anyOf": [PLAIN_ATTRIBUTE_VALUE, *shapes]} if shapes else PLAIN_ATTRIBUTE_VALUE
        return _described({"type": "object", "additionalProperties": values}, row)
    return _described(_closed_object(tree, row.name, defs) if children else {"type": "object"}, row)


def _closed_object(tree: dict[str | None, list[FieldRow]], parent: str | None, defs: dict[str, Any]) -> dict[str, Any]:
    rows = tree.get(parent, [])
    return {
        "type": "object",
        "properties": {_last_segment(row.name): _node(row, tree, defs) for row in rows},
        "required": [_last_segment(row.name) for row in rows if row.required],
        "additionalProperties": False,
    }


def _scalar(row: FieldRow) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": row.type.lower()}  # the page's types, as JSON Schema names them
    if row.type == "String" and _E164_PHRASE.search(row.description):
        schema.update({"pattern": E164_PATTERN, FORMAT_ANNOTATION: E164_FORMAT})
    if row.enum:
        schema["enum"] = row.enum
    if row.default is not None:
        schema["default"] = row.default
    return _described(schema, row)


def _described(schema: dict[str, Any], row: FieldRow) -> dict[str, Any]:
    return {**schema, "description": row.description} if row.description else schema


def _last_segment(name: str) -> str:
    return name.rsplit(".", 1)[-1].removesuffix("[]")


def _first_sentence(text: str) -> str:
    first_paragraph = text.split("\n\n", 1)[0]
    match = re.match(r"(.+?[.!?])(\s|$)", first_paragraph)
    return match.group(1) if match else first_paragraph


def _row_record(row: FieldRow) -> dict[str, Any]:
    """The row's fields but its line number; `enum` and `default` only when the page gives them."""
    return {key: value for key, value in asdict(row).items() if key != "line" and value not in ([], None)}


def descriptions_for(page_path: Path) -> list[Path]:
    """The OpenAPI descriptions next to a documentation page (`NAME.*.openapi.yaml`), sorted by name."""
    return sorted(page_path.parent.glob(f"{page_path.stem}.*{OPENAPI_SUFFIX}"))


def header_values(path: Path, method: str, api_path: str) -> dict[str, list[str]]:
    """The allowed values of each header parameter of one operation, in the description's order.

    Args:
        path: An OpenAPI 3 description (YAML or JSON).
        method: The operation's HTTP method, e.g. `POST`.
        api_path: The operation's path, e.g. `/phone_call_redirects`.

    Returns:
        Header name -> its `enum` (headers without an enum are left out).

    Raises:
        DocsPageError: The file is not a description of that operation, or a `$ref` is broken.
    """
    import yaml  # a dependency of Prefect's; imported here, only the generator needs it

    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise DocsPageError(0, f"not valid YAML ({error.__class__.__name__})", path.name) from None
    operation = _get(spec, ["paths", api_path, method.lower()])
    if not isinstance(operation, dict):
        raise DocsPageError(0, f"describes no operation {method.upper()} {api_path}", path.name)
    values: dict[str, list[str]] = {}
    for parameter in operation.get("parameters", []):
        parameter = _resolve(spec, parameter, path)
        if isinstance(parameter, dict) and parameter.get("in") == "header":
            enum = _get(_resolve(spec, parameter.get("schema", {}), path), ["enum"])
            if isinstance(enum, list):
                values[str(parameter["name"])] = [str(value) for value in enum]
    return values


def _resolve(spec: Any, node: Any, path: Path) -> Any:
    """`node`, following a local `$ref` (`#/components/...`) chain."""
    seen: set[str] = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            raise DocsPageError(0, f"cannot follow $ref {ref!r}", path.name)
        seen.add(ref)
        node = _get(spec, [part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/")])
        if node is None:
            raise DocsPageError(0, f"$ref {ref!r} points nowhere", path.name)
    return node


def _get(node: Any, keys: list[str]) -> Any:
    """`node[keys[0]][keys[1]]...`, or `None` where a key is missing or a value is not a mapping."""
    return reduce(lambda value, key: value.get(key) if isinstance(value, dict) else None, keys, node)
