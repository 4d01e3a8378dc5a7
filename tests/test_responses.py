"""Parsing answers: a success or the matching error, every text redacted and phone-masked, rate limits read once."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomRateLimitError,
    IntercomServerError,
)
from prefect_intercom.outcomes import Outcome
from prefect_intercom.privacy import phone_masker
from prefect_intercom.responses import MAX_TEXT, PhoneCallRedirect, RateLimit, parse_response

PHONE = "+14155550100"


def _parse(status: int, **kwargs: object) -> object:
    return parse_response(httpx.Response(status, **kwargs), elapsed_ms=1.0, mask=phone_masker({"phone": PHONE}))


def test_rate_limit_headers_are_read_and_nonsense_counts_as_missing() -> None:
    limit = RateLimit.from_headers(
        {"x-ratelimit-limit": "1667", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "60"}
    )

    assert limit == RateLimit(1667, 3, dt.datetime.fromtimestamp(60, dt.UTC))
    assert RateLimit.from_headers({"x-ratelimit-limit": "many", "x-ratelimit-reset": "1e400"}) == RateLimit()


def test_a_success_keeps_its_data_request_id_and_rate_limit_with_the_phone_masked() -> None:
    response = _parse(
        200,
        json={"type": "phone_call_redirect", "phone": PHONE},
        headers={"X-Request-Id": "req-1", "X-RateLimit-Remaining": "9", "Set-Cookie": "a=b"},
    )

    assert response.data == {"type": "phone_call_redirect", "phone": "+1415•••0100"}
    assert response.request_id == "req-1"
    assert response.rate_limit.remaining == 9
    assert set(response.headers) == {"x-request-id", "x-ratelimit-remaining", "content-type"}
    assert PhoneCallRedirect.from_response(response).phone == "+1415•••0100"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, IntercomAPIError),
        (401, IntercomAuthenticationError),
        (429, IntercomRateLimitError),
        (503, IntercomServerError),
    ],
)
def test_each_error_status_raises_its_class(status: int, kind: type[IntercomAPIError]) -> None:
    with pytest.raises(IntercomAPIError) as raised:
        _parse(status, json={"type": "error.list", "errors": [{"code": "c", "message": f"no {PHONE}"}]})

    assert type(raised.value) is kind
    assert raised.value.error_code == "c"
    assert raised.value.message == "no +1415•••0100"


def test_a_429_carries_retry_after_and_the_window() -> None:
    with pytest.raises(IntercomRateLimitError) as raised:
        _parse(429, json={}, headers={"Retry-After": "2.5", "X-RateLimit-Limit": "10", "X-RateLimit-Reset": "60"})

    assert raised.value.retry_after == 2.5
    assert raised.value.limit == 10
    assert raised.value.reset_at == dt.datetime.fromtimestamp(60, dt.UTC)


def test_a_2xx_error_list_is_an_error_of_unknown_outcome_and_texts_are_cut() -> None:
    with pytest.raises(IntercomAPIError) as raised:
        _parse(200, json={"type": "error.list", "errors": [{"code": "x", "message": "m" * 1000}]})

    assert raised.value.outcome is Outcome.UNKNOWN
    assert len(raised.value.message or "") == MAX_TEXT


def test_texts_are_redacted_before_anything_else() -> None:
    with pytest.raises(IntercomAPIError) as raised:
        parse_response(
            httpx.Response(500, text="secret-token-value"), elapsed_ms=1.0, redact=lambda t: t.replace("secret", "[R]")
        )

    assert "secret" not in str(raised.value)
    assert "[R]-token-value" in str(raised.value)


def test_the_text_of_a_success_that_is_no_json_object_is_shown_with_the_phone_masked() -> None:
    response = _parse(200, text=f"queued for {PHONE}")
    assert response.unparsed_body == "queued for +1415•••0100"
    assert _parse(200, text=f'["{PHONE}"]').unparsed_body == '["+1415•••0100"]'


@pytest.mark.parametrize(("depth", "kept"), [(64, True), (65, False)])
def test_a_body_nested_deeper_than_the_limit_is_kept_as_text_only(depth: int, kept: bool) -> None:
    body = '{"a":' * (depth - 1) + '{"phone":"' + PHONE + '"' + "}" * depth
    response = _parse(200, text=body)
    assert bool(response.data) is kept
    assert (response.unparsed_body is None) is kept
    assert PHONE not in repr(response)
