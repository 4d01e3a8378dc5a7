"""Unit tests of `prefect_intercom.http_clients`: how the two httpx clients are built, redirects set aside."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from prefect_intercom.http_clients import (
    aset_redirect_aside,
    async_client,
    client_options,
    set_redirect_aside,
    sync_client,
)
from prefect_intercom.responses import UNFOLLOWED_LOCATION_HEADER
from prefect_intercom.transport import DEFAULT_MAX_CONNECTIONS, IntercomAsyncTransport

URL = "https://api.intercom.io/phone_call_redirects"
# Not a URL httpx can parse: were httpx to read it for `next_request`, the answer would fail.
HOSTILE_LOCATION = "http://[::1/steal"


def _redirect(location: str = "https://evil.example.com/steal", status: int = 302) -> httpx.Response:
    return httpx.Response(
        status,
        headers=[("X-Request-Id", "req-1"), ("Location", location), ("Set-Cookie", "a=b")],
        request=httpx.Request("POST", URL),
    )


def _redirecting_handler(seen: list[str], location: str) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": location})

    return httpx.MockTransport(handler)


# --- client_options ------------------------------------------------------------------------


def test_the_options_never_follow_redirects_nor_read_the_environment() -> None:
    options = client_options(timeout=7.5, max_connections=None)
    assert options == {"timeout": 7.5, "follow_redirects": False, "trust_env": False}


def test_a_pool_size_sizes_both_the_connections_and_the_kept_alive_ones() -> None:
    limits = client_options(timeout=1.0, max_connections=3)["limits"]
    assert (limits.max_connections, limits.max_keepalive_connections) == (3, 3)


# --- sync_client ---------------------------------------------------------------------------


def test_the_sync_client_follows_no_redirect_trusts_no_environment_and_sets_redirects_aside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    with sync_client(None, timeout=4.0, max_connections=None) as client:
        assert client.follow_redirects is False
        assert client.trust_env is False
        assert client.timeout == httpx.Timeout(4.0)
        assert client.event_hooks["response"] == [set_redirect_aside]
        assert not client._mounts  # no proxy taken from the environment
        assert isinstance(client._transport, httpx.HTTPTransport)


def test_the_sync_clients_own_pool_is_sized_by_max_connections() -> None:
    with sync_client(None, timeout=1.0, max_connections=3) as client:
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert (pool._max_connections, pool._max_keepalive_connections) == (3, 3)


def test_a_302_through_the_sync_client_keeps_its_location_aside_and_builds_no_next_request() -> None:
    seen: list[str] = []
    transport = _redirecting_handler(seen, "https://evil.example.com/steal")
    with sync_client(transport, timeout=1.0, max_connections=None) as client:
        assert client._transport is transport
        response = client.post(URL, json={"phone": "+14155550100"})
    assert response.status_code == 302
    assert response.headers[UNFOLLOWED_LOCATION_HEADER] == "https://evil.example.com/steal"
    assert "location" not in response.headers
    assert response.next_request is None
    assert seen == [URL]


def test_a_location_httpx_cannot_parse_leaves_the_sync_answer_intact() -> None:
    with sync_client(_redirecting_handler([], HOSTILE_LOCATION), timeout=1.0, max_connections=None) as client:
        response = client.post(URL, json={})
    assert (response.status_code, response.headers[UNFOLLOWED_LOCATION_HEADER]) == (302, HOSTILE_LOCATION)


# --- async_client --------------------------------------------------------------------------


@pytest.mark.parametrize(("max_connections", "size"), [(None, DEFAULT_MAX_CONNECTIONS), (7, 7)])
async def test_the_async_client_defaults_to_aiohttps_pool_sized_by_max_connections(
    max_connections: int | None, size: int
) -> None:
    async with async_client(None, timeout=2.0, max_connections=max_connections) as client:
        assert type(client._transport) is IntercomAsyncTransport
        assert client._transport.max_connections == size
        assert client.follow_redirects is False
        assert client.trust_env is False
        assert client.event_hooks["response"] == [aset_redirect_aside]


async def test_the_async_client_uses_a_given_transport_as_it_is() -> None:
    seen: list[str] = []
    transport = _redirecting_handler(seen, HOSTILE_LOCATION)
    async with async_client(transport, timeout=1.0, max_connections=5) as client:
        assert client._transport is transport
        assert client.follow_redirects is False
        response = await client.post(URL, json={})
    assert response.status_code == 302
    assert response.headers[UNFOLLOWED_LOCATION_HEADER] == HOSTILE_LOCATION
    assert response.next_request is None
    assert seen == [URL]


# --- set_redirect_aside --------------------------------------------------------------------


def test_setting_aside_renames_only_the_location_and_keeps_every_other_header_in_order() -> None:
    response = _redirect()
    set_redirect_aside(response)
    assert response.headers.raw == [
        (b"X-Request-Id", b"req-1"),
        (UNFOLLOWED_LOCATION_HEADER.encode(), b"https://evil.example.com/steal"),
        (b"Set-Cookie", b"a=b"),
    ]
    assert not response.has_redirect_location


def test_setting_aside_keeps_the_locations_bytes_exactly_whatever_their_case_or_encoding() -> None:
    raw = b"https://evil.example.com/\xff\xfe caf\xc3\xa9"
    response = httpx.Response(301, headers=[(b"LOCATION", raw)], request=httpx.Request("POST", URL))
    set_redirect_aside(response)
    assert response.headers.raw == [(UNFOLLOWED_LOCATION_HEADER.encode(), raw)]


def test_an_answer_without_a_location_is_left_as_it_is() -> None:
    response = httpx.Response(200, headers={"Content-Type": "application/json"}, request=httpx.Request("POST", URL))
    headers = response.headers
    set_redirect_aside(response)
    assert response.headers is headers
    assert response.headers.raw == [(b"Content-Type", b"application/json")]


async def test_the_async_hook_sets_a_location_aside_as_the_sync_one_does() -> None:
    response = _redirect(HOSTILE_LOCATION, status=307)
    await aset_redirect_aside(response)
    assert response.headers[UNFOLLOWED_LOCATION_HEADER] == HOSTILE_LOCATION
    assert "location" not in response.headers


# --- cookies ---------------------------------------------------------------------------------


def _cookie_setting_handler(seen: list[str | None]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers=[("Set-Cookie", "session=planted; Path=/")], json={})

    return httpx.MockTransport(handler)


def test_the_sync_client_keeps_no_cookie_a_server_sets() -> None:
    seen: list[str | None] = []
    with sync_client(_cookie_setting_handler(seen), timeout=5, max_connections=None) as client:
        client.post(URL, json={})
        client.post(URL, json={})
        assert not client.cookies
    assert seen == [None, None]


async def test_the_async_client_keeps_no_cookie_a_server_sets() -> None:
    seen: list[str | None] = []
    async with async_client(_cookie_setting_handler(seen), timeout=5, max_connections=None) as client:
        await client.post(URL, json={})
        await client.post(URL, json={})
        assert not client.cookies
    assert seen == [None, None]


# In a fresh interpreter (this one has aiohttp loaded): the preload imports the transport and makes
# its TLS context in a thread of its own, so the event loop's first send finds both done.
_PRELOAD = """
import sys, threading
from prefect_intercom.http_clients import preload_async_transport
assert "prefect_intercom.transport" not in sys.modules
interval = sys.getswitchinterval()
seen = []  # the switch interval while the transport is imported


class Spy:
    def find_spec(self, name, path, target=None):
        if name == "prefect_intercom.transport":
            seen.append(sys.getswitchinterval())


sys.meta_path.insert(0, Spy())
thread = preload_async_transport()
thread.join()
assert seen[0] < interval and sys.getswitchinterval() == interval  # lowered while the preload ran, then set back
from prefect_intercom.transport import verified_context
assert thread is not threading.current_thread() and thread.daemon
assert verified_context.cache_info().currsize == 1 and verified_context.cache_info().hits == 0
assert preload_async_transport() is None  # loaded: nothing more to start
"""


def test_the_preload_loads_the_async_transport_and_its_tls_context_in_a_thread_of_its_own() -> None:
    result = subprocess.run([sys.executable, "-c", _PRELOAD], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
