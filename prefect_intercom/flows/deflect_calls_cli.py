"""The `prefect-intercom deflect-calls` command line: a CSV file in, every refused row named.

    prefect-intercom deflect-calls callers.csv --block intercom --report callers.report.csv
    prefect-intercom deflect-calls callers.csv --dry-run                # validate every row, send nothing

Exit codes: 0 every row has an outcome; 1 the run failed (what was sent, how to resume); 2 it could not start.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from pathlib import Path
from types import FrameType
from typing import Any

from prefect.exceptions import TerminationSignal
from prefect.states import State

from prefect_intercom.batch.report import BatchItemResult
from prefect_intercom.batch.tasks import stop_running_batches
from prefect_intercom.flows.command_line import (
    answer,
    block_problem,
    command_parser,
    parse_command,
    printable,
    sandbox_block,
)
from prefect_intercom.flows.deflect_calls import (
    STOP_TIMEOUT,
    check_csv,
    deflect_calls,
    load_ledger_storage,
    on_batch_key,
    read_results,
    resume_sentence,
    sent_so_far,
)
from prefect_intercom.flows.deflect_calls_output import counts, print_problems, progress_bar, quiet_console, stop_line
from prefect_intercom.flows.report_file import check_report, write_report
from prefect_intercom.flows.run_state import is_unknown

PROG = "prefect-intercom deflect-calls"
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


class StartError(Exception):
    """The command cannot start (the message is one line, shown as is; exit code 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's `KeyboardInterrupt` so that the run stops the same orderly way."""


def positive_count(text: str) -> int:
    """An argparse type: a whole number of 1 or more (so `--concurrency 0` is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def about(parameter: str) -> str:
    """The `--help` line of an option: the Run form's help of the flow parameter, e.g. `names the batch ...`."""
    description = deflect_calls.parameters.properties[parameter]["description"]
    return description[0].lower() + description[1:].rstrip(".")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command line, named `prog` in usage and help (a flow parameter's option says what the Run form says)."""
    parser = command_parser(
        prog, "Text every phone of a CSV file an Intercom Messenger link (POST /phone_call_redirects)."
    )
    parser.add_argument("csv_path", help=about("csv_path"))
    parser.add_argument("--phone-column", metavar="COLUMN", default="phone", help=about("phone_column"))
    parser.add_argument(
        "--attribute",
        metavar="COLUMN",
        action="append",
        dest="attribute_columns",
        help=f"{about('attribute_columns')}; repeatable",
    )
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--batch-key", metavar="KEY", help=about("batch_key"))
    again.add_argument("--send-again", action="store_true", help=about("send_again"))
    parser.add_argument("--ledger-storage", metavar="SLUG", help=about("ledger_storage"))
    parser.add_argument("--concurrency", metavar="N", type=positive_count, help=about("concurrency"))
    parser.add_argument("--global-rate-limit", metavar="NAME", help=about("global_rate_limit"))
    parser.add_argument("--retry-unknown", action="store_true", help=about("retry_unknown"))
    parser.add_argument("--resend-unknown", action="store_true", help=about("resend_unknown"))
    parser.add_argument("--report", metavar="OUT.csv", help=about("report_path"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none when not on a terminal)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Command-line entry point: 0 done, 1 the run failed, 2 it could not start, 130 Ctrl-C, 143 SIGTERM."""
    args = parse_command(build_parser(prog), argv)
    flow_parameters = deflect_calls.parameters.properties  # the options named as a parameter are passed on
    parameters = {name: value for name, value in vars(args).items() if name in flow_parameters}
    run = _Run(parameters)
    sending = not args.dry_run
    try:
        with _sigterm_raises(), on_batch_key(run.key_derived), quiet_console(args.debug), ExitStack() as stack:
            _start_temporary_server()
            try:
                scan = check_csv(args.csv_path, args.phone_column, args.attribute_columns)
                if args.report:
                    check_report(args.report, args.csv_path)
                sandbox = stack.enter_context(sandbox_block()) if args.sandbox and sending else None
                try_it = "the same command with --sandbox instead of --block"
                if sending and not args.sandbox and (problem := block_problem(args.block_name, try_it, args.debug)):
                    raise StartError(problem)
                if args.ledger_storage and sending:
                    load_ledger_storage(args.ledger_storage)
            except (ValueError, ImportError) as error:  # IntercomConfigurationError too; ImportError: no sandbox extra
                raise StartError(str(error)) from None
            progress = not args.no_progress and sys.stderr.isatty()
            code = run.run(scan.rows, args.report, progress=progress, row_numbers=scan.row_numbers)
            if sandbox is not None:
                received, accepted = len(sandbox.received), len(sandbox.accepted)
                print(f"The sandbox received {received:,} request(s); {accepted:,} texted a phone.")
            return code
    except StartError as error:
        return answer(prog, str(error))
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

    with ExitStack() as restore:
        with suppress(ValueError):  # not the main thread: leave signals alone
            restore.callback(signal.signal, signal.SIGTERM, signal.signal(signal.SIGTERM, terminate))
        yield


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
            sys.stdout.write(
                f"Sending everyone again as a new batch, batch key {key} (to resume it: --batch-key {key})\n"
            )
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
            try:
                with progress_bar(results_path, total) if progress else nullcontext():
                    state = deflect_calls(**self.parameters, results_path=results_path, return_state=True)
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
        # a stopped batch is one line: why, how many requests, what was not attempted, what to do
        message = stopped or report_error or (state.message or "failed").splitlines()[0]
        print(printable(f"Deflect calls failed: {message}"), file=sys.stderr)
        if not stopped:
            print(f"Rows: {counts(self.results, dry_run)}", file=sys.stderr)
        sent = sent_so_far(self.results)
        if self.keys and (sent or any(map(is_unknown, self.results))):  # someone was (or may have been) texted
            print(resume_sentence("Failed", sent, self.keys[-1], self.how), file=sys.stderr)
        return 1

    def interrupted(self, interrupt: BaseException) -> int:
        """Stop the batch the orderly way, say how it resumes; 130 for Ctrl-C, 143 for SIGTERM."""
        terminated = isinstance(interrupt, Terminated | TerminationSignal)
        stopped = self.stopped and _stop_batches()
        what = "Terminated" if terminated else "Interrupted"
        if self.keys and not self.parameters["dry_run"]:
            line = resume_sentence(what, sent_so_far(self.results), self.keys[-1], self.how)
        else:
            line = f"{what} before anything was sent."
        if not stopped:
            line += " (The batch did not stop in time: the answers in flight may show as unknown.)"
        print(line, file=sys.stderr)
        return EXIT_SIGTERM if terminated else EXIT_SIGINT


def _reason(state: State[Any]) -> str:
    """A failed flow run's reason: the first line of the exception it raised (else of its state message)."""
    error = None  # a state without its result: its message says it
    with suppress(Exception):
        error = state.result(raise_on_failure=False)
    text = str(error) if isinstance(error, BaseException) else state.message
    lines = (text or "").strip().splitlines()
    return (lines[0].rstrip(". ") if lines else "") or "the run failed"
