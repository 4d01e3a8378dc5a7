"""Serving the sandbox with uvicorn: in a thread (`Sandbox`), or in the foreground from the command line (`main`)."""

from __future__ import annotations

import argparse
import gc
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any

import uvicorn

from prefect_intercom.sandbox.app import ENDPOINT, create_app
from prefect_intercom.sandbox.state import DEFAULT_HOST, DEFAULT_TOKEN, ReceivedRequest, SandboxOptions, SandboxState

DEFAULT_PORT = 8765


class Sandbox:
    """Run the sandbox in a background thread of this process.

    Args:
        token: The bearer token the sandbox accepts.
        host: Address to bind (loopback only, unless you know why).
        port: Port to bind; 0 picks a free one.
        **options: Any other field of `SandboxOptions` (answer shape, latency, rate limit, faults,
            seed, keep-alive, ...), each described there.

    Raises:
        ValueError: An option is out of range.
        TypeError: An option `SandboxOptions` does not have.

    Example:
        ```python
        with Sandbox(latency=(0.15, 0.4), rate_limit=100, rate_limit_window=1, faults={"503": 0.02}) as sandbox:
            print(sandbox.url)          # http://127.0.0.1:54321
            ...
            assert len(sandbox.accepted) == 1
        ```
    """

    def __init__(self, token: str = DEFAULT_TOKEN, host: str = DEFAULT_HOST, port: int = 0, **options: Any) -> None:
        self.state = SandboxState(token=token, **options)
        self.token = token  # the bearer token the sandbox accepts
        self.host = host
        self._requested_port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Base URL of the running sandbox, e.g. `http://127.0.0.1:54321`."""
        if self.port is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every request received so far."""
        return self.state.snapshot()

    @property
    def reads(self) -> list[ReceivedRequest]:
        """Every `GET /data_attributes` received so far (not in `received`: it texts nobody)."""
        return self.state.snapshot(reads=True)

    @property
    def accepted(self) -> list[ReceivedRequest]:
        """The requests answered 200, i.e. the SMS a real person would have received."""
        return [entry for entry in self.state.snapshot() if entry.accepted]

    def reset(self) -> None:
        """Forget what was received."""
        self.state.clear()

    def start(self, timeout: float = 10.0) -> Sandbox:
        """Start serving; returns once the port is bound."""
        self._server = _server(self.state, self.host, self._requested_port, log_level="warning", access_log=False)
        self._thread = threading.Thread(target=self._server.run, name="intercom-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start on {self.host}:{self._requested_port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = self.port = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _server(state: SandboxState, host: str, port: int, **config: Any) -> uvicorn.Server:
    """A uvicorn server for `state`'s application, known to `state` (the `reset` fault reaches into it)."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(state),
            host=host,
            port=port,
            lifespan="off",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=state.keep_alive,
            **config,
        )
    )
    state.server = server
    return server


def build_parser(prog: str = "python -m prefect_intercom.sandbox") -> argparse.ArgumentParser:
    """The command line: `--host`, `--port`, `--log-level` and one flag per `SandboxOptions` field."""
    parser = argparse.ArgumentParser(prog=prog, description="A local Intercom sandbox for POST /phone_call_redirects.")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to bind (default: {DEFAULT_PORT}; 0 for any)"
    )
    for option in fields(SandboxOptions):
        if option.init:  # every option but what `__post_init__` works out
            cli = dict(option.metadata["cli"])
            flag = cli.pop("flag", "--" + option.name.replace("_", "-"))
            default = None if option.default is MISSING else option.default  # `None`: an empty dict or list
            shown = "none" if default is None else f"{default:g}" if isinstance(default, float) else default
            help_text = f"{option.metadata['help']} (default: {shown})"
            parser.add_argument(flag, dest=option.name, default=default, help=help_text, **cli)
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="uvicorn's log level; below info, requests are not logged (default: info)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m prefect_intercom.sandbox") -> int:
    """Command-line entry point: serve in the foreground until interrupted, announcing the endpoint's URL on stdout.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).
        prog: The command's name in usage and errors.

    Returns:
        The exit status (bad options exit 2 through argparse).
    """
    parser = build_parser(prog)
    options = vars(parser.parse_args(argv))
    host, port, log_level = options.pop("host"), options.pop("port"), options.pop("log_level")
    try:
        state = SandboxState(**options)
    except ValueError as error:
        parser.error(str(error))
    server = _server(state, host, port, log_level=log_level)
    _quiet_collector()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it.
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))  # port 0 picks a free one: the announced URL has the real one
        print(f"Intercom sandbox: {ENDPOINT.method} http://{host}:{sock.getsockname()[1]}{ENDPOINT.path}", flush=True)
        server.run(sockets=[sock])
    return 0


def _quiet_collector() -> None:
    """Keep the sandbox process's full collections from stalling it (it stands in for Intercom, which does not stall).

    The sandbox keeps a record of every request: long-lived objects that only grow. CPython's full
    collections walked them again every ~2,500 requests: measured at 1,500 requests a second, a
    70-100 ms stall every 1.8 s that held every answer in flight (collecting nothing). The objects
    of start-up are frozen, and full collections come 100 middle ones apart instead of 10.
    """
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    if young:  # 0: collections are off, and stay so
        gc.set_threshold(max(young, 10_000), middle, 100)
