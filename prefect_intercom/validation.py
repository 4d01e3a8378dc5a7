"""Validate request bodies and headers against the schemas generated from the docs.

Validators are compiled once per endpoint. Every violation is reported, each with its JSON
Pointer path, a plain-English message and, where there is an obvious fix, a hint.

Values quoted from the input (in messages and hints) are phone numbers as often as not: their
digit runs are masked (`'+1 415•••0100' is not a phone number ...`, hint `remove spaces:
+1415•••0100`), unless `PREFECT_INTERCOM_SHOW_PHONES=1` (see `prefect_intercom.privacy`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation

from prefect_intercom.catalog import Endpoint, default_catalog, get_endpoint
from prefect_intercom.errors import IntercomValidationError, ValidationIssue
from prefect_intercom.numbering_plans import impossible_number
from prefect_intercom.privacy import mask_phone
from prefect_intercom.schema_rules import E164_FORMAT, E164_PATTERN, FORMAT_ANNOTATION

_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}
_SCHEMA_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}
_E164 = re.compile(E164_PATTERN)
_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")
# Deeper values are refused rather than risking Python's recursion limit (the documented
# shapes are at most 7 levels deep), and integers must fit the 64 bits JSON APIs use.
MAX_NESTING = 64
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def validate_request(endpoint: str | Endpoint, body: Any) -> None:
    """Check a request body against the endpoint's generated JSON Schema.

    Args:
        endpoint: Catalogue name of a packaged endpoint, e.g. `"phone_call_redirects"`, or an
            `Endpoint` from any catalogue (e.g. one loaded with `load_catalog(folder)`).
        body: The request body, as it would be sent as JSON.

    Raises:
        IntercomValidationError: The body breaks the schema or is not JSON; `.errors` lists
            every violation with its JSON Pointer `path`, `message` and `hint`.

    Example:
        ```python
        from prefect_intercom import IntercomValidationError, validate_request

        validate_request("phone_call_redirects", {"phone": "+14155550100"})  # fine
        try:
            validate_request("phone_call_redirects", {"phone": "+1 415 555 0100"})
        except IntercomValidationError as error:
            print(error.errors[0].path, error.errors[0].hint)  # /phone remove spaces: +1415•••0100
        ```
    """
    issues = request_issues(endpoint, body)
    if issues:
        raise IntercomValidationError(_endpoint_name(endpoint), issues)


def request_issues(endpoint: str | Endpoint, body: Any) -> list[ValidationIssue]:
    """Every violation in `body`, sorted by path; empty when the body is valid.

    After the schema, every top-level E.164 field that passed it is checked against the numbering
    plans (`prefect_intercom.numbering_plans`; `PREFECT_INTERCOM_NUMBERING_PLANS=0` turns it off).
    """
    if isinstance(endpoint, Endpoint) and not _is_packaged(endpoint):
        validator = _compile(endpoint.request_schema)
    else:
        validator = _request_validator(_endpoint_name(endpoint))
    issues = _issues(validator, body)
    if isinstance(body, dict):
        refused = {issue.path for issue in issues}
        for name in _e164_fields(validator.schema):
            value = body.get(name)
            if isinstance(value, str) and json_pointer([name]) not in refused and _E164.match(value):
                impossible = impossible_number(value)
                if impossible is not None:
                    issues.append(ValidationIssue(json_pointer([name]), impossible.message, impossible.hint))
        issues.sort(key=lambda issue: (issue.path, issue.message))
    return issues


def _e164_fields(schema: Any) -> tuple[str, ...]:
    """Names of the top-level properties the schema marks as E.164 phone numbers."""
    cached = _E164_FIELDS.get(id(schema))
    if cached is None or cached[0] is not schema:
        properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
        names = tuple(
            name
            for name, rule in properties.items()
            if isinstance(rule, dict) and rule.get(FORMAT_ANNOTATION) == E164_FORMAT
        )
        cached = _E164_FIELDS[id(schema)] = (schema, names)
    return cached[1]


_E164_FIELDS: dict[int, tuple[Any, tuple[str, ...]]] = {}


def validate_headers(endpoint: str | Endpoint, headers: Mapping[str, Any]) -> None:
    """Check request headers against the endpoint's generated header schema.

    Raises:
        IntercomValidationError: A header value is not allowed (e.g. an unknown
            `Intercom-Version`, or a value with a line break).
    """
    if isinstance(endpoint, Endpoint) and not _is_packaged(endpoint):
        validator = _compile(endpoint.headers_schema)
    else:
        validator = _headers_validator(_endpoint_name(endpoint))
    issues = _issues(validator, dict(headers))
    if issues:
        raise IntercomValidationError(_endpoint_name(endpoint), issues, what="request headers")


@cache
def _request_validator(endpoint: str) -> Draft202012Validator:
    return _compile(get_endpoint(endpoint).request_schema)


@cache
def _headers_validator(endpoint: str) -> Draft202012Validator:
    return _compile(get_endpoint(endpoint).headers_schema)


def _compile(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _endpoint_name(endpoint: str | Endpoint) -> str:
    return endpoint.name if isinstance(endpoint, Endpoint) else endpoint


def _is_packaged(endpoint: Endpoint) -> bool:
    """Whether `endpoint` is the packaged catalogue's own entry (its validators are cached)."""
    packaged = default_catalog()
    return endpoint.name in packaged and packaged.get(endpoint.name) is endpoint


def _issues(validator: Draft202012Validator, instance: Any) -> list[ValidationIssue]:
    issues = list(_not_json_issues(instance, ()))
    if not issues and _fast_verdict(validator.schema, instance):
        return []  # valid: the compiled validator agrees, no need to explain anything
    if not issues:
        for violation in validator.iter_errors(instance):
            issues.extend(_explain(violation))
    unique = {(issue.path, issue.message): issue for issue in issues}
    return sorted(unique.values(), key=lambda issue: (issue.path, issue.message))


# The same schemas compiled by jsonschema-rs: a valid body (the common case) is confirmed in
# under a microsecond; anything it refuses goes through `jsonschema`, which explains why.
# A test checks on generated bodies that both always give the same verdict.
_FAST: dict[int, tuple[Any, Any]] = {}


def _fast_verdict(schema: Any, instance: Any) -> bool:
    """Whether the fast validator accepts `instance` (False when it cannot tell)."""
    cached = _FAST.get(id(schema))
    if cached is None or cached[0] is not schema:
        try:
            fast = jsonschema_rs.Draft202012Validator(schema)
        except Exception:  # a schema it cannot compile: always take the full path
            fast = None
        cached = _FAST[id(schema)] = (schema, fast)
    fast = cached[1]
    if fast is None:
        return False
    try:
        return bool(fast.is_valid(instance))
    except Exception:  # a value it cannot convert: let the full validator explain
        return False


def json_pointer(parts: Iterable[Any]) -> str:
    """RFC 6901 JSON Pointer for a path of keys and indexes (`""` for the root)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _not_json_issues(value: Any, path: tuple[Any, ...], seen: tuple[int, ...] = ()) -> Iterator[ValidationIssue]:
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
            elif not _is_unicode(key):
                yield ValidationIssue(
                    json_pointer((*path, _escaped(key))),
                    "the key is not valid Unicode text (it holds a lone surrogate)",
                )
            else:
                yield from _not_json_issues(item, (*path, key), seen)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _not_json_issues(item, (*path, index), seen)
    elif isinstance(value, str):
        if not _is_unicode(value):
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


def _is_unicode(text: str) -> bool:
    """Whether `text` can be encoded as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def _explain(violation: SchemaViolation) -> list[ValidationIssue]:
    path = list(violation.absolute_path)
    pointer = json_pointer(path)
    keyword = violation.validator
    instance = violation.instance
    schema = violation.schema if isinstance(violation.schema, dict) else {}
    if keyword == "required":
        missing = [name for name in violation.validator_value if name not in instance]
        return [_missing_issue(pointer, name, schema) for name in missing]
    if keyword == "additionalProperties" and schema.get("additionalProperties") is False:
        allowed = sorted(schema.get("properties", {}))
        extras = [key for key in instance if key not in allowed]
        return [_unknown_field_issue(pointer, key, allowed) for key in extras]
    if keyword == "type":
        expected = _expected_types(violation.validator_value)
        return [ValidationIssue(pointer, f"expected {expected}, got {_describe(instance)}")]
    if keyword == "pattern" and schema.get(FORMAT_ANNOTATION) == E164_FORMAT:
        return [_phone_issue(pointer, instance)]
    if keyword == "enum":
        return [_enum_issue(pointer, instance, violation.validator_value)]
    if keyword == "not" and isinstance(instance, str):
        return [ValidationIssue(pointer, "must not contain a line break (CR or LF)", "remove the line breaks")]
    if keyword == "anyOf":
        return _any_of_issues(violation, pointer)
    return [ValidationIssue(pointer, _shown(violation.message, 300))]


def _missing_issue(pointer: str, name: str, schema: dict[str, Any]) -> ValidationIssue:
    property_schema = schema.get("properties", {}).get(name, {})
    hint = None
    if property_schema.get(FORMAT_ANNOTATION) == E164_FORMAT:
        hint = f'add "{name}": "+14155550100" (E.164: a "+", the country code and the number)'
    return ValidationIssue(json_pointer([*_split(pointer), name]), f"required field {name!r} is missing", hint)


def _unknown_field_issue(pointer: str, key: str, allowed: list[str]) -> ValidationIssue:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        hint = "allowed fields: " + ", ".join(allowed) if allowed else None
    return ValidationIssue(json_pointer([*_split(pointer), key]), f"unknown field {_safe_repr(key)}", hint)


def _phone_issue(pointer: str, value: str) -> ValidationIssue:
    message = (
        f"{_safe_repr(value)} is not a phone number in E.164 format "
        "(a '+', then the country code and number: 7 to 15 digits, nothing else)"
    )
    return ValidationIssue(pointer, message, phone_hint(value))


def phone_hint(value: str) -> str | None:
    """How to turn `value` into E.164, when the fix is obvious (the number in it masked).

    A hint never guesses a country: a number without its country code gets advice, not a
    number that might text someone else.
    """
    e164 = _E164
    if value != value.strip() and e164.match(value.strip()):
        return f"remove the surrounding white space or line break: {mask_phone(value.strip())}"
    compact = _PHONE_PUNCTUATION.sub("", value)
    if compact != value and e164.match(compact):
        what = "spaces" if set(value) - set(compact) <= set(" \t") else "spaces and punctuation"
        return f"remove {what}: {mask_phone(compact)}"
    if compact.startswith("00") and e164.match("+" + compact[2:]):
        return f"replace the international prefix 00 with '+': {mask_phone('+' + compact[2:])}"
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
        issues = [issue for error in nested for issue in _explain(error)]
        if issues:
            return issues
    shapes = [_option_name(option) for option in options]
    return [
        ValidationIssue(
            pointer,
            f"expected {' or '.join(shapes)}, got {_describe(violation.instance)}",
        )
    ]


def _option_name(option: Any) -> str:
    if isinstance(option, dict) and "$ref" in option:
        name = option["$ref"].rsplit("/", 1)[-1].replace("_", " ")
        return f"a {name} object"
    if isinstance(option, dict) and isinstance(option.get("type"), list):
        kinds = [name for name in option["type"]]
        return "a " + ", ".join(kinds[:-1]) + " or " + kinds[-1]
    if isinstance(option, dict) and "type" in option:
        return _expected_types(option["type"])
    return "another value"


def _expected_types(types: Any) -> str:
    names = [_SCHEMA_TYPE_NAMES.get(name, name) for name in ([types] if isinstance(types, str) else types)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _describe(value: Any) -> str:
    kind = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)) or value is None:
        return kind
    return f"{kind} ({_safe_repr(value, limit=40)})"


def _split(pointer: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]] if pointer else []
