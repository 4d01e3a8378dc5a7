"""What `prefect-intercom deflect-calls` prints: refused rows, counts, a stopped batch in one line, a progress bar.

Unless debugging, Prefect's own console records stay off the terminal but for warnings
(`quiet_console`; why: `docs/flow-modules.md`, "deflect_calls_output").
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from http import HTTPStatus

from prefect_intercom.batch.report import BatchItemResult
from prefect_intercom.flows.command_line import debugging, printable
from prefect_intercom.flows.deflect_calls import DRY_RUN_CODE, dry_run_counts, refused_every_send
from prefect_intercom.flows.run_state import problem_text
from prefect_intercom.outcomes import Outcome

NOT_ATTEMPTED = "not_attempted"
_PROBLEMS = (Outcome.REJECTED, Outcome.NOT_SENT, Outcome.UNKNOWN)
_CONSOLE_LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect_intercom")
_SAID_BY_THE_COMMAND = ("The batch ended early",)


@contextmanager
def quiet_console(debug: bool) -> Iterator[None]:
    """Unless debugging, keep Prefect's INFO lines, failures and tracebacks off the terminal while the command runs."""
    hide = _HideFailures()
    with ExitStack() as undo:
        if not debugging(debug):
            for handler in {h for name in _CONSOLE_LOGGERS for h in logging.getLogger(name).handlers}:
                if isinstance(handler, logging.StreamHandler):
                    handler.addFilter(hide)
                    undo.callback(handler.removeFilter, hide)
        yield


class _HideFailures(logging.Filter):
    """Keeps warnings only: drops records below WARNING, at ERROR or above, with a traceback, or said by the command."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or not logging.WARNING <= record.levelno < logging.ERROR:
            return False
        return not str(record.msg).startswith(_SAID_BY_THE_COMMAND)


def stop_line(results: list[BatchItemResult], how: str) -> str | None:
    """One line for a batch that stopped early: why, how many requests, how many rows not attempted, what to do.

    Returns:
        E.g. `401 unauthorized (unauthorized): stopped after 1 request; 299 rows not attempted;
        check the access token of the credentials block, then run the same command again to
        resume`, or `None` when the batch did not stop early.
    """
    left = sum(result.error_code == NOT_ATTEMPTED and result.outcome is Outcome.NOT_SENT for result in results)
    if not left:
        return None
    requests = sum(result.attempts for result in results)
    if (refused := refused_every_send(results)) is not None:
        cause = f"{refused.status} {HTTPStatus(refused.status or 0).phrase.lower()} ({refused.error_code or 'no code'})"
        fix = "check the access token of the credentials block" if refused.status != 404 else "check its region"
        how = f"{fix}, then {how}"
    else:
        cause = next((r.message for r in results if r.error_code == NOT_ATTEMPTED and r.message), "stopped early")
    plural = "" if requests == 1 else "s"
    return f"{cause}: stopped after {requests:,} request{plural}; {left:,} rows not attempted; {how} to resume"


def print_problems(results: list[BatchItemResult], row_numbers: Callable[[int], int]) -> None:
    """One line per row that was refused or not sent (rows a stopped batch did not attempt are counted, not listed)."""
    for result in results:
        if result.outcome in _PROBLEMS and result.error_code not in (DRY_RUN_CODE, NOT_ATTEMPTED):
            line = f"row {row_numbers(result.index)}: {result.phone or '(no phone)'} {result.outcome.value}: "
            print(printable(line + problem_text(result)))


def counts(results: list[BatchItemResult], dry_run: bool) -> str:
    """The rows per outcome, in the run's words (the dry run's valid rows are those the run would send)."""
    tally = Counter(result.outcome.value for result in results)
    if dry_run:
        return f"dry run, {dry_run_counts(tally)}"
    return ", ".join(f"{tally[outcome.value]:,} {outcome.value}" for outcome in Outcome)


@contextmanager
def progress_bar(results_path: str, total: int) -> Iterator[None]:
    """A progress bar on the terminal that follows the results file while the `with` block runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("deflect-calls"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
    task = bar.add_task("rows", total=total)
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(0.25):
            with suppress(OSError), open(results_path, "rb") as handle:  # not there yet: the next turn
                bar.update(task, completed=sum(1 for _ in handle))

    thread = threading.Thread(target=follow, name="deflect-calls-progress", daemon=True)
    with bar:
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
