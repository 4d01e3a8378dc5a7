"""Batches: many phone call redirects in one task run, every item in exactly one outcome, never sent twice.

The modules and their jobs: docs/batches.md ("The modules").
"""

from prefect_intercom.batch.csv_input import count_csv_rows, read_requests_csv
from prefect_intercom.batch.engine import asend_batch, send_batch
from prefect_intercom.batch.ledger import BatchLedger
from prefect_intercom.batch.report import BatchItemResult, BatchReport
from prefect_intercom.batch.tasks import acreate_phone_call_redirects, create_phone_call_redirects, default_batch_key

__all__ = [
    "BatchItemResult",
    "BatchLedger",
    "BatchReport",
    "acreate_phone_call_redirects",
    "asend_batch",
    "count_csv_rows",
    "create_phone_call_redirects",
    "default_batch_key",
    "read_requests_csv",
    "send_batch",
]
