"""`prefect-intercom`: the package's command (installed with it), one subcommand per job.

    prefect-intercom test-request --sandbox --phone +14155550100
    prefect-intercom deflect-calls callers.csv --block intercom --report report.csv
    prefect-intercom sandbox --port 8090

Each subcommand takes the options of its own `--help`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = {
    "test-request": "run Intercom's POST /phone_call_redirects once, as the docs' three steps (or serve it)",
    "deflect-calls": "text every phone of a CSV file a Messenger link; name every refused row",
    "sandbox": "run the local Intercom sandbox (a fake Intercom over loopback)",
}


def _usage() -> str:
    lines = ["usage: prefect-intercom {" + ",".join(COMMANDS) + "} ...", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, help_ in COMMANDS.items()]
    lines += [
        "",
        "`prefect-intercom COMMAND --help` shows a command's options; `prefect-intercom --version` the version.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `prefect-intercom COMMAND ...`.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).

    Returns:
        The exit code (2 for an unknown command).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-V", "--version"):
        from prefect_intercom._version import __version__

        print(f"prefect-intercom {__version__}")
        return 0
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "test-request":
        from prefect_intercom.flows.test_request_cli import main as run

        return run(rest, prog="prefect-intercom test-request")
    if command == "deflect-calls":
        from prefect_intercom.flows.deflect_calls_cli import main as run

        return run(rest, prog="prefect-intercom deflect-calls")
    if command == "sandbox":
        try:
            from prefect_intercom.sandbox import main as run
        except ImportError as missing:  # the sandbox's server is an extra: one line, no traceback
            print(f"prefect-intercom sandbox: {missing}", file=sys.stderr)
            return 2
        return run(rest, prog="prefect-intercom sandbox")
    print(f"prefect-intercom: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
