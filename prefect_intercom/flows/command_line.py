"""What the `test-request` and `deflect-calls` command lines share.

The options both have (`--block`, `--sandbox`, `--dry-run`, `--debug`), the one sentence and exit
code 2 that answer a problem found before the flow runs, and the local sandbox with its block.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

from prefect_intercom.credentials import IntercomCredentials
from prefect_intercom.errors import IntercomConfigurationError
from prefect_intercom.flows.parameters import DEFAULT_BLOCK_NAME
from prefect_intercom.flows.report_file import one_line
from prefect_intercom.flows.test_request import load_credentials

if TYPE_CHECKING:
    from prefect_intercom.sandbox import Sandbox

SANDBOX_BLOCK_NAME = "intercom-sandbox"
EXIT_CANNOT_START = 2
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    r"""`text` with every control character escaped (`\x1b`, `\x00`, `\u202e`), safe for a terminal."""
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (`prog: error: ...; see --help`), exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print the error as one line and exit 2."""
        self.exit(EXIT_CANNOT_START, f"{self.prog}: error: {printable(message)} (see --help)\n")


def command_parser(prog: str, description: str) -> OneLineParser:
    """A parser with the options of every command that runs a flow: `--block`, `--sandbox`, `--dry-run`, `--debug`."""
    parser = OneLineParser(prog=prog, description=description)
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--block", metavar="NAME", help=f"your saved IntercomCredentials block (default: {DEFAULT_BLOCK_NAME!r})"
    )
    target.add_argument(
        "--sandbox",
        action="store_true",
        help=f"start the local Intercom sandbox and save a block {SANDBOX_BLOCK_NAME!r} for it (no Intercom account "
        "needed; nothing leaves this machine)",
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and show what would be sent; send nothing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also with PREFECT_LOGGING_LEVEL=DEBUG)")
    return parser


def parse_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse `argv`; `block_name` is the block the run loads (`--block`, the sandbox's, or the default)."""
    args = parser.parse_args(argv)
    args.block_name = args.block or (SANDBOX_BLOCK_NAME if args.sandbox else DEFAULT_BLOCK_NAME)
    # Without PREFECT_API_URL, Prefect starts a temporary server for this process; its telemetry
    # heartbeat only prints a traceback on a machine without internet. An explicit setting wins.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return args


def debugging(debug: bool) -> bool:
    """Whether tracebacks are shown: `--debug`, or `PREFECT_LOGGING_LEVEL=DEBUG`."""
    return debug or os.environ.get("PREFECT_LOGGING_LEVEL", "").strip().upper() == "DEBUG"


def answer(prog: str, problem: str) -> int:
    """Print the one sentence that answers a problem found before the run; the exit code (2)."""
    print(f"{prog}: {printable(problem)}", file=sys.stderr)
    return EXIT_CANNOT_START


def block_problem(block_name: str, try_it: str | None, debug: bool) -> str | None:
    """One sentence when the credentials block cannot be loaded (its traceback too when debugging), else `None`.

    `try_it` says, in a missing block's message, how to try the command without an account.
    """
    try:
        load_credentials(block_name, try_it)
    except Exception as error:  # also a block of another type under that name, or no Prefect API
        if debugging(debug):
            traceback.print_exc()
        if isinstance(error, IntercomConfigurationError):
            return one_line(error)
        return f"cannot load the Intercom credentials block {block_name!r}: {one_line(error)}"
    return None


@contextmanager
def sandbox_block() -> Iterator[Sandbox]:
    """Start the sandbox with a fresh random token and save the block `SANDBOX_BLOCK_NAME` for it.

    Raises:
        ImportError: The `sandbox` extra is not installed (raised on entering, before anything
            starts; the message says what to install).
    """
    from prefect_intercom.sandbox import Sandbox  # the sandbox's server is an extra

    with Sandbox(token=secrets.token_urlsafe(24)) as sandbox:
        IntercomCredentials(access_token=sandbox.token, base_url=sandbox.url).save(SANDBOX_BLOCK_NAME, overwrite=True)
        print(f"Intercom sandbox on {sandbox.url}; saved the credentials block {SANDBOX_BLOCK_NAME!r} for it.")
        yield sandbox
