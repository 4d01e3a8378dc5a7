"""Numbering plans: numbers in E.164 shape that no country's plan allows are refused at /phone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect.filesystems import LocalFileSystem

from prefect_intercom import IntercomCredentials, IntercomValidationError, Outcome, Pacer, RetryPolicy
from prefect_intercom.batch import asend_batch
from prefect_intercom.numbering_plans import NUMBERING_PLANS_ENV, _impossible, impossible_number
from prefect_intercom.privacy import mask_phone
from prefect_intercom.sandbox import Sandbox
from prefect_intercom.schema_rules import E164_PATTERN
from prefect_intercom.validation import request_issues, validate_request
from prefect_intercom.violations import phone_hint

from .conftest import SECRET_TOKEN

ENDPOINT = "phone_call_redirects"
IMPOSSIBLE = {
    "+1415555010": ("+1 have 10 digits", "this one has 9"),  # one digit short for North America
    "+141555501000": ("+1 have 10 digits", "this one has 11"),  # one digit too many
    "+999123456789": ("no country uses +999", "no country uses +999"),
}
POSSIBLE = ["+14155550100", "+447700900123", "+353861234567", "+2901234", "+491234567890123"]


@pytest.mark.parametrize(("phone", "words"), IMPOSSIBLE.items(), ids=list(IMPOSSIBLE))
def test_a_number_no_plan_allows_is_refused_at_phone_with_a_hint(phone: str, words: tuple[str, str]) -> None:
    with pytest.raises(IntercomValidationError) as caught:
        validate_request(ENDPOINT, {"phone": phone})
    [issue] = caught.value.errors
    assert issue.path == "/phone"
    assert "cannot exist" in issue.message and words[0] in issue.message + (issue.hint or "")
    assert issue.hint and words[1] in issue.message + issue.hint


@pytest.mark.parametrize("phone", IMPOSSIBLE)
def test_the_refused_number_is_masked_in_the_message_and_the_hint(phone: str) -> None:
    [issue] = request_issues(ENDPOINT, {"phone": phone})
    assert phone not in issue.message and phone[1:] not in f"{issue.message} {issue.hint}"
    assert "•••" in issue.message


@pytest.mark.parametrize("phone", ["+14155550100", "+447700900123", "+353861234567", "+2901234", "+491234567890123"])
def test_numbers_the_plans_allow_pass(phone: str) -> None:
    validate_request(ENDPOINT, {"phone": phone})


def _example_numbers() -> list[str]:
    """Every example number libphonenumber's metadata holds, of every region and type, in E.164."""
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(phonenumbers.PhoneNumberType.UNKNOWN):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            numbers.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    return sorted(set(numbers))


def test_every_example_number_of_every_region_and_type_passes() -> None:
    # The schema's E.164 shape (7 to 15 digits) comes first: a 6-digit short code is refused by it.
    numbers = [phone for phone in _example_numbers() if re.fullmatch(E164_PATTERN, phone)]
    assert len(numbers) > 1000
    refused = {phone: request_issues(ENDPOINT, {"phone": phone}) for phone in numbers}
    assert {phone: issues for phone, issues in refused.items() if issues} == {}


NATIONAL_PREFIX_KEPT = {
    "+4402079460958": "+442079460958",  # UK: 020 7946 0958 is +44 20 7946 0958
    "+4901701234567": "+491701234567",  # Germany: 0170 ... is +49 170 ...
    "+330123456789": "+33123456789",  # France: 01 23 45 67 89 is +33 1 23 45 67 89
}


@pytest.mark.parametrize(("phone", "written"), NATIONAL_PREFIX_KEPT.items())
def test_a_number_that_keeps_its_national_prefix_after_the_country_code_is_refused(phone: str, written: str) -> None:
    [issue] = request_issues(ENDPOINT, {"phone": phone})
    assert issue.path == "/phone"
    assert "keeps a national prefix after the country code" in issue.message
    assert issue.hint is not None and issue.hint.endswith(mask_phone(written))
    assert phone not in issue.message + issue.hint and written not in issue.hint  # masked
    assert request_issues(ENDPOINT, {"phone": written}) == []


def test_italian_numbers_keep_their_leading_zero() -> None:
    assert request_issues(ENDPOINT, {"phone": "+390612345678"}) == []  # Rome: the 0 is part of the number


@pytest.mark.parametrize(
    ("written_by_a_person", "number"),
    [
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("0044 020 7946 0958", "+442079460958"),
        ("+49 (0)170 1234567", "+491701234567"),
    ],
)
def test_a_hint_never_suggests_a_number_with_the_national_prefix_kept(written_by_a_person: str, number: str) -> None:
    hint = phone_hint(written_by_a_person)
    assert hint is not None and hint.endswith(mask_phone(number)) and "national prefix" in hint
    [issue] = request_issues(ENDPOINT, {"phone": written_by_a_person})
    assert issue.hint == hint


def test_with_the_switch_off_a_kept_national_prefix_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NUMBERING_PLANS_ENV, "0")
    assert request_issues(ENDPOINT, {"phone": "+4402079460958"}) == []


def test_a_number_that_fails_the_schema_gets_only_the_schema_issue() -> None:
    [issue] = request_issues(ENDPOINT, {"phone": "+1 415 555 010"})
    assert "E.164" in issue.message


@pytest.mark.parametrize("value", ["0", "false", "off", "NO"])
def test_the_switch_turns_the_check_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(NUMBERING_PLANS_ENV, value)
    for phone in IMPOSSIBLE:
        validate_request(ENDPOINT, {"phone": phone})
    assert impossible_number("+999123456789") is None


def test_the_check_is_on_unless_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NUMBERING_PLANS_ENV, "1")
    assert impossible_number("+999123456789") is not None
    monkeypatch.delenv(NUMBERING_PLANS_ENV)
    assert impossible_number("+999123456789") is not None


def test_prepare_refuses_an_impossible_number_before_anything_is_sent() -> None:
    with IntercomCredentials(access_token=SECRET_TOKEN, base_url="http://127.0.0.1:9").get_client() as client:
        with pytest.raises(IntercomValidationError):
            client.prepare(ENDPOINT, {"phone": "+1415555010"})


async def test_in_a_batch_an_impossible_number_is_rejected_and_never_sent(
    prefect_server: None, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items: list[dict[str, Any]] = [{"phone": phone} for phone in ["+14155550100", *IMPOSSIBLE, "+447700900123"]]
    storage = LocalFileSystem(basepath=str(tmp_path / "ledger"))
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
    async with credentials.get_client(retry=RetryPolicy(backoff=0.01), pacer=Pacer()) as client:
        report = await asend_batch(client, iter(items), batch_key="plans", ledger_storage=storage, concurrency=4)
    outcomes = [item.outcome for item in report.items()]
    assert outcomes == [Outcome.SENT, *[Outcome.REJECTED] * 3, Outcome.SENT]
    assert sorted(request.body["phone"] for request in sandbox.received) == ["+14155550100", "+447700900123"]
    messages = [item.message or "" for item in report.items()[1:4]]
    assert all("cannot exist" in message for message in messages)


async def test_with_the_check_off_a_batch_sends_them(
    prefect_server: None, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NUMBERING_PLANS_ENV, "0")
    storage = LocalFileSystem(basepath=str(tmp_path / "ledger"))
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
    async with credentials.get_client(pacer=Pacer()) as client:
        report = await asend_batch(
            client, iter([{"phone": phone} for phone in IMPOSSIBLE]), batch_key="off", ledger_storage=storage
        )
    assert [item.outcome for item in report.items()] == [Outcome.SENT] * 3


# Numbers sharing a country code and a length share a cached "possible" verdict, unless a national
# prefix might be stripped: the cache must never change a verdict or a message.
_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_shaped = st.builds(
    lambda code, lead, rest: f"+{code}{lead}{rest}",
    st.sampled_from(_CODES),
    st.sampled_from(["", "0", "00", "1", "8", "9", "15", "0015", "7", "6", "2"]),
    st.text("0123456789", min_size=0, max_size=14),
).filter(lambda phone: re.fullmatch(E164_PATTERN, phone) is not None)


@settings(max_examples=2000, deadline=None)
@given(st.lists(_shaped, min_size=1, max_size=5))
def test_the_cached_verdict_is_always_phonenumbers_own(phones: list[str]) -> None:
    for phone in phones + phones:  # the second time from the cache
        assert impossible_number(phone) == _impossible(phone), phone


def test_the_cached_verdict_holds_for_every_example_number_and_its_neighbours() -> None:
    numbers = [phone for phone in _example_numbers() if re.fullmatch(E164_PATTERN, phone)]
    for phone in numbers:
        assert impossible_number(phone) is None
    neighbours = {phone[:-1] + str((int(phone[-1]) + 1) % 10) for phone in numbers}
    neighbours |= {phone[:-1] for phone in numbers} | {phone + "0" for phone in numbers}
    neighbours |= {phone[:4] + "0" + phone[4:] for phone in numbers}
    neighbours |= {phone[:3] + "0" + phone[3:] for phone in numbers}
    for phone in sorted(neighbours):
        if re.fullmatch(E164_PATTERN, phone):
            assert impossible_number(phone) == _impossible(phone), phone
