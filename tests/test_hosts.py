"""Where the token may go: the base URL guard, redirects, and headers without CR or LF.

The token goes only to Intercom's three hosts over https, to a loopback address, or (with the
explicit `allow_custom_base_url`) to another https host. A redirect is an error, never
followed, so `Authorization` never reaches the redirect target. No header can carry CR or LF.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prefect import flow
from pydantic import ValidationError

from prefect_intercom import (
    IntercomAPIError,
    IntercomConfigurationError,
    IntercomCredentials,
    IntercomValidationError,
    create_phone_call_redirect,
)
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint
from prefect_intercom.client import IntercomClient
from prefect_intercom.credentials import INTERCOM_VERSIONS
from prefect_intercom.hosts import INTERCOM_HOSTNAMES, REGION_HOSTS, check_base_url, is_loopback
from prefect_intercom.responses import UNFOLLOWED_LOCATION_HEADER
from prefect_intercom.sandbox import Sandbox
from prefect_intercom.validation import validate_headers

from .bounded import bounded
from .conftest import SECRET_TOKEN

BODY = {"phone": "+14155550100"}

ACCEPTED = [
    "https://api.intercom.io",
    "https://api.eu.intercom.io",
    "https://api.au.intercom.io",
    "https://API.INTERCOM.IO",  # host names are case-insensitive
    "HTTPS://api.intercom.io/",
    "https://api.intercom.io:443",
    "http://127.0.0.1:8080",
    "https://127.0.0.1:8443",
    "http://127.0.0.2:8080",  # all of 127.0.0.0/8 is loopback
    "http://127.255.255.254",
    "http://localhost:8765",
    "http://LOCALHOST:8765",
    "http://[::1]:8765",
    " https://api.intercom.io ",
]
REFUSED = [
    "http://api.intercom.io",  # the token would travel in clear text
    "http://api.eu.intercom.io",
    "https://api.intercom.io.evil.com",
    "https://evil.com/api.intercom.io",
    "https://api-intercom.io",
    "https://intercom.io",
    "https://api.intercom.io.",  # trailing dot: refused rather than second-guessed
    "https://api.intercom.io..",
    "http://127.0.0.1.nip.io:8080",  # a public name that resolves to loopback is not loopback
    "https://127.0.0.1.nip.io",
    "http://localhost.evil.com",
    "http://localhost.",
    "https://api.intercom.io@evil.com",  # userinfo: the host is evil.com
    "https://evil.com@api.intercom.io",
    "https://user:pass@api.intercom.io",
    "https://@api.intercom.io",
    "https://evil.com#@api.intercom.io",
    "https://evil.com?@api.intercom.io",
    "https://evil.com\\@api.intercom.io",
    "https://api.intercom.io?",  # an empty query or fragment would swallow the endpoint path
    "https://api.intercom.io#",
    "https://api.intercom.io/?x=1",
    "https://xn--pi-7ia.intercom.io",  # IDN look-alike (punycode)
    "https://\u0430pi.intercom.io",  # a Cyrillic look-alike of the first letter
    "https://api.intercom.io%2F.evil.com",
    "http://[::ffff:127.0.0.1]:80",
    "http://0.0.0.0:8080",  # every interface, not loopback
    "http://[::]:8080",
    "http://127.1:8080",
    "http://2130706433",
    "http://0x7f000001",
    "https://10.0.0.1",
    "ftp://api.intercom.io",
    "api.intercom.io",
    "//api.intercom.io",
    "file:///etc/passwd",
    "https://api.intercom.io/\r\nX-Evil: 1",
    "https://api.intercom.io\x00.evil.com",
    "",
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted_base_urls(url: str) -> None:
    accepted = check_base_url(url)
    assert not accepted.endswith("/")
    host = httpx.URL(accepted + "/phone_call_redirects").host
    assert host in INTERCOM_HOSTNAMES or is_loopback(host)


@pytest.mark.parametrize("url", REFUSED)
def test_refused_base_urls(url: str) -> None:
    with pytest.raises(IntercomConfigurationError):
        check_base_url(url)
    with pytest.raises(ValidationError):
        IntercomCredentials(access_token=SECRET_TOKEN, base_url=url)
    with pytest.raises(IntercomConfigurationError):
        IntercomClient(SECRET_TOKEN, base_url=url, intercom_version="2.12")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://intercom-proxy.example.com", True),
        ("https://api.intercom.io.evil.com", True),  # the user said so, explicitly
        ("http://intercom-proxy.example.com", False),  # still https only
        ("https://user:pass@intercom-proxy.example.com", False),
    ],
)
def test_custom_hosts_need_the_explicit_opt_in_and_https(url: str, allowed: bool) -> None:
    with pytest.raises(IntercomConfigurationError):
        check_base_url(url)
    if allowed:
        assert check_base_url(url, allow_custom_host=True) == url
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=url, allow_custom_base_url=True)
        assert credentials.api_url == url
    else:
        with pytest.raises(IntercomConfigurationError):
            check_base_url(url, allow_custom_host=True)


def test_refusals_never_quote_the_token() -> None:
    with pytest.raises(ValidationError) as caught:
        IntercomCredentials(access_token=SECRET_TOKEN, base_url="https://evil.com")
    assert SECRET_TOKEN not in str(caught.value)
    assert SECRET_TOKEN not in repr(caught.value)
    assert SECRET_TOKEN not in repr(caught.value.errors())  # the error data holds the URL only


def test_regions_are_intercoms_https_hosts() -> None:
    assert set(REGION_HOSTS.values()) == {
        "https://api.intercom.io",
        "https://api.eu.intercom.io",
        "https://api.au.intercom.io",
    }
    for region, url in REGION_HOSTS.items():
        assert IntercomCredentials(access_token=SECRET_TOKEN, region=region).api_url == url


URL_PARTS = {
    "scheme": ["https://", "http://", "HTTPS://", "ftp://", "", "//", "https:/"],
    "userinfo": ["", "", "", "user@", "user:pw@", "@", "api.intercom.io@", "evil.com@"],
    "host": [
        "api.intercom.io", "api.eu.intercom.io", "api.au.intercom.io", "API.Intercom.io", "api.intercom.io.",
        "evil.com", "api.intercom.io.evil.com", "localhost", "localhost.evil.com", "127.0.0.1", "127.0.0.9",
        "127.0.0.1.nip.io", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "xn--pi-7ia.intercom.io",
        "\u0430pi.intercom.io", "api\u3002intercom\u3002io", "api.intercom.io%2F.evil.com", "",
    ],
    "port": ["", "", ":443", ":8080", ":", ":0", ":99999", ":x"],
    "path": ["", "", "/", "/v2", "/@evil.com", "/..", "?", "#", "?x=1", "#frag", "\\@evil.com", "\r\n", "%0d%0a"],
}  # fmt: skip
URLS = st.builds(lambda *parts: "".join(parts), *(st.sampled_from(options) for options in URL_PARTS.values()))


@bounded(500)
@given(url=URLS, opt_in=st.booleans())
@example(url="https://api\u3002intercom\u3002io", opt_in=False)
def test_the_token_only_ever_goes_where_it_may(url: str, opt_in: bool) -> None:
    try:
        client = IntercomClient(SECRET_TOKEN, base_url=url, intercom_version="2.12", allow_custom_base_url=opt_in)
    except IntercomConfigurationError as error:
        assert SECRET_TOKEN not in str(error)
        return
    # The host is judged on the very URL the request will go to, parsed by the same httpx.
    target = httpx.URL(client.prepare(PHONE_CALL_REDIRECTS, BODY).url)
    assert target.path == "/phone_call_redirects" or target.path.endswith("/phone_call_redirects")
    assert not target.userinfo and not target.query and not target.fragment
    if target.host in INTERCOM_HOSTNAMES:
        assert target.scheme == "https"
    elif not is_loopback(target.host):
        assert opt_in and target.scheme == "https", url


# --- redirects ---------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with `self.server.answer` (status, headers) and records it."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))  # type: ignore[attr-defined]
        status, headers = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *args: Any) -> None:
        pass


class RecordingServer:
    """A plain HTTP server on a free loopback port that records what reaches it."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.httpd.answer = (status, headers or {})  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str], bytes]]:
        return list(self.httpd.requests)  # type: ignore[attr-defined]

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def redirect_target() -> Iterator[RecordingServer]:
    """Where a hostile redirect points: it must never receive anything."""
    with RecordingServer() as server:
        yield server


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_and_its_target_receives_nothing(status: int, redirect_target: RecordingServer) -> None:
    location = f"{redirect_target.url}/steal"
    with RecordingServer(status, {"Location": location}) as redirecting:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=redirecting.url)
        with credentials.get_client() as client, pytest.raises(IntercomAPIError) as caught:
            client.request(PHONE_CALL_REDIRECTS, BODY)
        assert len(redirecting.requests) == 1
    assert redirect_target.requests == []
    error = caught.value
    assert error.status_code == status
    assert error.headers[UNFOLLOWED_LOCATION_HEADER] == location
    assert "Redirects are never followed" in str(error)
    assert SECRET_TOKEN not in str(error)


@pytest.mark.parametrize("location", ["//evil\x00.com/", "http://[::1", "https://\u00e9vil.com/", "/relative", ""])
async def test_a_hostile_redirect_is_still_just_an_api_error(location: str, redirect_target: RecordingServer) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        headers = [(b"location", location.encode("utf-8")), (b"set-cookie", "\u00e9=\u00e9".encode())]
        return httpx.Response(302, headers=headers, stream=httpx.ByteStream(b""))

    async def async_answer(request: httpx.Request) -> httpx.Response:
        return answer(request)

    for handler in (answer, async_answer):
        mock = httpx.MockTransport(handler)
        client = IntercomClient(
            SECRET_TOKEN, base_url="http://127.0.0.1:9", intercom_version="2.12", transport=mock, async_transport=mock
        )
        with pytest.raises(IntercomAPIError) as caught:
            if handler is async_answer:
                async with client:
                    await client.arequest(PHONE_CALL_REDIRECTS, BODY)
            else:
                with client:
                    client.request(PHONE_CALL_REDIRECTS, BODY)
        assert caught.value.status_code == 302


def test_the_task_reports_a_redirect(prefect_server: None, redirect_target: RecordingServer) -> None:
    with RecordingServer(307, {"Location": f"{redirect_target.url}/steal"}) as redirecting:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=redirecting.url)

        @flow
        def deflect() -> None:
            create_phone_call_redirect(credentials, "+14155550100")

        with pytest.raises(IntercomAPIError) as caught:
            deflect()
    assert caught.value.status_code == 307
    assert redirect_target.requests == []


# --- headers cannot carry CR or LF ----------------------------------------------------------------


LINE_BREAKS = ["\r", "\n", "\r\n", "\n\r"]


def test_every_documented_header_refuses_line_breaks() -> None:
    properties = get_endpoint(PHONE_CALL_REDIRECTS).headers_schema["properties"]
    assert properties, "the docs page documents no header"
    for name, schema in properties.items():
        assert schema["not"] == {"pattern": "[\\r\\n]"}, name
        for line_break in LINE_BREAKS:
            value = f"application/json{line_break}X-Evil: 1" if name == "Content-Type" else f"2.12{line_break}X: 1"
            with pytest.raises(IntercomValidationError) as caught:
                validate_headers(PHONE_CALL_REDIRECTS, {"Content-Type": "application/json", name: value})
            assert any(issue.path == f"/{name}" for issue in caught.value.errors)


@pytest.mark.parametrize("line_break", LINE_BREAKS)
def test_the_block_refuses_a_version_with_a_line_break(line_break: str) -> None:
    with pytest.raises(ValidationError):
        IntercomCredentials(access_token=SECRET_TOKEN, intercom_version=f"2.12{line_break}X-Evil: 1")


def test_the_block_offers_exactly_the_documented_versions() -> None:
    assert set(INTERCOM_VERSIONS) == set(get_endpoint(PHONE_CALL_REDIRECTS).header_enum("Intercom-Version"))
    assert not any(set(version) & set("\r\n") for version in INTERCOM_VERSIONS)


@bounded(150)
@given(
    version=st.one_of(
        st.text(max_size=12),
        st.sampled_from(INTERCOM_VERSIONS).flatmap(
            lambda version: st.sampled_from([f"{version}\r\nX-Evil: 1", f"{version}\n", f"\r{version}", version])
        ),
    )
)
@example(version="2.12\r\nAuthorization: Bearer stolen")
def test_a_version_override_is_validated_in_prepare(sandbox_module: Sandbox, version: str) -> None:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox_module.url)
    received = len(sandbox_module.received)
    with credentials.get_client(intercom_version=version) as client:
        try:
            client.request(PHONE_CALL_REDIRECTS, BODY)
        except IntercomValidationError as error:
            assert version not in INTERCOM_VERSIONS
            assert {issue.path for issue in error.errors} == {"/Intercom-Version"}
            assert len(sandbox_module.received) == received, "a refused header was sent"
            return
    assert version in INTERCOM_VERSIONS
    (arrived,) = sandbox_module.received[received:]
    assert arrived.headers["intercom-version"] == version


@pytest.mark.parametrize(
    "token", [f"{SECRET_TOKEN}\r\nX-Evil: 1", f"{SECRET_TOKEN}\nX", f"{SECRET_TOKEN}\rX", f"a\x00{SECRET_TOKEN}"]
)
def test_a_token_with_a_line_break_is_refused_without_being_quoted(token: str) -> None:
    # The block keeps the token as given (only surrounding white space is dropped); the client
    # refuses it before anything is sent, and neither error quotes it.
    credentials = IntercomCredentials(access_token=token, base_url="http://127.0.0.1:9")
    with pytest.raises(IntercomConfigurationError) as refused:
        credentials.get_client()
    assert SECRET_TOKEN not in str(refused.value) and SECRET_TOKEN not in repr(refused.value)
    with pytest.raises(IntercomConfigurationError) as refused:
        IntercomClient(token, base_url="http://127.0.0.1:9", intercom_version="2.12")
    assert SECRET_TOKEN not in str(refused.value)


def test_surrounding_white_space_is_dropped_from_the_token() -> None:
    credentials = IntercomCredentials(access_token=f"  {SECRET_TOKEN}\n", base_url="http://127.0.0.1:9")
    assert credentials.access_token.get_secret_value() == SECRET_TOKEN


@pytest.fixture(scope="module")
def sandbox_module() -> Iterator[Sandbox]:
    with Sandbox(token=SECRET_TOKEN) as running:
        yield running
