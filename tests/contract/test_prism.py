"""Requests judged by an independent server: Stoplight Prism mocking Intercom's 2.12 description.

Every request goes through the project's own pipeline (the task, or `IntercomClient`) to Prism
over loopback. Prism validates each against the description (`--errors`): a violation would
come back as an error answer with an `sl-violations` header and a `Violation` log line. The
`Prefer` header (added by a test transport, the only thing added to the pipeline) asks Prism
for each documented answer, and each must parse into the right result or error.
"""

from __future__ import annotations

import json
import re

import httpx
import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prefect import flow

from prefect_intercom import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomCredentials,
    IntercomValidationError,
    PhoneCallRedirect,
    create_phone_call_redirect,
)
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.credentials import INTERCOM_VERSIONS
from prefect_intercom.errors import IntercomRateLimitError, IntercomServerError
from prefect_intercom.schema_rules import E164_PATTERN
from prefect_intercom.validation import validate_request

from ..bounded import bounded
from ..conftest import SECRET_TOKEN
from .conftest import PrismServer
from .description import official, operation

pytestmark = pytest.mark.e2e

_EXAMPLES_200 = operation(official())["responses"]["200"]["content"]["application/json"]["examples"]
EXAMPLE_URL = _EXAMPLES_200["successful"]["value"]["url"]
EXAMPLE_401 = operation(official())["responses"]["401"]["content"]["application/json"]["examples"]["Unauthorized"]
# Custom attribute values within Intercom's description: string, integer, date-time (string or
# UNIX time) and a custom object instance list.
DESCRIBED_ATTRIBUTES = {
    "issue_type": "Billing",
    "team_mates": 9,
    "start_date_iso8601": "2023-03-04T09:46:14Z",
    "end_date_timestamp": 1677923174,
    "orders": {
        "type": "order.list",
        "instances": [{"id": "16032025", "external_id": "0001d1c1", "type": "Order", "custom_attributes": {"a": "b"}}],
    },
}


class RecordingTransport(httpx.HTTPTransport):
    """An httpx transport that adds a `Prefer` header and keeps every answer's headers."""

    def __init__(self, prefer: str | None = None) -> None:
        super().__init__()
        self.prefer = prefer
        self.answers: list[httpx.Headers] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.prefer:
            request.headers["Prefer"] = self.prefer
        response = super().handle_request(request)
        self.answers.append(response.headers)
        return response


class AsyncRecordingTransport(httpx.AsyncHTTPTransport):
    """Async twin of `RecordingTransport`."""

    def __init__(self, prefer: str | None = None) -> None:
        super().__init__()
        self.prefer = prefer
        self.answers: list[httpx.Headers] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.prefer:
            request.headers["Prefer"] = self.prefer
        response = await super().handle_async_request(request)
        self.answers.append(response.headers)
        return response


def _credentials(prism: PrismServer, **options: object) -> IntercomCredentials:
    return IntercomCredentials(access_token=SECRET_TOKEN, base_url=prism.url, **options)


def _assert_no_violation(transport: RecordingTransport | AsyncRecordingTransport) -> None:
    assert transport.answers, "nothing reached Prism"
    for headers in transport.answers:
        assert "sl-violations" not in headers, json.loads(headers["sl-violations"])


def _send(prism: PrismServer, body: object, prefer: str | None = None, **options: object) -> PhoneCallRedirect:
    transport = RecordingTransport(prefer)
    try:
        with _credentials(prism, **options).get_client(transport=transport) as client:
            response = client.request(PHONE_CALL_REDIRECTS, body)
        return PhoneCallRedirect.from_response(response)
    finally:
        _assert_no_violation(transport)


# --- the task ------------------------------------------------------------------------------


def test_the_task_passes_prisms_validation(prism: PrismServer, prefect_server: None) -> None:
    @flow
    def deflect() -> PhoneCallRedirect:
        return create_phone_call_redirect(_credentials(prism), "+353832345678", DESCRIBED_ATTRIBUTES)

    received_before = prism.log().count("Request received")
    result = deflect()
    assert prism.log().count("Request received") == received_before + 1
    # Prism's static 200 example is the `{url, type}` shape.
    assert result.type == "phone_call_redirect"
    assert result.url == EXAMPLE_URL
    assert result.phone is None


async def test_the_async_task_passes_prisms_validation(prism: PrismServer, prefect_server: None) -> None:
    @flow
    async def deflect() -> PhoneCallRedirect:
        return await create_phone_call_redirect(_credentials(prism), "+14155550100")

    result = await deflect()
    assert result.url == EXAMPLE_URL


def test_an_invalid_body_never_reaches_prism(prism: PrismServer, prefect_server: None) -> None:
    @flow
    def deflect() -> PhoneCallRedirect:
        return create_phone_call_redirect(_credentials(prism), "+1 415 555 0100")

    received_before = prism.log().count("Request received")
    with pytest.raises(IntercomValidationError):
        deflect()
    assert prism.log().count("Request received") == received_before


# --- requests: every shape the project sends is valid for the description ---------------------


@pytest.mark.parametrize(
    "body",
    [
        {"phone": "+14155550100"},
        {"phone": "+353832345678", "custom_attributes": {"issue_type": "Billing", "priority": "High"}},
        {"phone": "+40241100100", "custom_attributes": DESCRIBED_ATTRIBUTES},
        {"phone": "+447700900123", "custom_attributes": {}},
        {"phone": "+12345678", "custom_attributes": {"orders": {"type": "order.list", "instances": []}}},
        {"phone": "+491234567890123", "custom_attributes": {"orders": {"instances": [{}]}}},  # 15 digits (DE)
    ],
    ids=["phone-only", "docs-example", "every-described-value", "empty-attributes", "no-instances", "15-digits"],
)
def test_request_bodies_pass_prisms_validation(prism: PrismServer, body: dict) -> None:
    assert _send(prism, body).type == "phone_call_redirect"


# Prism mocks the 2.12 description: it judges the versions that description lists. The block also
# offers the later ones (2.13-2.16, "Preview") from the Preview description, and the page's "Unstable".
VERSIONS_2_12 = official()["components"]["schemas"]["intercom_version"]["enum"]


@pytest.mark.parametrize("version", [version for version in INTERCOM_VERSIONS if version in VERSIONS_2_12])
def test_every_intercom_version_the_block_offers_passes(prism: PrismServer, version: str) -> None:
    assert _send(prism, {"phone": "+14155550100"}, intercom_version=version).type == "phone_call_redirect"


def test_unstable_is_offered_by_the_docs_page_but_not_by_the_2_12_description(prism: PrismServer) -> None:
    # Disagreement (README): the docs page lists "Unstable" as an Intercom-Version; the 2.12
    # description does not, and the Preview description calls that version "Preview".
    prism.expected_violations.append("intercom-version must be equal to one of the allowed values")
    transport = RecordingTransport()
    with _credentials(prism, intercom_version="Unstable").get_client(transport=transport) as client:
        with pytest.raises(IntercomAPIError):
            client.request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
    (headers,) = transport.answers
    assert "intercom-version" in headers["sl-violations"]


def test_a_boolean_attribute_is_refused_by_the_description_though_its_example_carries_one(prism: PrismServer) -> None:
    # Disagreement (README): the schema of `custom_attributes` has no boolean or float, yet its
    # own example has `paid_subscriber: true` and `monthly_spend: 155.5`. The project allows both.
    prism.expected_violations.append("request.body.custom_attributes.paid_subscriber")
    transport = RecordingTransport()
    body = {"phone": "+14155550100", "custom_attributes": {"paid_subscriber": True}}
    validate_request(PHONE_CALL_REDIRECTS, body)
    with _credentials(prism).get_client(transport=transport) as client:
        with pytest.raises(IntercomAPIError):
            client.request(PHONE_CALL_REDIRECTS, body)
    assert "custom_attributes" in transport.answers[0]["sl-violations"]


def _possible_e164(region: str, tail: int) -> str:
    """An E.164 number its country's numbering plan allows: the region's example with other last digits."""
    example = phonenumbers.example_number(region)
    digits = f"+{example.country_code}{example.national_number}"
    return digits[:-2] + f"{tail:02d}"


def _plan_allows_its_example(region: str) -> bool:
    """The region has an example number, and its numbering plan allows it with any last two digits."""
    if phonenumbers.example_number(region) is None:
        return False
    return all(phonenumbers.is_possible_number(phonenumbers.parse(_possible_e164(region, tail))) for tail in (0, 99))


# E.164 (the schema) and possible in its country's numbering plan (checked after the schema).
_E164 = st.builds(
    _possible_e164,
    st.sampled_from(sorted(r for r in phonenumbers.SUPPORTED_REGIONS if _plan_allows_its_example(r))),
    st.integers(0, 99),
).filter(lambda number: re.fullmatch(E164_PATTERN, number) is not None)
_KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
_INSTANCE = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=8),
        "external_id": st.text(max_size=8),
        "type": st.text(max_size=8),
        "custom_attributes": st.dictionaries(_KEYS, st.text(max_size=8), max_size=2),
    },
)
_DESCRIBED_VALUE = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
    st.fixed_dictionaries({}, optional={"type": st.text(max_size=8), "instances": st.lists(_INSTANCE, max_size=2)}),
)
DESCRIBED_BODIES = st.fixed_dictionaries(
    {"phone": _E164}, optional={"custom_attributes": st.dictionaries(_KEYS, _DESCRIBED_VALUE, max_size=4)}
)


@bounded(40)
@given(body=DESCRIBED_BODIES)
def test_generated_bodies_the_project_accepts_pass_prisms_validation(prism: PrismServer, body: dict) -> None:
    validate_request(PHONE_CALL_REDIRECTS, body)  # the project accepts it ...
    assert _send(prism, body).type == "phone_call_redirect"  # ... and so does the description


# --- answers: every documented answer parses into the right result or error -----------------


def test_200_example_shape_url_and_type(prism: PrismServer) -> None:
    result = _send(prism, {"phone": "+14155550100"}, prefer="code=200, example=successful")
    assert result == PhoneCallRedirect(type="phone_call_redirect", url=EXAMPLE_URL)


def test_200_schema_shape_type_and_phone(prism: PrismServer) -> None:
    # `dynamic=true` answers from the `phone_switch` schema ({type, phone}); the schema is
    # `nullable`, so some answers are a JSON `null`, which must parse too (as an empty result).
    shapes = set()
    for _ in range(30):
        transport = RecordingTransport("code=200, dynamic=true")
        with _credentials(prism).get_client(transport=transport) as client:
            response = client.request(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
        _assert_no_violation(transport)
        result = PhoneCallRedirect.from_response(response)
        if response.unparsed_body is not None:
            assert response.unparsed_body == "null"
            assert result == PhoneCallRedirect()
            shapes.add("null")
        else:
            assert result.type == "phone_call_redirect"
            assert isinstance(result.phone, str)
            assert result.url is None
            shapes.add("phone")
        if "phone" in shapes:
            break
    assert "phone" in shapes


@pytest.mark.parametrize(
    ("prefer", "error_code", "message"),
    [
        ("code=400, example=bad request - invalid number", "invalid_phone_number", "Invalid phone number"),
        (
            "code=400, example=bad request - exception sending sms",
            "sms_failed",
            "SMS was not sent due to an unknown error",
        ),
    ],
)
def test_400_answers(prism: PrismServer, prefer: str, error_code: str, message: str) -> None:
    with pytest.raises(IntercomAPIError) as caught:
        _send(prism, {"phone": "+353832345678"}, prefer=prefer)
    error = caught.value
    assert type(error) is IntercomAPIError
    assert (error.status_code, error.error_code, error.message, error.request_id) == (400, error_code, message, None)
    assert error.hint and error_code in str(error) and message in str(error)


def test_401_error_list(prism: PrismServer) -> None:
    with pytest.raises(IntercomAuthenticationError) as caught:
        _send(prism, {"phone": "+14155550100"}, prefer="code=401")
    error = caught.value
    expected = EXAMPLE_401["value"]
    assert error.status_code == 401
    assert error.error_code == expected["errors"][0]["code"] == "unauthorized"
    assert error.message == expected["errors"][0]["message"] == "Access Token Invalid"
    assert error.request_id == expected["request_id"]
    assert error.errors == [{"code": "unauthorized", "message": "Access Token Invalid"}]
    assert expected["request_id"] in str(error)
    assert SECRET_TOKEN not in str(error) and SECRET_TOKEN not in repr(error.__dict__)


def test_422_error_key_without_message(prism: PrismServer) -> None:
    with pytest.raises(IntercomAPIError) as caught:
        _send(prism, {"phone": "+40241100100"}, prefer="code=422")
    error = caught.value
    assert not isinstance(error, (IntercomAuthenticationError, IntercomRateLimitError, IntercomServerError))
    assert (error.status_code, error.error_code, error.message) == (422, "some_error", None)
    assert "HTTP 422" in str(error) and "some_error" in str(error)


async def test_async_client_gets_the_same_answers(prism: PrismServer) -> None:
    transport = AsyncRecordingTransport("code=401")
    async with _credentials(prism).get_client(async_transport=transport) as client:
        with pytest.raises(IntercomAuthenticationError) as caught:
            await client.arequest(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
        transport.prefer = "code=200, example=successful"
        response = await client.arequest(PHONE_CALL_REDIRECTS, {"phone": "+14155550100"})
    _assert_no_violation(transport)
    assert caught.value.error_code == "unauthorized"
    assert PhoneCallRedirect.from_response(response).url == EXAMPLE_URL
