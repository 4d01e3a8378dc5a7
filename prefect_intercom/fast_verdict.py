"""A compiled second engine that confirms a valid body fast; `jsonschema` still explains every refusal.

`jsonschema_rs` compiles a copy of the same generated schema. It only ever says "valid": a body
it refuses (or cannot read) goes through `jsonschema`, which decides again and explains. So it
must never accept what `jsonschema` refuses, and the copy is built to rule out where the two differ:

- string rules (`pattern`, `minLength`, `maxLength`) are checked in Python, by a custom format
  (Python `re.search` and `len`, as `jsonschema` does; not ECMA regexes or another length);
- a schema using any keyword outside `_KEYWORDS` (numeric bounds, `uniqueItems`, numbers in
  `enum`, non-local `$ref`, ...) gets no fast engine at all: every body takes `jsonschema`;
- only plain JSON (`violations.is_plain_json`) is shown to it.

`tests/test_validation_verdict.py` checks on generated edge bodies and headers that both agree.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import jsonschema_rs

# Keywords whose meaning is the same in both engines for plain JSON, besides the rewritten ones.
_ASSERTIONS = frozenset({"type", "required", "minItems", "maxItems", "minProperties", "maxProperties"})
_ANNOTATIONS = frozenset({"$schema", "$comment", "title", "description", "default", "examples", "deprecated", "format"})
_STRING_RULES = ("pattern", "minLength", "maxLength")
_SUBSCHEMA = ("additionalProperties", "items", "not")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_VALUES = ("enum", "const")
_KEYWORDS = _ASSERTIONS | _ANNOTATIONS | set(_STRING_RULES + _SUBSCHEMA + _SUBSCHEMA_LISTS + _SUBSCHEMA_MAPS + _VALUES)
_LOCAL_REF = re.compile(r"#/(\$defs|definitions)/([A-Za-z0-9_.-]+)")
_FORMAT = "prefect-intercom-{}"


class _Unsupported(Exception):
    """The schema uses something the two engines might read differently."""


def compile_fast(schema: Any) -> Callable[[Any], bool] | None:
    """A function telling whether `schema` accepts a plain-JSON value, or `None` when no fast engine is safe."""
    formats: dict[str, Callable[[str], bool]] = {}
    try:
        copy = _rewrite(schema, schema, formats, itertools.count(), root=True)
        validator = jsonschema_rs.Draft202012Validator(copy, formats=formats, validate_formats=True)
    except Exception:  # _Unsupported, a bad regex, or a schema jsonschema-rs cannot compile
        return None
    return validator.is_valid


def _rewrite(node: Any, root_schema: Any, formats: dict[str, Callable[[str], bool]], ids: Any, root: bool) -> Any:
    """`node` for jsonschema-rs: string rules turned into a Python-checked format, or `_Unsupported`."""
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        raise _Unsupported(repr(node)[:40])
    copy: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in _ANNOTATIONS or key in _STRING_RULES:
            continue  # annotations (JSON Schema's `format` is not asserted by `jsonschema` here)
        if key == "$id" and root:
            copy[key] = value
        elif key == "$ref" and isinstance(value, str) and _resolves(value, root_schema):
            copy[key] = value
        elif key in _ASSERTIONS:
            copy[key] = _plain_assertion(key, value)
        elif key in _VALUES:
            copy[key] = _plain_values(value) if key == "enum" else _plain_values([value])[0]
        elif key in _SUBSCHEMA:
            copy[key] = _rewrite(value, root_schema, formats, ids, root=False)
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            copy[key] = [_rewrite(item, root_schema, formats, ids, root=False) for item in value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            copy[key] = {name: _rewrite(item, root_schema, formats, ids, root=False) for name, item in value.items()}
        else:
            raise _Unsupported(key)
    rules = {key: node[key] for key in _STRING_RULES if key in node}
    if rules:
        name = _FORMAT.format(next(ids))
        formats[name] = _string_check(**rules)
        copy["format"] = name
    return copy


def _plain_assertion(key: str, value: Any) -> Any:
    """`value` when both engines read it alike: counts are non-negative ints, names and types strings."""
    if key in ("type", "required"):
        names = [value] if key == "type" and type(value) is str else value
        if type(names) is list and all(type(name) is str for name in names):
            return value
    elif type(value) is int and value >= 0:
        return value
    raise _Unsupported(key)


def _resolves(ref: str, root_schema: dict[str, Any]) -> bool:
    match = _LOCAL_REF.fullmatch(ref)
    return bool(match) and isinstance(root_schema.get(match.group(1), {}).get(match.group(2)), (dict, bool))


def _plain_values(values: Any) -> list[Any]:
    """`enum` values both engines compare alike: strings, booleans and null (no numbers, no containers)."""
    if not isinstance(values, list) or not all(value is None or type(value) in (str, bool) for value in values):
        raise _Unsupported("enum")
    return values


def _string_check(pattern: Any = None, minLength: Any = None, maxLength: Any = None) -> Callable[[str], bool]:
    """The string rules as `jsonschema` checks them: `re.search` and `len` (code points)."""
    compiled = re.compile(pattern) if pattern is not None else None
    for bound in (minLength, maxLength):
        if bound is not None and (type(bound) is not int or bound < 0):
            raise _Unsupported("length")

    def check(text: str) -> bool:
        if minLength is not None and len(text) < minLength:
            return False
        if maxLength is not None and len(text) > maxLength:
            return False
        return compiled is None or compiled.search(text) is not None

    return check
