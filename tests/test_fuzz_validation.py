"""Hostile request input: any JSON value, and any Python value, into `validate_request`, the
client's `prepare` and the task. Only `IntercomValidationError` may come out, it names each
field by JSON Pointer, and nothing invalid is ever sent (the sandbox counts what arrives).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from prefect_intercom import IntercomCredentials, IntercomValidationError, create_phone_call_redirect, validate_request
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.client import IntercomClient
from prefect_intercom.sandbox import Sandbox
from prefect_intercom.schema_rules import E164_PATTERN
from prefect_intercom.validation import request_issues
from prefect_intercom.violations import MAX_NESTING

from .bounded import bounded
from .conftest import SECRET_TOKEN

_POINTER_PART = r"(/([^~/]|~[01])*)*"

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


# Values Python can hold and JSON cannot carry (or no JSON API takes).
PYTHON_ONLY = st.one_of(
    st.binary(max_size=8),
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=2),
    st.sets(st.integers(), max_size=2),
    st.datetimes(),
    st.dates(),
    st.decimals(allow_nan=True),
    st.complex_numbers(),
    st.uuids(),
    st.sampled_from([math.nan, math.inf, -math.inf, 2**63, -(2**63) - 1, Colour.RED]),
    st.integers(min_value=4301, max_value=5000).map(lambda digits: 10**digits),  # too long for str()
    st.builds(BrokenRepr),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
    st.builds(object),
    st.just(MappingProxyType({"a": 1})),
    st.just(range(3)),
)
ANY_KEYS = st.text(max_size=6) | st.integers() | st.none() | st.tuples(st.integers())
ANY_VALUES = st.recursive(
    JSON_SCALARS | PYTHON_ONLY,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(ANY_KEYS, children, max_size=3),
    max_leaves=12,
)
PHONES = st.one_of(st.from_regex(E164_PATTERN, fullmatch=True), st.text(max_size=20), ANY_VALUES)
BODIES = st.one_of(
    JSON_VALUES,
    ANY_VALUES,
    st.fixed_dictionaries({"phone": PHONES}, optional={"custom_attributes": ANY_VALUES}),
    st.fixed_dictionaries(
        {"phone": PHONES}, optional={"custom_attributes": st.dictionaries(st.text(max_size=6), ANY_VALUES)}
    ),
)


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


def _cycle() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


def _check_error(error: IntercomValidationError) -> None:
    assert error.endpoint == PHONE_CALL_REDIRECTS
    assert error.errors, "an IntercomValidationError without a single issue"
    text = str(error)
    assert "nothing was sent" in text
    for issue in error.errors:
        assert issue.path == "" or issue.path.startswith("/"), issue
        assert issue.message.strip(), issue
        assert str(issue) in text
    text.encode("utf-8")  # the message itself is printable and loggable


def _validate(body: Any) -> bool:
    """Validate `body`; True when it is valid. Any other exception fails the test."""
    try:
        validate_request(PHONE_CALL_REDIRECTS, body)
    except IntercomValidationError as error:
        _check_error(error)
        return False
    return True


@bounded(300)
@given(body=BODIES)
@example(body={"phone": "+14155550100", "custom_attributes": {"a": "\ud800"}})
@example(body={"phone": "+14155550100", "custom_attributes": {"\udfff": "x"}})
@example(body={"phone": "+14155550100", "custom_attributes": {"n": 10**5000}})
@example(body={"phone": 10**5000})
@example(body={10**5000: 1})
@example(body={"phone": "+14155550100", "custom_attributes": {"deep": _deep(5000)}})
@example(body={"phone": "+14155550100", "custom_attributes": {"loop": _cycle()}})
@example(body={"phone": "+14155550100", "custom_attributes": {"r": BrokenRepr()}})
@example(body=OrderedDict(phone="+14155550100"))
@example(body={"phone": "+14155550100", "custom_attributes": {"level": Level.HIGH}})
def test_validate_request_raises_only_validation_errors(body: Any) -> None:
    if _validate(body):
        # A valid body always serialises exactly as the client will send it.
        IntercomClient(SECRET_TOKEN, base_url="http://127.0.0.1:9", intercom_version="2.12").prepare(
            PHONE_CALL_REDIRECTS, body
        )


@bounded(200)
@given(body=BODIES)
def test_prepare_refuses_exactly_what_validation_refuses(body: Any) -> None:
    client = IntercomClient(SECRET_TOKEN, base_url="http://127.0.0.1:9", intercom_version="2.12")
    valid = not request_issues(PHONE_CALL_REDIRECTS, body)
    try:
        prepared = client.prepare(PHONE_CALL_REDIRECTS, body)
    except IntercomValidationError as error:
        _check_error(error)
        assert not valid
        return
    assert valid
    assert json.loads(prepared.content) == body
    assert SECRET_TOKEN not in repr(prepared)


def test_the_limits_are_named() -> None:
    with pytest.raises(IntercomValidationError) as caught:
        validate_request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100", "custom_attributes": {"d": _deep(200)}})
    (issue,) = caught.value.errors
    assert issue.message == f"nested deeper than {MAX_NESTING} levels"
    assert issue.path.startswith("/custom_attributes/d/0/0")
    with pytest.raises(IntercomValidationError) as caught:
        validate_request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100", "custom_attributes": {"loop": _cycle()}})
    assert [issue.path for issue in caught.value.errors] == ["/custom_attributes/loop/self"]
    with pytest.raises(IntercomValidationError) as caught:
        validate_request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100", "custom_attributes": {"a": "x\ud800"}})
    assert "lone surrogate" in caught.value.errors[0].message
    # The largest 64-bit integers pass; one more does not.
    largest = {"a": 2**63 - 1, "b": -(2**63)}
    validate_request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100", "custom_attributes": largest})
    with pytest.raises(IntercomValidationError):
        validate_request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100", "custom_attributes": {"a": 2**63}})


# --- the task, on a real Prefect server, against a sandbox that counts what arrives ------------


@pytest.fixture(scope="module")
def counting_sandbox() -> Iterator[Sandbox]:
    with Sandbox(token=SECRET_TOKEN) as running:
        yield running


TASK_PHONES = st.one_of(st.from_regex(E164_PATTERN, fullmatch=True), PHONES)
TASK_ATTRIBUTES = st.one_of(st.none(), st.dictionaries(st.text(max_size=6), ANY_VALUES, max_size=3), ANY_VALUES)


@bounded(40)
@given(phone=TASK_PHONES, custom_attributes=TASK_ATTRIBUTES)
@example(phone="+14155550100", custom_attributes={"loop": _cycle()})
@example(phone="+1 415 555 0100", custom_attributes=None)
@example(phone=uuid.UUID(int=0), custom_attributes={dt.date(2024, 1, 1): decimal.Decimal("1.5")})
def test_the_task_sends_nothing_invalid(
    prefect_server: None, counting_sandbox: Sandbox, phone: Any, custom_attributes: Any
) -> None:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=counting_sandbox.url)
    body: dict[str, Any] = {"phone": phone}
    if custom_attributes is not None:
        body["custom_attributes"] = custom_attributes
    valid = not request_issues(PHONE_CALL_REDIRECTS, body)
    received_before = len(counting_sandbox.received)
    try:
        result = create_phone_call_redirect(credentials, phone, custom_attributes)
    except IntercomValidationError as error:
        _check_error(error)
        assert not valid
        assert len(counting_sandbox.received) == received_before, "an invalid request reached the sandbox"
        return
    assert valid
    (arrived,) = counting_sandbox.received[received_before:]
    assert arrived.body == body
    assert result.type == "phone_call_redirect"


# --- phone numbers in the input are never shown whole -------------------------------------

SEPARATORS = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", "/", "\t"])
NUMBERS = st.from_regex(r"[0-9]{9,15}", fullmatch=True)


@st.composite
def _written_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A number of 9 to 15 digits as a person might type it: a '+' or '00' or nothing, separators, text around."""
    digits = draw(NUMBERS)
    written = "".join(char + draw(SEPARATORS) for char in digits).rstrip(" -./\t(")
    prefix = draw(st.sampled_from(["+", "00", "", " +", "tel:+"]))
    suffix = draw(st.sampled_from(["", " ", "\n", "x", " ext"]))
    return digits, prefix + written + suffix


def _digit_runs(text: str) -> list[str]:
    """The digits of every run of digits and phone punctuation in `text`."""
    return ["".join(filter(str.isdigit, run)) for run in re.findall(r"\d[\d \t().\-/]*", text)]


@bounded(300)
@given(number=_written_numbers(), where=st.sampled_from(["phone", "key", "attribute", "integer"]))
@example(number=("353871235678", "+353 87 123 5678"), where="phone")
@example(number=("14155550100", "+1 (415) 555-0100"), where="phone")
def test_no_message_or_hint_shows_a_number_of_the_input_whole(number: tuple[str, str], where: str) -> None:
    digits, written = number
    body: dict[str, Any] = {
        "phone": {"phone": written, "integer": int(digits)}.get(where, "not a number"),
        **({written: 1} if where == "key" else {}),
        **({"custom_attributes": {"a": [written]}} if where == "attribute" else {}),
    }
    try:
        validate_request(PHONE_CALL_REDIRECTS, body)
    except IntercomValidationError as error:
        texts = [str(error), repr(error), repr(error.errors)]
        texts += [f"{issue.message} {issue.hint}" for issue in error.errors]
        assert not any(digits in run for text in texts for run in _digit_runs(text)), texts
        return
    assert where == "phone" and written == "+" + digits  # only a plain E.164 number is valid
