"""The async transport (aiohttp's pool behind httpx), over real loopback connections.

What must hold whatever moves the bytes: a failure says whether the SMS may have gone out
exactly as httpx's own transport says it, no error holds the token, redirects are not
followed, nothing comes from the environment, TLS is verified, bodies decode as before, the
pool keeps its size and closes, and one client works from several event loops.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import gzip
import ipaddress
import json
import logging
import socket
import ssl
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_intercom import IntercomAPIError, IntercomCredentials, IntercomTransportError, Outcome
from prefect_intercom.client import IntercomClient
from prefect_intercom.sandbox import DEFAULT_KEEP_ALIVE, Sandbox
from prefect_intercom.transport import KEEPALIVE_EXPIRY, IntercomAsyncTransport, translate_error

from .conftest import SECRET_TOKEN

BODY = {"phone": "+14155550100"}
ANSWER = b'{"type":"phone_call_redirect","phone":"+14155550100"}'


# --- a raw loopback server whose every connection does what the test says ---------------------


class RawServer:
    """A TCP server on a free loopback port; each connection runs `behaviour(connection, server)` in a thread.

    It counts the requests it read in full, the connections it accepted, and how many were
    open at once.
    """

    def __init__(self, behaviour: Callable[[socket.socket, RawServer], None], tls: ssl.SSLContext | None = None):
        self.behaviour = behaviour
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[bytes] = []
        self.connections = 0
        self.open_now = 0
        self.max_open = 0
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        accepting = threading.Thread(target=self._accept, daemon=True)
        accepting.start()
        self.threads.append(accepting)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.listener.close()
        for sock in list(self.sockets):
            with _quietly():
                sock.close()
        for thread in self.threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, connection: socket.socket) -> None:
        with self.lock:
            self.connections += 1
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
        try:
            if self.tls is not None:
                connection = self.tls.wrap_socket(connection, server_side=True)
            self.sockets.append(connection)
            self.behaviour(connection, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with _quietly():
                connection.close()
            with self.lock:
                self.open_now -= 1

    def read_request(self, connection: socket.socket) -> bytes | None:
        """One whole request (head and `Content-Length` body), or `None` at the end of the connection."""
        data = b""
        while b"\r\n\r\n" not in data:
            part = connection.recv(65536)
            if not part:
                return None
            data += part
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            part = connection.recv(65536)
            if not part:
                return None
            body += part
        with self.lock:
            self.requests.append(head + b"\r\n\r\n" + body)
        return head


def _answer(status: int = 200, body: bytes = ANSWER, headers: list[tuple[str, str]] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answers(delay: float = 0.0, status: int = 200, body: bytes = ANSWER, headers: list | None = None) -> Callable:
    """Answer every request on the connection (keep-alive), `delay` seconds after reading it."""

    def behaviour(connection: socket.socket, server: RawServer) -> None:
        while server.read_request(connection) is not None:
            if delay:
                server.stop.wait(delay)
            connection.sendall(_answer(status, body, headers))

    return behaviour


def answers_until_idle(idle: float) -> Callable:
    """Answer every request (keep-alive); close the connection once it was idle `idle` seconds."""

    def behaviour(connection: socket.socket, server: RawServer) -> None:
        connection.settimeout(idle)
        while server.read_request(connection) is not None:
            connection.sendall(_answer())

    return behaviour


def resets(connection: socket.socket, server: RawServer) -> None:
    """Read the request, then reset the connection (RST): the request arrived, no answer left."""
    server.read_request(connection)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def closes(connection: socket.socket, server: RawServer) -> None:
    """Read the request, then close the connection cleanly without answering."""
    server.read_request(connection)


def never_answers(connection: socket.socket, server: RawServer) -> None:
    """Read the request and keep the connection open until the test ends."""
    server.read_request(connection)
    server.stop.wait(30)


def answers_half(connection: socket.socket, server: RawServer) -> None:
    """Read the request, promise 100 bytes of body, send 10, close."""
    server.read_request(connection)
    connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n" + ANSWER[:10]
    )


def answers_garbage(connection: socket.socket, server: RawServer) -> None:
    """Read the request, answer something that is not HTTP."""
    server.read_request(connection)
    connection.sendall(b"HTTP/1.1 two hundred\r\nthis is: not\r\n\x00\r\n\r\n")


def answers_once_then_closes(connection: socket.socket, server: RawServer) -> None:
    """Answer the first request keep-alive; read the second one on the same connection and close."""
    server.read_request(connection)
    connection.sendall(_answer())
    server.read_request(connection)


@contextmanager
def _quietly() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


def _client(url: str, *, token: str = SECRET_TOKEN, timeout: float = 5.0, **options: Any) -> IntercomClient:
    return IntercomClient(token, base_url=url, intercom_version="2.12", timeout=timeout, **options)


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and every exception reachable from it through `__cause__` and `__context__`."""
    seen: list[BaseException] = []
    waiting: list[BaseException | None] = [error]
    while waiting:
        current = waiting.pop()
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        waiting += [current.__cause__, current.__context__]
    return seen


def _holders_of(token: str, error: BaseException) -> list[str]:
    """The exceptions in `error`'s chain whose text, attributes, request or request info hold `token`."""
    holders = []
    for link in _chain(error):
        texts = [str(link), repr(link), repr(link.args), repr(vars(link))]
        try:
            request = link.request  # type: ignore[attr-defined]  # httpx errors keep the request sent
        except (AttributeError, RuntimeError):
            request = None
        if request is not None:
            texts.append(repr(list(request.headers.items())))
        info = getattr(link, "request_info", None)  # aiohttp errors keep the request's headers
        if info is not None:
            texts.append(repr(list(info.headers.items())))
        if any(token in text for text in texts):
            holders.append(type(link).__name__)
    return holders


# --- what a failure means ---------------------------------------------------------------------


async def test_a_refused_connection_is_a_connect_error_and_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
    async with httpx.AsyncClient(transport=IntercomAsyncTransport()) as raw:
        with pytest.raises(httpx.TransportError) as raw_caught:
            await raw.post(f"{url}/phone_call_redirects", json=BODY)
    assert type(raw_caught.value) is httpx.ConnectError
    async with _client(url) as client:
        with pytest.raises(IntercomTransportError) as caught:
            await client.arequest("phone_call_redirects", BODY)
    assert caught.value.outcome is Outcome.NOT_SENT
    assert str(caught.value).startswith("ConnectError: ")


async def test_a_connect_timeout_is_a_connect_timeout_and_not_sent() -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue: the kernel drops further handshakes
        filler = socket.socket()
        filler.setblocking(False)
        with _quietly():
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        async with _client(f"http://127.0.0.1:{port}", timeout=0.3) as client:
            with pytest.raises(IntercomTransportError) as caught:
                await client.arequest("phone_call_redirects", BODY)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert caught.value.outcome is Outcome.NOT_SENT
    assert str(caught.value).startswith("ConnectTimeout: ")


async def test_waiting_for_a_free_connection_too_long_is_not_sent() -> None:
    with RawServer(answers(delay=1.0)) as server:
        transport = IntercomAsyncTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, pool=0.2)) as raw:
            first = asyncio.create_task(raw.post(f"{server.url}/phone_call_redirects", json=BODY))
            await asyncio.sleep(0.1)  # the only connection is taken
            with pytest.raises(httpx.TransportError) as caught:
                await raw.post(f"{server.url}/phone_call_redirects", json=BODY)
            assert (await first).status_code == 200
    assert type(caught.value) is httpx.ConnectTimeout
    assert len(server.requests) == 1


AFTER_SENDING = [
    pytest.param(resets, id="reset after the request"),
    pytest.param(closes, id="closed without an answer"),
    pytest.param(never_answers, id="no answer in time"),
    pytest.param(answers_half, id="closed mid-answer"),
    pytest.param(answers_garbage, id="an answer that is not HTTP"),
]


@pytest.mark.parametrize("behaviour", AFTER_SENDING)
async def test_a_failure_after_the_request_left_is_unknown_and_never_resent(behaviour: Callable) -> None:
    with RawServer(behaviour) as server:
        async with _client(server.url, timeout=0.5) as client:
            with pytest.raises(IntercomTransportError) as caught:
                await client.arequest("phone_call_redirects", BODY)
        received = len(server.requests)
    assert caught.value.outcome is Outcome.UNKNOWN, str(caught.value)
    assert not str(caught.value).startswith(("ConnectError", "ConnectTimeout", "PoolTimeout"))
    assert received == 1


async def test_a_kept_alive_connection_closed_under_a_request_is_unknown_and_not_resent() -> None:
    with RawServer(answers_once_then_closes) as server:
        async with _client(server.url) as client:
            await client.arequest("phone_call_redirects", BODY)
            with pytest.raises(IntercomTransportError) as caught:
                await client.arequest("phone_call_redirects", {"phone": "+14155550101"})
        received, connections = len(server.requests), server.connections
    assert caught.value.outcome is Outcome.UNKNOWN
    assert (received, connections) == (2, 1)  # aiohttp did not retry the POST on a new connection


async def test_a_reset_from_the_sandbox_is_unknown_on_the_async_path() -> None:
    with Sandbox(token=SECRET_TOKEN, faults={"reset": 1.0}) as sandbox:
        async with _client(sandbox.url) as client:
            with pytest.raises(IntercomTransportError) as caught:
                await client.arequest("phone_call_redirects", BODY)
        assert [entry.fault for entry in sandbox.received] == ["reset"]
    assert caught.value.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError("late"), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("short"), httpx.RemoteProtocolError),
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), httpx.WriteError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.ClientConnectionError("something else"), httpx.TransportError),
        (httpx.ConnectTimeout("mapped", request=None), httpx.ConnectTimeout),
    ],
    ids=lambda value: type(value).__name__,
)
def test_every_aiohttp_failure_has_the_httpx_meaning(error: BaseException, kind: type) -> None:
    translated = translate_error(error)
    assert type(translated) is kind
    assert translated.__cause__ is None and translated.__context__ is None


def test_httpx_aiohttps_own_mapping_is_read_through_to_aiohttps_error() -> None:
    mapped = httpx.ConnectTimeout("Server disconnected")  # what AiohttpTransport makes of a disconnect
    mapped.__cause__ = aiohttp.ServerDisconnectedError()
    assert type(translate_error(mapped)) is httpx.RemoteProtocolError


# --- the token ----------------------------------------------------------------------------------

CANARY = "tok_CANARY_1f2e3d4c5b6a79880011223344556677"
EVERY_FAILURE = [
    *AFTER_SENDING,
    pytest.param(None, id="refused"),
]


@pytest.mark.parametrize("behaviour", EVERY_FAILURE)
async def test_no_escaping_error_or_anything_it_links_to_holds_the_token(behaviour: Callable | None) -> None:
    if behaviour is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        server = None
    else:
        server = RawServer(behaviour).__enter__()
        url = server.url
    try:
        async with _client(url, token=CANARY, timeout=0.5) as client:
            with pytest.raises(IntercomTransportError) as caught:
                await client.arequest("phone_call_redirects", BODY)
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    assert _holders_of(CANARY, caught.value) == []
    if server is not None:
        assert CANARY.encode() in server.requests[0]  # it was sent, so an error could have kept it


def test_the_sync_client_leaves_no_token_behind_an_error_either() -> None:
    with RawServer(resets) as server, _client(server.url, token=CANARY) as client:
        with pytest.raises(IntercomTransportError) as caught:
            client.request("phone_call_redirects", BODY)
    assert caught.value.outcome is Outcome.UNKNOWN
    assert _holders_of(CANARY, caught.value) == []


# --- what must not change -----------------------------------------------------------------------


async def test_the_request_on_the_wire_is_the_one_httpx_sent(sandbox: Sandbox) -> None:
    async with _client(sandbox.url, async_transport=httpx.AsyncHTTPTransport()) as before:
        await before.arequest("phone_call_redirects", BODY)
    async with _client(sandbox.url) as now:
        await now.arequest("phone_call_redirects", BODY)
    old, new = sandbox.received
    assert (new.method, new.path, new.body) == (old.method, old.path, old.body)
    assert new.headers == old.headers


async def test_a_redirect_is_not_followed_and_its_target_receives_nothing() -> None:
    with RawServer(answers()) as target:
        moved = answers(status=307, body=b"", headers=[("Location", f"{target.url}/steal")])
        with RawServer(moved) as server:
            async with _client(server.url) as client:
                with pytest.raises(IntercomAPIError) as caught:
                    await client.arequest("phone_call_redirects", BODY)
            assert len(server.requests) == 1
        assert target.requests == []
    assert caught.value.status_code == 307


async def test_proxy_settings_in_the_environment_are_ignored(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    with RawServer(answers(status=502, body=b"")) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        async with _client(sandbox.url) as client:
            response = await client.arequest("phone_call_redirects", BODY)
        assert proxy.requests == []
    assert response.status_code == 200
    assert len(sandbox.received) == 1


def _self_signed(directory: Path) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 whose certificate nobody trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


async def test_an_untrusted_certificate_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    with RawServer(answers(), tls=_self_signed(tmp_path)) as server:
        async with _client(server.url) as client:
            with pytest.raises(IntercomTransportError) as caught:
                await client.arequest("phone_call_redirects", BODY)
        assert server.requests == []
    assert caught.value.outcome is Outcome.NOT_SENT
    assert "certificate" in str(caught.value).lower()


ENCODED_ANSWERS = [
    pytest.param(200, "gzip", gzip.compress(ANSWER), id="200 gzip"),
    pytest.param(200, "deflate", zlib.compress(ANSWER), id="200 deflate"),
    pytest.param(200, "gzip", b"not gzip at all", id="200 broken gzip"),
    pytest.param(401, "gzip", b"not gzip at all", id="401 broken gzip"),
    pytest.param(503, "gzip, deflate", gzip.compress(b"{}"), id="503 stacked, broken"),
    pytest.param(200, "x-unknown", ANSWER, id="200 unknown encoding"),
]


async def _outcome_of(url: str, transport: httpx.AsyncBaseTransport | None) -> tuple:
    async with _client(url, async_transport=transport) as client:
        try:
            response = await client.arequest("phone_call_redirects", BODY)
        except IntercomAPIError as error:
            return type(error).__name__, error.status_code, str(error)
    return "ok", response.status_code, response.data, response.unparsed_body


@pytest.mark.parametrize(("status", "encoding", "wire"), ENCODED_ANSWERS)
async def test_encoded_answers_decode_exactly_as_with_httpxs_transport(status: int, encoding: str, wire: bytes) -> None:
    with RawServer(answers(status=status, body=wire, headers=[("Content-Encoding", encoding)])) as server:
        before = await _outcome_of(server.url, httpx.AsyncHTTPTransport())
        now = await _outcome_of(server.url, None)
    assert now == before


# Reason phrases as a hostile server may send them: empty, UTF-8, or not UTF-8 and echoing the token.
REASONS = [
    pytest.param(b"OK", id="ASCII"),
    pytest.param(b"", id="empty"),
    pytest.param("Ök ✓".encode(), id="UTF-8"),
    pytest.param(b"\xd6k \xff" + SECRET_TOKEN.encode(), id="latin-1, echoing the token"),
]
EVERY_PATH = [
    pytest.param(None, id="exchange"),
    pytest.param(IntercomAsyncTransport, id="httpx over aiohttp"),
    pytest.param(httpx.AsyncHTTPTransport, id="httpx"),
]


@pytest.mark.parametrize("path", EVERY_PATH)
@pytest.mark.parametrize("reason", REASONS)
async def test_any_reason_phrase_is_a_200_logged_as_httpx_logs_it(
    reason: bytes, path: Callable[[], httpx.AsyncBaseTransport] | None, caplog: pytest.LogCaptureFixture
) -> None:
    head = b"HTTP/1.1 200 " + reason + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def behaviour(connection: socket.socket, server: RawServer) -> None:
        while server.read_request(connection) is not None:
            connection.sendall(head)

    caplog.set_level(logging.INFO, logger="httpx")
    with RawServer(behaviour) as server:
        url = server.url
        outcome = await _outcome_of(url, None if path is None else path())
    logged = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    assert outcome == ("ok", 200, {}, None)  # not a UnicodeEncodeError holding the phrase
    phrase = reason.decode("ascii", "ignore").replace(SECRET_TOKEN, "[REDACTED]")  # httpx's `reason_phrase`
    if not phrase and path is not httpx.AsyncHTTPTransport:  # httpx's pool gives an empty phrase as it came
        phrase = "OK"
    assert logged == [f'HTTP Request: POST {url}/phone_call_redirects "HTTP/1.1 200 {phrase}"']
    assert SECRET_TOKEN not in caplog.text


@pytest.mark.parametrize("path", EVERY_PATH)
async def test_an_answer_whose_body_fails_is_logged_with_its_head_and_unknown(
    path: Callable[[], httpx.AsyncBaseTransport] | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    with RawServer(answers_half) as server:
        url = server.url
        async with _client(url, async_transport=None if path is None else path()) as client:
            with pytest.raises(IntercomTransportError) as caught:
                await client.arequest("phone_call_redirects", BODY)
    assert caught.value.outcome is Outcome.UNKNOWN
    logged = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    assert logged == [f'HTTP Request: POST {url}/phone_call_redirects "HTTP/1.1 200 OK"']


@pytest.mark.parametrize("path", EVERY_PATH)
@pytest.mark.parametrize(
    "part",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + ANSWER[:10]],
    ids=["waiting for the head", "mid-body"],
)
async def test_a_cancelled_send_hangs_up_its_connection_and_the_pool_sends_on(
    part: bytes, path: Callable[[], httpx.AsyncBaseTransport] | None
) -> None:
    hung_up = threading.Event()

    def behaviour(connection: socket.socket, server: RawServer) -> None:
        if server.connections > 1:
            answers()(connection, server)
            return
        server.read_request(connection)
        connection.sendall(part)
        connection.settimeout(5)
        if connection.recv(1) == b"":
            hung_up.set()

    with RawServer(behaviour) as server:
        async with _client(server.url, async_transport=None if path is None else path(), max_connections=1) as client:
            sending = asyncio.create_task(client.arequest("phone_call_redirects", BODY))
            for _ in range(300):  # the request arrived (3 s at most)
                if server.requests:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # what was sent of the answer has arrived
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
            assert await asyncio.to_thread(hung_up.wait, 3)  # closed, not back in the pool half read
            response = await asyncio.wait_for(client.arequest("phone_call_redirects", BODY), 3)
    assert response.status_code == 200
    assert server.connections == 2


async def test_max_connections_bounds_the_pool_and_connections_are_reused() -> None:
    with RawServer(answers(delay=0.05)) as server:
        async with _client(server.url, max_connections=3) as client:
            phones = [f"+1415555{n:04d}" for n in range(12)]
            await asyncio.gather(*(client.arequest("phone_call_redirects", {"phone": phone}) for phone in phones))
        assert len(server.requests) == 12
        assert server.max_open <= 3
        assert server.connections <= 3


async def test_an_idle_connection_is_reused_only_until_the_keepalive_expiry() -> None:
    with RawServer(answers_until_idle(1.0)) as server:
        transport = IntercomAsyncTransport(keepalive_expiry=0.3)
        async with _client(server.url, async_transport=transport) as client:
            await client.arequest("phone_call_redirects", BODY)
            await asyncio.sleep(0.05)
            await client.arequest("phone_call_redirects", BODY)  # same connection
            await asyncio.sleep(0.5)  # past the expiry, before the server closes it
            response = await client.arequest("phone_call_redirects", BODY)
        assert (len(server.requests), server.connections) == (3, 2)
    assert response.status_code == 200


def test_idle_connections_expire_before_common_servers_close_them() -> None:
    # A request sent as the server closes an idle connection gets no answer (`unknown`).
    assert KEEPALIVE_EXPIRY < DEFAULT_KEEP_ALIVE  # the sandbox's: uvicorn's 5 s


def test_a_pool_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        IntercomAsyncTransport(0)  # aiohttp would read 0 as "no limit"


async def test_aclose_closes_every_connection_without_unclosed_warnings() -> None:
    loop_errors: list[dict] = []
    with warnings.catch_warnings():  # garbage of earlier tests in this process is collected first, not counted
        warnings.simplefilter("ignore")
        gc.collect()
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
    with warnings.catch_warnings(record=True) as caught, RawServer(answers(delay=0.02)) as server:
        warnings.simplefilter("always")
        async with _client(server.url, max_connections=4) as client:
            await asyncio.gather(*(client.arequest("phone_call_redirects", BODY) for _ in range(4)))
        deadline = time.monotonic() + 5
        while server.open_now and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        open_after = server.open_now
        gc.collect()
    assert open_after == 0
    assert [str(warning.message) for warning in caught if issubclass(warning.category, ResourceWarning)] == []
    assert loop_errors == []


def test_the_pool_is_made_inside_the_running_loop_not_when_the_client_is_built() -> None:
    transport = IntercomAsyncTransport(5)  # no loop here: nothing may be bound to one yet
    assert isinstance(transport, IntercomAsyncTransport)
    assert not isinstance(transport.client, aiohttp.ClientSession)


def test_one_client_works_from_several_event_loops(sandbox: Sandbox) -> None:
    client = _client(sandbox.url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = asyncio.run(
            client.arequest("phone_call_redirects", {"phone": "+14155550100"})
        )  # loop closes, pool open
        second = asyncio.run(client.arequest("phone_call_redirects", {"phone": "+14155550101"}))
        third = run_coro_as_sync(client.arequest("phone_call_redirects", {"phone": "+14155550102"}))  # Prefect's loop
        fourth = asyncio.run(client.arequest("phone_call_redirects", {"phone": "+14155550103"}))
        asyncio.run(client.aclose())
        gc.collect()
    assert [answer.status_code for answer in (first, second, third, fourth)] == [200] * 4  # type: ignore[union-attr]
    assert len(sandbox.received) == 4
    assert [str(warning.message) for warning in caught if "Unclosed" in str(warning.message)] == []


async def test_a_transport_of_ones_own_is_used_as_given() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=json.loads(ANSWER))

    async with _client("http://127.0.0.1:9", async_transport=httpx.MockTransport(handler)) as client:
        response = await client.arequest("phone_call_redirects", BODY)
    assert response.data["phone"] == "+1415•••0100"
    assert len(seen) == 1


# --- typed transports through the credentials block ----------------------------------------


async def test_the_credentials_pass_an_async_transport_through_to_the_async_client() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=json.loads(ANSWER))

    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url="http://127.0.0.1:9")
    async with credentials.get_client(async_transport=httpx.MockTransport(handler)) as client:
        response = await client.arequest("phone_call_redirects", BODY)
    assert response.status_code == 200
    assert len(seen) == 1


def test_the_credentials_refuse_an_async_transport_given_as_the_sync_one() -> None:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url="http://127.0.0.1:9")
    with pytest.raises(TypeError, match=r"^transport must be an httpx\.BaseTransport or None, not AsyncHTTPTransport"):
        credentials.get_client(transport=httpx.AsyncHTTPTransport())


async def test_an_answer_read_by_exchange_shows_no_header_or_body_in_its_repr() -> None:
    # A hostile server echoing the token (and the phone) in its headers and body: the answer object,
    # a local of the frames a traceback (Sentry, `rich` with locals) shows, must not print them.
    echoed = [("X-Echo", f"Bearer {SECRET_TOKEN}"), ("Location", f"https://x.example/?t={SECRET_TOKEN}")]
    body = json.dumps({"token": SECRET_TOKEN, "phone": BODY["phone"]}).encode()
    transport = IntercomAsyncTransport()
    with RawServer(answers(status=302, body=body, headers=echoed)) as server:
        try:
            answer = await transport.exchange(
                "POST", f"{server.url}/phone_call_redirects", {}, b"{}", timeout=5.0, deadline=None
            )
        finally:
            await transport.aclose()
    assert SECRET_TOKEN.encode() in answer.content  # read whole, as it came
    assert SECRET_TOKEN not in repr(answer) and "4155550100" not in repr(answer)
    assert repr(answer) == "<ReadAnswer [302]>"
