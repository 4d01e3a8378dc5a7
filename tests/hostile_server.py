"""A hostile HTTP/1.1 server over loopback: it answers whatever a test scripts, byte by byte if asked.

    with HostileServer(lambda request: Reply(401, body=request.authorization.encode())) as server:
        IntercomClient(token, base_url=server.url, intercom_version="2.12").request(...)

Each request is handed to the test's `answer(request) -> Reply`: any status and reason phrase,
any header bytes, a body repeated up to a size without building it in memory (`size`), and
trickling: pieces of `piece` bytes every `trickle` seconds, the status line and headers too
if `trickle_head`. Everything is bounded (`MAX_PIECES`, `MAX_SIZE`), and the server records
for each answer how many bytes it got out before the client hung up (`Sent`), so a test can
tell "read whole" from "read 1 MiB and closed" without timing anything.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

MAX_SIZE = 200 * 1024 * 1024
MAX_PIECES = 5_000
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Received:
    """A request as the server read it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def authorization(self) -> str:
        """The `Authorization` header as sent (`Bearer <token>`)."""
        return self.headers.get("authorization", "")


@dataclass
class Reply:
    """What to answer.

    Attributes:
        status: The status code.
        reason: The reason phrase (any text, e.g. an echo).
        headers: Extra headers, values as text or raw bytes.
        body: The body, or the pattern repeated up to `size` bytes.
        size: The body's length when it is `body` repeated (streamed in 64 KiB writes).
        trickle: Seconds between pieces (0: all at once).
        piece: Bytes per piece when trickling.
        trickle_head: Trickle the status line and headers too, not only the body.
    """

    status: int = 200
    reason: str = "OK"
    headers: list[tuple[str, str | bytes]] = field(default_factory=list)
    body: bytes = b""
    size: int | None = None
    trickle: float = 0.0
    piece: int = 1
    trickle_head: bool = False


@dataclass
class Sent:
    """What the server got out for one answer."""

    length: int  # the body's declared length
    written: int = 0  # bytes of the whole answer written before the client hung up (or all)
    finished: bool = False  # the whole answer went out


class HostileServer:
    """The server, on a free loopback port, in a thread of its own.

    Args:
        answer: Called with each request; returns the `Reply`.
    """

    def __init__(self, answer: Callable[[Received], Reply]) -> None:
        self.answer = answer
        self.received: list[Received] = []
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for _ in range(10_000):  # keep-alive, bounded
                    request = _read_request(self.rfile)
                    if request is None:
                        return
                    with outer._lock:
                        outer.received.append(request)
                    if not outer._reply(self.connection, outer.answer(request)):
                        return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            block_on_close = False

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _reply(self, connection: socket.socket, reply: Reply) -> bool:
        """Write `reply`; False once the client has gone (or asked for the connection to close)."""
        length = len(reply.body) if reply.size is None else min(reply.size, MAX_SIZE)
        head = [f"HTTP/1.1 {reply.status} {reply.reason}".encode("latin-1", "replace")]
        for name, value in [("Content-Length", str(length)), *reply.headers]:
            raw = value if isinstance(value, bytes) else value.encode("latin-1", "replace")
            head.append(name.encode("latin-1") + b": " + raw)
        record = Sent(length)
        with self._lock:
            self.sent.append(record)
        head_bytes = b"\r\n".join(head) + b"\r\n\r\n"
        body = _body(reply, length)
        try:
            if isinstance(body, bytes) and not reply.trickle:  # one write: no waiting on delayed ACKs
                connection.sendall(head_bytes + body)
                record.written, record.finished = len(head_bytes) + len(body), True
                return True
            for data in self._pieces(head_bytes, reply, head=True):
                connection.sendall(data)
                record.written += len(data)
            for data in self._pieces(body, reply, head=False):
                connection.sendall(data)
                record.written += len(data)
        except OSError:  # the client closed the connection: what it had read is all it gets
            return False
        record.finished = True
        return True

    @staticmethod
    def _pieces(data: bytes | Iterator[bytes], reply: Reply, *, head: bool) -> Iterator[bytes]:
        chunks = iter([data]) if isinstance(data, bytes) else data
        if not reply.trickle or (head and not reply.trickle_head):
            yield from chunks
            return
        pieces = 0
        for chunk in chunks:
            for start in range(0, len(chunk), reply.piece):
                pieces += 1
                if pieces > MAX_PIECES:
                    return
                time.sleep(reply.trickle)
                yield chunk[start : start + reply.piece]


def _body(reply: Reply, length: int) -> bytes | Iterator[bytes]:
    if reply.size is None:
        return reply.body

    def repeated() -> Iterator[bytes]:
        pattern = (reply.body or b"x") * (_CHUNK // max(1, len(reply.body or b"x")) + 1)
        left = length
        while left > 0:
            chunk = pattern[: min(_CHUNK, left)]
            left -= len(chunk)
            yield chunk

    return repeated()


def _read_request(rfile: object) -> Received | None:
    """One request from the connection, or None when the client closed it."""
    line = rfile.readline(65536)  # type: ignore[attr-defined]
    if not line.strip():
        return None
    method, path = line.decode("latin-1").split()[:2]
    headers: dict[str, str] = {}
    for _ in range(200):
        raw = rfile.readline(65536)  # type: ignore[attr-defined]
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = rfile.read(int(headers.get("content-length", "0") or 0))  # type: ignore[attr-defined]
    return Received(method, path, headers, body)
