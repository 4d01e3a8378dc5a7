"""Schema agreement: the project's docs-generated schema against Intercom's own description.

Bodies come from three generators nobody here wrote (schemathesis' strategies, built on
hypothesis): valid and invalid ones from the official `create_phone_switch_request`, and valid
ones from the project's generated schema. Intercom's verdict is `jsonschema` on the official
schema as published (`description.json_schema`); the project's is `request_issues`.

Every disagreement must be one of the deliberate, documented differences below; anything else
fails the test (and would be a bug in `schemagen` or `validation`).

Stricter than the description (it accepts, the project refuses):

- `phone` must be E.164 (`+`, 7 to 15 digits); the description takes any string.
- and possible in its country's numbering plan (`phonenumbers.is_possible_number`).
- unknown top-level fields are refused (the body is closed).
- the documented objects (a custom object instance list and its instances) are closed to the
  fields the docs page lists; the description leaves them open and lists four read-only
  timestamps more (`external_created_at`, ...).
- a `null` body and a `null` instance are refused; the description marks both `nullable`.
- integers beyond 64 bits, text with a lone surrogate and nesting deeper than 64 levels are
  refused anywhere (`validation`): JSON can spell them, no JSON API takes them.

Looser than the description (it refuses, the project accepts):

- boolean and non-integer custom attribute values: the description's schema omits them, its
  own example carries them, and Intercom's data attributes support them.
- the values inside an instance's own `custom_attributes`: the docs page lists no fields and no
  value type for that object, so it is open; the description says string values.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import schemathesis
from hypothesis import given
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint
from prefect_intercom.errors import ValidationIssue
from prefect_intercom.validation import request_issues

from ..bounded import bounded
from ..conftest import PROJECT_ROOT
from .description import PATH, json_schema, official

README = PROJECT_ROOT / "docs" / "schema.md"  # where the README sends readers for what is proven
_OFFICIAL = Draft202012Validator(json_schema(official(), "create_phone_switch_request"))
_ATTRIBUTE = r"/custom_attributes/[^/]*"
_INSTANCE = _ATTRIBUTE + r"/instances/\d+"


def _unknown_field(pattern: str) -> Callable[[ValidationIssue, Any], bool]:
    return lambda issue, _body: bool(re.fullmatch(pattern, issue.path)) and issue.message.startswith("unknown field")


# Deliberate tightenings: (name, (file, phrase that documents it), does this issue fall under it?)
TIGHTENINGS: list[tuple[str, tuple[str, str], Callable[[ValidationIssue, Any], bool]]] = [
    (
        "E.164 phone",
        ("schemagen", "must be an E.164 phone number"),
        lambda issue, _body: issue.path == "/phone" and "E.164" in issue.message,
    ),
    (
        "numbering plans",
        ("schemagen", "an E.164 number is possible in its country's numbering plan"),
        lambda issue, _body: (
            issue.path == "/phone" and ("cannot exist" in issue.message or "keeps a national prefix" in issue.message)
        ),
    ),
    ("closed body", ("schemagen", "The body itself is always closed"), _unknown_field(r"/[^/]*")),
    (
        "closed documented objects",
        ("schemagen", "Every other object whose fields the page lists is closed"),
        _unknown_field(rf"{_ATTRIBUTE}(/instances/\d+)?/[^/]*"),
    ),
    ("null body", ("README", "a `null` body"), lambda issue, body: issue.path == "" and body is None),
    (
        "JSON any API takes",
        ("README", "integers beyond 64 bits"),
        lambda issue, _body: (
            "outside the 64-bit range" in issue.message
            or "not valid Unicode" in issue.message
            or issue.message.startswith("nested deeper than")
        ),
    ),
    (
        "null instance",
        ("README", "a `null` instance"),
        lambda issue, _body: bool(re.fullmatch(_INSTANCE, issue.path)) and issue.message.endswith("got null"),
    ),
]
# Deliberate loosenings, documented where the interpretation is stated.
LOOSENINGS = [
    ("boolean and float attribute values", ("rules", "plain attribute values (string, number, boolean)")),
    ("open instance custom_attributes", ("rules", "An object the page lists no fields for is open")),
]


def _documented(where: tuple[str, str]) -> bool:
    source, phrase = where
    text = README.read_text(encoding="utf-8")
    if source == "rules":  # the section of docs/schema.md that states how the page's words become rules
        text = text[text.index("## How the page's words become rules") : text.index("For this page, that means:")]
    return phrase in " ".join(text.split())


def test_every_deliberate_difference_is_documented() -> None:
    for name, where, _rule in TIGHTENINGS:
        assert _documented(where), f"{name}: {where[1]!r} is not in {where[0]}"
    for name, where in LOOSENINGS:
        assert _documented(where), f"{name}: {where[1]!r} is not in {where[0]}"


def _unexplained_refusals(body: Any) -> list[ValidationIssue]:
    """The project's objections to `body` that no deliberate tightening explains."""
    return [
        issue
        for issue in request_issues(PHONE_CALL_REDIRECTS, body)
        if not any(rule(issue, body) for _name, _where, rule in TIGHTENINGS)
    ]


def _within_the_description(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with the values only the project's loosenings allow replaced by described ones."""
    body = copy.deepcopy(body)
    attributes = body.get("custom_attributes")
    for key, value in (attributes or {}).items():
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            attributes[key] = "described"
        elif isinstance(value, dict):
            for instance in value.get("instances") or []:
                if isinstance(instance, dict) and isinstance(instance.get("custom_attributes"), dict):
                    instance["custom_attributes"] = dict.fromkeys(instance["custom_attributes"], "described")
    return body


def _is_json_body(body: Any) -> bool:
    return not isinstance(body, (bytes, bytearray)) and type(body).__name__ != "NotSet"


@cache
def _operation(source: str) -> schemathesis.APIOperation:
    description = official() if source == "official" else _project_as_openapi()
    return schemathesis.openapi.from_dict(description)[PATH]["POST"]


def _project_as_openapi() -> dict[str, Any]:
    """The project's generated body schema inside a minimal OpenAPI 3.1 document."""
    body = copy.deepcopy(get_endpoint(PHONE_CALL_REDIRECTS).request_schema)
    for keyword in ("$schema", "$id"):
        body.pop(keyword)
    defs = body.pop("$defs", {})
    text = json.dumps({"body": body, "defs": defs}).replace("#/$defs/", "#/components/schemas/")
    parts = json.loads(text)
    return {
        "openapi": "3.1.0",
        "info": {"title": "prefect-intercom generated schema", "version": "1"},
        "paths": {
            PATH: {
                "post": {
                    "requestBody": {"required": True, "content": {"application/json": {"schema": parts["body"]}}},
                    "responses": {"200": {"description": "sent"}},
                }
            }
        },
        "components": {"schemas": parts["defs"]},
    }


@bounded(150, derandomize=True)
@given(case=_operation("official").as_strategy(GenerationMode.POSITIVE))
def test_bodies_intercom_accepts_are_refused_only_by_deliberate_tightenings(case: schemathesis.Case) -> None:
    if not _is_json_body(case.body):
        return
    assert _OFFICIAL.is_valid(case.body), "schemathesis generated a body its description refuses"
    unexplained = _unexplained_refusals(case.body)
    assert not unexplained, f"{case.body!r}: {[str(issue) for issue in unexplained]}"


@bounded(150, derandomize=True)
@given(case=_operation("official").as_strategy(GenerationMode.NEGATIVE))
def test_bodies_intercom_refuses_are_accepted_only_by_deliberate_loosenings(case: schemathesis.Case) -> None:
    body = case.body
    if not _is_json_body(body) or _OFFICIAL.is_valid(body) or request_issues(PHONE_CALL_REDIRECTS, body):
        return
    assert _OFFICIAL.is_valid(_within_the_description(body)), body


@bounded(100, derandomize=True)
@given(case=_operation("project").as_strategy(GenerationMode.POSITIVE))
def test_bodies_the_project_accepts_are_within_the_description_but_for_its_loosenings(
    case: schemathesis.Case,
) -> None:
    # Two checks run outside the schema the cases are generated from: the numbering plans (the
    # schema checks the E.164 shape only; random numbers no country uses are refused after it)
    # and JSON any API takes (integers beyond 64 bits, lone surrogates, deep nesting).
    rules = dict((name, rule) for name, _where, rule in TIGHTENINGS)
    beyond_the_schema = (rules["numbering plans"], rules["JSON any API takes"])
    issues = [
        issue
        for issue in request_issues(PHONE_CALL_REDIRECTS, case.body)
        if not any(rule(issue, case.body) for rule in beyond_the_schema)
    ]
    assert issues == [], "the generator broke the project's schema"
    assert _OFFICIAL.is_valid(_within_the_description(case.body)), case.body


def test_the_description_examples() -> None:
    request = official()["paths"][PATH]["post"]["requestBody"]["content"]["application/json"]
    for example in request["examples"].values():
        assert _OFFICIAL.is_valid(example["value"])
        assert request_issues(PHONE_CALL_REDIRECTS, example["value"]) == []
    # The schema's own phone example is not E.164: the project refuses it, with the fix.
    phone_example = official()["components"]["schemas"]["create_phone_switch_request"]["properties"]["phone"]
    (issue,) = request_issues(PHONE_CALL_REDIRECTS, {"phone": phone_example["example"]})
    assert issue.path == "/phone" and issue.hint == "remove spaces: +1123•••7890"
    # The custom_attributes example holds a boolean and a float: the description refuses its own example.
    attributes = official()["components"]["schemas"]["custom_attributes"]["example"]
    body = {"phone": "+14155550100", "custom_attributes": attributes}
    assert not _OFFICIAL.is_valid(body)
    assert request_issues(PHONE_CALL_REDIRECTS, body) == []


def test_every_intercom_version_either_description_lists_is_accepted() -> None:
    accepted = set(get_endpoint(PHONE_CALL_REDIRECTS).header_enum("Intercom-Version"))
    version_schema = official()["components"]["schemas"]["intercom_version"]
    preview = official(preview=True)["components"]["schemas"]["intercom_version"]["enum"]
    # The project accepts every version either description lists, and the docs page's "Unstable",
    # the older name of "Preview" (which the preview description lists instead).
    assert accepted == set(version_schema["enum"]) | set(preview) | {"Unstable"}
    assert "Unstable" not in preview and "Preview" in preview
    assert version_schema["default"] == get_endpoint(PHONE_CALL_REDIRECTS).header_default("Intercom-Version")


# One body per deliberate difference: Intercom's description and the project disagree on it,
# and exactly the named rule explains why.
TIGHTENING_EXAMPLES = {
    "E.164 phone": {"phone": "+1 1234567890"},
    "numbering plans": {"phone": "+999123456789"},
    "closed body": {"phone": "+14155550100", "phone_number": "+14155550100"},
    "closed documented objects": {
        "phone": "+14155550100",
        "custom_attributes": {"orders": {"instances": [{"id": "1", "created_at": 1671028894}]}},
    },
    "null body": None,
    "null instance": {"phone": "+14155550100", "custom_attributes": {"orders": {"instances": [None]}}},
    "JSON any API takes": {"phone": "+14155550100", "custom_attributes": {"visits": 2**64}},
}
LOOSENING_EXAMPLES = {
    "boolean and float attribute values": {"phone": "+14155550100", "custom_attributes": {"vip": True, "spend": 1.5}},
    "open instance custom_attributes": {
        "phone": "+14155550100",
        "custom_attributes": {"orders": {"instances": [{"custom_attributes": {"total": 12}}]}},
    },
}


def test_each_tightening_is_real_and_explained_by_its_rule() -> None:
    assert set(TIGHTENING_EXAMPLES) == {name for name, _where, _rule in TIGHTENINGS}
    for name, body in TIGHTENING_EXAMPLES.items():
        assert _OFFICIAL.is_valid(body), name
        issues = request_issues(PHONE_CALL_REDIRECTS, body)
        assert issues, name
        rules = dict((rule_name, rule) for rule_name, _where, rule in TIGHTENINGS)
        assert all(rules[name](issue, body) for issue in issues), (name, [str(issue) for issue in issues])


def test_each_loosening_is_real_and_undone_by_the_repair() -> None:
    assert set(LOOSENING_EXAMPLES) == {name for name, _where in LOOSENINGS}
    for name, body in LOOSENING_EXAMPLES.items():
        assert not _OFFICIAL.is_valid(body), name
        assert request_issues(PHONE_CALL_REDIRECTS, body) == [], name
        assert _OFFICIAL.is_valid(_within_the_description(body)), name
