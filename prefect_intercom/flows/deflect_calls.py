"""Deflect calls: text every phone of a CSV file a Messenger link, at Intercom's rate.

The flow, its dry run, and what its command line learns from a run (the batch key, the results).
How a campaign resumes and what a run's state means: `docs/flow-modules.md`, "deflect_calls".
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.blocks.core import Block
from prefect.filesystems import WritableFileSystem
from prefect.runtime import flow_run
from prefect.states import State

from prefect_intercom.batch import create_phone_call_redirects, read_requests_csv
from prefect_intercom.batch.attribute_types import RefusedRow, fetch_workspace_types
from prefect_intercom.batch.campaign import campaign_key
from prefect_intercom.batch.csv_input import CsvScan, scan_csv
from prefect_intercom.batch.report import DEFAULT_TABLE_ROWS, BatchItemResult, BatchReport, read_results
from prefect_intercom.batch.tasks import stop_running_batches
from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.credentials import IntercomCredentials
from prefect_intercom.errors import BatchKeyBusyError, BatchStoppedError, IntercomConfigurationError
from prefect_intercom.flows.parameters import (
    DEFAULT_BLOCK_NAME,
    BlockName,
    DryRun,
    OptionalInt,
    OptionalStr,
    OptionalStrList,
    labelled,
)
from prefect_intercom.flows.report_file import check_report, one_line, write_report_csv
from prefect_intercom.flows.run_state import final_state, log_problems, no_flow_retry, not_retried
from prefect_intercom.flows.test_request import load_credentials
from prefect_intercom.outcomes import Outcome
from prefect_intercom.privacy import mask_phone
from prefect_intercom.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from prefect_intercom.validation import request_issues

FLOW_NAME = "deflect-calls"
DEPLOYMENT_NAME = "deflect-calls"
DRY_RUN_CODE = "dry_run"
STOP_TIMEOUT = 60.0
"""Seconds an interrupted run waits for its batch's orderly stop (answers in flight, ledger, lease)."""
SANDBOX_HINT = "run deflect-calls on the local sandbox, prefect-intercom deflect-calls FILE --sandbox"
"""How to try deflect-calls without an Intercom account (the hint of a missing block's message)."""
REFUSED_EVERY_SEND = frozenset({401, 403, 404})
"""Intercom's statuses that stop a batch: every further send would be refused (a wrong token, app or region)."""
_KEY_LISTENERS: list[Callable[[str], None]] = []


def resume_sentence(what: str, sent: int, batch_key: str, how: str) -> str:
    """The line that says how a batch that ended early resumes, e.g. `Interrupted after 61 sent; run ... twice.`."""
    return f"{what} after {sent:,} sent; {how} to resume (batch key {batch_key}): nobody is texted twice."


@contextmanager
def on_batch_key(callback: Callable[[str], None]) -> Iterator[None]:
    """Call `callback` with the batch key of each `deflect_calls` run of this process, before it sends."""
    _KEY_LISTENERS.append(callback)
    try:
        yield
    finally:
        _KEY_LISTENERS.remove(callback)


def check_csv(
    csv_path: str, phone_column: str, attributes: list[str] | None, types: dict[str, str] | None = None
) -> CsvScan:
    """Read the whole file once, strictly: its rows and their numbers.

    Raises:
        ValueError: One sentence: the file cannot be read, lacks a column, or breaks a bound.
    """
    try:
        return scan_csv(csv_path, phone_column=phone_column, attribute_columns=attributes, workspace_types=types)
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"cannot read the CSV {csv_path}: {one_line(error)}") from None


def load_ledger_storage(slug: str) -> WritableFileSystem:
    """Load the block that keeps the batch ledger, e.g. `s3-bucket/intercom-ledger` (a block document slug).

    Raises:
        IntercomConfigurationError: There is no such block, or it is not a writable file system.
    """
    try:
        block = Block.load(slug.strip())
    except Exception as error:
        raise IntercomConfigurationError(
            f"cannot load the ledger storage block {slug!r} (a block slug such as local-file-system/ledger "
            f"or s3-bucket/intercom-ledger): {one_line(error)}"
        ) from None
    if not isinstance(block, WritableFileSystem):
        raise IntercomConfigurationError(
            f"the ledger storage block {slug!r} is a {type(block).__name__}, not a writable file system "
            "(e.g. local-file-system/..., s3-bucket/...)"
        )
    return block


def workspace_types(
    credentials: IntercomCredentials | None, block_name: str, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> dict[str, str] | None:
    """The workspace's custom attribute types (one `GET /data_attributes`, retried as a send), or `None`.

    A dry run (`credentials` None) needs no block: without one, a WARNING, and only the types the
    CSV header declares (`vip:boolean`) are checked.
    """
    if credentials is None:
        try:
            credentials = load_credentials(block_name)
        except Exception:
            logger.warning(
                "Dry run without the credentials block %r: the workspace's custom attribute types were not read, "
                "only the types the CSV header declares (name:type) are checked",
                block_name,
            )
            return None
    with credentials.get_client(retry=DEFAULT_RETRY_POLICY) as client:
        return fetch_workspace_types(client, logger)


def validate_csv(requests: Iterable[Any], scan: CsvScan, results_path: str) -> BatchReport:
    """The dry run: every row of `requests` validated as the run would, nothing sent; the report holds every row.

    An invalid row is `rejected`, a phone an earlier row has `skipped` (`duplicate_in_batch`), the
    others `not_sent` with the code `dry_run` (the run would send them).
    """
    report = BatchReport(batch_key=DRY_RUN_CODE, results_path=results_path or None, first_row=scan.row_numbers)
    seen: dict[bytes, int] = {}  # 8-byte digests of the phones: flat memory, as the run's key table
    for index, body in enumerate(requests):
        phone = body.get("phone")
        masked = mask_phone(phone) if isinstance(phone, str) else None
        if isinstance(body, RefusedRow):  # a custom attribute not of its type: rejected as the run rejects it
            outcome, code, message = Outcome.REJECTED, body.code, body.message
        elif (issues := request_issues(PHONE_CALL_REDIRECTS, body)) or not isinstance(phone, str):
            outcome, code, message = Outcome.REJECTED, None, "; ".join(map(str, issues))
        elif (first := seen.setdefault(hashlib.blake2b(phone.encode(), digest_size=8).digest(), index)) != index:
            outcome, code, message = Outcome.SKIPPED, "duplicate_in_batch", f"same phone as {report.label(first)}"
        else:
            outcome, code, message = Outcome.NOT_SENT, DRY_RUN_CODE, "valid; dry run, not sent"
        report.add(BatchItemResult(index, outcome, masked, error_code=code, message=message))
    report.close()
    return report


def dry_run_counts(counts: Mapping[str, int]) -> str:
    """What a dry run found, e.g. `nothing sent: 3 valid, 2 rejected, 1 skipped` (valid: a run would send them)."""
    return f"nothing sent: {counts['not_sent']:,} valid, {counts['rejected']:,} rejected, {counts['skipped']:,} skipped"


def sent_so_far(results: Iterable[BatchItemResult]) -> int:
    """Items the batch key has texted, as a run's results show them: sent now, or by an earlier run or attempt."""
    return sum(
        result.outcome is Outcome.SENT or (result.outcome is Outcome.SKIPPED and result.error_code == "already_sent")
        for result in results
    )


def refused_every_send(results: Iterable[BatchItemResult]) -> BatchItemResult | None:
    """The first item Intercom refused with a status that stops the batch (`REFUSED_EVERY_SEND`), if any."""
    return next((r for r in results if r.status in REFUSED_EVERY_SEND and r.outcome is Outcome.NOT_SENT), None)


@flow(name=FLOW_NAME, retries=1, retry_delay_seconds=10, persist_result=False, log_prints=True)
def deflect_calls(
    csv_path: Annotated[
        str, labelled("CSV file", "A CSV with a header row and a phone column: a path or URL (s3://..., gs://...).")
    ],
    block_name: BlockName = DEFAULT_BLOCK_NAME,
    dry_run: DryRun = False,
    report_path: Annotated[
        OptionalStr,
        labelled("Report CSV", "One CSV line per input row: row, outcome, status, intercom_code, request_id, message."),
    ] = "",
    batch_key: Annotated[
        OptionalStr,
        labelled(
            "Batch key",
            "Names the batch across runs (default: from the file and the Intercom app, so the same file resumes).",
        ),
    ] = "",
    send_again: Annotated[
        bool,
        labelled("Send again", "Text everyone of the file again, as a new batch (with a fresh batch key)."),
    ] = False,
    phone_column: Annotated[str, labelled("Phone column", "Column of E.164 phone numbers (default: phone).")] = "phone",
    attribute_columns: Annotated[
        OptionalStrList,
        labelled("Custom attribute columns", "Columns sent as custom attributes (default: every other column)."),
    ] = [],  # noqa: B006 - never changed; the Run form's empty list
    ledger_storage: Annotated[
        OptionalStr,
        labelled(
            "Ledger storage",
            "The batch ledger's file system block, e.g. s3-bucket/intercom-ledger (default: the run's result storage).",
        ),
    ] = "",
    concurrency: Annotated[
        OptionalInt, labelled("Requests in flight", "Requests in flight (default: adapted to Intercom's rate).")
    ] = 0,
    global_rate_limit: Annotated[
        OptionalStr,
        labelled("Global rate limit", "A Prefect global concurrency limit (slot decay) shared by every sender."),
    ] = "",
    retry_unknown: Annotated[
        bool, labelled("Retry unknown answers", "Also retry 5xx answers and timeouts; a phone may be texted twice.")
    ] = False,
    resend_unknown: Annotated[
        bool, labelled("Resend unknown items", "Send again the items whose outcome was unknown in an earlier run.")
    ] = False,
    max_table_rows: Annotated[
        int, labelled("Table rows", "Rows of the table artifact at most (problems first).")
    ] = DEFAULT_TABLE_ROWS,
    results_path: Annotated[
        OptionalStr,
        labelled("Results file", "A local JSON Lines file receiving every row's result as it happens (optional)."),
    ] = "",
) -> dict[str, Any] | State[Any]:
    """Text every phone of a CSV file a Messenger link (Intercom's phone call redirect).

    Args:
        csv_path: The CSV file (a path or fsspec URL): a header row, a phone column, custom attribute columns.
        block_name: The `IntercomCredentials` block to load.
        phone_column: The column with the phone numbers (E.164, e.g. `+14155550100`).
        attribute_columns: Columns sent as custom attributes (empty, the default: every other column).
        batch_key: Identifies this batch across runs. Empty (the default): derived from the file's bytes and
            the Intercom app's API host (`campaign_key`), so running the same file again resumes.
        send_again: Text everyone again as a new batch: a fresh key from the file, the app and
            this flow run (its retries keep it). Not with `batch_key`.
        ledger_storage: A `WritableFileSystem` block slug (`s3-bucket/intercom-ledger`) for the
            batch ledger, shared by every machine that sends the campaign; empty (the default):
            the run's result storage.
        concurrency: Requests in flight (0, the default: adapted to Intercom's rate and latency).
        global_rate_limit: Name of a Prefect global concurrency limit with slot decay shared
            by every sender of the same Intercom app.
        retry_unknown: Also retry answers that may have texted (5xx, timeouts); may text twice.
        resend_unknown: Send items whose outcome was unknown in an earlier run of the batch key.
        max_table_rows: Rows in the table artifact at most.
        dry_run: Validate every row and send nothing (no block needed).
        report_path: Write one CSV line per input row there (row, outcome, status, Intercom code,
            request id, message); checked before the first send (`check_report`).
        results_path: A local file for every row's result as it happens (JSON Lines; the command
            line follows it for its progress bar).

    Returns:
        The batch key and the items per outcome; a run returns them in its final state:
        `Completed`, `Completed` named `Completed with problems` (someone not texted), or `Failed`
        (someone may or may not have been texted), with a flow-run summary artifact
        (`prefect_intercom.flows.run_state`). An empty text, 0 or an empty list (or `None`)
        means "not given".
    """
    logger = get_run_logger()
    columns = attribute_columns or None  # empty: every column but the phone's
    with not_retried():  # an input, configuration or token problem fails the same way each time
        if batch_key and send_again:
            raise IntercomConfigurationError("pass a batch key or send again, not both: send again makes a new key")
        credentials = None if dry_run else load_credentials(block_name, SANDBOX_HINT)
        types = workspace_types(credentials, block_name, logger)  # read once, before the file is checked
        try:  # the whole file and the report path are checked before anything is sent, as on the command line
            scan = check_csv(csv_path, phone_column, columns, types)
            if report_path:
                check_report(report_path, csv_path)
        except ValueError as error:
            raise IntercomConfigurationError(f"{error}; nothing was sent") from None
        requests = read_requests_csv(
            csv_path, phone_column=phone_column, attribute_columns=columns, workspace_types=types
        )
        if dry_run:
            report = validate_csv(requests, scan, results_path)
            valid, rejected, skipped = (report.counts[name] for name in ("not_sent", "rejected", "skipped"))
            logger.info("Dry run of %s, %s (duplicates)", csv_path, dry_run_counts(report.counts))
            if report_path:
                write_report_csv(report.items(), report_path, scan.row_numbers)
            return {"batch_key": None, "dry_run": True, "valid": valid, "rejected": rejected, "skipped": skipped}
        storage = load_ledger_storage(ledger_storage) if ledger_storage else None
    assert credentials is not None
    nonce = (flow_run.get_id() or uuid.uuid4().hex) if send_again else None  # the flow run's id: its retries keep it
    key = batch_key or campaign_key(scan.sha256, credentials.api_url, nonce=nonce)
    how = "run it again with the same batch key"
    if send_again:
        how = f"run it again with batch key {key} and without send again"
    elif not batch_key:
        how = "run it again with the same file and credentials block"
    logger.info("Deflecting %s rows of %s with the block %r, batch key %s", f"{scan.rows:,}", csv_path, block_name, key)
    for listener in list(_KEY_LISTENERS):
        listener(key)
    with tempfile.TemporaryDirectory(prefix="prefect-intercom-results-") as folder:
        results = results_path or str(Path(folder) / "results.jsonl")  # to count what was sent if it ends early
        try:
            report = create_phone_call_redirects(
                credentials,
                requests,
                batch_key=key,
                concurrency=concurrency or None,
                retry=RetryPolicy(retry_unknown=True) if retry_unknown else DEFAULT_RETRY_POLICY,
                global_rate_limit=global_rate_limit or None,
                resend_unknown=resend_unknown,
                expected_total=scan.rows,
                ledger_storage=storage,
                max_table_rows=max_table_rows,
                first_row=scan.row_numbers,
                results_path=results,
            )
        except BatchKeyBusyError:
            raise  # nothing was sent; its message says who holds the key
        except BaseException as error:  # stopped, failed, cancelled, interrupted: say how it resumes
            if not isinstance(error, Exception):  # Ctrl-C, SIGTERM: let the batch stop the orderly way first
                stop_running_batches(key, timeout=STOP_TIMEOUT)
            if isinstance(error, BatchStoppedError) and refused_every_send(error.report.iter_items()):
                no_flow_retry()  # a wrong token or app: the automatic retry would fail the same way
            sent = 0
            with suppress(Exception):  # a results file that cannot be read: the count is for the message only
                sent = sent_so_far(read_results(results))
            logger.warning(resume_sentence("The batch ended early", sent, key, how))
            raise
        if report_path:
            write_report_csv(report.items(), report_path, scan.row_numbers)
            logger.info("Wrote the report of %s rows to %s", f"{report.total:,}", report_path)
        results_in_order = report.items()
    log_problems(logger, results_in_order, scan.row_numbers)
    if any(result.outcome is Outcome.UNKNOWN for result in results_in_order):
        no_flow_retry()  # the run fails; a retry would skip its unknown rows and end "Completed with problems"
    return final_state(results_in_order, key, how, scan.row_numbers, {"batch_key": report.batch_key, **report.counts})
