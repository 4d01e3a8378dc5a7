"""How a refused value is told: its JSON Pointer, a plain-English message and, where the fix is obvious, a hint.

`validation` decides; this module words each `jsonschema` violation (`explain`), values JSON
cannot carry (`not_json_issues`) and the fix for a phone (`phone_hint`), digits masked.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jsonschema.exceptions import ValidationError as SchemaViolation

from prefect_intercom.errors import ValidationIssue
from prefect_intercom.numbering_plans import e164_written
from prefect_intercom.privacy import mask_phone
from prefect_intercom.schema_rules import E164, E164_FORMAT, FORMAT_ANNOTATION

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")
# Deeper values are refused rather than risking Python's recursion limit (the documented
# shapes are at most 7 levels deep), and integers must fit the 64 bits JSON APIs use.
MAX_NESTING = 64
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def json_pointer(parts: Iterable[Any]) -> str:
    """RFC 6901 JSON Pointer for a path of keys and indexes (`""` for the root)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def not_json_issues(value: Any, path: tuple[Any, ...] = (), seen: tuple[int, ...] = ()) -> Iterator[ValidationIssue]:
    """Values JSON cannot carry, or that no JSON API takes.

    NaN and infinities, non-string keys, Python-only types, text that is not valid Unicode,
    integers beyond 64 bits, cycles, and nesting deeper than `MAX_NESTING`.
    """
    if isinstance(value, (dict, list)):
        if id(value) in seen:
            yield ValidationIssue(json_pointer(path), "the value contains itself (a cycle); JSON cannot carry it")
            return
        if len(path) >= MAX_NESTING:
            yield ValidationIssue(json_pointer(path), f"nested deeper than {MAX_NESTING} levels", "flatten the value")
            return
        seen = (*seen, id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield ValidationIssue(
                    json_pointer((*path, _safe_repr(key))),
                    f"object keys must be strings, got {type(key).__name__} {_safe_repr(key)}",
                )
            elif _escaped(key) != key:  # a lone surrogate, which UTF-8 cannot encode
                yield ValidationIssue(
                    json_pointer((*path, _escaped(key))),
                    "the key is not valid Unicode text (it holds a lone surrogate)",
                )
            else:
                yield from not_json_issues(item, (*path, key), seen)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from not_json_issues(item, (*path, index), seen)
    elif isinstance(value, str):
        if _escaped(value) != value:
            yield ValidationIssue(
                json_pointer(path),
                f"{_safe_repr(value)} is not valid Unicode text (it holds a lone surrogate)",
                "remove the broken character; it usually comes from mis-decoded input",
            )
    elif isinstance(value, float) and not math.isfinite(value):
        yield ValidationIssue(json_pointer(path), f"{value!r} is not a JSON number", "use a finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
        yield ValidationIssue(
            json_pointer(path),
            f"an integer of {value.bit_length()} bits is outside the 64-bit range (-2**63 to 2**63-1)",
            "send very large numbers as a string",
        )
    elif not isinstance(value, (str, int, float, bool, type(None))):
        hint = None
        if hasattr(value, "isoformat"):
            hint = "send dates as an ISO 8601 string or a UNIX timestamp (integer)"
        elif isinstance(value, (tuple, set, frozenset)):
            hint = "use a list"
        elif isinstance(value, Mapping):
            hint = "use a dict"
        yield ValidationIssue(json_pointer(path), f"a {type(value).__name__} is not a JSON value", hint)


def is_plain_json(value: Any, depth: int = 0) -> bool:
    """Whether `value` is made only of exact JSON types that `not_json_issues` finds nothing in.

    A cheap check for the common case: `False` (e.g. a tuple, a `str` subclass, a cycle, which
    ends at the depth limit) means "ask `not_json_issues`", not that the value is refused.
    """
    kind = type(value)
    if kind is str:
        return value.isascii() or _escaped(value) == value
    if kind is int:
        return _INT64_MIN <= value <= _INT64_MAX
    if kind is float:
        return math.isfinite(value)
    if kind is bool or value is None:
        return True
    if depth >= MAX_NESTING:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or _escaped(key) == key):
                return False
            if type(item) is not str or not item.isascii():  # the common leaf inline, the rest recursively
                if not is_plain_json(item, depth + 1):
                    return False
        return True
    if kind is list:
        for item in value:
            if not is_plain_json(item, depth + 1):
                return False
        return True
    return False


def _escaped(text: str) -> str:
    """`text` with lone surrogates written as backslash escapes, safe to print and log."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_repr(value: Any, limit: int = 60) -> str:
    """A short `repr` that never fails (huge integers and broken `__repr__`s included), digits masked."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return _shown(_escaped(text), limit)


def _shown(text: str, limit: int) -> str:
    """Input quoted in a message: phone-like digit runs masked first, then cut to `limit` characters."""
    text = mask_phone(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain(violation: SchemaViolation) -> list[ValidationIssue]:
    """The issues one `jsonschema` violation stands for: its JSON Pointer, a plain message, a hint."""
    path = list(violation.absolute_path)
    pointer = json_pointer(path)
    keyword = violation.validator
    instance = violation.instance
    schema = violation.schema if isinstance(violation.schema, dict) else {}
    if keyword == "required":
        missing = [name for name in violation.validator_value if name not in instance]
        return [_missing_issue(path, name, schema) for name in missing]
    if keyword == "additionalProperties" and schema.get("additionalProperties") is False:
        allowed = sorted(schema.get("properties", {}))
        extras = [key for key in instance if key not in allowed]
        return [_unknown_field_issue(path, key, allowed) for key in extras]
    if keyword == "type":
        expected = _expected_types(violation.validator_value)
        return [ValidationIssue(pointer, f"expected {expected}, got {_describe(instance)}")]
    if keyword == "pattern" and schema.get(FORMAT_ANNOTATION) == E164_FORMAT:
        message = (
            f"{_safe_repr(instance)} is not a phone number in E.164 format "
            "(a '+', then the country code and number: 7 to 15 digits, nothing else)"
        )
        return [ValidationIssue(pointer, message, phone_hint(instance))]
    if keyword == "enum":
        return [_enum_issue(pointer, instance, violation.validator_value)]
    if keyword == "not" and isinstance(instance, str):
        return [ValidationIssue(pointer, "must not contain a line break (CR or LF)", "remove the line breaks")]
    if keyword == "anyOf":
        return _any_of_issues(violation, pointer)
    return [ValidationIssue(pointer, _shown(violation.message, 300))]


def _missing_issue(path: list[Any], name: str, schema: dict[str, Any]) -> ValidationIssue:
    hint = None
    if schema.get("properties", {}).get(name, {}).get(FORMAT_ANNOTATION) == E164_FORMAT:
        hint = f'add "{name}": "+14155550100" (E.164: a "+", the country code and the number)'
    return ValidationIssue(json_pointer([*path, name]), f"required field {name!r} is missing", hint)


def _unknown_field_issue(path: list[Any], key: str, allowed: list[str]) -> ValidationIssue:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else "allowed fields: " + ", ".join(allowed) if allowed else None
    return ValidationIssue(json_pointer([*path, key]), f"unknown field {_safe_repr(key)}", hint)


def phone_hint(value: str) -> str | None:
    """How to turn `value` into E.164, when the fix is obvious (the number in it masked).

    A hint never guesses a country: a number without its country code gets advice, not a
    number that might text someone else. A number it suggests is written as libphonenumber
    writes it, so `+44 (0)20 7946 0958` becomes `+442079460958`, never `+4402079460958`.
    """
    if value != value.strip() and E164.match(value.strip()):
        return _fix("remove the surrounding white space or line break", value.strip())
    compact = _PHONE_PUNCTUATION.sub("", value)
    if compact != value and E164.match(compact):
        what = "spaces" if set(value) - set(compact) <= set(" \t") else "spaces and punctuation"
        return _fix(f"remove {what}", compact)
    if compact.startswith("00") and E164.match("+" + compact[2:]):
        return _fix("replace the international prefix 00 with '+'", "+" + compact[2:])
    if compact.isdigit():
        return (
            "start with '+' and the country code, then the number without its national leading 0 "
            "(e.g. +1 for the US and Canada, +44 for the UK: +447911123456)"
        )
    if compact.startswith("+") and compact[1:].isdigit():
        digits = len(compact) - 1
        if digits > 15:
            return f"E.164 numbers have at most 15 digits; this one has {digits}"
        if digits < 7:
            return f"E.164 numbers have at least 7 digits; this one has {digits}"
        if compact[1] == "0":
            return "the country code cannot start with 0"
    return None


def _fix(what: str, number: str) -> str:
    """`what: number` (masked), with a national prefix after the country code left out and said."""
    written = e164_written(number)
    if written != number:
        what += ", and remove the national prefix after the country code"
    return f"{what}: {mask_phone(written)}"


def _enum_issue(pointer: str, value: Any, allowed: list[Any]) -> ValidationIssue:
    close = difflib.get_close_matches(str(value), [str(item) for item in allowed], n=1, cutoff=0.6)
    listing = ", ".join(str(item) for item in allowed)
    hint = f"did you mean {close[0]!r}?" if close else None
    return ValidationIssue(pointer, f"{_safe_repr(value)} is not one of the allowed values: {listing}", hint)


def _any_of_issues(violation: SchemaViolation, pointer: str) -> list[ValidationIssue]:
    """A value matching none of several shapes (e.g. a custom attribute value)."""
    options = violation.validator_value
    object_branches = [index for index, option in enumerate(options) if isinstance(option, dict) and "$ref" in option]
    if isinstance(violation.instance, dict) and object_branches:
        nested = [error for error in violation.context if error.schema_path and error.schema_path[0] in object_branches]
        issues = [issue for error in nested for issue in explain(error)]
        if issues:
            return issues
    shapes = " or ".join(_option_name(option) for option in options)
    return [ValidationIssue(pointer, f"expected {shapes}, got {_describe(violation.instance)}")]


def _option_name(option: Any) -> str:
    if isinstance(option, dict) and "$ref" in option:
        name = option["$ref"].rsplit("/", 1)[-1].replace("_", " ")
        return f"a {name} object"
    if isinstance(option, dict) and isinstance(option.get("type"), list):
        *kinds, last = option["type"]
        return "a " + ", ".join(kinds) + " or " + last
    if isinstance(option, dict) and "type" in option:
        return _expected_types(option["type"])
    return "another value"


def with_article(kind: str) -> str:
    """A type's name with its article, `an object`, `a string`, `a date`; `null` stays `null`."""
    return kind if kind == "null" else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _expected_types(types: Any) -> str:
    names = [with_article(name) for name in ([types] if isinstance(types, str) else types)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _describe(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), "null" if value is None else None)
    name = with_article(kind) if kind else type(value).__name__
    if isinstance(value, (dict, list)) or value is None:
        return name
    return f"{name} ({_safe_repr(value, limit=40)})"
