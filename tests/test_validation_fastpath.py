"""The fast validator (jsonschema-rs) and jsonschema always agree on the generated schemas.

Validation confirms a valid body with the compiled validator and asks `jsonschema` only when
it refuses (to explain why). That shortcut is safe only if both give the same verdict on
every body; these tests compare them on bodies built to sit on the edges of the rules.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint
from prefect_intercom.validation import _fast_verdict, request_issues
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


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_both_validators_agree_on_every_body(body: Any) -> None:
    if not _json_able(body):
        return  # never reaches either validator: refused before, with its own message
    assert _fast_verdict(ENDPOINT.request_schema, body) == REFERENCE.is_valid(body), json.dumps(body)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["Content-Type", "Accept", "Intercom-Version", "User-Agent", "X-Other"]),
        st.one_of(st.sampled_from(["2.12", "2.11", "Unstable", "application/json", "3.0"]), st.text(max_size=6)),
    )
)
def test_both_validators_agree_on_headers(headers: dict[str, str]) -> None:
    assert _fast_verdict(ENDPOINT.headers_schema, headers) == HEADERS_REFERENCE.is_valid(headers)


def test_a_refused_body_is_still_explained_in_full() -> None:
    issues = request_issues(PHONE_CALL_REDIRECTS, {"phone": "+1 415 555 0100", "phone_number": "x"})
    assert [issue.path for issue in issues] == ["/phone", "/phone_number"]
    assert all(issue.hint for issue in issues)


def test_a_schema_the_fast_validator_cannot_compile_takes_the_full_path() -> None:
    schema = {"type": "object", "properties": {"a": {"pattern": "(?P<broken"}}}
    assert _fast_verdict(schema, {"a": "x"}) is False
