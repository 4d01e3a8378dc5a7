"""The test-request reports, rendered from plain values (no Prefect, no network)."""

from __future__ import annotations

import pytest

from prefect_intercom.catalog import get_endpoint
from prefect_intercom.client import IntercomClient
from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomServerError,
    IntercomTransportError,
    IntercomValidationError,
    Outcome,
    ValidationIssue,
)
from prefect_intercom.flows import reports
from prefect_intercom.prepared import PreparedRequest
from prefect_intercom.responses import IntercomResponse, RateLimit

TOKEN = "tok_REPORTS_4b1d3c2e"  # a test token the reports must never see or show
URL = "http://127.0.0.1:8765"


@pytest.fixture
def prepared() -> PreparedRequest:
    client = IntercomClient(TOKEN, base_url=URL, intercom_version="2.12")
    return client.prepare("phone_call_redirects", {"phone": "+14155550100"})


def test_connection_report_shows_host_region_version_and_never_a_token() -> None:
    markdown = reports.connection_markdown(
        block_name="intercom", api_url="https://api.eu.intercom.io", region="eu", block_version="2.12", timeout=30
    )
    assert markdown.startswith("# Step 1 · Add the HTTP task\n")
    assert "| Block | `intercom-credentials/intercom` |" in markdown
    assert "| Host | `https://api.eu.intercom.io` |" in markdown
    assert "| Region | `eu` |" in markdown
    assert "| Intercom-Version | `2.12` |" in markdown
    assert "| Access token | `[REDACTED]`" in markdown
    assert "| Timeout | 30 s |" in markdown


def test_connection_report_says_when_the_base_url_and_a_version_override_apply() -> None:
    markdown = reports.connection_markdown(
        block_name="sandbox", api_url=URL, region="us", block_version="2.12", version_override="2.11", base_url_set=True
    )
    assert "| Region | `us` (not used: the block's base URL overrides it) |" in markdown
    assert "| Intercom-Version | `2.11` (this run; the block says `2.12`) |" in markdown


def test_reference_report_has_reference_prepared_request_and_validation(prepared: PreparedRequest) -> None:
    endpoint = get_endpoint("phone_call_redirects")
    markdown = reports.reference_markdown(
        query="phone",
        endpoint=endpoint,
        url=prepared.url,
        body=prepared.body,
        prepared=prepared,
    )
    assert markdown.startswith("# Step 2 · Find the API and load its reference\n")
    assert "Searched the catalogue for `phone`: found **POST /phone_call_redirects**." in markdown
    assert endpoint.reference_markdown() in markdown
    assert f"`POST {URL}/phone_call_redirects`" in markdown
    assert "| Authorization | `Bearer [REDACTED]` |" in markdown
    assert "| Intercom-Version | `2.12` |" in markdown
    assert '```json\n{\n  "phone": "+1415•••0100"\n}\n```' in markdown  # the phone, masked
    assert "**Valid**: the body and headers match" in markdown
    assert TOKEN not in markdown


def test_reference_report_of_an_invalid_body_lists_every_problem_with_hints() -> None:
    body = {"phone": "+1 415 555 0100", "phone_number": "x"}
    try:
        IntercomClient(TOKEN, base_url=URL, intercom_version="2.12").prepare("phone_call_redirects", body)
    except IntercomValidationError as caught:
        error = caught
    markdown = reports.reference_markdown(
        query="phone",
        endpoint=get_endpoint("phone_call_redirects"),
        url=f"{URL}/phone_call_redirects",
        body=body,
        error=error,
    )
    assert "_Headers are prepared once the request is valid._" in markdown
    assert "**Invalid request body** (2 problems); nothing was sent." in markdown
    assert "| Field | Problem | Hint |" in markdown
    assert "| `/phone` | '+1 415•••0100' is not a phone number in E.164 format" in markdown
    assert "| remove spaces: +1415•••0100 |" in markdown
    assert "| `/phone_number` | unknown field 'phone_number' | did you mean 'phone'? |" in markdown


def test_response_report_has_status_latency_request_id_rate_limits_and_body(prepared: PreparedRequest) -> None:
    response = IntercomResponse(
        status_code=200,
        data={"type": "phone_call_redirect", "phone": "+14155550100"},
        request_id="req_123",
        rate_limit=RateLimit(limit=1000, remaining=999),
        elapsed_ms=42.4,
        headers={"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "999", "x-ratelimit-reset": "1700000000"},
    )
    markdown = reports.response_markdown(prepared, response)
    assert markdown.startswith("# Step 3 · Test request\n")
    assert f"**200 OK** from `POST {URL}/phone_call_redirects` in 42 ms." in markdown
    assert "Intercom texted a Messenger link to `+1415•••0100`." in markdown
    assert "| Status | `200` |" in markdown
    assert "| Latency | 42 ms |" in markdown
    assert "| Request id | `req_123` |" in markdown
    assert "| X-RateLimit-Limit | `1000` |" in markdown
    assert "| X-RateLimit-Remaining | `999` |" in markdown
    assert "| X-RateLimit-Reset | `1700000000` |" in markdown
    assert '"type": "phone_call_redirect"' in markdown


def test_response_report_says_when_headers_are_missing_and_shows_a_url_answer(prepared: PreparedRequest) -> None:
    response = IntercomResponse(
        status_code=200,
        data={"type": "phone_call_redirect", "url": "http://via.intercom.io/msgr/x"},
        request_id=None,
        rate_limit=RateLimit(),
        elapsed_ms=3,
        unparsed_body=None,
    )
    markdown = reports.response_markdown(prepared, response)
    assert "| Request id | not sent |" in markdown
    assert "| X-RateLimit-Limit | not sent |" in markdown
    assert "`+1415•••0100`" in markdown  # the phone it was sent to, from the request, masked
    assert "http://via.intercom.io/msgr/x" in markdown


def test_api_error_report_has_code_message_request_id_hint_and_body(prepared: PreparedRequest) -> None:
    error = IntercomAPIError(
        400,
        error_code="invalid_phone_number",
        message="Invalid phone number",
        request_id="req_9",
        body={"error_key": "invalid_phone_number", "message": "Invalid phone number"},
        headers={"x-ratelimit-remaining": "5"},
    )
    markdown = reports.api_error_markdown(prepared, error)
    assert f"**Refused: 400 Bad Request** from `POST {URL}/phone_call_redirects`." in markdown
    assert "| Error code | `invalid_phone_number` |" in markdown
    assert "| Message | Invalid phone number |" in markdown
    assert "| Request id | `req_9` |" in markdown
    assert "| Hint | Check the phone number is a reachable number in E.164 format" in markdown
    assert "| Sent? | No: Intercom did not act on it; it is safe to try again. |" in markdown
    assert "| X-RateLimit-Remaining | `5` |" in markdown
    assert '"error_key": "invalid_phone_number"' in markdown


def test_api_error_report_lists_every_error_of_an_error_list(prepared: PreparedRequest) -> None:
    error = IntercomAPIError(
        400,
        error_code="parameter_invalid",
        message="bad",
        errors=[{"code": "parameter_invalid", "message": "bad"}, {"code": "other", "message": "also | bad"}],
    )
    markdown = reports.api_error_markdown(prepared, error)
    assert "- `parameter_invalid`: bad" in markdown
    assert "- `other`: also \\| bad" in markdown
    assert "| Request id | not sent |" in markdown


def test_a_server_error_says_the_person_may_have_been_texted(prepared: PreparedRequest) -> None:
    markdown = reports.api_error_markdown(prepared, IntercomServerError(503, message="Service Unavailable"))
    assert "**Refused: 503 Service Unavailable**" in markdown
    assert "| Sent? | Unknown: the request may have reached Intercom, so the person may have been texted." in markdown


def test_transport_error_report_says_whether_it_may_have_been_sent(prepared: PreparedRequest) -> None:
    refused = IntercomTransportError("ConnectError: refused", outcome=Outcome.NOT_SENT, url=prepared.url)
    timed_out = IntercomTransportError("ReadTimeout: no detail", outcome=Outcome.UNKNOWN, url=prepared.url)
    assert "| Sent? | No: Intercom did not act on it" in reports.transport_error_markdown(prepared, refused)
    assert "| Sent? | Unknown:" in reports.transport_error_markdown(prepared, timed_out)
    assert "**No answer** from" in reports.transport_error_markdown(prepared, timed_out)


def test_dry_run_not_sent_and_not_found_reports(prepared: PreparedRequest) -> None:
    assert "**Dry run: nothing was sent.**" in reports.dry_run_markdown(prepared)
    error = IntercomValidationError("phone_call_redirects", [ValidationIssue("/phone", "bad", None)])
    not_sent = reports.not_sent_markdown(error)
    assert not_sent.startswith("# Step 3 · Test request")
    assert "**Not sent**: the request body is invalid." in not_sent
    assert "| `/phone` | bad |  |" in not_sent
    not_found = reports.not_found_markdown(LookupError("No endpoint matches 'x'. Available endpoints: a"))
    assert not_found.startswith("# Step 2 · Find the API and load its reference")
    assert "**Not found**: No endpoint matches 'x'." in not_found


def test_table_cells_cannot_break_the_table() -> None:
    issue = ValidationIssue("/custom_attributes/a|b", "line one\nline | two", "use `x`")
    [_header, _rule, row] = reports.issues_table([issue])
    assert row.count(" | ") == 2 and row.startswith("| ") and row.endswith(" |")
    assert "\n" not in row
    assert "line one line \\| two" in row


def test_an_unknown_status_code_is_shown_as_a_number(prepared: PreparedRequest) -> None:
    assert "**Refused: 499**" in reports.api_error_markdown(prepared, IntercomAPIError(499))


def test_json_fences_survive_backticks_in_the_body(prepared: PreparedRequest) -> None:
    response = IntercomResponse(
        status_code=200, data={"note": "```"}, request_id=None, rate_limit=RateLimit(), elapsed_ms=1
    )
    markdown = reports.response_markdown(prepared, response)
    assert markdown.count("```") == 2  # only the fence itself


def test_status_phrases_come_from_the_standard_library(prepared: PreparedRequest) -> None:
    assert "**Refused: 429 Too Many Requests**" in reports.api_error_markdown(prepared, IntercomAPIError(429))


def test_no_report_shows_a_full_phone_number_unless_the_switch_is_on(
    prepared: PreparedRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"phone": "+14155550100", "custom_attributes": {"callback": "+44 7911 123456"}}
    response = IntercomResponse(
        status_code=200,
        data={"type": "phone_call_redirect", "phone": "+14155550100"},
        request_id="req_1",
        rate_limit=RateLimit(),
        elapsed_ms=1,
    )

    def every_report() -> str:
        reference = reports.reference_markdown(
            query="phone",
            endpoint=get_endpoint("phone_call_redirects"),
            url=prepared.url,
            body=body,
            prepared=prepared,
        )
        return reference + reports.response_markdown(prepared, response)

    markdown = every_report()
    assert "14155550100" not in markdown and "7911 123456" not in markdown
    assert "+1415•••0100" in markdown and "+44 79•••3456" in markdown
    monkeypatch.setenv("PREFECT_INTERCOM_SHOW_PHONES", "1")
    assert "+14155550100" in every_report()


def test_a_huge_answer_body_is_shown_cut_and_a_cut_answer_says_so(prepared: PreparedRequest) -> None:
    response = IntercomResponse(
        status_code=200,
        data={"type": "phone_call_redirect", "url": "x" * 100_000},
        request_id=None,
        rate_limit=RateLimit(),
        elapsed_ms=1,
        truncated="larger than 1 MiB; the rest was not read",
    )
    markdown = reports.response_markdown(prepared, response)
    assert len(markdown) < reports.MAX_JSON_BLOCK + 5_000
    assert "more characters not shown" in markdown
    assert "The answer was larger than 1 MiB; the rest was not read; the SMS was sent all the same." in markdown
