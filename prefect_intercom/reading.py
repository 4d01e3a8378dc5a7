"""Read an answer's body, bounded: at most `MAX_ANSWER_BYTES`, within the request's deadline.

The largest answer Intercom documents for this endpoint is a few hundred bytes. A body larger
than `MAX_ANSWER_BYTES` (on the wire, or once decompressed) is read up to that size and the
rest is never read: the connection is closed. A body still arriving when the request's
deadline passes (`prefect_intercom.deadline`) is kept as far as it came. Either way the
status stands (a 2xx is still a success: the person was texted) and the answer says why its
body was cut (`CUT_EXTENSION`, then `IntercomResponse.truncated` or the error's message).

A compressed body is handed to httpx's decoder in slices of `_SLICE` bytes, so even a
"zip bomb" inflates at most about a megabyte at a time before the size check stops it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx

from prefect_intercom.deadline import Deadline, within

MAX_ANSWER_BYTES = 1024 * 1024
# `httpx.Response.extensions` key: why the body was cut (`CUT_TOO_LARGE`, `CUT_AT_DEADLINE`), or absent.
CUT_EXTENSION = "prefect_intercom.cut"
CUT_TOO_LARGE = "larger than 1 MiB; the rest was not read"
CUT_AT_DEADLINE = "still arriving at the request's deadline; the rest was not read"
_SLICE = 1024
_KEPT_EXTENSIONS = ("http_version", "reason_phrase")
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
    encoded = "content-encoding" in response.headers
    stream = _SyncBounded(response.stream, limit, deadline, slices=encoded)  # type: ignore[arg-type]
    response.stream = stream
    if not encoded:  # the body as it came: httpx's own read, bounded by the stream
        response.read()
        return _marked(response, stream.bounds.cut)
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                stream.bounds.cut = CUT_TOO_LARGE
                break
    except httpx.DecodingError as error:
        return undecodable(response, error)
    finally:
        response.close()
    return _answer(response, bytes(body[:limit]), stream.bounds.cut)


async def aread_bounded(
    response: httpx.Response, deadline: Deadline | None = None, limit: int = MAX_ANSWER_BYTES
) -> httpx.Response:
    """Async twin of `read_bounded`."""
    encoded = "content-encoding" in response.headers
    stream = _AsyncBounded(response.stream, limit, deadline, slices=encoded)  # type: ignore[arg-type]
    response.stream = stream
    if not encoded:
        await response.aread()
        return _marked(response, stream.bounds.cut)
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                stream.bounds.cut = CUT_TOO_LARGE
                break
    except httpx.DecodingError as error:
        return undecodable(response, error)
    finally:
        await response.aclose()
    return _answer(response, bytes(body[:limit]), stream.bounds.cut)


def undecodable(response: httpx.Response, error: httpx.DecodingError) -> httpx.Response:
    """The answer with its status and headers, and a note in place of a body that does not decode.

    A server that declares `Content-Encoding: gzip` (or deflate, br, zstd) and sends other
    bytes still answered: its status decides success or the `IntercomAPIError` subclass, and
    the note says why the body is missing.
    """
    encoding = response.headers.get("content-encoding", "")
    note = f"<the body could not be decoded (Content-Encoding: {encoding}): {error}>"
    return _answer(response, note.encode(), None)


def _marked(response: httpx.Response, cut: str | None) -> httpx.Response:
    if cut is not None:
        response.extensions[CUT_EXTENSION] = cut
    return response


def _answer(response: httpx.Response, content: bytes, cut: str | None) -> httpx.Response:
    """A read answer: `response`'s status and headers (bytes: a value need not be ASCII) and `content`."""
    headers = [(name, value) for name, value in response.headers.raw if name.lower() not in _DROPPED_HEADERS]
    extensions = {name: response.extensions[name] for name in _KEPT_EXTENSIONS if name in response.extensions}
    if cut is not None:
        extensions[CUT_EXTENSION] = cut
    return httpx.Response(
        response.status_code, headers=headers, content=content, request=response.request, extensions=extensions
    )


class _Bounds:
    """What both bounded streams share: the limit, the deadline, slicing, and why they stopped."""

    def __init__(self, limit: int, deadline: Deadline | None, slices: bool) -> None:
        self.limit = limit
        self.deadline = deadline
        self.slices = slices
        self.cut: str | None = None
        self.read = 0

    def take(self, chunk: bytes) -> list[bytes]:
        """The part of `chunk` within the limit (in slices when the body is compressed); sets `cut` past it."""
        left = self.limit - self.read
        if len(chunk) > left:  # more than the limit came: keep up to it, read no further
            self.cut = CUT_TOO_LARGE
            chunk = chunk[:left]
        self.read += len(chunk)
        if not self.slices or len(chunk) <= _SLICE:
            return [chunk]
        return [chunk[start : start + _SLICE] for start in range(0, len(chunk), _SLICE)]

    def timed_out(self) -> bool:
        """Whether a timeout is the deadline's (then the body read so far is kept)."""
        if self.deadline is not None and self.deadline.passed():
            self.cut = CUT_AT_DEADLINE
            return True
        return False


class _SyncBounded(httpx.SyncByteStream):
    """A body stream that stops at the limit or the deadline, and never reads further."""

    def __init__(self, stream: httpx.SyncByteStream, limit: int, deadline: Deadline | None, *, slices: bool) -> None:
        self._stream = stream
        self.bounds = _Bounds(limit, deadline, slices)

    def __iter__(self) -> Iterator[bytes]:
        bounds = self.bounds
        try:
            for chunk in self._stream:
                yield from bounds.take(chunk)
                if bounds.cut is not None:
                    return
                if bounds.deadline is not None and bounds.timed_out():
                    return
        except httpx.TimeoutException:
            if not bounds.timed_out():
                raise

    def close(self) -> None:
        self._stream.close()


class _AsyncBounded(httpx.AsyncByteStream):
    """Async twin of `_SyncBounded`: each chunk is awaited until the deadline at most."""

    def __init__(self, stream: httpx.AsyncByteStream, limit: int, deadline: Deadline | None, *, slices: bool) -> None:
        self._stream = stream
        self.bounds = _Bounds(limit, deadline, slices)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        bounds = self.bounds
        chunks = self._stream.__aiter__()
        while True:
            try:
                chunk = await within(bounds.deadline, chunks.__anext__())
            except StopAsyncIteration:
                return
            except httpx.TimeoutException:
                if not bounds.timed_out():
                    raise
                return
            for piece in bounds.take(chunk):
                yield piece
            if bounds.cut is not None:
                return

    async def aclose(self) -> None:
        await self._stream.aclose()
