"""Validation's verdict is the generated schema's, on bodies built to sit on the edges of the rules.

`request_issues` and `validate_headers` explain what they refuse in their own words
(`prefect_intercom.violations`), but whether they refuse must be exactly what the generated
JSON Schema says (numbering plans aside: they are checked after the schema, and turned off
here). `jsonschema` decides and explains; jsonschema-rs (`prefect_intercom.fast_verdict`) only
confirms valid bodies faster, so it must never accept what `jsonschema` refuses: the issues with
and without it are the same, on JSON and on values JSON cannot carry, and on schemas built where
the two engines read JSON Schema differently.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint
from prefect_intercom.errors import IntercomValidationError
from prefect_intercom.fast_verdict import compile_fast
from prefect_intercom.numbering_plans import NUMBERING_PLANS_ENV
from prefect_intercom.validation import _issues, _validator, request_issues, validate_headers
from prefect_intercom.violations import MAX_NESTING, is_plain_json, not_json_issues

ENDPOINT = get_endpoint(PHONE_CALL_REDIRECTS)
REFERENCE = Draft202012Validator(ENDPOINT.request_schema)
HEADERS_REFERENCE = Draft202012Validator(ENDPOINT.headers_schema)

DIGITS = "0123456789"
phones = st.one_of(
    st.builds(lambda cc, rest: f"+{cc}{rest}", st.sampled_from("123456789"), st.text(DIGITS, min_size=0, max_size=17)),
    st.text(alphabet=st.sampled_from([*DIGITS, "+", " ", "-", "\n", "\r", "\t", "\u0663", "\uff10", "\u00a0", "x"])),
    st.sampled_from(["+14155550100", "+14155550100\n", "+1415555010", "+012345678", "14155550100", ""]),
    st.integers(),
    st.none(),
)
scalars = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
instances = st.lists(
    st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "id": st.one_of(st.text(max_size=5), st.integers()),
                "external_id": st.one_of(st.text(max_size=5), st.integers()),
                "type": st.one_of(st.text(max_size=5), st.booleans()),
                "external_created_at": st.one_of(st.integers(0, 2**40), st.none(), st.floats(allow_nan=False)),
                "custom_attributes": st.one_of(
                    st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=4), st.integers()), max_size=3),
                    st.text(max_size=3),
                ),
                "unlisted": scalars,
            },
        ),
        scalars,
    ),
    max_size=3,
)
object_lists = st.fixed_dictionaries(
    {}, optional={"type": st.one_of(st.text(max_size=6), st.integers()), "instances": st.one_of(instances, scalars)}
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)
attribute_values = st.one_of(scalars, object_lists, json_values)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "phone": phones,
            "custom_attributes": st.one_of(st.dictionaries(st.text(max_size=6), attribute_values, max_size=4), scalars),
            "phone_number": st.text(max_size=5),
        },
    ),
    json_values,
)


def _json_able(value: Any) -> bool:
    return not list(not_json_issues(value))


@contextmanager
def _numbering_plans_off() -> Iterator[None]:
    """The schema's verdict alone (hypothesis runs many examples in one test: no monkeypatch)."""
    before = os.environ.get(NUMBERING_PLANS_ENV)
    os.environ[NUMBERING_PLANS_ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[NUMBERING_PLANS_ENV]
        else:
            os.environ[NUMBERING_PLANS_ENV] = before


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_a_body_is_refused_exactly_when_the_generated_schema_refuses_it(body: Any) -> None:
    if not _json_able(body):
        return  # refused before the schema, with its own message (tests/test_fuzz_validation.py)
    with _numbering_plans_off():
        issues = request_issues(PHONE_CALL_REDIRECTS, body)
    assert (issues == []) == REFERENCE.is_valid(body), json.dumps(body)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["Content-Type", "Accept", "Intercom-Version", "User-Agent", "X-Other"]),
        st.one_of(st.sampled_from(["2.12", "2.11", "Unstable", "application/json", "3.0"]), st.text(max_size=6)),
    )
)
def test_headers_are_refused_exactly_when_the_generated_schema_refuses_them(headers: dict[str, str]) -> None:
    if HEADERS_REFERENCE.is_valid(headers):
        validate_headers(PHONE_CALL_REDIRECTS, headers)
    else:
        with pytest.raises(IntercomValidationError):
            validate_headers(PHONE_CALL_REDIRECTS, headers)


def test_a_refused_body_is_explained_in_full() -> None:
    issues = request_issues(PHONE_CALL_REDIRECTS, {"phone": "+1 415 555 0100", "phone_number": "x"})
    assert [issue.path for issue in issues] == ["/phone", "/phone_number"]
    assert all(issue.hint for issue in issues)


# --- the fast engine (jsonschema-rs) never changes a verdict or a message ---------------------------


class _Text(str):
    pass


class _Level(enum.IntEnum):
    HIGH = 1


def _cycle() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


# Values JSON cannot carry, or that the two engines (or Python and JSON) might read differently.
edge_values = st.sampled_from(
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        1.0,
        -0.0,
        1e300,
        2**63 - 1,
        2**63,
        -(2**63) - 1,
        10**30,
        True,
        False,
        (1, 2),
        ("+14155550100",),
        {1: "x"},
        {None: "x"},
        {("a",): 1},
        frozenset({"a"}),
        b"bytes",
        _Text("+14155550100"),
        _Level.HIGH,
        OrderedDict(a="b"),
        "\ud800",
        "\U0001f600",
        "\U0001f600" * 3,
        "+1415555010\u0663",
        "+14155550100\n",
        "\u00e9t\u00e9",
        _cycle(),
        _deep(MAX_NESTING - 2),
        _deep(MAX_NESTING + 2),
    ]
)
edge_attributes = st.recursive(
    st.one_of(scalars, edge_values),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
        st.fixed_dictionaries({}, optional={"type": inner, "instances": st.lists(inner, max_size=2)}),
    ),
    max_leaves=6,
)
edge_bodies = st.one_of(
    bodies,
    edge_values,
    st.fixed_dictionaries(
        {},
        optional={
            "phone": st.one_of(phones, edge_values),
            "custom_attributes": st.one_of(
                st.dictionaries(st.text(max_size=4), edge_attributes, max_size=3), edge_values
            ),
        },
    ),
)


def _both_engines(schema: str) -> tuple[Any, Any]:
    compiled = _validator(PHONE_CALL_REDIRECTS, schema)
    assert compiled.fast is not None, "the packaged schemas get the fast engine"
    return compiled, dataclasses.replace(compiled, fast=None)


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_bodies)
def test_the_fast_engine_never_changes_the_issues_of_a_body(body: Any) -> None:
    fast, slow = _both_engines("request_schema")
    assert _issues(fast, body) == _issues(slow, body)
    if fast.confirms(body):
        assert REFERENCE.is_valid(body) and list(not_json_issues(body)) == []
    elif is_plain_json(body):
        assert not REFERENCE.is_valid(body), "a valid plain-JSON body takes the fast path"


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["Content-Type", "Accept", "Intercom-Version", "User-Agent", "X-Other"]),
        st.one_of(
            st.sampled_from(["2.12", "2.11", "Unstable", "application/json", "3.0", "2.12\n", "a\r\nb", "\u2028"]),
            st.text(max_size=6),
            edge_values,
        ),
    )
)
def test_the_fast_engine_never_changes_the_issues_of_headers(headers: dict[str, Any]) -> None:
    fast, slow = _both_engines("headers_schema")
    assert _issues(fast, headers) == _issues(slow, headers)
    if is_plain_json(headers):
        assert fast.confirms(headers) == HEADERS_REFERENCE.is_valid(headers)


@settings(max_examples=500, deadline=None)
@given(
    edge_values | json_values | st.lists(edge_values, max_size=3) | st.dictionaries(st.text(max_size=3), edge_values)
)
def test_plain_json_is_only_what_not_json_issues_finds_nothing_in(value: Any) -> None:
    if is_plain_json(value):
        assert list(not_json_issues(value)) == []


# Where jsonschema-rs and `jsonschema` read a schema differently: ECMA vs Python regexes, string
# length (code points), integers written 1.0, numbers compared as floats, formats.
DIALECTS: list[tuple[dict[str, Any], list[Any]]] = [
    ({"type": "string", "pattern": "^\\d+$"}, ["12", "\u0663", "12\n", "1a", 5]),
    ({"type": "string", "pattern": "^\\w\\s$"}, ["a ", "\u00e9\u00a0", "a\u2028", "ab"]),
    ({"type": "string", "pattern": "(?i)^abc$"}, ["ABC", "abc", "abd"]),
    ({"type": "string", "minLength": 2}, ["\U0001f600", "\U0001f600\U0001f600", "ab", "a"]),
    ({"type": "string", "maxLength": 1}, ["\U0001f600", "\U0001f600\U0001f600", "\u00e9", "ab"]),
    ({"type": "integer"}, [1, 1.0, 1.5, True, 2**63 - 1, 1e300, -0.0]),
    ({"type": "number"}, [1, 1.0, True, None, "1"]),
    ({"enum": ["a", None, True]}, ["a", None, True, 1, 1.0, "b"]),
    ({"const": False}, [False, 0, 0.0, None]),
    ({"type": "string", "format": "email"}, ["not an email", "a@b.c"]),
    ({"type": "string", "format": "date-time", "maxLength": 3}, ["nope", "abc"]),
    ({"not": {"pattern": "[\\r\\n]"}}, ["a\nb", "ab", 3, ["\n"]]),
    ({"properties": {"pattern": {"type": "string"}, "format": {"minLength": 2}}}, [{"pattern": 1}, {"format": "x"}]),
    ({"type": "array", "items": {"maxLength": 1}, "maxItems": 2}, [["a", "b"], ["ab"], ["a", "b", "c"], []]),
    (
        {"$defs": {"n": {"type": "string", "pattern": "^x"}}, "anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]},
        ["x", "y", None, 1],
    ),
]
NO_FAST_ENGINE: list[dict[str, Any]] = [
    {"enum": [1, 2.5]},
    {"const": 9007199254740992.0},
    {"maximum": 9007199254740992},
    {"multipleOf": 0.1},
    {"uniqueItems": True},
    {"patternProperties": {"^\\d": {"type": "string"}}},
    {"propertyNames": {"pattern": "^a"}},
    {"$ref": "https://example.com/schema"},
    {"properties": {"a": {"$id": "urn:x", "type": "string"}}},
    {"if": {"type": "string"}, "then": {"minLength": 1}},
    {"type": "string", "pattern": "(?<!x"},
    {"type": "string", "maxLength": 1.5},
    {"type": "array", "minItems": 1.5},
    {"type": "object", "maxProperties": 2.0},
    {"type": "object", "required": "phone"},
    {"type": ["string", 1]},
]


@pytest.mark.parametrize(("schema", "instances"), DIALECTS, ids=[json.dumps(schema)[:40] for schema, _ in DIALECTS])
def test_where_the_engines_read_a_schema_differently_jsonschema_decides(
    schema: dict[str, Any], instances: list[Any]
) -> None:
    fast = compile_fast(schema)
    assert fast is not None
    reference = Draft202012Validator(schema)
    assert [fast(instance) for instance in instances] == [reference.is_valid(instance) for instance in instances]


@pytest.mark.parametrize("schema", NO_FAST_ENGINE, ids=[json.dumps(schema)[:40] for schema in NO_FAST_ENGINE])
def test_a_schema_the_engines_might_read_differently_gets_no_fast_engine(schema: dict[str, Any]) -> None:
    assert compile_fast(schema) is None


def test_another_catalogues_endpoint_gets_the_fast_engine_and_a_schema_changed_in_place_is_compiled_again() -> None:
    schema = json.loads(json.dumps(ENDPOINT.request_schema))
    other = dataclasses.replace(ENDPOINT, request_schema=schema)
    assert _validator(other, "request_schema").fast is not None
    assert request_issues(other, {"phone": "+14155550100", "extra": 1}) != []
    schema["additionalProperties"] = True
    assert request_issues(other, {"phone": "+14155550100", "extra": 1}) == []
