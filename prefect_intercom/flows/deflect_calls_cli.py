"""The `prefect-intercom deflect-calls` command line: a CSV file in, every refused row named.

Examples (`--help` for everything):

    prefect-intercom deflect-calls callers.csv --block intercom --report callers.report.csv
    prefect-intercom deflect-calls callers.csv --dry-run                # validate every row, send nothing
    prefect-intercom deflect-calls callers.csv --sandbox                # local sandbox, no account
    prefect-intercom deflect-calls s3://bucket/callers.csv --batch-key campaign-7

Exit codes: 0 every row has an outcome; 1 the run failed (what was sent is listed, and how to
resume); 2 the command could not start (usage, a missing file or column, a missing block).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

from prefect.exceptions import TerminationSignal
from prefect.states import State

from prefect_intercom.batch.report import BatchItemResult
from prefect_intercom.batch.tasks import stop_running_batches
from prefect_intercom.errors import IntercomConfigurationError
from prefect_intercom.flows.deflect_calls import (
    STOP_TIMEOUT,
    deflect_calls,
    load_ledger_storage,
    on_batch_key,
    read_results,
    resume_sentence,
    sent_so_far,
)
from prefect_intercom.flows.deflect_calls_checks import (
    OneLineParser,
    check_csv,
    positive_count,
    printable,
    write_report,
)
from prefect_intercom.flows.deflect_calls_output import counts, print_problems, progress_bar, quiet_console, stop_line
from prefect_intercom.flows.parameters import DEFAULT_BLOCK_NAME
from prefect_intercom.flows.report_file import check_report
from prefect_intercom.flows.sandbox_block import SANDBOX_BLOCK_NAME, sandbox_block
from prefect_intercom.flows.test_request import load_credentials
from prefect_intercom.outcomes import Outcome

PROG = "prefect-intercom deflect-calls"
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


class StartError(Exception):
    """The command cannot start (the message is one line, shown as is; exit code 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's `KeyboardInterrupt` so that the run stops the same orderly way."""


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command line.

    Args:
        prog: The command's name in usage and help.

    Returns:
        The parser.
    """
    parser = OneLineParser(
        prog=prog,
        description="Text every phone of a CSV file an Intercom Messenger link (POST /phone_call_redirects).",
    )
    parser.add_argument(
        "csv_path", help="CSV with a header row, a phone column and custom attribute columns (a path or fsspec URL)"
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--block", metavar="NAME", help=f"your saved IntercomCredentials block (default: {DEFAULT_BLOCK_NAME!r})"
    )
    target.add_argument("--sandbox", action="store_true", help="send to a local sandbox instead of Intercom")
    parser.add_argument(
        "--phone-column", metavar="COLUMN", default="phone", help="column with the phone numbers (default: phone)"
    )
    parser.add_argument(
        "--attribute", metavar="COLUMN", action="append", dest="attributes", help="attribute column (repeatable)"
    )
    again = parser.add_mutually_exclusive_group()
    again.add_argument(
        "--batch-key",
        metavar="KEY",
        help="identifies the batch across runs (default: derived from the file's content and the Intercom app, "
        "so the same command resumes)",
    )
    again.add_argument(
        "--send-again", action="store_true", help="text everyone of the file again, as a new batch (a new key)"
    )
    parser.add_argument(
        "--ledger-storage",
        metavar="SLUG",
        help="file system block for the batch ledger, e.g. s3-bucket/intercom-ledger (default: result storage)",
    )
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=positive_count,
        default=None,
        help="requests in flight, 1 or more (default: adapted to Intercom's rate)",
    )
    parser.add_argument(
        "--global-rate-limit", metavar="NAME", help="Prefect global concurrency limit (slot decay) to share"
    )
    parser.add_argument("--retry-unknown", action="store_true", help="also retry 5xx/timeouts (may text twice)")
    parser.add_argument("--resend-unknown", action="store_true", help="resend items unknown in an earlier run")
    parser.add_argument("--dry-run", action="store_true", help="validate every row and send nothing")
    parser.add_argument(
        "--report",
        metavar="OUT.csv",
        help="write one line per input row: row, outcome, status, intercom_code, request_id, message",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none when not on a terminal)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also with PREFECT_LOGGING_LEVEL=DEBUG)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Command-line entry point.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).
        prog: The command's name in usage and help.

    Returns:
        The exit code: 0 done, 1 the run failed, 2 it could not start, 130 Ctrl-C, 143 SIGTERM.
    """
    args = build_parser(prog).parse_args(argv)
    # Without PREFECT_API_URL, Prefect starts a temporary server for this process; its telemetry
    # heartbeat only prints a traceback on a machine without internet. An explicit setting wins.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parameters: dict[str, Any] = {
        "csv_path": args.csv_path,
        "block_name": args.block or (SANDBOX_BLOCK_NAME if args.sandbox else DEFAULT_BLOCK_NAME),
        "phone_column": args.phone_column,
        "attribute_columns": args.attributes,
        "batch_key": args.batch_key,
        "send_again": args.send_again,
        "ledger_storage": args.ledger_storage,
        "concurrency": args.concurrency,
        "global_rate_limit": args.global_rate_limit,
        "retry_unknown": args.retry_unknown,
        "resend_unknown": args.resend_unknown,
        "dry_run": args.dry_run,
    }
    run = _Run(parameters)
    try:
        with _sigterm_raises(), on_batch_key(run.key_derived), quiet_console(args.debug):
            _start_temporary_server()
            try:
                scan = check_csv(args.csv_path, args.phone_column, args.attributes)
                if args.report:
                    check_report(args.report, args.csv_path)
            except ValueError as error:
                raise StartError(str(error)) from None
            with ExitStack() as stack:
                if args.sandbox and not args.dry_run:
                    try:
                        starting = sandbox_block()
                    except ImportError as missing:  # the sandbox's server is an extra
                        raise StartError(str(missing)) from None
                    sandbox = stack.enter_context(starting)
                elif not args.dry_run:
                    _check_block(parameters["block_name"])
                if args.ledger_storage and not args.dry_run:
                    _check_ledger_storage(args.ledger_storage)
                progress = not args.no_progress and sys.stderr.isatty()
                code = run.run(scan.rows, args.report, progress=progress, row_numbers=scan.row_numbers)
                if args.sandbox and not args.dry_run:
                    received, accepted = len(sandbox.received), len(sandbox.accepted)
                    print(f"The sandbox received {received:,} request(s); {accepted:,} texted a phone.")
                return code
    except StartError as error:
        print(f"{prog}: {printable(str(error))}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, TerminationSignal) as interrupt:
        return run.interrupted(interrupt)


def _start_temporary_server() -> None:
    """Without a Prefect API URL, start Prefect's temporary server now, deaf to Ctrl-C.

    A terminal's Ctrl-C goes to its whole foreground process group, so also to the temporary
    server Prefect starts for this process: killed, it would leave the run unable to record its
    end or give back the batch key's lease. Started while SIGINT is blocked, the server inherits
    the blocked signal; it stops when this process exits, as always.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        SubprocessASGIServer().start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the command runs, SIGTERM raises `Terminated` (a `KeyboardInterrupt`), like Ctrl-C.

    Prefect's engine swaps in its own SIGTERM handler while the flow runs (it raises
    `TerminationSignal`) and, once the run is recorded as crashed, sends the signal again to the
    handler it found: this one.
    """

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_block(block_name: str) -> None:
    """Load the block once before the run, so a missing or wrong one is one line (and no flow retry)."""
    try:
        load_credentials(block_name, "the same command with --sandbox instead of --block")
    except IntercomConfigurationError as error:
        raise StartError(str(error)) from None
    except Exception as error:  # e.g. a block of another type under that name, or no Prefect API
        raise StartError(f"cannot load the Intercom credentials block {block_name!r}: {error}") from None


def _check_ledger_storage(slug: str) -> None:
    """Load the ledger storage block once before the run, so a missing or wrong one is one line."""
    try:
        load_ledger_storage(slug)
    except IntercomConfigurationError as error:
        raise StartError(str(error)) from None


def _stop_batches() -> bool:
    """Wait for the batches of this process to stop the orderly way (Ctrl-C again: stop waiting)."""
    try:
        return stop_running_batches(timeout=STOP_TIMEOUT)
    except KeyboardInterrupt:
        return False


class _Run:
    """One run of the flow from the command line, and what it prints when it ends early."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = parameters
        self.keys: list[str] = []  # the batch key the flow derived (`on_batch_key`)
        self.results: list[BatchItemResult] = []
        self.stopped = True  # whether every batch stopped in time after an interrupt

    def key_derived(self, key: str) -> None:
        """Remember the batch key the flow derived; a new one (`--send-again`) is printed at once."""
        self.keys.append(key)
        if self.parameters["send_again"]:  # called inside the flow run, whose `log_prints` would take a print
            line = f"Sending everyone again as a new batch, batch key {key} (to resume it: --batch-key {key})"
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    @property
    def how(self) -> str:
        """How to resume, as typed on the command line."""
        if self.parameters["send_again"] and self.keys:
            return f"run it again with --batch-key {self.keys[-1]} instead of --send-again"
        return "run the same command again"

    def run(self, total: int, report: str | None, *, progress: bool, row_numbers: Callable[[int], int]) -> int:
        """Run the flow; print the refused rows, the counts, and how to resume a failed run.

        A report that cannot be written after sending is one sentence, with the counts and how
        to resume, exit code 1.
        """
        report_error = None
        with tempfile.TemporaryDirectory(prefix="prefect-intercom-deflect-") as folder:
            results_path = str(Path(folder) / "results.jsonl")
            parameters = {**self.parameters, "results_path": results_path}
            try:
                with progress_bar(results_path, total) if progress else nullcontext():
                    state = deflect_calls(**parameters, return_state=True)
            except BaseException:  # interrupted: the batch stops first, so that what it sent is all listed
                self.stopped = _stop_batches()
                raise
            finally:
                self.results = sorted(read_results(results_path), key=lambda result: result.index)
                if report:
                    report_error = write_report(self.results, report, row_numbers)
        print_problems(self.results, row_numbers)
        if report and not report_error:
            print(printable(f"Report: {len(self.results):,} row(s) written to {report}"))
        dry_run = self.parameters["dry_run"]
        if state.is_completed() and not report_error:
            key = f" (batch key {self.keys[-1]})" if self.keys and not dry_run else ""
            print(f"Done: {counts(self.results, dry_run)}{key}")
            return 0
        if not self.results and not report_error:  # failed before its first row: input, configuration, token
            raise StartError(f"{_reason(state)}; nothing was sent")
        stopped = None if report_error else stop_line(self.results, self.how)
        if stopped:  # one line: why, how many requests, what was not attempted, what to do
            print(printable(f"Deflect calls failed: {stopped}"), file=sys.stderr)
        else:
            message = report_error or (state.message or "failed").splitlines()[0]
            print(printable(f"Deflect calls failed: {message}"), file=sys.stderr)
            print(f"Rows: {counts(self.results, dry_run)}", file=sys.stderr)
        if self.keys and any(_was_sent(result) for result in self.results):
            print(resume_sentence("Failed", self._sent(), self.keys[-1], self.how), file=sys.stderr)
        return 1

    def interrupted(self, interrupt: BaseException) -> int:
        """Stop the batch the orderly way, say how it resumes; 130 for Ctrl-C, 143 for SIGTERM."""
        terminated = isinstance(interrupt, Terminated | TerminationSignal)
        stopped = self.stopped and _stop_batches()
        what = "Terminated" if terminated else "Interrupted"
        if self.keys and not self.parameters["dry_run"]:
            line = resume_sentence(what, self._sent(), self.keys[-1], self.how)
        else:
            line = f"{what} before anything was sent."
        if not stopped:
            line += " (The batch did not stop in time: the answers in flight may show as unknown.)"
        print(line, file=sys.stderr)
        return EXIT_SIGTERM if terminated else EXIT_SIGINT

    def _sent(self) -> int:
        return sent_so_far(self.results)


def _reason(state: State[Any]) -> str:
    """A failed flow run's reason: the first line of the exception it raised (else of its state message)."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # a state without its result: its message says it
        error = None
    text = str(error) if isinstance(error, BaseException) else state.message
    lines = (text or "").strip().splitlines()
    return (lines[0].rstrip(". ") if lines else "") or "the run failed"


def _was_sent(result: BatchItemResult) -> bool:
    """Whether the batch key has sent (or may have sent) this item: now, or in an earlier attempt of the run."""
    if result.outcome is Outcome.SKIPPED:
        return result.error_code in ("already_sent", "unknown_in_earlier_run")
    return result.outcome in (Outcome.SENT, Outcome.UNKNOWN)
