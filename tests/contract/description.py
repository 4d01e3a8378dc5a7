"""Intercom's own OpenAPI description of POST /phone_call_redirects, as the contract tests use it.

Two forms:

- `official()`: the 2.12 description exactly as Intercom publishes it (MIT, see the data
  README). The schema-agreement test generates from it and judges with it.
- `corrected()`: the same description with the corrections listed in `CORRECTIONS`, each a
  place where the description itself is wrong (it contradicts its own examples, its own
  error answers, or what an SMS to a phone number needs). Schemathesis judges the sandbox with
  this one; every correction is listed in the README, section "What is proven against
  Intercom's description".

`json_schema()` turns an OpenAPI 3.0 schema object into plain JSON Schema (2020-12), so that
`jsonschema` can say whether a body is valid for Intercom's description.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache
from typing import Any

import yaml

from prefect_intercom.schema_rules import E164_PATTERN

from ..conftest import OPENAPI_DIR

DESCRIPTION_2_12 = OPENAPI_DIR / "phone_call_redirects.2.12.openapi.yaml"
DESCRIPTION_PREVIEW = OPENAPI_DIR / "phone_call_redirects.preview.openapi.yaml"
PATH = "/phone_call_redirects"
OPERATION = ("post", PATH)


@cache
def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def official(preview: bool = False) -> dict[str, Any]:
    """A fresh copy of Intercom's description (2.12 by default, or the Preview one)."""
    return copy.deepcopy(_load(str(DESCRIPTION_PREVIEW if preview else DESCRIPTION_2_12)))


def operation(description: dict[str, Any]) -> dict[str, Any]:
    """The `POST /phone_call_redirects` operation object of a description."""
    return description["paths"][PATH]["post"]


def _schemas(description: dict[str, Any]) -> dict[str, Any]:
    return description["components"]["schemas"]


def _request_body_is_required(description: dict[str, Any]) -> None:
    operation(description)["requestBody"]["required"] = True


def _request_is_not_nullable(description: dict[str, Any]) -> None:
    _schemas(description)["create_phone_switch_request"].pop("nullable")


def _phone_is_e164(description: dict[str, Any]) -> None:
    phone = _schemas(description)["create_phone_switch_request"]["properties"]["phone"]
    phone["pattern"] = E164_PATTERN


def _attributes_take_booleans_and_numbers(description: dict[str, Any]) -> None:
    any_of = _schemas(description)["custom_attributes"]["additionalProperties"]["anyOf"]
    any_of.extend([{"type": "boolean"}, {"type": "number"}])


# Where Intercom's 2.12 description is wrong, and how the corrected copy fixes it. Each entry:
# (what the description says, why that is wrong, the fix). The README lists the same.
CORRECTIONS: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    (
        "the request body is optional (`requestBody` has no `required: true`)",
        "`phone` is required inside it, and a request without a body cannot say whom to text",
        _request_body_is_required,
    ),
    (
        "the request schema is `nullable: true`, so a `null` body is valid",
        "a `null` body has no `phone`; the schema's own `required: [phone]` cannot hold",
        _request_is_not_nullable,
    ),
    (
        "`phone` is any string (E.164 is said in words only; the example `+1 1234567890` is not E.164)",
        "the description's own 400 `invalid_phone_number` answer refuses numbers that are not phone numbers",
        _phone_is_e164,
    ),
    (
        "custom attribute values are strings, integers, date-times or custom object instance lists",
        "the schema's own example carries a boolean (`paid_subscriber: true`) and a float "
        "(`monthly_spend: 155.5`), which Intercom's data attributes support",
        _attributes_take_booleans_and_numbers,
    ),
]


def corrected() -> dict[str, Any]:
    """Intercom's 2.12 description with every correction in `CORRECTIONS` applied."""
    description = official()
    for _said, _why, fix in CORRECTIONS:
        fix(description)
    return description


def json_schema(description: dict[str, Any], name: str) -> dict[str, Any]:
    """Component schema `name` of an OpenAPI 3.0 description as JSON Schema 2020-12.

    `nullable: true` becomes an added `"null"` type, `$ref`s point into `$defs`, and the
    annotations JSON Schema does not know (`example`, `x-*`) are dropped. Nothing else changes.
    """
    components = _schemas(description)
    defs = {key: _convert(value) for key, value in components.items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **_convert(components[name]),
        "$defs": defs,
    }


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("example", "nullable") or key.startswith("x-"):
            continue
        if key == "$ref":
            converted[key] = value.replace("#/components/schemas/", "#/$defs/")
        elif key in ("properties",):
            converted[key] = {name: _convert(item) for name, item in value.items()}
        else:
            converted[key] = _convert(value)
    if node.get("nullable") is True:
        if "type" in converted:
            kinds = converted["type"] if isinstance(converted["type"], list) else [converted["type"]]
            converted["type"] = [*kinds, "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    return converted
