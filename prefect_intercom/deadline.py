"""A whole-request deadline: a server that trickles its answer cannot hold a request for ever.

httpx's timeouts bound each network operation (connect, each write, each read), so a server
that sends one byte just before every read timeout holds a request indefinitely. A request
of the client also has a deadline in total: its `timeout` plus a tenth of it (at most one
second), the grace that lets connect and pool timeouts, which say that nothing was sent,
fire first.

- Sync: `bound_sync_client` makes the httpx client's connection pool create connections
  whose every read, write and TLS handshake waits at most until the deadline of the request
  running in the current thread (`applying`), so the deadline holds in the middle of the
  headers too. A client with a transport of the user's own keeps per-operation timeouts for
  the headers; its body is still read within the deadline (`prefect_intercom.reading`).
- Async: `within` runs an awaitable until the deadline (the async transport is aiohttp's,
  which cancellation stops wherever it is).
"""

from __future__ import annotations

import asyncio
import time
import typing
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
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
        """Seconds left (negative once it passed)."""
        return self.at - time.monotonic()

    def passed(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self.at

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


def bound_sync_client(client: httpx.Client) -> bool:
    """Give `client`'s httpx connection pool a network backend that honours `applying`.

    Returns:
        Whether the client's operations are bounded now (False for a transport of the user's
        own, or an httpx that keeps its pool elsewhere).
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, DeadlineBackend):
        return True
    if not isinstance(backend, httpcore.NetworkBackend):
        return False
    pool._network_backend = DeadlineBackend(backend)  # type: ignore[union-attr]
    return True


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

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect, within the deadline."""
        stream = self._backend.connect_tcp(
            host,
            port,
            timeout=_bounded(timeout, httpcore.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        """Connect over a Unix socket, within the deadline."""
        stream = self._backend.connect_unix_socket(
            path, timeout=_bounded(timeout, httpcore.ConnectTimeout), socket_options=socket_options
        )
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
