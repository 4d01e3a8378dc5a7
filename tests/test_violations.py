"""Unit tests of `prefect_intercom.violations`: JSON Pointers, values JSON cannot carry, phone hints, `explain`."""

from __future__ import annotations

import datetime as dt
import decimal
import types
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from prefect_intercom.errors import ValidationIssue
from prefect_intercom.schema_rules import E164_FORMAT, E164_PATTERN, FORMAT_ANNOTATION
from prefect_intercom.violations import MAX_NESTING, explain, json_pointer, not_json_issues, phone_hint

PHONE_SCHEMA = {"type": "string", "pattern": E164_PATTERN, FORMAT_ANNOTATION: E164_FORMAT}
BODY_SCHEMA = {
    "type": "object",
    "required": ["phone", "name"],
    "properties": {"phone": PHONE_SCHEMA, "name": {"type": "string"}, "version": {"enum": ["2.11", "2.12"]}},
    "additionalProperties": False,
}


def _explained(schema: dict[str, Any], instance: Any) -> list[ValidationIssue]:
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda error: list(error.absolute_path))
    return [issue for error in errors for issue in explain(error)]


def _resolve(document: Any, pointer: str) -> Any:
    """RFC 6901 evaluation, written out here so that the test does not trust `json_pointer`."""
    for token in pointer.split("/")[1:] if pointer else []:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def _nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


# --- json_pointer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "pointer"),
    [
        ([], ""),
        ([""], "/"),
        (["a/b"], "/a~1b"),
        (["m~n"], "/m~0n"),
        (["/"], "/~1"),  # '~' is escaped first, or '~1' would become '~01'
        (["~1"], "/~01"),
        (["a", 0, " ", "c%d"], "/a/0/ /c%d"),
    ],
)
def test_json_pointer_follows_rfc_6901(parts: list[Any], pointer: str) -> None:
    assert json_pointer(parts) == pointer


def test_a_json_pointer_resolves_back_to_the_value_it_names() -> None:
    document = {"a/b": {"m~n": [{"~1": "found"}]}, "": {"/": 1}}
    assert _resolve(document, json_pointer(["a/b", "m~n", 0, "~1"])) == "found"
    assert _resolve(document, json_pointer(["", "/"])) == 1


# --- not_json_issues -----------------------------------------------------------------------


def test_a_json_value_has_no_issues_even_with_shared_parts_and_64_bit_extremes() -> None:
    shared = [1, 2]
    value = {"a": shared, "b": shared, "big": 2**63 - 1, "small": -(2**63), "flag": True, "none": None, "x": 1.5}
    assert list(not_json_issues(value)) == []
    assert list(not_json_issues(_nested(MAX_NESTING))) == []


def test_each_value_json_cannot_carry_is_named_at_its_json_pointer() -> None:
    value = {
        "a/b": {"m~n": [float("nan")]},
        "inf": float("inf"),
        "ninf": float("-inf"),
        "over": 2**63,
        "under": -(2**63) - 1,
        "text": "x\ud800",
    }
    issues = {issue.path: issue for issue in not_json_issues(value)}
    assert sorted(issues) == ["/a~1b/m~0n/0", "/inf", "/ninf", "/over", "/text", "/under"]
    assert issues["/a~1b/m~0n/0"].message == "nan is not a JSON number"
    assert issues["/ninf"].hint == "use a finite number"
    assert issues["/over"].message == "an integer of 64 bits is outside the 64-bit range (-2**63 to 2**63-1)"
    assert issues["/over"].hint == "send very large numbers as a string"
    assert "lone surrogate" in issues["/text"].message
    for pointer in issues:
        if pointer != "/text":  # the broken text itself cannot be looked up by a valid string
            _resolve(value, pointer)


def test_keys_that_are_not_text_are_named_readably_and_masked() -> None:
    issues = list(not_json_issues({1: "a", (1, 2): "b", 14155550100: "c", "k\udc00": "d"}))
    assert [(issue.path, issue.message) for issue in issues] == [
        ("/1", "object keys must be strings, got int 1"),
        ("/(1, 2)", "object keys must be strings, got tuple (1, 2)"),
        ("/1415•••0100", "object keys must be strings, got int 1415•••0100"),
        ("/k\\udc00", "the key is not valid Unicode text (it holds a lone surrogate)"),
    ]


def test_a_cycle_is_named_where_it_closes_and_does_not_recurse() -> None:
    loop: dict[str, Any] = {"items": []}
    loop["items"].append(loop)
    [issue] = not_json_issues({"loop": loop})
    assert issue.path == "/loop/items/0"
    assert "cycle" in issue.message


def test_nesting_deeper_than_the_limit_is_refused_at_the_first_level_too_deep() -> None:
    [issue] = not_json_issues(_nested(MAX_NESTING + 1))
    assert issue.path == "/0" * MAX_NESTING
    assert (issue.message, issue.hint) == (f"nested deeper than {MAX_NESTING} levels", "flatten the value")


@pytest.mark.parametrize(
    ("value", "kind", "hint"),
    [
        (dt.date(2024, 1, 2), "date", "ISO 8601"),
        (dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC), "datetime", "UNIX timestamp"),
        ((1, 2), "tuple", "use a list"),
        ({1, 2}, "set", "use a list"),
        (frozenset(), "frozenset", "use a list"),
        (types.MappingProxyType({"a": 1}), "mappingproxy", "use a dict"),
        (decimal.Decimal("1.5"), "Decimal", None),
        (b"bytes", "bytes", None),
        (object(), "object", None),
    ],
)
def test_a_python_only_value_is_named_by_its_type_with_a_fix_where_there_is_one(
    value: Any, kind: str, hint: str | None
) -> None:
    [issue] = not_json_issues({"v": [value]})
    assert (issue.path, issue.message) == ("/v/0", f"a {kind} is not a JSON value")
    if hint is None:
        assert issue.hint is None
    else:
        assert issue.hint is not None and hint in issue.hint


# --- phone_hint ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "hint"),
    [
        (" +353871235678\n", "remove the surrounding white space or line break: +3538•••5678"),
        ("+353 87 123 5678", "remove spaces: +3538•••5678"),
        ("+353\t871235678", "remove spaces: +3538•••5678"),
        ("+353 (87) 123-5678", "remove spaces and punctuation: +3538•••5678"),
        ("+353.87.123/5678", "remove spaces and punctuation: +3538•••5678"),
        ("00353 87 123 5678", "replace the international prefix 00 with '+': +3538•••5678"),
        ("+1234567890123456", "E.164 numbers have at most 15 digits; this one has 16"),
        ("+123456", "E.164 numbers have at least 7 digits; this one has 6"),
        ("+0353871235678", "the country code cannot start with 0"),
    ],
)
def test_a_phone_written_the_way_people_write_it_gets_its_fix_with_the_number_masked(phone: str, hint: str) -> None:
    assert phone_hint(phone) == hint


@pytest.mark.parametrize("phone", ["0871235678", "087 123 5678", "(415) 555-0100", "4155550100"])
def test_a_number_without_its_country_code_gets_advice_and_never_a_guessed_number(phone: str) -> None:
    hint = phone_hint(phone)
    assert hint is not None and hint.startswith("start with '+' and the country code")
    digits = "".join(char for char in phone if char.isdigit())
    assert digits not in hint and digits.lstrip("0") not in hint


@pytest.mark.parametrize("phone", ["+14155550100", "", "call me", "+1415555010x", "+١٤١٥٥٥٥٠١٠٠"])
def test_no_hint_when_the_fix_is_not_obvious_or_nothing_is_wrong(phone: str) -> None:
    assert phone_hint(phone) is None


def test_the_switch_shows_the_whole_number_in_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_INTERCOM_SHOW_PHONES", "1")
    assert phone_hint("+353 87 123 5678") == "remove spaces: +353871235678"
    monkeypatch.setenv("PREFECT_INTERCOM_SHOW_PHONES", "0")
    assert phone_hint("+353 87 123 5678") == "remove spaces: +3538•••5678"


# --- explain -------------------------------------------------------------------------------


def test_each_missing_required_field_is_its_own_issue_and_a_phone_gets_an_example() -> None:
    # jsonschema reports `required` once per missing field; the caller (validation) drops repeats.
    issues = {
        (issue.path, issue.message, issue.hint) for issue in _explained({"properties": {"o": BODY_SCHEMA}}, {"o": {}})
    }
    phone_example = 'add "phone": "+14155550100" (E.164: a "+", the country code and the number)'
    assert issues == {
        ("/o/phone", "required field 'phone' is missing", phone_example),
        ("/o/name", "required field 'name' is missing", None),
    }


def test_an_unknown_field_is_named_with_the_closest_allowed_one_or_the_list() -> None:
    issues = _explained(BODY_SCHEMA, {"phone": "+14155550100", "name": "x", "phnoe": 1, "zzz": 2})
    assert [(issue.path, issue.message, issue.hint) for issue in issues] == [
        ("/phnoe", "unknown field 'phnoe'", "did you mean 'phone'?"),
        ("/zzz", "unknown field 'zzz'", "allowed fields: name, phone, version"),
    ]


def test_type_enum_and_line_break_violations_are_worded_plainly() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a/b": {"type": "array", "items": {"type": ["string", "null"]}},
            "version": {"enum": ["2.11", "2.12"]},
            "header": {"type": "string", "not": {"pattern": "[\r\n]"}},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
    }
    issues = _explained(schema, {"a/b": ["x", 5], "version": "v2.12", "header": "a\r\nX-Evil: 1", "either": []})
    assert [(issue.path, issue.message, issue.hint) for issue in issues] == [
        ("/a~1b/1", "expected a string or null, got an integer (5)", None),
        ("/either", "expected a string or an integer, got an array", None),
        ("/header", "must not contain a line break (CR or LF)", "remove the line breaks"),
        ("/version", "'v2.12' is not one of the allowed values: 2.11, 2.12", "did you mean '2.12'?"),
    ]


def test_a_phone_that_breaks_the_e164_pattern_is_explained_masked_with_its_hint() -> None:
    [issue] = _explained({"type": "object", "properties": {"phone": PHONE_SCHEMA}}, {"phone": "+353 87 123 5678"})
    assert issue.path == "/phone"
    assert issue.message.startswith("'+353 8•••5678' is not a phone number in E.164 format")
    assert issue.hint == "remove spaces: +3538•••5678"
    assert "871235678" not in (issue.message + issue.hint).replace(" ", "")


def test_a_keyword_without_its_own_words_falls_back_to_jsonschemas_message_masked_and_cut() -> None:
    value = "+353871235678 " * 40
    [violation] = Draft202012Validator({"type": "string", "maxLength": 3}).iter_errors(value)
    assert "353871235678" in violation.message  # what jsonschema says quotes the number whole
    [issue] = explain(violation)
    assert (issue.path, issue.hint) == ("", None)
    assert issue.message.startswith("'+3538•••5678 +3538•••5678")
    assert len(issue.message) == 300 and issue.message.endswith("...")
    assert "353871235678" not in issue.message
    [short] = _explained({"minimum": 10}, 5)
    assert short.message == "5 is less than the minimum of 10"
