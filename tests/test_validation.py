"""Validation against the generated schema: every rule the docs page implies, with clear errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefect_intercom import IntercomValidationError, validate_request
from prefect_intercom.validation import json_pointer, validate_headers

from .conftest import OPENAPI_DIR

ENDPOINT = "phone_call_redirects"
INSTANCE_LIST = {
    "type": "order.list",
    "instances": [
        {"id": "16032025", "external_id": "0001d1c1e65a7a19e9f59ae2", "type": "Order", "custom_attributes": {"a": "b"}}
    ],
}


def _errors(body: Any) -> list[tuple[str, str, str | None]]:
    with pytest.raises(IntercomValidationError) as caught:
        validate_request(ENDPOINT, body)
    return [(issue.path, issue.message, issue.hint) for issue in caught.value.errors]


def _official_request_examples() -> list[tuple[str, dict]]:
    examples = []
    for path in sorted(Path(OPENAPI_DIR).glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        content = spec["paths"]["/phone_call_redirects"]["post"]["requestBody"]["content"]["application/json"]
        for name, example in content["examples"].items():
            examples.append((f"{path.name}:{name}", example["value"]))
    return examples


OFFICIAL_EXAMPLES = _official_request_examples()


def test_there_are_official_examples_in_both_files() -> None:
    files = {name.split(":")[0] for name, _ in OFFICIAL_EXAMPLES}
    assert len(files) == 2
    assert len(OFFICIAL_EXAMPLES) >= 8


@pytest.mark.parametrize(("name", "body"), OFFICIAL_EXAMPLES, ids=[name for name, _ in OFFICIAL_EXAMPLES])
def test_every_official_request_example_is_valid(name: str, body: dict) -> None:
    validate_request(ENDPOINT, body)


def test_official_custom_attributes_example_is_valid() -> None:
    spec = yaml.safe_load((OPENAPI_DIR / "phone_call_redirects.2.12.openapi.yaml").read_text())
    example = spec["components"]["schemas"]["custom_attributes"]["example"]
    assert isinstance(example["paid_subscriber"], bool)
    validate_request(ENDPOINT, {"phone": "+353832345678", "custom_attributes": example})


VALID_BODIES = [
    {"phone": "+14155550100"},
    {"phone": "+353832345678", "custom_attributes": {}},
    {"phone": "+447911123456", "custom_attributes": {"issue_type": "Billing", "priority": "High"}},
    {"phone": "+2901234", "custom_attributes": {"count": 3, "spend": 155.5, "vip": False}},  # 7 digits (St Helena)
    {"phone": "+491234567890123"},  # 15 digits, the most E.164 allows (Germany's plan allows them)
    {"phone": "+14155550100", "custom_attributes": {"orders": INSTANCE_LIST}},
    {"phone": "+14155550100", "custom_attributes": {"custom_object_instance_list": INSTANCE_LIST}},
    {"phone": "+14155550100", "custom_attributes": {"orders": {"type": "order.list", "instances": []}}},
    {"phone": "+14155550100", "custom_attributes": {"start": "2023-03-04T09:46:14Z", "end": 1677923174}},
]


@pytest.mark.parametrize("body", VALID_BODIES)
def test_valid_bodies(body: dict) -> None:
    validate_request(ENDPOINT, body)


INVALID_BODIES = [
    # (body, path, words in the message, words in the hint)
    ({}, "/phone", "required field 'phone' is missing", "+14155550100"),
    ({"phone_number": "+14155550100"}, "/phone_number", "unknown field 'phone_number'", "did you mean 'phone'"),
    ({"phone": "+14155550100", "custom_atributes": {}}, "/custom_atributes", "unknown field", "custom_attributes"),
    ({"phone": "+1 415 555 0100"}, "/phone", "E.164", "remove spaces: +1415•••0100"),
    ({"phone": "+1 (415) 555-0100"}, "/phone", "E.164", "remove spaces and punctuation: +1415•••0100"),
    ({"phone": "14155550100"}, "/phone", "E.164", "start with '+' and the country code"),
    ({"phone": "415-555-0100"}, "/phone", "E.164", "without its national leading 0"),
    ({"phone": "0014155550100"}, "/phone", "E.164", "replace the international prefix 00"),
    ({"phone": "+14155550100\n"}, "/phone", "E.164", "line break"),
    ({"phone": " +14155550100"}, "/phone", "E.164", "white space"),
    ({"phone": "+1234567890123456"}, "/phone", "E.164", "at most 15 digits"),
    ({"phone": "+123456"}, "/phone", "E.164", "at least 7 digits"),
    ({"phone": "+0123456789"}, "/phone", "E.164", "cannot start with 0"),
    ({"phone": "+١٤١٥٥٥٥٠١٠٠"}, "/phone", "E.164", None),  # Arabic-Indic digits are not [0-9]
    ({"phone": ""}, "/phone", "E.164", None),
    ({"phone": 14155550100}, "/phone", "expected a string, got an integer", None),
    ({"phone": None}, "/phone", "expected a string, got null", None),
    ({"phone": "+14155550100", "custom_attributes": []}, "/custom_attributes", "expected an object", None),
    ({"phone": "+14155550100", "custom_attributes": "x"}, "/custom_attributes", "expected an object", None),
    ({"phone": "+14155550100", "custom_attributes": {"a": None}}, "/custom_attributes/a", "got null", None),
    ({"phone": "+14155550100", "custom_attributes": {"a": [1]}}, "/custom_attributes/a", "got an array", None),
    (
        {"phone": "+14155550100", "custom_attributes": {"a/b": {"type": 1}}},
        "/custom_attributes/a~1b/type",
        "expected a string",
        None,
    ),
    (
        {"phone": "+14155550100", "custom_attributes": {"o": {"type": "x", "instance": []}}},
        "/custom_attributes/o/instance",
        "unknown field 'instance'",
        "did you mean 'instances'",
    ),
    (
        {"phone": "+14155550100", "custom_attributes": {"o": {"instances": [{"externalid": "1"}]}}},
        "/custom_attributes/o/instances/0/externalid",
        "unknown field",
        "external_id",
    ),
    (
        {"phone": "+14155550100", "custom_attributes": {"o": {"instances": {"id": "1"}}}},
        "/custom_attributes/o/instances",
        "expected an array",
        None,
    ),
    (
        {"phone": "+14155550100", "custom_attributes": {"when": dt.date(2024, 1, 2)}},
        "/custom_attributes/when",
        "not a JSON value",
        "ISO 8601",
    ),
    ({"phone": "+14155550100", "custom_attributes": {"x": float("inf")}}, "/custom_attributes/x", "JSON number", None),
    ({"phone": "+14155550100", "custom_attributes": {1: "a"}}, "/custom_attributes/1", "keys must be strings", None),
    ([], "", "expected an object, got an array", None),
    (None, "", "expected an object, got null", None),
    ("+14155550100", "", "expected an object", None),
]


@pytest.mark.parametrize(("body", "path", "message", "hint"), INVALID_BODIES)
def test_invalid_bodies_name_the_field(body: Any, path: str, message: str, hint: str | None) -> None:
    errors = _errors(body)
    matching = [error for error in errors if error[0] == path]
    assert matching, f"no error at {path!r}: {errors}"
    _, found_message, found_hint = matching[0]
    assert message in found_message
    if hint is not None:
        assert found_hint is not None and hint in found_hint


@pytest.mark.parametrize("phone", ["415-555-0100", "4155550100", "07911 123456"])
def test_a_hint_never_guesses_the_country(phone: str) -> None:
    [(_, _, hint)] = _errors({"phone": phone})
    assert hint is not None
    digits = "".join(char for char in phone if char.isdigit())
    assert f"+{digits}" not in hint and f"+{digits.lstrip('0')}" not in hint


def test_every_violation_is_reported_at_once() -> None:
    errors = _errors({"phone_number": "1", "custom_attributes": {"a": None, "b": {"types": "x"}}})
    assert [path for path, _, _ in errors] == [
        "/custom_attributes/a",
        "/custom_attributes/b/types",
        "/phone",
        "/phone_number",
    ]


def test_error_message_lists_every_issue_and_says_nothing_was_sent() -> None:
    with pytest.raises(IntercomValidationError) as caught:
        validate_request(ENDPOINT, {"phone": "+1 415 555 0100", "extra": 1})
    text = str(caught.value)
    assert "nothing was sent" in text
    assert "/phone" in text and "/extra" in text
    assert caught.value.endpoint == ENDPOINT
    assert isinstance(caught.value, ValueError)


def test_unknown_endpoint_lists_what_exists() -> None:
    with pytest.raises(LookupError, match="phone_call_redirects"):
        validate_request("contacts", {})


@pytest.mark.parametrize(
    ("headers", "path", "message"),
    [
        ({"Content-Type": "application/json", "Intercom-Version": "3.0"}, "/Intercom-Version", "not one of"),
        ({"Content-Type": "application/json", "Intercom-Version": "2.12\r\nX-Evil: 1"}, "/Intercom-Version", ""),
        ({"Content-Type": "application/json\nX: y"}, "/Content-Type", "line break"),
        ({"Intercom-Version": "2.12"}, "/Content-Type", "missing"),
    ],
)
def test_headers_are_validated(headers: dict, path: str, message: str) -> None:
    with pytest.raises(IntercomValidationError) as caught:
        validate_headers(ENDPOINT, headers)
    assert any(issue.path == path and message in issue.message for issue in caught.value.errors), caught.value.errors


def test_version_typo_gets_a_suggestion() -> None:
    with pytest.raises(IntercomValidationError) as caught:
        validate_headers(ENDPOINT, {"Content-Type": "application/json", "Intercom-Version": "v2.12"})
    assert caught.value.errors[0].hint == "did you mean '2.12'?"


def test_json_pointer_escapes_per_rfc_6901() -> None:
    assert json_pointer([]) == ""
    assert json_pointer(["a/b", "m~n", 0]) == "/a~1b/m~0n/0"


# --- phone numbers are masked in every message and hint -----------------------------------

MASKED_INPUTS = [
    # (body, the number's digits, what the message or hint shows instead)
    ({"phone": "+353 87 123 5678"}, "353871235678", "remove spaces: +3538•••5678"),
    ({"phone": "+353 87 123 5678"}, "353871235678", "'+353 8•••5678' is not a phone number"),
    ({"phone": " +353871235678"}, "353871235678", "white space or line break: +3538•••5678"),
    ({"phone": "00353871235678"}, "353871235678", "with '+': +3538•••5678"),
    ({"phone": "353871235678"}, "353871235678", "'3538•••5678' is not a phone number"),
    ({"phone": 353871235678}, "353871235678", "got an integer (3538•••5678)"),
    ({"phone": "+353871235678x"}, "353871235678", "'+3538•••5678x' is not a phone number"),
    ({"phone": "+14155550100", "+353871235678": 1}, "353871235678", "unknown field '+3538•••5678'"),
    ({"phone": "+14155550100", "custom_attributes": {"a": ["+353871235678"]}}, "353871235678", "got an array"),
]


@pytest.mark.parametrize(("body", "digits", "shown"), MASKED_INPUTS)
def test_a_number_in_the_input_is_masked_in_messages_hints_and_the_error(body: Any, digits: str, shown: str) -> None:
    with pytest.raises(IntercomValidationError) as caught:
        validate_request(ENDPOINT, body)
    text = str(caught.value) + repr(caught.value) + repr(caught.value.errors)
    assert shown in text
    assert digits not in text.replace(" ", "")


def test_the_switch_shows_full_numbers_for_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_INTERCOM_SHOW_PHONES", "1")
    [(_, message, hint)] = _errors({"phone": "+353 87 123 5678"})
    assert hint == "remove spaces: +353871235678"
    assert "'+353 87 123 5678'" in message


def test_examples_in_hints_are_not_masked() -> None:
    [(_, _, hint)] = _errors({})
    assert hint is not None and '"+14155550100"' in hint  # our own example, not the user's number


def test_a_packaged_endpoint_is_compiled_once_not_for_every_request() -> None:
    """The packaged endpoint's validators are cached (compiling one costs ~17 ms: the send path's whole budget)."""
    from prefect_intercom.catalog import default_catalog, get_endpoint
    from prefect_intercom.validation import _validator

    endpoint = get_endpoint("phone_call_redirects")
    assert "phone_call_redirects" in default_catalog() and "nope" not in default_catalog()
    assert _validator(endpoint, "request_schema") is _validator(endpoint, "request_schema")
    assert _validator("phone_call_redirects", "headers_schema") is _validator(endpoint, "headers_schema")
