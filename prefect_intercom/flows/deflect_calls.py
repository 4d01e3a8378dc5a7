"""Deflect calls: text every phone of a CSV file a Messenger link, at Intercom's rate.

The CSV (a path or any URL fsspec reads, e.g. `s3://bucket/callers.csv`) has a header row, a
`phone` column (E.164) and any other columns, sent as custom attributes (e.g. `issue_type`,
`priority`). The file is streamed, never loaded whole. Every row ends in one outcome (sent,
rejected, not_sent, unknown, skipped); the run publishes a progress artifact while it sends and a
table artifact at the end, and `report_path` receives one CSV line per input row.

Retrying the flow run (it retries once by itself) or running it again with the same
`batch_key` does not text anyone twice: the batch ledger remembers what was sent.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import fsspec
from prefect import flow, get_run_logger

from prefect_intercom.batch import count_csv_rows, create_phone_call_redirects, read_requests_csv
from prefect_intercom.batch.report import DEFAULT_TABLE_ROWS, BatchItemResult, BatchReport
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.flows.parameters import DEFAULT_BLOCK_NAME, BlockName, DryRun, labelled
from prefect_intercom.flows.test_request import load_credentials
from prefect_intercom.outcomes import Outcome
from prefect_intercom.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from prefect_intercom.tasks import mask_phone
from prefect_intercom.validation import request_issues

FLOW_NAME = "deflect-calls"
DEPLOYMENT_NAME = "deflect-calls"
DRY_RUN_CODE = "dry_run"
REPORT_COLUMNS = ("row", "outcome", "status", "intercom_code", "request_id", "message")
FIRST_DATA_ROW = 2
"""The row number of item 0: rows are numbered as a spreadsheet shows them (the header is row 1)."""


def row_number(index: int) -> int:
    """The spreadsheet row number of the batch item `index` (item 0 is the first data row, row 2)."""
    return index + FIRST_DATA_ROW


def write_report_csv(results: Iterable[BatchItemResult], url: str) -> int:
    """Write one CSV line per item (row, outcome, status, Intercom code, request id, message).

    Args:
        results: The items' results, in input order.
        url: A path or any URL fsspec writes.

    Returns:
        The number of rows written.
    """
    written = 0
    with fsspec.open(url, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REPORT_COLUMNS)
        for result in results:
            writer.writerow(
                [
                    row_number(result.index),
                    result.outcome.value,
                    "" if result.status is None else result.status,
                    result.error_code or "",
                    result.request_id or "",
                    result.message or "",
                ]
            )
            written += 1
    return written


def validate_csv(
    csv_path: str, phone_column: str, attribute_columns: list[str] | None, results_path: str | None
) -> BatchReport:
    """Validate every row of the file and send nothing (the dry run).

    Invalid rows are `rejected` with the validation errors; valid ones `not_sent` with the code `dry_run`.

    Returns:
        The report (every row in it, in input order).
    """
    report = BatchReport(batch_key=DRY_RUN_CODE, results_path=results_path)
    requests = read_requests_csv(csv_path, phone_column=phone_column, attribute_columns=attribute_columns)
    for index, body in enumerate(requests):
        masked = mask_phone(body.get("phone")) if body.get("phone") else None
        issues = request_issues(PHONE_CALL_REDIRECTS, body)
        if issues:
            message = "; ".join(str(issue) for issue in issues)
            report.add(BatchItemResult(index, Outcome.REJECTED, masked, message=message))
        else:
            message = "valid; dry run, not sent"
            report.add(BatchItemResult(index, Outcome.NOT_SENT, masked, error_code=DRY_RUN_CODE, message=message))
    report.close()
    return report


def read_results(path: str | Path) -> Iterator[BatchItemResult]:
    """The results a batch streamed to `results_path`, in the order outcomes were reached (none if no file)."""
    report = BatchReport.__new__(BatchReport)
    report.__setstate__({"results_path": str(path), "_file": None})
    if not Path(path).exists():
        return iter(())
    return report.iter_items()


@flow(name=FLOW_NAME, retries=1, retry_delay_seconds=10, persist_result=False, log_prints=True)
def deflect_calls(
    csv_path: Annotated[
        str, labelled("CSV file", "A path or URL (s3://..., gs://..., file://...): a header row and a phone column.")
    ],
    block_name: BlockName = DEFAULT_BLOCK_NAME,
    phone_column: Annotated[str, labelled("Phone column", "The column with the phone numbers (E.164).")] = "phone",
    attribute_columns: Annotated[
        list[str] | None,
        labelled("Custom attribute columns", "Columns sent as custom attributes; empty: every other column."),
    ] = None,
    batch_key: Annotated[
        str | None,
        labelled("Batch key", "Names the batch across runs: reuse it to resume without texting anyone twice."),
    ] = None,
    concurrency: Annotated[
        int | None, labelled("Requests in flight", "Empty: adapted to Intercom's rate and latency.")
    ] = None,
    global_rate_limit: Annotated[
        str | None,
        labelled("Global rate limit", "A Prefect global concurrency limit (slot decay) shared by every sender."),
    ] = None,
    retry_unknown: Annotated[
        bool, labelled("Retry unknown answers", "Also retry 5xx answers and timeouts; a phone may be texted twice.")
    ] = False,
    resend_unknown: Annotated[
        bool, labelled("Resend unknown items", "Send again the items whose outcome was unknown in an earlier run.")
    ] = False,
    max_table_rows: Annotated[
        int, labelled("Table rows", "Rows of the table artifact at most (problems first).")
    ] = DEFAULT_TABLE_ROWS,
    dry_run: DryRun = False,
    report_path: Annotated[
        str | None,
        labelled("Report CSV", "Where to write one line per input row (a path or URL); empty: no report file."),
    ] = None,
    results_path: Annotated[
        str | None,
        labelled("Results file", "A local JSON Lines file receiving every row's result as it happens (optional)."),
    ] = None,
) -> dict[str, Any]:
    """Text every phone of a CSV file a Messenger link (Intercom's phone call redirect).

    Args:
        csv_path: The CSV file (a path or fsspec URL): a header row, a phone column, custom attribute columns.
        block_name: The `IntercomCredentials` block to load.
        phone_column: The column with the phone numbers (E.164, e.g. `+14155550100`).
        attribute_columns: Columns sent as custom attributes (default: every other column).
        batch_key: Identifies this batch across runs (default: this flow run, so a retry of
            the flow run skips what was sent). Reuse a key to resume a batch in a new run.
        concurrency: Requests in flight (default: adapted to Intercom's rate and latency).
        global_rate_limit: Name of a Prefect global concurrency limit with slot decay shared
            by every sender of the same Intercom app.
        retry_unknown: Also retry answers that may have texted (5xx, timeouts); may text twice.
        resend_unknown: Send items whose outcome was unknown in an earlier run of the batch key.
        max_table_rows: Rows in the table artifact at most.
        dry_run: Validate every row and send nothing (no block needed).
        report_path: Write one CSV line per input row there (row, outcome, status, Intercom code,
            request id, message).
        results_path: A local file for every row's result as it happens (JSON Lines; the command
            line follows it for its progress bar).

    Returns:
        The batch key and the items per outcome.
    """
    logger = get_run_logger()
    if dry_run:
        report = validate_csv(csv_path, phone_column, attribute_columns, results_path)
        valid = report.counts[Outcome.NOT_SENT.value]
        logger.info("Dry run of %s: %s valid, %s refused; nothing was sent", csv_path, valid, report.total - valid)
        if report_path:
            write_report_csv(report.items(), report_path)
        return {"batch_key": None, "dry_run": True, "valid": valid, "rejected": report.counts["rejected"]}
    credentials = load_credentials(block_name)
    total = count_csv_rows(csv_path)
    logger.info("Deflecting %s rows of %s with the block %r", f"{total:,}", csv_path, block_name)
    retry: RetryPolicy = RetryPolicy(retry_unknown=True) if retry_unknown else DEFAULT_RETRY_POLICY
    report = create_phone_call_redirects(
        credentials,
        read_requests_csv(csv_path, phone_column=phone_column, attribute_columns=attribute_columns),
        batch_key=batch_key,
        concurrency=concurrency,
        retry=retry,
        global_rate_limit=global_rate_limit,
        resend_unknown=resend_unknown,
        expected_total=total,
        max_table_rows=max_table_rows,
        results_path=results_path,
    )
    if report_path:
        write_report_csv(report.items(), report_path)
        logger.info("Wrote the report of %s rows to %s", f"{report.total:,}", report_path)
    return {"batch_key": report.batch_key, **report.counts}
