"""Edges a hostile review found: a slow ledger closing, torn claims, a failing progress callback."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prefect.filesystems import LocalFileSystem

from prefect_intercom import IntercomCredentials, Pacer, RetryPolicy
from prefect_intercom.batch import BatchReport, asend_batch
from prefect_intercom.batch.ledger import BatchLedger, LedgerApp

from .conftest import SECRET_TOKEN
from .test_batch_windows import header_server

# The ledger's digest key is a Secret block and the batch key's lease a limit: the session's server,
# not a temporary one started over the default Prefect home (slow to start, shared between sessions).
pytestmark = pytest.mark.usefixtures("prefect_server")


def bodies(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"phone": f"+1415{index:07d}"} for index in range(start, start + count)]


class _SlowStorage(LocalFileSystem):
    """Result storage whose writes take a while, like an object store."""

    async def awrite_path(self, path: str, content: bytes) -> str:
        await asyncio.sleep(0.2)
        return await super().awrite_path(path, content)


@pytest.mark.timeout(30, func_only=True)  # the test, not the session server's start
async def test_closing_the_ledger_while_a_record_is_written_and_a_retract_waits_finishes(tmp_path: Path) -> None:
    ledger = await BatchLedger.open("slow", _SlowStorage(basepath=str(tmp_path)))
    digest = ledger.digest("+14150000000")
    await ledger.announce(0, digest)
    writing = asyncio.create_task(ledger.announce(1, ledger.digest("+14150000001")))
    await asyncio.sleep(0.05)  # the record with item 1 is being written
    ledger.retract(digest)
    await asyncio.wait_for(ledger.close(), timeout=10)
    await writing
    again = await BatchLedger.open("slow", LocalFileSystem(basepath=str(tmp_path)))
    assert again.previous(digest) is None  # the retract was written before closing
    assert again.previous(ledger.digest("+14150000001")).outcome.value == "unknown"


async def test_an_attempt_that_may_have_texted_stays_unknown_even_if_its_retry_is_refused(tmp_path: Path) -> None:
    def answer(number: int) -> tuple[int, dict[str, str]]:
        return {0: (503, {}), 1: (429, {"Retry-After": "500"})}.get(number, (200, {}))

    retry = RetryPolicy(retry_unknown=True, max_wait=5, backoff=0.01)
    with header_server(answer) as (url, received):  # one server: the re-run goes to the same app
        report = await _send(url, 1, tmp_path, retry=retry)
        assert len(received) == 2
        assert [(item.outcome.value, item.attempts) for item in report.items()] == [("unknown", 2)]
        assert "earlier attempt may have texted" in (report.items()[0].message or "")
        rerun = await _send(url, 1, tmp_path, retry=retry)
        assert rerun.counts["skipped"] == 1 and len(received) == 2  # not resent: the 503 may have texted


async def test_a_run_claim_torn_by_a_crash_does_not_block_the_batch_key(tmp_path: Path) -> None:
    with header_server(lambda number: (200, {})) as (url, received):
        await _send(url, 3, tmp_path)
        storage = LocalFileSystem(basepath=str(tmp_path / "ledger"))
        ledger = await BatchLedger.open("edges", storage, app=LedgerApp(url, SECRET_TOKEN))
        await storage.awrite_path(ledger.paths.claim(2), b"")  # torn
        rerun = await _send(url, 5, tmp_path)
    assert (rerun.run, rerun.counts["skipped"], rerun.counts["sent"]) == (3, 3, 2)
    assert sorted(Counter(received).values()) == [1] * 5


async def test_a_failing_progress_callback_neither_stops_nor_loses_the_batch(tmp_path: Path) -> None:
    def broken(report: BatchReport) -> None:
        raise RuntimeError("the artifact API is down")

    with header_server(lambda number: (200, {})) as (url, received):
        report = await _send(url, 20, tmp_path, on_progress=broken, progress_interval=0)
    assert report.counts["sent"] == 20 == len(received) and not report.stopped


async def _send(url: str, count: int, tmp_path: Path, **options: Any) -> BatchReport:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=url, timeout=5)
    retry = options.pop("retry", RetryPolicy(max_wait=5, backoff=0.01))
    async with credentials.get_client(retry=retry, pacer=Pacer(), max_connections=8) as client:
        return await asend_batch(
            client,
            bodies(count),
            batch_key="edges",
            ledger_storage=LocalFileSystem(basepath=str(tmp_path / "ledger")),
            concurrency=4,
            lock=False,
            **options,
        )
