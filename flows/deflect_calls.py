"""Deflect calls: text every phone of a CSV file a Messenger link, at Intercom's rate.

The CSV has a header row, a `phone` column (E.164) and any other columns, sent as custom
attributes (e.g. `issue_type`, `priority`). The file is streamed, never loaded whole. Every
row ends in one outcome (sent, rejected, not_sent, unknown, skipped); the run publishes a
progress artifact while it sends and a table artifact at the end.

Retrying the flow run (it retries once by itself) or running it again with the same
`batch_key` does not text anyone twice: the batch ledger remembers what was sent.

Command line (`--help` for everything):

    python flows/deflect_calls.py callers.csv --block intercom
    python flows/deflect_calls.py callers.csv --sandbox                 # local sandbox, no account
    python flows/deflect_calls.py callers.csv --block intercom --batch-key campaign-7 --global-rate-limit intercom-app
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger

from prefect_intercom.batch import count_csv_rows, create_phone_call_redirects, read_requests_csv
from prefect_intercom.batch.report import DEFAULT_TABLE_ROWS
from prefect_intercom.credentials import IntercomCredentials
from prefect_intercom.retry import DEFAULT_RETRY_POLICY, RetryPolicy

FLOW_NAME = "deflect-calls"
DEFAULT_BLOCK_NAME = "intercom"
SANDBOX_BLOCK_NAME = "intercom-sandbox"


@flow(name=FLOW_NAME, retries=1, retry_delay_seconds=10, persist_result=False, log_prints=True)
def deflect_calls(
    csv_path: str,
    block_name: str = DEFAULT_BLOCK_NAME,
    phone_column: str = "phone",
    attribute_columns: list[str] | None = None,
    batch_key: str | None = None,
    concurrency: int | None = None,
    global_rate_limit: str | None = None,
    retry_unknown: bool = False,
    resend_unknown: bool = False,
    max_table_rows: int = DEFAULT_TABLE_ROWS,
) -> dict[str, Any]:
    """Text every phone of a CSV file a Messenger link (Intercom's phone call redirect).

    Args:
        csv_path: The CSV file: a header row, a phone column, custom attribute columns.
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

    Returns:
        The batch key and the items per outcome.
    """
    logger = get_run_logger()
    credentials = IntercomCredentials.load(block_name)
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
    )
    return {"batch_key": report.batch_key, **report.counts}


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python flows/deflect_calls.py",
        description="Text every phone of a CSV file an Intercom Messenger link (POST /phone_call_redirects).",
    )
    parser.add_argument("csv_path", help="CSV with a header row, a phone column and custom attribute columns")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--block", help=f"IntercomCredentials block to load (default: {DEFAULT_BLOCK_NAME!r})")
    target.add_argument("--sandbox", action="store_true", help="send to a local sandbox instead of Intercom")
    parser.add_argument("--phone-column", default="phone", help="column with the phone numbers (default: phone)")
    parser.add_argument("--attribute", action="append", dest="attributes", help="attribute column (repeatable)")
    parser.add_argument("--batch-key", help="identifies the batch across runs (reuse it to resume)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="requests in flight (default: adapted to Intercom's rate)"
    )
    parser.add_argument("--global-rate-limit", help="Prefect global concurrency limit (slot decay) to share")
    parser.add_argument("--retry-unknown", action="store_true", help="also retry 5xx/timeouts (may text twice)")
    parser.add_argument("--resend-unknown", action="store_true", help="resend items unknown in an earlier run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    parameters = {
        "csv_path": args.csv_path,
        "block_name": args.block or (SANDBOX_BLOCK_NAME if args.sandbox else DEFAULT_BLOCK_NAME),
        "phone_column": args.phone_column,
        "attribute_columns": args.attributes,
        "batch_key": args.batch_key,
        "concurrency": args.concurrency,
        "global_rate_limit": args.global_rate_limit,
        "retry_unknown": args.retry_unknown,
        "resend_unknown": args.resend_unknown,
    }
    if not args.sandbox:
        return _run(parameters)
    from prefect_intercom.sandbox import Sandbox

    with Sandbox(token=secrets.token_urlsafe(24)) as sandbox:
        IntercomCredentials(access_token=sandbox.token, base_url=sandbox.url).save(SANDBOX_BLOCK_NAME, overwrite=True)
        print(f"Intercom sandbox on {sandbox.url}; saved the credentials block {SANDBOX_BLOCK_NAME!r} for it.")
        code = _run(parameters)
        print(f"The sandbox received {len(sandbox.received):,} request(s); {len(sandbox.accepted):,} texted a phone.")
        return code


def _run(parameters: dict[str, Any]) -> int:
    state = deflect_calls(**parameters, return_state=True)
    if state.is_completed():
        print(f"Done: {state.result()}")
        return 0
    key = parameters["batch_key"] or f"flow-run-{state.state_details.flow_run_id}/batch-0"
    print(f"Deflect calls failed: {state.message}", file=sys.stderr)
    print(f"Nothing sent is sent again if you resume with --batch-key {key}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
