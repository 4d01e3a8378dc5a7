"""Edges a hostile review found: concurrent default keys, subflows, a slow ledger closing, torn claims."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.filesystems import LocalFileSystem

from prefect_intercom import IntercomCredentials, Pacer, RetryPolicy, create_phone_call_redirects
from prefect_intercom.batch import BatchReport, asend_batch
from prefect_intercom.batch.ledger import BatchLedger, LedgerApp
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN
from .test_batch_windows import header_server


def bodies(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"phone": f"+1415{index:07d}"} for index in range(start, start + count)]


def test_batches_started_together_with_default_keys_are_refused_not_numbered_by_chance(
    prefect_server: None, tmp_path: Path
) -> None:
    with Sandbox(token=SECRET_TOKEN, latency=0.2) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
        storage = LocalFileSystem(basepath=str(tmp_path / "ledger"))

        @flow
        def deflect() -> list[str]:
            futures = [
                create_phone_call_redirects.submit(credentials, bodies(3, 10 * n), ledger_storage=storage)
                for n in range(2)
            ]
            return [future.state.type.value for future in futures if future.wait() is None]

        state = deflect(return_state=True)
        texted = Counter(entry.body["phone"] for entry in sandbox.accepted)
    assert state.is_completed()
    assert sorted(state.result()) == ["COMPLETED", "FAILED"]  # one ran, the other was refused before sending
    assert len(texted) == 3 and set(texted.values()) == {1}


def test_a_subflow_does_not_restart_its_parents_batch_numbering(prefect_server: None, tmp_path: Path) -> None:
    with Sandbox(token=SECRET_TOKEN) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
        storage = LocalFileSystem(basepath=str(tmp_path / "ledger"))

        @flow
        def child() -> str:
            return create_phone_call_redirects(credentials, bodies(1, 50), ledger_storage=storage).batch_key

        @flow
        def parent() -> list[str]:
            welcome = create_phone_call_redirects(credentials, bodies(1), ledger_storage=storage)
            inner = child()
            reminder = create_phone_call_redirects(credentials, bodies(1), ledger_storage=storage)
            assert reminder.counts["sent"] == 1  # not skipped as "already sent" by the welcome batch
            return [welcome.batch_key, inner, reminder.batch_key]

        keys = parent()
    assert keys[0].endswith("/batch-0") and keys[2].endswith("/batch-1") and keys[1].endswith("/batch-0")
    assert keys[0] != keys[1]
    assert [entry.body["phone"] for entry in sandbox.accepted].count(bodies(1)[0]["phone"]) == 2


class _SlowStorage(LocalFileSystem):
    """Result storage whose writes take a while, like an object store."""

    async def awrite_path(self, path: str, content: bytes) -> str:
        await asyncio.sleep(0.2)
        return await super().awrite_path(path, content)


@pytest.mark.timeout(30)
async def test_closing_the_ledger_while_a_record_is_written_and_a_retract_waits_finishes(tmp_path: Path) -> None:
    ledger = await BatchLedger.open("slow", _SlowStorage(basepath=str(tmp_path)))
    digest = ledger.digest("+14150000000")
    await ledger.announce(0, digest)
    writing = asyncio.create_task(ledger.announce(1, ledger.digest("+14150000001")))
    await asyncio.sleep(0.05)  # the record with item 1 is being written
    ledger.retract(0, digest, 429, "rate_limit_exceeded")
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
