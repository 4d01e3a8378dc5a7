"""The two httpx clients the pipeline sends through, built alike: no redirects, nothing from the environment.

The sync client over httpx's own pool, the async one over aiohttp's (`transport`, loaded only
then), unless given a transport; both keep no cookies and set a redirect's `Location` aside.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any, TypeVar

import httpx

from prefect_intercom.reading import Answer
from prefect_intercom.responses import UNFOLLOWED_LOCATION_HEADER

_Client = TypeVar("_Client", httpx.Client, httpx.AsyncClient)
# Seconds a thread may hold the GIL while another waits for it, during the preload of the async transport.
PRELOAD_SWITCH_INTERVAL = 0.0005


def sync_client(transport: httpx.BaseTransport | None, *, timeout: float, max_connections: int | None) -> httpx.Client:
    """The sync client: httpx's own pool unless given a transport."""
    return _client(httpx.Client, transport, set_redirect_aside, timeout, max_connections)


def async_client(
    transport: httpx.AsyncBaseTransport | None, *, timeout: float, max_connections: int | None
) -> httpx.AsyncClient:
    """The async client: over aiohttp's pool (`prefect_intercom.transport`) unless given a transport.

    The default transport opens its pool lazily inside the running event loop and never
    shares it with another loop; a user's transport is used as given.
    """
    if transport is None:
        from prefect_intercom.transport import IntercomAsyncTransport

        transport = IntercomAsyncTransport(max_connections)
    return _client(httpx.AsyncClient, transport, aset_redirect_aside, timeout, max_connections)


def preload_async_transport() -> threading.Thread | None:
    """Import the aiohttp transport and make its TLS context in a worker thread, started now.

    Both take about 100 ms of CPU, which the first async send would otherwise spend in its event
    loop. Started where the loop then waits on the network (a batch's lease and ledger at the
    Prefect server), they are ready by the first send; a send that comes sooner waits on the
    import lock for the rest, as it would have done itself.

    Returns:
        The thread, or `None` when the transport was already loaded.
    """
    if "prefect_intercom.transport" in sys.modules:
        return None
    thread = threading.Thread(target=_load_async_transport, name="prefect-intercom-preload", daemon=True)
    thread.start()
    return thread


def _load_async_transport() -> None:
    """The preload's work; a failure is left to the send's own import, which raises it where it is seen.

    Meanwhile the interpreter's switch interval is `PRELOAD_SWITCH_INTERVAL` (then set back, unless
    someone else changed it meanwhile): with Python's 5 ms, each answer the event loop awaited waited
    up to 5 ms more for this thread to give up the GIL, which cost back most of the gain (measured:
    the lease took 150 ms instead of 90 while aiohttp was imported).
    """
    interval = sys.getswitchinterval()
    ours = min(interval, PRELOAD_SWITCH_INTERVAL)
    sys.setswitchinterval(ours)
    ours = sys.getswitchinterval()  # as the interpreter stores it (whole microseconds)
    try:
        with contextlib.suppress(Exception):
            from prefect_intercom.transport import verified_context

            verified_context()
    finally:
        if sys.getswitchinterval() == ours:
            sys.setswitchinterval(interval)


def client_options(*, timeout: float, max_connections: int | None) -> dict[str, Any]:
    """Options both httpx clients share: no redirects, nothing from the environment, the pool size.

    `limits` sizes httpx's own pool (the sync client's); the async client's default transport
    is sized by `max_connections` itself.
    """
    options: dict[str, Any] = {"timeout": timeout, "follow_redirects": False, "trust_env": False}
    if max_connections is not None:
        options["limits"] = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return options


def _client(kind: type[_Client], transport: Any, hook: Any, timeout: float, max_connections: int | None) -> _Client:
    """A client of `kind` with `client_options`, `hook` seeing every answer, and no cookie jar."""
    options = client_options(timeout=timeout, max_connections=max_connections)
    client = kind(transport=transport, event_hooks={"response": [hook]}, **options)
    client._cookies = NoCookies()  # httpx's `cookies` setter would wrap it in a plain `Cookies`
    return client


class NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: Intercom's API authenticates by token, never by cookie.

    A server (or a proxy in the way) cannot plant a cookie that later requests would carry, and
    no answer pays for httpx's cookie parsing (about 7% of the batch's CPU per item).
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep no cookie from `response`."""
        return None


def set_redirect_aside(response: Answer) -> None:
    """Rename a redirect's `Location` so that httpx does not even build the next request.

    Redirects are never followed (`follow_redirects=False`), yet httpx still parses `Location`
    and cookies for `next_request`; a hostile value there would fail the answer with a raw
    protocol or encoding error instead of the `IntercomAPIError` a 3xx is. The error keeps the
    location under `UNFOLLOWED_LOCATION_HEADER`.
    """
    if "location" in response.headers:
        aside = UNFOLLOWED_LOCATION_HEADER.encode()
        raw = [(aside if name.lower() == b"location" else name, value) for name, value in response.headers.raw]
        response.headers = httpx.Headers(raw)


async def aset_redirect_aside(response: httpx.Response) -> None:
    """Async twin of `set_redirect_aside` (an `httpx.AsyncClient` awaits its hooks)."""
    set_redirect_aside(response)
