"""`python -m prefect_intercom.sandbox`: flags derived from `SandboxOptions`, plus where to listen."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any

from prefect_intercom.sandbox.options import DEFAULT_HOST, SandboxOptions
from prefect_intercom.sandbox.server import serve
from prefect_intercom.sandbox.state import SandboxState

DEFAULT_PORT = 8765


def build_parser(prog: str = "python -m prefect_intercom.sandbox") -> argparse.ArgumentParser:
    """The command line: `--host`, `--port`, `--log-level` and one flag per `SandboxOptions` field."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A local Intercom sandbox for POST /phone_call_redirects.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to bind (default: {DEFAULT_PORT}; 0 for any)"
    )
    for option in _options():
        cli = dict(option.metadata["cli"])
        cli.pop("convert", None)
        flag = cli.pop("flag", "--" + option.name.replace("_", "-"))
        default = _default(option)
        parser.add_argument(
            flag,
            dest=option.name,
            default=cli.pop("cli_default", default),
            help=f"{option.metadata['help']} (default: {_shown(default)})",
            **cli,
        )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="uvicorn's log level; below info, requests are not logged (default: info)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m prefect_intercom.sandbox") -> int:
    """Command-line entry point: serve until interrupted.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).
        prog: The command's name in usage and errors.

    Returns:
        The exit status (bad options exit 2 through argparse).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    try:
        for option in _options():
            convert = option.metadata["cli"].get("convert")
            value = getattr(args, option.name)
            values[option.name] = convert(value) if convert else value
        state = SandboxState(**values)
    except ValueError as error:
        parser.error(str(error))
    serve(state, args.host, args.port, args.log_level)
    return 0


def _options() -> list[Any]:
    return [option for option in fields(SandboxOptions) if "cli" in option.metadata]


def _default(option: Any) -> Any:
    return option.default_factory() if option.default is MISSING else option.default


def _shown(default: Any) -> str:
    if default is None or default == {}:
        return "none"
    return f"{default:g}" if isinstance(default, float) else str(default)
