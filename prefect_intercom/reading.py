"""Bound a request: a whole-request deadline, and an answer's body read to at most `MAX_ANSWER_BYTES`.

`deadline_for` sets a request's deadline, `applying` makes the sync client's connections wait
for it, `within` bounds an await; a body too large or still arriving at the deadline is kept as
far as it came, the answer saying why (`CUT_EXTENSION`). Why and how: docs/security.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import httpcore
import httpx

MAX_GRACE = 1.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class Deadline:
    """When a request must be over.

    Attributes:
        at: The deadline, in `time.monotonic()` seconds.
        seconds: The whole budget, for messages.
    """

    at: float
    seconds: float

    def remaining(self) -> float:
        """Seconds left (0 or less once it passed)."""
        return self.at - time.monotonic()

    def describe(self) -> str:
        """What happened when it passed, for error messages."""
        return f"no complete answer within the request's deadline of {self.seconds:g} s"


def deadline_for(timeout: float | None) -> Deadline | None:
    """The deadline of a request starting now, for a client `timeout` (none without a timeout).

    Args:
        timeout: The client's timeout in seconds.

    Returns:
        `timeout` plus a tenth of it (at most `MAX_GRACE`) from now, or `None`.
    """
    if timeout is None or timeout <= 0:
        return None
    seconds = timeout + min(MAX_GRACE, timeout / 10)
    return Deadline(time.monotonic() + seconds, seconds)


_CURRENT: ContextVar[Deadline | None] = ContextVar("prefect_intercom_deadline", default=None)


@contextmanager
def applying(deadline: Deadline | None) -> Iterator[None]:
    """Make `deadline` the one the network operations of this thread (or task) wait for at most.

    Args:
        deadline: The deadline (`None`: only per-operation timeouts).
    """
    token = _CURRENT.set(deadline)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def bound_sync_client(client: httpx.Client) -> None:
    """Give `client`'s httpx connection pool a network backend that honours `applying`.

    Nothing changes for a transport of the user's own, or an httpx that keeps its pool elsewhere.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, DeadlineBackend):
        pool._network_backend = DeadlineBackend(backend)  # type: ignore[union-attr]


def _bounded(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """`timeout`, shortened to what is left of the current deadline; raises `expired` once it passed."""
    deadline = _CURRENT.get()
    if deadline is None:
        return timeout
    left = deadline.remaining()
    if left <= 0:
        raise expired(deadline.describe())
    return left if timeout is None else min(timeout, left)


class DeadlineBackend(httpcore.NetworkBackend):
    """An httpcore network backend whose streams wait at most until the current deadline.

    Args:
        backend: The backend it wraps (httpcore's own).
    """

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, **options: Any) -> httpcore.NetworkStream:
        """Connect, within the deadline (`local_address` and `socket_options` passed on)."""
        stream = self._backend.connect_tcp(host, port, timeout=_bounded(timeout, httpcore.ConnectTimeout), **options)
        return DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None, **options: Any) -> httpcore.NetworkStream:
        """Connect over a Unix socket, within the deadline (`socket_options` passed on)."""
        stream = self._backend.connect_unix_socket(path, timeout=_bounded(timeout, httpcore.ConnectTimeout), **options)
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        """Sleep (httpcore's connect retries)."""
        self._backend.sleep(seconds)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads, writes and TLS handshake wait at most until the current deadline.

    Args:
        stream: The stream it wraps.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read, within the deadline."""
        return self._stream.read(max_bytes, timeout=_bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write, within the deadline."""
        self._stream.write(buffer, timeout=_bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        """Close the connection."""
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        """TLS handshake, within the deadline."""
        stream = self._stream.start_tls(
            ssl_context, server_hostname=server_hostname, timeout=_bounded(timeout, httpcore.ConnectTimeout)
        )
        return DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        """What the wrapped stream says (socket, TLS object, ...)."""
        return self._stream.get_extra_info(info)


async def within(deadline: Deadline | None, awaitable: Awaitable[_T]) -> _T:
    """Await `awaitable` until `deadline`.

    Raises:
        httpx.ReadTimeout: The deadline passed first (the awaitable was cancelled).
    """
    if deadline is None:
        return await awaitable
    try:
        async with asyncio.timeout(max(0.0, deadline.remaining())):
            return await awaitable
    except TimeoutError:
        failure = httpx.ReadTimeout(deadline.describe())
    raise failure  # outside the `except`: no `__context__`


MAX_ANSWER_BYTES = 1024 * 1024
# `httpx.Response.extensions` key: why the body was cut (`CUT_TOO_LARGE`, `CUT_AT_DEADLINE`), or absent.
CUT_EXTENSION = "prefect_intercom.cut"
CUT_TOO_LARGE = "larger than 1 MiB; the rest was not read"
CUT_AT_DEADLINE = "still arriving at the request's deadline; the rest was not read"
_SLICE = 1024
_KEPT_EXTENSIONS = ("http_version",)  # not the reason phrase: `marked` drops it
_DROPPED_HEADERS = (b"content-encoding", b"content-length", b"transfer-encoding")


def read_bounded(
    response: httpx.Response, deadline: Deadline | None = None, limit: int = MAX_ANSWER_BYTES
) -> httpx.Response:
    """Read at most `limit` bytes of a streamed answer, within `deadline`, and close it.

    Args:
        response: An answer from `client.send(..., stream=True)`, body not read yet.
        deadline: When reading must stop (what came so far is kept).
        limit: The most bytes read from the wire, and kept once decoded.

    Returns:
        The answer, body read (decoded), marked with `CUT_EXTENSION` when the body was cut;
        an answer whose `Content-Encoding` does not decode keeps its status with a note as
        its body (`undecodable`).

    Raises:
        httpx.TransportError: The connection failed while the body was read (before the deadline).
    """
    stream = response.stream = _Bounded(response, limit, deadline)
    if not stream.slices:  # the body as it came: httpx's own read, bounded by the stream
        response.read()
        return marked(response, stream.cut)
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            if stream.overflows(body, chunk):
                break
    except httpx.DecodingError as error:
        return undecodable(response, error)
    finally:
        response.close()
    return _answer(response, bytes(body[:limit]), stream.cut)


async def aread_bounded(
    response: httpx.Response, deadline: Deadline | None = None, limit: int = MAX_ANSWER_BYTES
) -> httpx.Response:
    """Async twin of `read_bounded`."""
    stream = response.stream = _Bounded(response, limit, deadline)
    if not stream.slices:
        try:
            await response.aread()
        except BaseException:  # e.g. cancelled: httpx closes only a body read to its end; the connection goes here
            with suppress(httpx.TransportError):
                await response.aclose()
            raise
        return marked(response, stream.cut)
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            if stream.overflows(body, chunk):
                break
    except httpx.DecodingError as error:
        return undecodable(response, error)
    finally:
        await response.aclose()
    return _answer(response, bytes(body[:limit]), stream.cut)


def undecodable(response: httpx.Response, error: httpx.DecodingError) -> httpx.Response:
    """The answer with its status and headers, and a note in place of a body that does not decode.

    A server that declares `Content-Encoding: gzip` (or deflate, br, zstd) and sends other
    bytes still answered: its status decides success or the `IntercomAPIError` subclass, and
    the note says why the body is missing.
    """
    encoding = response.headers.get("content-encoding", "")
    note = f"<the body could not be decoded (Content-Encoding: {encoding}): {error}>"
    return _answer(response, note.encode(), None)


@dataclass(eq=False, slots=True, repr=False)
class ReadAnswer:
    """An answer read whole, with the fields `httpx.Response` has under the same names.

    `IntercomAsyncTransport.exchange` returns it instead of building an `httpx.Response`, which
    reads its own body again through its decoders: about 10 µs of CPU an answer, 3% of a batch's.
    `parse_response` reads either.

    Attributes:
        status_code: The HTTP status.
        headers: The headers, as httpx reads them.
        content: The body, read (at most `MAX_ANSWER_BYTES`).
        extensions: httpx's `http_version`, and `CUT_EXTENSION` if cut.
    """

    status_code: int
    headers: httpx.Headers
    content: bytes
    extensions: dict[str, Any]

    def __repr__(self) -> str:
        """The status only, as `httpx.Response` shows itself: headers and body may echo the token or phone."""
        return f"<ReadAnswer [{self.status_code}]>"


Answer = httpx.Response | ReadAnswer
"""An answer with its body read: httpx's, or `exchange`'s."""
_Answer = TypeVar("_Answer", httpx.Response, ReadAnswer)


def marked(response: _Answer, cut: str | None) -> _Answer:
    """`response`, its extensions saying why its body was cut (`CUT_EXTENSION`), if it was.

    The reason phrase the server sent is dropped (`httpx.Response` then shows its status's own):
    a hostile server may echo the token there, and the answer's `repr` (a local of every frame up
    to `parse_response`, printed by tracebacks that show locals) would show it.
    """
    response.extensions.pop("reason_phrase", None)
    if cut is not None:
        response.extensions[CUT_EXTENSION] = cut
    return response


def _answer(response: httpx.Response, content: bytes, cut: str | None) -> httpx.Response:
    """A read answer: `response`'s status and headers (bytes: a value need not be ASCII) and `content`."""
    headers = [(name, value) for name, value in response.headers.raw if name.lower() not in _DROPPED_HEADERS]
    extensions = {name: response.extensions[name] for name in _KEPT_EXTENSIONS if name in response.extensions}
    answer = httpx.Response(
        response.status_code, headers=headers, content=content, request=response.request, extensions=extensions
    )
    return marked(answer, cut)


class _Bounded(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body stream that stops at the limit or the deadline, and never reads further.

    A compressed body (`Content-Encoding`) is handed on in slices, so that its decoded size is
    checked as it grows; `cut` says why the stream stopped early, if it did.
    """

    def __init__(self, response: httpx.Response, limit: int, deadline: Deadline | None) -> None:
        self._stream: Any = response.stream
        self.limit = limit
        self.deadline = deadline
        self.slices = "content-encoding" in response.headers
        self.cut: str | None = None
        self.read = 0

    def overflows(self, body: bytearray, chunk: bytes) -> bool:
        """Add a decoded `chunk` to `body`; whether the body is now past the limit (then it is cut)."""
        body += chunk
        if len(body) <= self.limit:
            return False
        self.cut = CUT_TOO_LARGE
        return True

    def _take(self, chunk: bytes) -> list[bytes]:
        """The part of `chunk` within the limit (in slices when the body is compressed); sets `cut` past it."""
        left = self.limit - self.read
        if len(chunk) > left:  # more than the limit came: keep up to it, read no further
            self.cut = CUT_TOO_LARGE
            chunk = chunk[:left]
        self.read += len(chunk)
        if not self.slices or len(chunk) <= _SLICE:
            return [chunk]
        return [chunk[start : start + _SLICE] for start in range(0, len(chunk), _SLICE)]

    def _timed_out(self) -> bool:
        """Whether a timeout is the deadline's (then the body read so far is kept)."""
        if self.deadline is not None and self.deadline.remaining() <= 0:
            self.cut = CUT_AT_DEADLINE
        return self.cut == CUT_AT_DEADLINE

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._stream:
                yield from self._take(chunk)
                if self.cut is not None or self._timed_out():
                    return
        except httpx.TimeoutException:
            if not self._timed_out():
                raise

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._stream.__aiter__()
        while True:
            try:  # each chunk is awaited until the deadline at most
                chunk = await within(self.deadline, chunks.__anext__())
            except StopAsyncIteration:
                return
            except httpx.TimeoutException:
                if not self._timed_out():
                    raise
                return
            for piece in self._take(chunk):
                yield piece
            if self.cut is not None:
                return

    def close(self) -> None:
        self._stream.close()

    async def aclose(self) -> None:
        await self._stream.aclose()
