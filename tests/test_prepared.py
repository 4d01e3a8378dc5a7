"""Unit tests of `prefect_intercom.prepared`: the token check, the User-Agent and `PreparedRequest`."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from pydantic import SecretStr

from prefect_intercom import __version__
from prefect_intercom.catalog import get_endpoint
from prefect_intercom.client import IntercomClient
from prefect_intercom.errors import IntercomConfigurationError
from prefect_intercom.prepared import REDACTED, USER_AGENT, PreparedRequest, check_token

from .conftest import SECRET_TOKEN

HEADERS = {"Content-Type": "application/json", "Accept": "application/json", "Intercom-Version": "2.12"}


def _prepared(content: bytes = b'{"phone":"+14155550100"}') -> PreparedRequest:
    return PreparedRequest(
        endpoint=get_endpoint("phone_call_redirects"),
        method="POST",
        url="https://api.intercom.io/phone_call_redirects",
        headers=dict(HEADERS),
        body={"phone": "+14155550100"},
        content=content,
    )


# --- check_token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        SECRET_TOKEN,
        "dG9rOjEyMzQ1Njc4OTBhYmNkZWY+/w==",  # base64, as Intercom's tokens are: '+', '/' and '=' travel fine
        "!",  # 33, the first printable ASCII character after the space
        "~",  # 126, the last one before DEL
        "a-b_c.d:e",
    ],
)
def test_a_token_of_printable_ascii_without_spaces_is_accepted(token: str) -> None:
    assert check_token(SecretStr(token)) is None


def test_an_empty_token_is_refused_as_empty() -> None:
    with pytest.raises(IntercomConfigurationError, match=r"^the access token is empty$"):
        check_token(SecretStr(""))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(f"{SECRET_TOKEN} ", id="a trailing space"),
        pytest.param(f" {SECRET_TOKEN}", id="a leading space"),
        pytest.param(f"Bearer {SECRET_TOKEN}", id="a space inside"),
        pytest.param(f"{SECRET_TOKEN}\n", id="a line feed"),
        pytest.param(f"{SECRET_TOKEN}\r\nX-Evil: 1", id="a header injection"),
        pytest.param(f"{SECRET_TOKEN}\t", id="a tab"),
        pytest.param(f"{SECRET_TOKEN}\x00", id="NUL"),
        pytest.param(f"{SECRET_TOKEN}\x7f", id="DEL"),
        pytest.param(f"{SECRET_TOKEN}\u00a0", id="a no-break space"),
        pytest.param(f"{SECRET_TOKEN}\u200b", id="a zero-width space"),
        pytest.param(f"tok_sécret_{SECRET_TOKEN}", id="a non-ASCII letter"),
    ],
)
def test_a_token_that_cannot_travel_in_a_header_is_refused_without_being_quoted(token: str) -> None:
    with pytest.raises(IntercomConfigurationError) as caught:
        check_token(SecretStr(token))
    error = caught.value
    assert isinstance(error, ValueError)
    text = str(error) + repr(error) + repr(error.args)
    assert "copy it again from Intercom's Developer Hub" in text
    assert SECRET_TOKEN not in text
    assert "tok_" not in text


def test_the_client_checks_its_token_before_anything_else() -> None:
    with pytest.raises(IntercomConfigurationError, match="spaces, line breaks"):
        IntercomClient(f"{SECRET_TOKEN}\n", base_url="https://api.intercom.io", intercom_version="2.12")


# --- USER_AGENT and REDACTED ---------------------------------------------------------------


def test_the_user_agent_names_the_package_and_httpx_with_their_versions() -> None:
    assert USER_AGENT == f"prefect-intercom/{__version__} httpx/{httpx.__version__}"
    assert USER_AGENT.isascii() and all(32 <= ord(char) < 127 for char in USER_AGENT)


def test_redacted_is_the_placeholder_the_reports_look_for() -> None:
    assert REDACTED == "[REDACTED]"


# --- PreparedRequest -----------------------------------------------------------------------


def test_display_headers_put_a_redacted_authorization_first_and_then_every_header_in_order() -> None:
    prepared = _prepared()
    shown = prepared.display_headers()
    assert list(shown.items()) == [("Authorization", f"Bearer {REDACTED}"), *HEADERS.items()]


def test_display_headers_are_a_fresh_dict_and_the_headers_hold_no_authorization() -> None:
    prepared = _prepared()
    prepared.display_headers()["Intercom-Version"] = "changed"
    assert prepared.headers == HEADERS
    assert "authorization" not in {name.lower() for name in prepared.headers}


def test_a_request_prepared_by_a_client_holds_no_piece_of_its_token_anywhere() -> None:
    client = IntercomClient(SECRET_TOKEN, base_url="https://api.intercom.io", intercom_version="2.12")
    prepared = client.prepare("phone_call_redirects", {"phone": "+14155550100"})
    everything = (
        repr(prepared)
        + str(prepared)
        + repr(prepared.display_headers())
        + repr(prepared.headers)
        + prepared.content.decode()
        + repr([getattr(prepared, field.name) for field in dataclasses.fields(prepared) if field.name != "endpoint"])
    )
    assert SECRET_TOKEN not in everything
    assert SECRET_TOKEN[4:20] not in everything
    assert prepared.headers["User-Agent"] == USER_AGENT


def test_the_repr_shows_method_url_and_headers_but_not_the_body_the_bytes_or_the_catalogue_entry() -> None:
    prepared = _prepared(content=b'{"phone":"+14155550100","marker":"CONTENT-BYTES"}')
    text = repr(prepared)
    assert text.startswith("PreparedRequest(method='POST', url='https://api.intercom.io/phone_call_redirects'")
    assert "Intercom-Version" in text
    assert "CONTENT-BYTES" not in text
    assert "endpoint=" not in text and "content=" not in text and "body=" not in text
    assert "4155550100" not in text  # the person's phone number


def test_a_prepared_request_cannot_be_changed_after_it_is_built() -> None:
    prepared = _prepared()
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.url = "https://evil.example.com/steal"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.content = b"{}"  # type: ignore[misc]
