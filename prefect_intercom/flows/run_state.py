"""What a deflect-calls run tells the Prefect UI: its final state, a summary artifact, WARNING lines.

Which final state for which outcome, and why: `docs/deployments.md`, "What a run's state means".
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.states import Completed, Failed, State

from prefect_intercom.batch.csv_input import RowNumbers
from prefect_intercom.batch.report import BatchItemResult
from prefect_intercom.errors import IntercomError
from prefect_intercom.outcomes import Outcome

PROBLEMS_STATE_NAME = "Completed with problems"
SUMMARY_ARTIFACT_KEY = "deflect-calls-summary"
ROWS_IN_LOG = 5
"""Rows named in a WARNING line at most (the artifact and the report file have them all)."""
RowNumber = Callable[[int], int]
"""The input file's row number of an item (`scan_csv(...).row_numbers`: the header is row 1, blank lines count)."""


def is_unknown(result: BatchItemResult) -> bool:
    """Whether the person may or may not have been texted (now or in an earlier run of the batch key)."""
    return result.outcome is Outcome.UNKNOWN or (
        result.outcome is Outcome.SKIPPED and result.error_code == "unknown_in_earlier_run"
    )


def not_texted(result: BatchItemResult) -> bool:
    """Whether the person surely got no text from this batch (refused or not sent)."""
    return result.outcome in (Outcome.REJECTED, Outcome.NOT_SENT)


def problem_text(result: BatchItemResult) -> str:
    """Intercom's status and code, then the message: `400 sms_failed; SMS was not sent` (empty if none)."""
    status = " ".join(str(part) for part in (result.status, result.error_code) if part)
    return "; ".join(part for part in (status, result.message or "") if part)


def _describe(result: BatchItemResult, row_numbers: RowNumber) -> str:
    text = problem_text(result) or result.outcome.value
    return f"row {row_numbers(result.index)} ({result.phone or 'no phone'}): {text}"


def log_problems(
    logger: logging.Logger | logging.LoggerAdapter[Any],
    results: Sequence[BatchItemResult],
    row_numbers: RowNumber,
) -> None:
    """One WARNING line per problem outcome (`not_sent`, `unknown`, `rejected`): the count and a few rows."""
    for label, test in (
        ("not sent", lambda r: r.outcome is Outcome.NOT_SENT),
        ("unknown (may have been texted)", is_unknown),
        ("rejected", lambda r: r.outcome is Outcome.REJECTED),
    ):
        rows = [result for result in results if test(result)]
        if rows:
            shown = "; ".join(_describe(result, row_numbers) for result in rows[:ROWS_IN_LOG])
            more = f"; and {len(rows) - ROWS_IN_LOG:,} more" if len(rows) > ROWS_IN_LOG else ""
            logger.warning("%s row(s) %s: %s%s", f"{len(rows):,}", label, shown, more)


def summary_markdown(
    results: Sequence[BatchItemResult], batch_key: str, how_to_resume: str, row_numbers: RowNumber | None = None
) -> str:
    """The flow run's summary: counts, every row not texted (by the file's row number), how to resume."""
    number = row_numbers or RowNumbers()
    counts = Counter(result.outcome.value for result in results)
    lines = [f"# Deflect calls: {_headline(results)}", "", f"Batch key `{batch_key}`", ""]
    lines += ["| outcome | rows |", "|---|---|"]
    lines += [f"| {outcome.value} | {counts.get(outcome.value, 0):,} |" for outcome in Outcome]
    unknown = [result for result in results if is_unknown(result)]
    missed = [result for result in results if not_texted(result)]
    if unknown:
        lines += ["", "## May have been texted (unknown)", ""]
        lines += [f"- {_describe(result, number)}" for result in unknown]
        lines += ["", "Check them in Intercom first; run again with *Resend unknown items* to text them again."]
    if missed:
        lines += ["", "## Not texted", ""]
        lines += [f"- {_describe(result, number)}" for result in missed]
    if unknown or missed:
        lines += ["", f"To resume: {how_to_resume}; nobody already texted is texted twice."]
    return "\n".join(lines)


def _headline(results: Sequence[BatchItemResult]) -> str:
    missed = sum(not_texted(result) for result in results)
    unknown = sum(is_unknown(result) for result in results)
    problems = [f"{count:,} {what}" for count, what in ((missed, "not texted"), (unknown, "unknown")) if count]
    return ", ".join([f"{len(results):,} row(s)", *(problems or ["everyone texted"])])


def final_state(
    results: Sequence[BatchItemResult],
    batch_key: str,
    how_to_resume: str,
    row_numbers: RowNumber | None,
    data: dict[str, Any],
) -> State[Any]:
    """Publish the summary artifact and return the run's final state (see the module table).

    Args:
        results: Every row's result, in input order.
        batch_key: The batch key.
        how_to_resume: What to do to resume, e.g. `run it again with the same file and credentials block`.
        row_numbers: The input file's row number of each item (default: item 0 on row 2).
        data: The flow's return value (the batch key and the counts).

    Returns:
        `Completed`, `Completed` named `Completed with problems` (both holding `data`), or
        `Failed`; its message is the headline.
    """
    headline = _headline(results)
    create_markdown_artifact(
        summary_markdown(results, batch_key, how_to_resume, row_numbers),
        key=SUMMARY_ARTIFACT_KEY,
        description=f"Deflect calls: {headline}",
    )
    if any(result.outcome is Outcome.UNKNOWN for result in results):
        return Failed(message=f"{headline}: look in Intercom before resending the unknown rows")
    if any(not_texted(result) or is_unknown(result) for result in results):
        return Completed(name=PROBLEMS_STATE_NAME, message=f"{headline}; {how_to_resume}", data=data)
    return Completed(message=headline, data=data)


def no_flow_retry() -> None:
    """Turn off the automatic retry of this flow run (the run still fails; a later run resumes)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    policy = context.flow_run.empirical_policy.model_copy(update={"retries": 0, "max_retries": 0})
    with suppress(Exception), get_client(sync_client=True) as client:  # a failure only loses a retry failing again
        client.update_flow_run(context.flow_run.id, empirical_policy=policy)
        context.flow_run.empirical_policy = policy


@contextmanager
def not_retried() -> Iterator[None]:
    """A failure of the run's set-up (input, configuration, a wrong token) fails it without the automatic retry."""
    try:
        yield
    except IntercomError:
        no_flow_retry()
        raise
