"""A batch in its own process, for tests that kill it (`python tests/batch_child.py URL STORAGE KEY COUNT ...`).

It sends `COUNT` phones (`+1415` + 7 digits) with the package's defaults (retry policy, header
pacing) and prints one JSON line with the report's counts when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def main() -> None:
    from prefect.filesystems import LocalFileSystem

    from prefect_intercom import IntercomCredentials, Pacer, RetryPolicy
    from prefect_intercom.batch import asend_batch
    from prefect_intercom.errors import BatchKeyBusyError

    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("storage")
    parser.add_argument("key")
    parser.add_argument("count", type=int)
    parser.add_argument("--token", required=True)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--no-lock", action="store_true")
    parser.add_argument("--start-at", type=float, default=None, help="UNIX time to start at (races)")
    args = parser.parse_args()
    bodies = ({"phone": f"+1415{index:07d}"} for index in range(args.count))
    credentials = IntercomCredentials(access_token=args.token, base_url=args.url, timeout=10)
    if args.start_at is not None:
        import time

        await asyncio.sleep(max(0.0, args.start_at - time.time()))
    try:
        async with credentials.get_client(retry=RetryPolicy(), pacer=Pacer(), max_connections=100) as client:
            report = await asend_batch(
                client,
                bodies,
                batch_key=args.key,
                ledger_storage=LocalFileSystem(basepath=args.storage),
                concurrency=args.concurrency,
                lock=not args.no_lock,
            )
    except BatchKeyBusyError as error:
        print(json.dumps({"busy": str(error)}), flush=True)
        return
    summary = {"counts": report.counts, "reasons": dict(report.reasons), "run": report.run, "stopped": report.stopped}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
