"""The schema generator: the committed schemas are exactly what the docs page generates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from prefect_intercom.errors import DocsPageError
from prefect_intercom.schema_rules import E164_PATTERN
from prefect_intercom.schemagen import (
    find_drift,
    generate,
    generate_from_files,
    main,
)
from prefect_intercom.schemagen.docs_page import parse_docs_page, read_docs_page

from .conftest import OPENAPI_DIR, PROJECT_ROOT

SCHEMAS = PROJECT_ROOT / "schemas"
PAGE = SCHEMAS / "phone_call_redirects.txt"
SHARED_PAGE = PROJECT_ROOT.parent / "shared" / "api-docs" / "phone_call_redirects.txt"
DESCRIPTIONS = ["phone_call_redirects.2.12.openapi.yaml", "phone_call_redirects.preview.openapi.yaml"]


def _body_schema() -> dict:
    return json.loads((SCHEMAS / "phone_call_redirects.request.schema.json").read_text())


def _headers_schema() -> dict:
    return json.loads((SCHEMAS / "phone_call_redirects.headers.schema.json").read_text())


def test_committed_schemas_match_what_the_docs_generate() -> None:
    assert find_drift(generate_from_files([SCHEMAS]), SCHEMAS) == []


def test_check_mode_reports_drift_and_writes_nothing(tmp_path: Path) -> None:
    assert main([str(PAGE), "-o", str(tmp_path)]) == 0
    target = tmp_path / "phone_call_redirects.request.schema.json"
    target.write_text(target.read_text().replace('"phone"', '"phone_number"'))
    before = target.read_text()
    assert main([str(PAGE), "-o", str(tmp_path), "--check"]) == 1
    assert target.read_text() == before
    assert main([str(PAGE), "-o", str(tmp_path)]) == 0
    assert main([str(PAGE), "-o", str(tmp_path), "--check"]) == 0


def test_runs_as_a_module(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prefect_intercom.schemagen", str(PAGE), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "phone_call_redirects.request.schema.json" in result.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "phone_call_redirects.endpoint.json",
        "phone_call_redirects.headers.schema.json",
        "phone_call_redirects.request.schema.json",
    ]


def test_project_copy_of_the_docs_page_is_the_shared_one() -> None:
    if not SHARED_PAGE.exists():
        pytest.fail(f"{SHARED_PAGE} is missing; the project copy cannot be compared")
    assert PAGE.read_text() == SHARED_PAGE.read_text()


def test_generated_schemas_are_valid_draft_2020_12() -> None:
    for schema in (_body_schema(), _headers_schema()):
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)


def test_headers_schema_lists_every_version_either_source_lists_with_the_pages_default() -> None:
    version = _headers_schema()["properties"]["Intercom-Version"]
    assert version["default"] == "2.12"
    assert version["enum"] == [
        "1.0", "1.1", "1.2", "1.3", "1.4", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6",
        "2.7", "2.8", "2.9", "2.10", "2.11", "2.12", "2.13", "2.14", "2.15", "2.16", "Unstable", "Preview",
    ]  # fmt: skip
    assert _headers_schema()["properties"]["Content-Type"]["default"] == "application/json"
    assert _headers_schema()["required"] == ["Content-Type"]


def test_versions_are_the_union_of_the_page_and_intercoms_openapi_descriptions() -> None:
    documented = set(_headers_schema()["properties"]["Intercom-Version"]["enum"])
    page = read_docs_page(PAGE)
    from_page = set(next(row.enum for row in page.headers if row.name == "Intercom-Version"))
    described = set()
    for name in DESCRIPTIONS:
        spec = yaml.safe_load((OPENAPI_DIR / name).read_text())
        described |= set(spec["components"]["schemas"]["intercom_version"]["enum"])
    assert documented == from_page | described
    assert {"2.13", "2.14", "2.16", "Preview"} <= described - from_page  # released after the page
    assert "Unstable" in from_page - described  # the page's older name for "Preview"


@pytest.mark.parametrize(
    "name", ["phone_call_redirects.2.12.openapi.yaml", "phone_call_redirects.preview.openapi.yaml"]
)
def test_project_copies_of_the_openapi_descriptions_are_the_shared_ones(name: str) -> None:
    assert (SCHEMAS / name).read_bytes() == (OPENAPI_DIR / name).read_bytes()
    shared = PROJECT_ROOT.parent / "shared" / "intercom-openapi" / name
    if shared.exists():
        assert (SCHEMAS / name).read_bytes() == shared.read_bytes()


def test_the_openapi_descriptions_are_inputs_of_the_generator(tmp_path: Path) -> None:
    (tmp_path / PAGE.name).write_text(PAGE.read_text())
    assert main([str(tmp_path), "-o", str(tmp_path)]) == 0
    page_only = json.loads((tmp_path / "phone_call_redirects.headers.schema.json").read_text())
    assert "2.14" not in page_only["properties"]["Intercom-Version"]["enum"]
    assert main([str(tmp_path), "-o", str(SCHEMAS), "--check"]) == 1  # the committed files need the descriptions
    (tmp_path / DESCRIPTIONS[1]).write_bytes((SCHEMAS / DESCRIPTIONS[1]).read_bytes())
    assert main([str(tmp_path), "-o", str(tmp_path)]) == 0
    with_preview = json.loads((tmp_path / "phone_call_redirects.headers.schema.json").read_text())
    assert with_preview == _headers_schema()  # the 2.12 description adds nothing the preview one lacks


def test_a_description_of_another_operation_is_refused_with_its_name(tmp_path: Path) -> None:
    (tmp_path / PAGE.name).write_text(PAGE.read_text())
    (tmp_path / "phone_call_redirects.x.openapi.yaml").write_text("openapi: 3.0.1\npaths: {/other: {post: {}}}\n")
    with pytest.raises(DocsPageError, match=r"phone_call_redirects.x.openapi.yaml: describes no operation POST"):
        generate_from_files([tmp_path])


def test_body_schema_interpretation() -> None:
    schema = _body_schema()
    assert schema["required"] == ["phone"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["phone"]["pattern"] == E164_PATTERN
    attributes = schema["properties"]["custom_attributes"]
    # Arbitrary keys; the dotted child row describes a value shape, not a key.
    assert "properties" not in attributes
    assert {"$ref": "#/$defs/custom_object_instance_list"} in attributes["additionalProperties"]["anyOf"]
    instance = schema["$defs"]["custom_object_instance_list"]["properties"]["instances"]["items"]
    assert set(instance["properties"]) == {"id", "external_id", "type", "custom_attributes"}


def test_endpoint_record_carries_the_reference() -> None:
    record = generate(read_docs_page(PAGE), "phone_call_redirects")["phone_call_redirects.endpoint.json"]
    assert record["method"] == "POST"
    assert record["path"] == "/phone_call_redirects"
    assert record["summary"] == "You can use the API to deflect phone calls to the Intercom Messenger."
    assert [step["text"] for step in record["steps"]] == [
        "Add HTTP Task to your workflow definition.",
        "Search for the API you want to integrate with and click on the name.",
        "Click Test request to test run your request to the API and see the API's response.",
    ]
    assert record["steps"][1]["details"] == [
        "This loads the API reference documentation and prepares the Http request settings."
    ]
    assert [row["name"] for row in record["body_fields"]][-1] == "phone"


GENERIC_PAGE = """\
PUT /widgets

Updates a widget.

Request headers

Name Type Required Description
X-Mode String No How to apply.

Possible values:

  • "merge"
  • "replace"

Default value: "merge"

Request body fields

Name Type Required Description
name String Yes The widget's name.
size Integer No
ratio Number No
enabled Boolean No
tags Array No
parts[] Array Yes
parts[].label String Yes
settings Object No
settings.depth Integer Yes
labels Object No Labels as key-value pairs.
"""


def test_the_parser_is_for_the_format_not_one_page() -> None:
    documents = generate(parse_docs_page(GENERIC_PAGE), "widgets")
    body = documents["widgets.request.schema.json"]
    properties = body["properties"]
    assert body["required"] == ["name", "parts"]
    assert properties["size"]["type"] == "integer"
    assert properties["ratio"]["type"] == "number"
    assert properties["enabled"]["type"] == "boolean"
    assert properties["tags"] == {"type": "array", "items": {}}
    assert properties["parts"]["items"]["required"] == ["label"]
    assert properties["settings"]["additionalProperties"] is False
    assert properties["settings"]["required"] == ["depth"]
    assert properties["labels"]["additionalProperties"] == {"type": ["string", "number", "boolean"]}
    header = documents["widgets.headers.schema.json"]["properties"]["X-Mode"]
    assert header["enum"] == ["merge", "replace"]
    assert header["default"] == "merge"
    validator = Draft202012Validator(body)
    assert validator.is_valid({"name": "w", "parts": [{"label": "a"}], "labels": {"x": 1}})
    assert not validator.is_valid({"name": "w", "parts": [{}]})
    assert not validator.is_valid({"name": "w", "parts": [], "settings": {"depth": 1, "dpeth": 2}})


@pytest.mark.parametrize(
    ("page", "line", "fragment"),
    [
        ("", 0, "empty"),
        ("FETCH /x\n", 1, "endpoint line"),
        ("POST /x\n\nRequest body fields\n\nphone String Yes\n", 5, "before the table header"),
        ("POST /x\n\nRequest body fields\n\nName Type Required Description\nphone Text Yes\n", 6, "unknown type"),
        (
            "POST /x\n\nRequest body fields\n\nName Type Required Description\na.b String No\n",
            6,
            "before its parent",
        ),
        (
            "POST /x\n\nRequest body fields\n\nName Type Required Description\na String No\na.b String No\n",
            7,
            "is String, not Object",
        ),
        (
            "POST /x\n\nRequest body fields\n\nName Type Required Description\na String No\na String No\n",
            7,
            "listed twice",
        ),
        ("POST /x\n\nRequest body fields\n\nsome words\n", 5, "expected the table header"),
        ("POST /x\n\nHow to start integrating\n\nnot a step\n", 5, "numbered step"),
    ],
)
def test_broken_pages_name_the_line(page: str, line: int, fragment: str) -> None:
    with pytest.raises(DocsPageError) as caught:
        parse_docs_page(page, source="page.txt")
    assert caught.value.line == line
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("page.txt")


def test_cli_reports_a_broken_page_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("POST /x\n\nRequest body fields\n\nName Type Required Description\nphone Text Yes\n")
    assert main([str(broken), "-o", str(tmp_path / "out")]) == 2
    assert "broken.txt, line 6" in capsys.readouterr().err
