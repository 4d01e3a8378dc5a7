"""How the async client's bytes move: aiohttp's connection pool, with httpx's meanings.

httpx stays the API and the test seam; `IntercomAsyncTransport` keeps httpx's error meanings
(a failure after the request left is never a connect error), puts no token in its errors and
keeps one session per event loop. `IntercomClient` sends through its `exchange` directly, without
httpx's layers. Why and what it adjusts: docs/single-send.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream

from prefect_intercom.reading import (
    CUT_AT_DEADLINE,
    CUT_TOO_LARGE,
    MAX_ANSWER_BYTES,
    Answer,
    Deadline,
    ReadAnswer,
    aread_bounded,
    marked,
)

# What httpx's own AsyncClient keeps by default (`httpx.Limits()`), when no size is given.
DEFAULT_MAX_CONNECTIONS = 100
# Seconds an idle connection may be reused. Below the 5 s idle timeout of common servers
# (uvicorn, and so the sandbox; Node; Apache): a POST sent on a connection the server is
# closing at that moment gets no answer and is `unknown`, and a 5 s expiry (httpx's) races
# a 5 s server exactly when a batch waits about that long for the next rate-limit window.
KEEPALIVE_EXPIRY = 4.0
# Header lines an answer may have (aiohttp's default: 128). A 2xx whose status line arrived
# texted the person whatever its header count, so the async transport reads every head the sync
# one (httpcore: 100 KiB of head in all) reads: 100 KiB / 4 bytes, the shortest header line.
MAX_HEADERS = 100 * 1024 // 4

_HTTPX_LOGGER = logging.getLogger("httpx")  # `exchange` writes the line httpx's client writes for each answer
_CAUGHT = (httpx.TransportError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


class IntercomAsyncTransport(AiohttpTransport):
    """`AiohttpTransport` with httpx's error meanings, no token in errors, and one session per loop.

    The default transport of `IntercomClient`'s async client; it opens its connection pool on first use,
    in the running event loop.

    Args:
        max_connections: Connections open at most (default: 100, as httpx's).
        keepalive_expiry: Seconds an idle connection may be reused.

    Raises:
        ValueError: `max_connections` is below 1 (aiohttp would read 0 as "no limit").

    Example:
        ```python
        transport = IntercomAsyncTransport(max_connections=50)
        async with httpx.AsyncClient(transport=transport, follow_redirects=False) as client:
            await client.post("https://api.intercom.io/phone_call_redirects", json={"phone": "+14155550100"})
        ```
    """

    def __init__(self, max_connections: int | None = None, *, keepalive_expiry: float = KEEPALIVE_EXPIRY) -> None:
        size = DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections
        if size < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=keepalive_expiry)
        super().__init__(verify=verified_context(), trust_env=False, limits=limits, client=self._new_session)
        self.max_connections = size
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"IntercomAsyncTransport(max_connections={self.max_connections})"

    def _new_session(self) -> aiohttp.ClientSession:
        """A session for the running loop: our pool size, no cookie jar, nothing from the environment."""
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, keepalive_timeout=self.limits.keepalive_expiry, ssl=self.ssl_context
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,
            max_headers=MAX_HEADERS,
            response_class=_Answer,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` on this loop's session; every failure becomes a fresh httpx error.

        Raises:
            httpx.ConnectError: No connection could be made (nothing was sent).
            httpx.ConnectTimeout: Connecting, or waiting for a free connection, took too long.
            httpx.ReadTimeout: The answer did not come in time (the request may have acted).
            httpx.RemoteProtocolError: The server disconnected or answered with broken HTTP.
            httpx.ReadError: The connection failed after it was made.
            httpx.WriteError: The connection closed while the request was being written.
        """
        self._bind_to_running_loop()
        try:
            response = await super().handle_async_request(request)
        except _CAUGHT as error:
            failure = translate_error(error)
        else:
            response.stream = _TranslatedStream(response.stream)
            return response
        raise failure  # outside the `except`: no `__context__` back to aiohttp's error

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        *,
        timeout: float,
        deadline: Deadline | None,
    ) -> Answer:
        """Send one request and read its answer: `httpx.AsyncClient.send` and `aread_bounded` without their layers.

        `IntercomClient` sends through here when this transport is its default: the same wire
        request, error meanings and cut answers as through httpx (tests/test_transport.py compares
        both), at about half the CPU per request. An encoded answer (`Content-Encoding`) is read by
        `aread_bounded` itself.

        Args:
            method: The HTTP method.
            url: The full URL.
            headers: Every request header but `Host` and `Content-Length` (aiohttp adds them).
            content: The body.
            timeout: Seconds for connecting, waiting for a connection and each read (httpx's `timeout`).
            deadline: When the whole request must be over; a body still arriving then is cut.

        Returns:
            The answer, its body read (at most `MAX_ANSWER_BYTES`), marked as `aread_bounded` marks it:
            a `ReadAnswer` (an `httpx.Response` for an encoded one).

        Raises:
            httpx.TransportError: As `handle_async_request` (`httpx.ReadTimeout` for the deadline).
        """
        self._bind_to_running_loop()
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        answer: aiohttp.ClientResponse | None = None
        body, cut, failure = bytearray(), None, None
        extensions: dict[str, bytes] = {}
        limiter = asyncio.timeout(None if deadline is None else max(0.0, deadline.remaining()))
        try:
            async with limiter:
                answer = await self.client.request(
                    method, url, headers=headers, data=content or None, allow_redirects=False, timeout=_limits(timeout)
                )
                extensions = _head_read(method, url, answer)
                if "Content-Encoding" not in answer.headers:
                    cut = await _read_into(body, answer.content)
        except _CAUGHT as error:
            if not limiter.expired():
                failure = translate_error(error)
            elif answer is None:
                failure = httpx.ReadTimeout(deadline.describe() if deadline is not None else "timed out")
            else:
                cut = CUT_AT_DEADLINE  # what came is kept, as `aread_bounded` keeps it
        except BaseException:  # cancelled: the connection goes with the request
            if answer is not None:
                answer.close()
            raise
        if failure is not None:
            if answer is not None:
                answer.close()
            raise failure  # outside the `except`: no `__context__` back to aiohttp's error
        if "Content-Encoding" in answer.headers:  # decoded by httpx, its decoded size bounded as it grows
            stream = _TranslatedStream(AiohttpResponseStream(answer))
            response = httpx.Response(
                answer.status, headers=answer.raw_headers, stream=stream, request=httpx.Request(method, url)
            )
            response.extensions.update(extensions)
            return await aread_bounded(response, deadline)
        if cut is None:
            answer.release()
        else:
            answer.close()  # the rest was not read: the connection goes
        return marked(ReadAnswer(answer.status, httpx.Headers(answer.raw_headers), bytes(body), extensions), cut)

    async def aclose(self) -> None:
        """Close this loop's connection pool (or let a pool of another loop go)."""
        session, self.client = self.client, self._new_session
        if not isinstance(session, aiohttp.ClientSession):
            return
        if self._loop is asyncio.get_running_loop():
            await session.close()
        else:
            _let_go(session, self._loop)
        self._loop = None

    def _bind_to_running_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        session, self.client = self.client, self._new_session
        if isinstance(session, aiohttp.ClientSession):
            _let_go(session, self._loop)
        self._loop = loop


@functools.cache
def _limits(seconds: float) -> aiohttp.ClientTimeout:
    """The aiohttp timeouts for httpx's `timeout=seconds` (as `AiohttpTransport` maps them), made once (frozen)."""
    return aiohttp.ClientTimeout(sock_connect=seconds, sock_read=seconds, connect=seconds)


@functools.cache
def verified_context() -> ssl.SSLContext:
    """The verifying TLS context httpx makes (certifi's CAs), made once per process: about 40 ms of CPU each."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


class _Answer(aiohttp.ClientResponse):
    """aiohttp's answer, its reason phrase only the ASCII of it (what httpx's `reason_phrase` keeps).

    aiohttp decodes the phrase as UTF-8, other bytes as surrogates; encoded back (httpx_aiohttp,
    `exchange`), a non-UTF-8 phrase would fail the answer (a 200: the text went out) with an error
    holding the phrase, which a hostile server may fill with the token it was sent.
    """

    _reason: str | None = None

    @property  # type: ignore[override]
    def reason(self) -> str | None:  # type: ignore[override]
        return self._reason

    @reason.setter
    def reason(self, text: str | None) -> None:
        self._reason = text if text is None or text.isascii() else text.encode("ascii", "ignore").decode()


class _TranslatedStream(httpx.AsyncByteStream):
    """The answer's body, with aiohttp's failures translated as `handle_async_request` does."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        failure: httpx.TransportError | None = None
        try:
            async for chunk in self._stream:
                yield chunk
        except _CAUGHT as error:
            failure = translate_error(error)
        if failure is not None:
            # httpx does not close a response whose body failed: give the connection back here.
            with contextlib.suppress(*_CAUGHT):
                await self._stream.aclose()
            raise failure

    async def aclose(self) -> None:
        failure: httpx.TransportError | None = None
        try:
            await self._stream.aclose()
        except _CAUGHT as error:
            failure = translate_error(error)
        if failure is not None:
            raise failure


def _head_read(method: str, url: str, answer: aiohttp.ClientResponse) -> dict[str, bytes]:
    """The extensions a read answer keeps (no server reason phrase: `marked`), once httpx's log line is written."""
    extensions = {"http_version": b"HTTP/1.1"}
    if _HTTPX_LOGGER.isEnabledFor(logging.INFO):
        reason = answer.reason or httpx.codes.get_reason_phrase(answer.status)  # httpx's `reason_phrase`
        _HTTPX_LOGGER.info('HTTP Request: %s %s "HTTP/1.1 %d %s"', method, url, answer.status, reason)
    return extensions


async def _read_into(body: bytearray, stream: aiohttp.StreamReader, limit: int = MAX_ANSWER_BYTES) -> str | None:
    """Read `stream` into `body` up to `limit` bytes; `CUT_TOO_LARGE` once more came (nothing further is read)."""
    while chunk := await stream.readany():
        body += chunk
        if len(body) > limit:
            del body[limit:]
            return CUT_TOO_LARGE
    return None


def translate_error(error: BaseException) -> httpx.TransportError:
    """The httpx error that says what `error` (aiohttp's, or `AiohttpTransport`'s mapping of it) means.

    Only failures before the request could leave are connect errors; anything later means the
    request may have been acted on. The result is a new exception holding only a message: no
    request, no cause, no headers.

    Args:
        error: What `AiohttpTransport` or aiohttp raised.

    Returns:
        A fresh httpx error.
    """
    origin = error
    if isinstance(error, httpx.TransportError) and isinstance(error.__cause__, Exception):
        origin = error.__cause__  # AiohttpTransport raises its mapping `from` aiohttp's error
    return _kind(origin)(str(origin) or type(origin).__name__)


def _kind(error: BaseException) -> type[httpx.TransportError]:
    if isinstance(error, (aiohttp.ClientConnectorError, aiohttp.ServerFingerprintMismatch)):
        return httpx.ConnectError  # refused, DNS, TLS handshake or certificate: nothing left
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout  # waiting for a connection or for connecting: nothing left
    if isinstance(error, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol
    if isinstance(error, asyncio.TimeoutError):
        return httpx.ReadTimeout  # aiohttp's socket read timeout, or any other late timeout
    if isinstance(error, aiohttp.ClientConnectionResetError):
        return httpx.WriteError
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError
    if isinstance(error, OSError):
        return httpx.ReadError
    if isinstance(error, httpx.TransportError):
        return type(error)
    return httpx.TransportError  # an aiohttp error not listed here: may have been sent


def _let_go(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop | None) -> None:
    """Close `session`, which belongs to `loop`, from outside that loop, without waiting.

    A loop still running (in another thread) closes it itself; on a stopped or closed loop the
    connector is closed on the spot (aiohttp skips the sockets of a closed loop).
    """
    if loop is not None and loop.is_running() and not loop.is_closed():
        asyncio.run_coroutine_threadsafe(session.close(), loop)
        return
    connector = session.connector
    if connector is not None and not connector.closed:
        connector._close()  # the sync half of `connector.close()`; there is no loop to await it on
