"""The one request pipeline: prepare (validate, URL, headers, JSON), send (httpx), parse.

Every caller goes through `IntercomClient`; the token joins a request only as it is sent
(docs/single-send.md).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from prefect_intercom import log_filter
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, Endpoint, get_endpoint
from prefect_intercom.errors import IntercomAPIError, IntercomError, IntercomTransportError
from prefect_intercom.hosts import check_base_url
from prefect_intercom.http_clients import async_client, set_redirect_aside, sync_client
from prefect_intercom.outcomes import Outcome
from prefect_intercom.pacing import Pacer
from prefect_intercom.prepared import USER_AGENT, PreparedRequest, check_token
from prefect_intercom.privacy import phone_masker
from prefect_intercom.reading import (
    Answer,
    Deadline,
    applying,
    aread_bounded,
    bound_sync_client,
    deadline_for,
    read_bounded,
    within,
)
from prefect_intercom.redaction import Redactor, cut
from prefect_intercom.responses import MAX_TEXT, IntercomResponse, RateLimit, parse_response
from prefect_intercom.retry import RetryCallback, RetryPolicy, acall_with_retry, call_with_retry
from prefect_intercom.validation import validate_headers, validate_request

if TYPE_CHECKING:
    from prefect_intercom.transport import IntercomAsyncTransport

DEFAULT_TIMEOUT = 30.0
# Failures where the request provably never reached the server.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_PLAIN_PATH = re.compile(r"^(/[A-Za-z0-9_-]+)+$")
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class IntercomClient:
    """Talks to Intercom (or the sandbox) through one pipeline.

    Args:
        access_token: The Intercom access token.
        base_url: The API root, e.g. `https://api.intercom.io` (checked by `check_base_url`).
        intercom_version: The `Intercom-Version` header value.
        timeout: Seconds to wait for connecting, sending and each read.
        allow_custom_base_url: Opt-in to a base URL that is neither Intercom's nor loopback.
        transport: The sync client's httpx transport (`httpx.BaseTransport`: tests, proxies);
            default: httpx's own. Anything else is refused with a `TypeError`.
        async_transport: The async client's httpx transport (`httpx.AsyncBaseTransport`);
            default: aiohttp's pool (`prefect_intercom.transport`). Anything else is refused
            with a `TypeError`. `httpx.MockTransport` is both kinds: pass it to the argument
            of each client you use.
        retry: When to repeat a failed send (`RetryPolicy`); default: send once, never retry.
        pacer: What holds sends back under Intercom's rate limit (`Pacer`); default: none.
        on_retry: Called as `on_retry(error, attempt, wait)` before each retry (for logging).
        max_connections: Connections kept open to Intercom (set it to the concurrency of a
            batch); default: 100 (httpx's sync pool keeps 20 of them alive).

    Example:
        ```python
        from prefect_intercom import IntercomCredentials

        with IntercomCredentials.load("intercom").get_client() as client:
            response = client.request("phone_call_redirects", {"phone": "+14155550100"})
            print(response.status_code, response.data)
        ```
    """

    def __init__(
        self,
        access_token: SecretStr | str,
        *,
        base_url: str,
        intercom_version: str,
        timeout: float = DEFAULT_TIMEOUT,
        allow_custom_base_url: bool = False,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        on_retry: RetryCallback | None = None,
        max_connections: int | None = None,
    ) -> None:
        # The wrong kind of transport is refused here, never replaced by the network's in silence.
        for name, given, kind, hint in (
            ("transport", transport, httpx.BaseTransport, "an async transport goes to async_transport="),
            ("async_transport", async_transport, httpx.AsyncBaseTransport, "a sync transport goes to transport="),
        ):
            if given is not None and not isinstance(given, kind):
                raise TypeError(f"{name} must be an httpx.{kind.__name__} or None, not {type(given).__name__} ({hint})")
        self._token = access_token if isinstance(access_token, SecretStr) else SecretStr(access_token)
        check_token(self._token)
        self._redactor = Redactor(self._token.get_secret_value())
        self.base_url = check_base_url(base_url, allow_custom_host=allow_custom_base_url)
        self.intercom_version = intercom_version
        self.timeout = timeout
        self._transport = transport
        self._async_transport = async_transport
        self.retry = retry
        self.pacer = pacer
        self.on_retry = on_retry
        self.max_connections = max_connections
        # Headers depend on the endpoint and this client's settings only: validated once.
        self._validated_headers: dict[tuple[str, str], tuple[Endpoint, dict[str, str]]] = {}
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._pool: IntercomAsyncTransport | None = None  # the async client's default transport, sent through directly
        self._client_defaults: dict[tuple[str, ...], dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"IntercomClient(base_url={self.base_url!r}, intercom_version={self.intercom_version!r})"

    # --- prepare -------------------------------------------------------------------------

    def prepare(self, endpoint: str | Endpoint, body: Any) -> PreparedRequest:
        """Validate `body` and the headers, and build the request; nothing is sent.

        Raises:
            IntercomValidationError: The body or headers break the generated schemas.
        """
        entry = endpoint if isinstance(endpoint, Endpoint) else get_endpoint(endpoint)
        validate_request(entry, body)
        return PreparedRequest(
            endpoint=entry,
            method=entry.method,
            url=f"{self.base_url}{entry.path}",
            headers=self._headers(entry),
            body=body,
            content=json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(),
        )

    def prepare_get(self, path: str, query: Mapping[str, str] | None = None) -> PreparedRequest:
        """Build a read-only `GET` of the API (e.g. `/data_attributes`); nothing is sent.

        It goes out like every send: to this client's host, with the validated `Intercom-Version`,
        `Accept` and `User-Agent` headers (the catalogue endpoint's), the token added only when
        sent, the answer parsed and redacted by `send`. It has no body, so no `Content-Type`.

        Args:
            path: The path below the API host, e.g. `/data_attributes`.
            query: Query parameters, e.g. `{"model": "contact"}`.

        Raises:
            ValueError: `path` is not a plain path (`/word/...`: no query, host or `..`).
            IntercomValidationError: The headers break the generated schemas.
        """
        if not _PLAIN_PATH.match(path):
            raise ValueError(f"not a plain API path: {path!r}")
        base = get_endpoint(PHONE_CALL_REDIRECTS)  # Intercom-Version's allowed values are the API's, not one endpoint's
        headers = self._headers(base)
        del headers["Content-Type"]
        entry = replace(
            base, name=f"GET {path}", method="GET", path=path, summary="", description="", body_fields=[], steps=[]
        )
        url = f"{self.base_url}{path}" + (f"?{urlencode(dict(query))}" if query else "")
        return PreparedRequest(endpoint=entry, method="GET", url=url, headers=headers, body={}, content=b"")

    def _headers(self, entry: Endpoint) -> dict[str, str]:
        """The request headers for `entry` (validated on first use), as a fresh dict."""
        key = (entry.name, self.intercom_version)
        cached = self._validated_headers.get(key)
        if cached is None or cached[0] is not entry:
            headers = {**_JSON_HEADERS, "Intercom-Version": self.intercom_version, "User-Agent": USER_AGENT}
            validate_headers(entry, headers)
            cached = self._validated_headers[key] = (entry, headers)
        return dict(cached[1])

    # --- send ----------------------------------------------------------------------------

    def send(self, prepared: PreparedRequest) -> IntercomResponse:
        """Send, paced by `pacer` and retried only as `retry` allows, and parse the answer.

        Without a retry policy the request is sent once.

        Raises:
            IntercomAPIError: Intercom answered with an error status (after any retries;
                `.attempts` says how many were made).
            IntercomTransportError: No answer; `.outcome` says whether it may have been sent.
        """
        attempts = itertools.count(1)
        return call_with_retry(lambda: self._send_once(prepared, next(attempts)), self.retry, on_retry=self.on_retry)

    async def asend(
        self,
        prepared: PreparedRequest,
        *,
        before_send: Callable[[], Awaitable[None]] | None = None,
        on_retry: RetryCallback | None = None,
    ) -> IntercomResponse:
        """Async twin of `send`.

        Args:
            prepared: The request from `prepare`.
            before_send: Awaited before each attempt goes on the wire, after pacing (the
                batch records its write-ahead intent there); if it raises, nothing is sent.
            on_retry: Called as `on_retry(error, attempt, wait)` before each retry of this
                request, after the client's own `on_retry`.
        """
        attempts = itertools.count(1)

        def both(error: IntercomError, attempt: int, wait: float) -> None:
            for callback in (self.on_retry, on_retry):
                if callback is not None:
                    callback(error, attempt, wait)

        return await acall_with_retry(
            lambda: self._asend_once(prepared, next(attempts), before_send), self.retry, on_retry=both
        )

    def _send_once(self, prepared: PreparedRequest, attempt: int) -> IntercomResponse:
        """Attempt number `attempt`: paced, sent and parsed (never retried), within the request's deadline."""
        if self.pacer is not None:
            # The retry policy's budget bounds the wait for the pacer (the pacer's own without one).
            self.pacer.acquire(max_wait=self.retry.max_wait if self.retry is not None else None)
        try:
            if self._sync is None:
                self._sync = sync_client(self._transport, timeout=self.timeout, max_connections=self.max_connections)
                bound_sync_client(self._sync)  # every read and write waits at most until the deadline
            client = self._sync
            headers, started, deadline = self._start(prepared)
            request = client.build_request(prepared.method, prepared.url, headers=headers, content=prepared.content)
            try:
                with applying(deadline):
                    response = read_bounded(client.send(request, stream=True), deadline)
            except httpx.TransportError as error:
                failure = self._transport_error(error, prepared, deadline)
            else:
                return self._parse(response, started, prepared, attempt)
            raise failure  # outside the `except`: no `__context__` holding the request and its token
        except BaseException as error:
            self._release(error)
            raise

    async def _asend_once(
        self, prepared: PreparedRequest, attempt: int, before_send: Callable[[], Awaitable[None]] | None
    ) -> IntercomResponse:
        """Async twin of `_send_once`, awaiting `before_send` once paced."""
        if self.pacer is not None:
            await self.pacer.aacquire(max_wait=self.retry.max_wait if self.retry is not None else None)
        try:
            if before_send is not None:
                await before_send()
            headers, started, deadline = self._start(prepared)
            try:
                response = await self._aexchange(prepared, headers, deadline)
            except httpx.TransportError as error:
                failure = self._transport_error(error, prepared, deadline)
            else:
                return self._parse(response, started, prepared, attempt)
            raise failure  # outside the `except`: no `__context__` holding the request and its token
        except BaseException as error:
            self._release(error)
            raise

    async def _aexchange(self, prepared: PreparedRequest, headers: dict[str, str], deadline: Deadline | None) -> Answer:
        """The answer, read: straight over the default aiohttp pool, else through httpx and the given transport."""
        if self._async is None:
            from prefect_intercom.transport import IntercomAsyncTransport  # aiohttp is loaded for async sends only

            self._pool = IntercomAsyncTransport(self.max_connections) if self._async_transport is None else None
            transport = self._pool or self._async_transport
            self._async = async_client(transport, timeout=self.timeout, max_connections=self.max_connections)
        client = self._async
        if self._pool is None:
            request = client.build_request(prepared.method, prepared.url, headers=headers, content=prepared.content)
            return await aread_bounded(await within(deadline, client.send(request, stream=True)), deadline)
        names = tuple(headers)
        defaults = self._client_defaults.get(names)
        if defaults is None:  # httpx's own defaults (Accept-Encoding, Connection) where the request sets none
            ours = {name.lower() for name in names}
            raw = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in client.headers.raw]
            defaults = self._client_defaults[names] = {name: value for name, value in raw if name.lower() not in ours}
        response = await self._pool.exchange(
            prepared.method,
            prepared.url,
            {**defaults, **headers},
            prepared.content,
            timeout=self.timeout,
            deadline=deadline,
        )
        set_redirect_aside(response)  # the answer hook httpx runs
        return response

    def _release(self, error: BaseException) -> None:
        """Give the pacer's slot back after a failed attempt (with an error answer's rate-limit headers)."""
        if self.pacer is not None:
            self.pacer.release(RateLimit.from_headers(error.headers) if isinstance(error, IntercomAPIError) else None)

    def request(self, endpoint: str | Endpoint, body: Any) -> IntercomResponse:
        """Prepare and send in one call."""
        return self.send(self.prepare(endpoint, body))

    async def arequest(self, endpoint: str | Endpoint, body: Any) -> IntercomResponse:
        """Async twin of `request`."""
        return await self.asend(self.prepare(endpoint, body))

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync connection pool."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close both connection pools (and the pacer's connection to the Prefect server)."""
        self.close()
        if self.pacer is not None:
            await self.pacer.aclose()
        if self._async is not None:
            await self._async.aclose()
            self._async = self._pool = None

    def __enter__(self) -> IntercomClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> IntercomClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- internals -----------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """`text` with every piece of the access token replaced by `[REDACTED]`.

        Any run of 8 or more of its characters goes, in any form a server may echo it: as it
        is, `Bearer `-prefixed, JSON-escaped, URL-encoded, upper-cased (see `Redactor`).
        """
        return self._redactor.redact(text)

    def _start(self, prepared: PreparedRequest) -> tuple[dict[str, str], float, Deadline | None]:
        """The request's headers with its token (kept out of the HTTP libraries' logs), its start and its deadline."""
        token = self._token.get_secret_value()
        log_filter.protect(self, token)
        return {**prepared.headers, "Authorization": f"Bearer {token}"}, time.perf_counter(), deadline_for(self.timeout)

    def _parse(self, response: Answer, started: float, prepared: PreparedRequest, attempt: int) -> IntercomResponse:
        """Parse the answer of attempt `attempt` (its pacer slot given back): token redacted, phone masked in errors."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        parsed = parse_response(response, elapsed_ms=elapsed_ms, redact=self.redact, mask=phone_masker(prepared.body))
        if self.pacer is not None:
            self.pacer.release(parsed.rate_limit)  # the slot back, with the answer's rate-limit headers
        return replace(parsed, attempts=attempt) if attempt > 1 else parsed

    def _transport_error(
        self, error: httpx.TransportError, prepared: PreparedRequest, deadline: Deadline | None
    ) -> IntercomTransportError:
        """The error for no answer: its kind, its text (redacted whole, phone masked, then cut), the outcome."""
        outcome = Outcome.NOT_SENT if isinstance(error, _NOT_SENT_ERRORS) else Outcome.UNKNOWN
        detail = str(error)
        if deadline is not None and deadline.remaining() <= 0 and isinstance(error, httpx.TimeoutException):
            detail = deadline.describe()
        detail = cut(phone_masker(prepared.body)(self.redact(detail)), MAX_TEXT) or "no detail"
        return IntercomTransportError(f"{type(error).__name__}: {detail}", outcome=outcome, url=prepared.url)
