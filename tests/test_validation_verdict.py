"""Validation's verdict is the generated schema's, on bodies built to sit on the edges of the rules.

`request_issues` and `validate_headers` explain what they refuse in their own words
(`prefect_intercom.violations`), but whether they refuse must be exactly what the generated
JSON Schema says (numbering plans aside: they are checked after the schema, and turned off
here). One engine, `jsonschema`, decides and explains: a second one (jsonschema-rs, to confirm
valid bodies faster) was measured not to matter at Intercom's rate (`bench/validation_engines.py`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint
from prefect_intercom.errors import IntercomValidationError
from prefect_intercom.numbering_plans import NUMBERING_PLANS_ENV
from prefect_intercom.validation import request_issues, validate_headers
from prefect_intercom.violations import not_json_issues

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
