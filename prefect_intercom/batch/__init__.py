"""Batches: many phone call redirects in one task run, every item in exactly one outcome, never sent twice.

The modules, each with one job:

- `engine`: streams items through the one request pipeline (`asend_batch`, `send_batch`);
- `run`: one run's state: admitting, sending and recording each item, stopping early;
- `concurrency`: how many requests are in flight (adaptive to Intercom's rate and latency);
- `ledger`: the write-ahead journal in result storage that makes re-runs and crashes safe;
- `keys`: the compact table of item keys (flat memory at a million items);
- `report`: counts, the table artifact's rows, every item's result in a file;
- `csv_input`: CSV rows as request bodies, streamed;
- `tasks`: the Prefect tasks `create_phone_call_redirects` / `acreate_phone_call_redirects`.
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
