"""The batch: every item in exactly one outcome, no resend across runs, faults at scale."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from prefect.filesystems import LocalFileSystem

from prefect_intercom import (
    BatchReport,
    BatchStoppedError,
    IntercomCredentials,
    LedgerError,
    Outcome,
    Pacer,
    RetryPolicy,
    create_phone_call_redirects,
    read_requests_csv,
)
from prefect_intercom.batch import asend_batch, count_csv_rows
from prefect_intercom.batch.ledger import BatchLedger, LedgerApp
from prefect_intercom.errors import BatchKeyBusyError
from prefect_intercom.sandbox import SMS_FAILS_PHONE, UNPROCESSABLE_PHONE, Sandbox
from prefect_intercom.sandbox.process import sandbox_process

from .conftest import SECRET_TOKEN, batch_key_of_test

FAULTS = {"429": 0.05, "503": 0.02, "reset": 0.01, "slow": 0.01}


def phone(index: int) -> str:
    return f"+1415{index:07d}"


def bodies(count: int, start: int = 0) -> Iterator[dict[str, Any]]:
    for index in range(start, start + count):
        yield {"phone": phone(index), "custom_attributes": {"row": str(index)}}


@pytest.fixture(autouse=True)
def _prefect_api(prefect_server: None) -> None:
    """Every batch holds its key's lease on a real Prefect server."""


@pytest.fixture
def storage(tmp_path: Path) -> LocalFileSystem:
    return LocalFileSystem(basepath=str(tmp_path / "ledger"))


async def send(
    url: str,
    requests: Any,
    storage: LocalFileSystem,
    *,
    key: str | None = None,
    token: str = SECRET_TOKEN,
    retry: RetryPolicy | None = None,
    timeout: float = 5.0,
    concurrency: int = 8,
    **options: Any,
) -> BatchReport:
    credentials = IntercomCredentials(access_token=token, base_url=url, timeout=timeout)
    retry = retry or RetryPolicy(backoff=0.01, jitter=0.1)
    async with credentials.get_client(retry=retry, pacer=Pacer(), max_connections=concurrency) as client:
        return await asend_batch(
            client,
            requests,
            batch_key=key or batch_key_of_test("batch"),
            ledger_storage=storage,
            concurrency=concurrency,
            **options,
        )


def assert_one_outcome_each(report: BatchReport, count: int) -> None:
    assert report.total == count == sum(report.counts.values())
    assert [item.index for item in report.items()] == list(range(count))


# --- outcomes -------------------------------------------------------------------------------


async def test_every_item_lands_in_exactly_one_outcome(sandbox: Sandbox, storage: LocalFileSystem) -> None:
    items: list[Any] = [
        {"phone": phone(0), "custom_attributes": {"issue_type": "Billing"}},  # sent
        {"phone": "+1 415 555 0100"},  # rejected: not E.164
        "not an object",  # rejected
        {"phone": phone(3), "colour": "red"},  # rejected: unknown field
        {"phone": SMS_FAILS_PHONE},  # not_sent: 400 sms_failed
        {"phone": UNPROCESSABLE_PHONE},  # not_sent: 422
        {"phone": phone(0)},  # skipped: same phone as item 0
        {"phone": phone(7)},  # sent
    ]
    report = await send(sandbox.url, iter(items), storage)
    assert_one_outcome_each(report, len(items))
    results = report.items()
    assert [result.outcome.value for result in results] == [
        "sent", "rejected", "rejected", "rejected", "not_sent", "not_sent", "skipped", "sent"
    ]  # fmt: skip
    assert "/phone" in (results[1].message or "") and "hint" in (results[1].message or "")
    assert (results[4].status, results[4].error_code) == (400, "sms_failed")
    assert (results[5].status, results[5].error_code) == (422, "unprocessable_entity")
    assert (results[6].error_code, results[6].message) == ("duplicate_in_batch", "same phone as item 0")
    assert results[0].phone == "+1415•••0000" and results[0].attempts == 1
    accepted = {entry.request_id: entry.body["phone"] for entry in sandbox.accepted}
    assert accepted == {results[0].request_id: phone(0), results[7].request_id: phone(7)}
    assert report.reasons["not_sent 400 sms_failed"] == 1


async def test_a_custom_item_key_decides_what_counts_as_a_duplicate(sandbox: Sandbox, storage: LocalFileSystem) -> None:
    items = [{"phone": phone(1), "custom_attributes": {"case": case}} for case in ("a", "b", "a")]
    report = await send(
        sandbox.url, items, storage, item_key=lambda body: body["phone"] + body["custom_attributes"]["case"]
    )
    assert [item.outcome for item in report.items()] == [Outcome.SENT, Outcome.SENT, Outcome.SKIPPED]


# --- re-runs --------------------------------------------------------------------------------


async def test_a_rerun_with_the_same_batch_key_resends_nothing(sandbox: Sandbox, storage: LocalFileSystem) -> None:
    first = await send(sandbox.url, bodies(250), storage)
    assert first.counts["sent"] == 250 and first.run == 0
    second = await send(sandbox.url, bodies(250), storage)
    assert (second.run, second.counts["sent"], second.counts["skipped"]) == (1, 0, 250)
    assert {item.error_code for item in second.items()} == {"already_sent"}
    assert {item.message for item in second.items()} == {"recorded as sent by run 0 of this batch key"}
    third = await send(sandbox.url, bodies(300), storage)  # 50 new rows appended
    assert (third.counts["sent"], third.counts["skipped"]) == (50, 250)
    assert len(sandbox.received) == 300
    assert max(Counter(entry.body["phone"] for entry in sandbox.accepted).values()) == 1
    other_key = await send(sandbox.url, bodies(10), storage, key="another-batch")
    assert other_key.counts["sent"] == 10  # a new batch key is a new batch


async def test_refused_items_are_sent_again_by_a_rerun(sandbox: Sandbox, storage: LocalFileSystem) -> None:
    items = [{"phone": phone(1)}, {"phone": SMS_FAILS_PHONE}]
    await send(sandbox.url, items, storage)
    again = await send(sandbox.url, items, storage)
    assert [item.outcome.value for item in again.items()] == ["skipped", "not_sent"]
    assert [entry.body["phone"] for entry in sandbox.received].count(SMS_FAILS_PHONE) == 2


async def test_unknown_outcomes_are_not_resent_unless_asked(storage: LocalFileSystem) -> None:
    with Sandbox(token=SECRET_TOKEN, faults={"503": 0.2}, fault_effect=0.5, seed=4) as sandbox:
        first = await send(sandbox.url, bodies(200), storage)
        unknown = {phone(item.index) for item in first.items(Outcome.UNKNOWN)}
        assert unknown and first.counts["sent"] + len(unknown) == 200
        received = len(sandbox.received)
        second = await send(sandbox.url, bodies(200), storage)
        assert len(sandbox.received) == received  # nothing at all was sent
        assert Counter(item.error_code for item in second.items()) == {
            "already_sent": first.counts["sent"],
            "unknown_in_earlier_run": len(unknown),
        }
        third = await send(sandbox.url, bodies(200), storage, resend_unknown=True)
        resent = {entry.body["phone"] for entry in sandbox.received[received:]}
        assert resent == unknown  # only the unknown ones, on explicit request
        assert third.counts["skipped"] == first.counts["sent"]
        twice = {number for number, count in Counter(e.body["phone"] for e in sandbox.accepted).items() if count > 1}
        assert twice <= unknown  # a duplicate is only ever one the user chose to resend


async def test_a_crash_while_sending_leaves_unknowns_never_duplicates(
    sandbox: Sandbox, storage: LocalFileSystem
) -> None:
    ledger = await BatchLedger.open("crashed", storage, app=LedgerApp(sandbox.url, SECRET_TOKEN))
    for index in range(5):  # five attempts announced (written ahead) ...
        await ledger.announce(index, ledger.digest(phone(index)))
    # ... and the process died here: no outcome was recorded for them.
    report = await send(sandbox.url, bodies(8), storage, key="crashed")
    assert [item.outcome.value for item in report.items()] == ["skipped"] * 5 + ["sent"] * 3
    assert {item.error_code for item in report.items(Outcome.SKIPPED)} == {"unknown_in_earlier_run"}
    assert sorted(entry.body["phone"] for entry in sandbox.received) == [phone(5), phone(6), phone(7)]


async def test_an_unreadable_ledger_record_stops_before_anything_is_sent(
    sandbox: Sandbox, storage: LocalFileSystem
) -> None:
    ledger = await BatchLedger.open("damaged", storage, app=LedgerApp(sandbox.url, SECRET_TOKEN))
    for index in range(3):  # a run that crashed after three records
        await ledger.announce(index, ledger.digest(phone(index)))
    await storage.awrite_path(f"{ledger.folder}/run-00000/record-00000000", b"{not json")  # not the last record
    with pytest.raises(LedgerError, match="damaged"):
        await send(sandbox.url, bodies(3), storage, key="damaged")
    assert len(sandbox.received) == 0


def test_ledger_records_hold_no_phone_number(sandbox: Sandbox, storage: LocalFileSystem, tmp_path: Path) -> None:
    from prefect.utilities.asyncutils import run_coro_as_sync

    run_coro_as_sync(send(sandbox.url, bodies(20), storage))
    written = b"".join(path.read_bytes() for path in (tmp_path / "ledger").rglob("*") if path.is_file())
    assert phone(3).encode() not in written and phone(3)[1:].encode() not in written
    assert SECRET_TOKEN.encode() not in written


async def test_the_first_progress_call_goes_with_the_first_send_and_is_over_before_the_last(
    sandbox: Sandbox, storage: LocalFileSystem
) -> None:
    calls: list[tuple[str, int, int]] = []  # (when, items in the report, requests the sandbox had)

    async def on_progress(report: BatchReport) -> None:
        calls.append(("called", report.total, len(sandbox.received)))
        if len(calls) == 1:
            await asyncio.sleep(0.5)  # a slow Prefect server
        calls.append(("over", report.total, len(sandbox.received)))

    report = await send(sandbox.url, bodies(3), storage, key="progress-with-the-first-send", on_progress=on_progress)
    assert report.counts["sent"] == 3
    assert calls[0] == ("called", 0, 0)
    assert calls[1][0] == "over" and calls[1][2] >= 1  # the first item went while the first call was under way
    assert calls[-2:] == [("called", 3, 3), ("over", 3, 3)]  # the last call comes after it, alone


async def test_the_ledger_key_is_read_while_the_lease_is_taken_and_created_only_once_it_is_held(
    sandbox: Sandbox, storage: LocalFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import PrefectClient

    from prefect_intercom.batch import engine, ledger_secret

    steps: list[str] = []
    read_key, create_key = ledger_secret.read_ledger_key, ledger_secret.create_ledger_key
    read_limit = PrefectClient.read_global_concurrency_limit_by_name
    create_limit = PrefectClient.create_global_concurrency_limit

    async def reading_key() -> bytes | None:
        steps.append("key read")
        await read_key()
        steps.append("key read over")
        return None  # as on a new Prefect server: the key is still to be created

    # The block exists on the session's server: its save reads the winner's.
    async def creating_key(name: str = ledger_secret.SECRET_BLOCK_NAME) -> bytes:
        steps.append("key created")
        return await create_key(name)

    async def reading_limit(self: PrefectClient, name: str) -> Any:
        steps.append("limit read")
        try:
            return await read_limit(self, name)
        finally:
            steps.append("limit read over")

    async def creating_limit(self: PrefectClient, create: Any) -> Any:
        limit_id = await create_limit(self, create)
        steps.append("lease held")
        return limit_id

    monkeypatch.setattr(engine, "read_ledger_key", reading_key)
    monkeypatch.setattr(ledger_secret, "create_ledger_key", creating_key)
    monkeypatch.setattr(PrefectClient, "read_global_concurrency_limit_by_name", reading_limit)
    monkeypatch.setattr(PrefectClient, "create_global_concurrency_limit", creating_limit)
    report = await send(sandbox.url, bodies(2), storage, key="key-beside-the-lease")
    assert report.counts["sent"] == 2
    assert steps.index("key read") < steps.index("limit read over")  # both under way at once
    assert steps.index("limit read") < steps.index("key read over")
    assert steps.index("lease held") < steps.index("key created")  # the only write waits for the lease


async def test_a_refused_lease_leaves_no_ledger_key_read_behind(sandbox: Sandbox, storage: LocalFileSystem) -> None:
    from prefect_intercom.batch.lease import hold_batch_key

    async with hold_batch_key("held-elsewhere"):
        with pytest.raises(BatchKeyBusyError):
            await send(sandbox.url, bodies(2), storage, key="held-elsewhere")
    assert not [task for task in asyncio.all_tasks() if "read_ledger_key" in repr(task.get_coro())]
    assert len(sandbox.received) == 0


# --- stopping early -------------------------------------------------------------------------


async def test_a_wrong_token_costs_one_request_and_stops_the_batch(sandbox: Sandbox, storage: LocalFileSystem) -> None:
    report = await send(sandbox.url, bodies(100), storage, token="wrong-token")
    assert report.stopped and "401" in report.stopped
    assert report.counts["not_sent"] == 100
    assert len(sandbox.received) == 1
    assert Counter(item.error_code for item in report.items()) == {"unauthorized": 1, "not_attempted": 99}


async def test_a_streak_of_unknown_outcomes_stops_the_batch(storage: LocalFileSystem) -> None:
    with Sandbox(token=SECRET_TOKEN, faults={"503": 1.0}) as sandbox:
        report = await send(sandbox.url, bodies(200), storage, stop_after_unknown=10, concurrency=4)
        assert report.stopped and "unknown" in report.stopped
        assert report.counts["unknown"] == len(sandbox.received) < 20
        assert report.counts["unknown"] + report.counts["not_sent"] == 200


# --- faults at scale ------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2_000, pytest.param(10_000, marks=pytest.mark.e2e)])
async def test_fault_injection_every_item_one_outcome_and_nothing_sent_twice(count: int, tmp_path: Path) -> None:
    """429s (5%), 503s (2%), resets (1%) and slow answers (1%) against the sandbox's own process.

    What the sandbox recorded as sent is exactly what the report calls sent, plus the
    `unknown` items that did go out (a slow answer is sent, then answered too late): that is
    what "unknown" means. No phone is texted twice, and every 429 was retried.
    """
    flags = ["--rate-limit", "1000000", "--rate-limit-window", "1", "--retry-after", "0.05", "--slow-seconds", "1.5"]
    for kind, rate in FAULTS.items():
        flags += ["--fault", f"{kind}={rate}"]
    storage = LocalFileSystem(basepath=str(tmp_path / "ledger"))
    with sandbox_process(*flags, "--seed", "7", token=SECRET_TOKEN) as sandbox:
        report = await send(sandbox.url, bodies(count), storage, timeout=0.5, concurrency=16)
        records = sandbox.records()
    assert_one_outcome_each(report, count)
    accepted = Counter(record["body"]["phone"] for record in records if record["accepted"])
    sent = {phone(item.index) for item in report.items(Outcome.SENT)}
    unknown = {phone(item.index) for item in report.items(Outcome.UNKNOWN)}
    assert max(accepted.values()) == 1  # nobody texted twice
    assert sent <= set(accepted)
    assert set(accepted) - sent <= unknown
    assert len(accepted) == report.counts["sent"] + len(unknown & set(accepted))
    sent_ids = {item.request_id for item in report.items(Outcome.SENT)}
    answered_200 = {record["request_id"] for record in records if record["status"] == 200 and record["fault"] != "slow"}
    assert sent_ids <= answered_200  # every id reported sent was answered 200
    # A 200 the client did not read in time (its timeout fired first, on a CPU-starved machine) is one of
    # the unknown items (maybe texted), never a sent or not_sent one.
    assert len(answered_200 - sent_ids) <= report.counts["unknown"]
    assert report.counts["rejected"] == report.counts["skipped"] == report.counts["not_sent"] == 0
    assert report.counts["unknown"] > 0
    answered_429 = sum(record["status"] == 429 for record in records)
    # Every 429 the client read was retried, none reported. One it did not read in time (as with a
    # 200 above) ended its item as unknown: the late answers, of either kind, are at most the unknowns.
    assert 0 < report.rate_limited <= answered_429
    assert (answered_429 - report.rate_limited) + len(answered_200 - sent_ids) <= report.counts["unknown"]
    assert all(not record["accepted"] for record in records if record["status"] == 429)


async def test_opting_in_to_retry_unknown_may_text_twice_but_only_what_was_unknown(storage: LocalFileSystem) -> None:
    faults = {"slow": 0.05, "503": 0.05}
    with Sandbox(token=SECRET_TOKEN, faults=faults, fault_effect=0.5, slow_seconds=2.0, seed=9) as sandbox:
        retry = RetryPolicy(retry_unknown=True, backoff=0.01, jitter=0.1)
        report = await send(sandbox.url, bodies(400), storage, retry=retry, timeout=1.0, concurrency=16)
        received = sandbox.received
    assert_one_outcome_each(report, 400)
    by_phone: dict[str, list[Any]] = {}
    for entry in received:
        by_phone.setdefault(entry.body["phone"], []).append(entry)
    twice = [entries for entries in by_phone.values() if sum(entry.accepted for entry in entries) > 1]
    assert twice  # the opt-in has a price: some people were texted twice
    sent_ids = {item.request_id for item in report.items(Outcome.SENT)}
    late = 0
    for entries in twice:  # every extra text came from an attempt whose answer was lost, failed or late
        for entry in entries[:-1]:
            assert entry.request_id not in sent_ids  # an answer the client read is never sent again
            late += entry.fault not in ("slow", "503")
    # An unfaulted answer is late only when the CPU-starved machine kept it past the 1 s timeout: rare.
    assert late <= len(twice) // 2
    assert report.retries > 0


# --- CSV input ------------------------------------------------------------------------------


def test_csv_rows_become_bodies_lazily(tmp_path: Path) -> None:
    path = tmp_path / "callers.csv"
    path.write_text("\ufeffphone,issue_type,priority\n+14155550100,Billing,High\n+14155550101,,Low\n", "utf-8")
    rows = read_requests_csv(path)
    assert iter(rows) is rows  # a generator: nothing is read until asked
    assert list(rows) == [
        {"phone": "+14155550100", "custom_attributes": {"issue_type": "Billing", "priority": "High"}},
        {"phone": "+14155550101", "custom_attributes": {"priority": "Low"}},
    ]
    first = next(read_requests_csv(path, attribute_columns=["priority"]))
    assert first["custom_attributes"] == {"priority": "High"}
    assert count_csv_rows(path) == 2
    with pytest.raises(ValueError, match="no 'mobile' column"):
        next(read_requests_csv(path, phone_column="mobile"))


# --- the Prefect task on a real Prefect server ----------------------------------------------


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="intercom-batch")),
        )
    return {artifact.key: artifact for artifact in found}


def test_the_task_publishes_progress_and_a_capped_table(
    prefect_server: None, sandbox: Sandbox, storage: LocalFileSystem, credentials: IntercomCredentials
) -> None:
    items = [*bodies(30), {"phone": "not a phone"}, {"phone": SMS_FAILS_PHONE}]

    @flow
    def deflect() -> BatchReport:
        return create_phone_call_redirects(credentials, iter(items), ledger_storage=storage, max_table_rows=5)

    state = deflect(return_state=True)
    report = state.result()
    assert report.counts == {"sent": 30, "rejected": 1, "not_sent": 1, "unknown": 0, "skipped": 0}
    assert report.batch_key == f"flow-run-{state.state_details.flow_run_id}/batch-0"
    artifacts = _artifacts(state.state_details.flow_run_id)
    progress, table = artifacts["intercom-batch-progress"], artifacts["intercom-batch-report"]
    assert progress.data == 100.0 and "30 sent" in (progress.description or "")
    rows = json.loads(table.data)
    assert len(rows) == 5 and [row["outcome"] for row in rows[:2]] == ["not_sent", "rejected"]
    assert "| sent | 30 |" in (table.description or "") and "shows 5 of 32" in (table.description or "")
    for artifact in artifacts.values():
        assert SECRET_TOKEN not in f"{artifact.data}{artifact.description}"
        assert phone(3) not in f"{artifact.data}{artifact.description}"


def test_the_task_updates_its_progress_once_at_the_end_then_makes_the_table(
    prefect_server: None,
    sandbox: Sandbox,
    storage: LocalFileSystem,
    credentials: IntercomCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_intercom.batch import tasks

    updates: list[float] = []
    update = tasks.aupdate_progress_artifact

    async def counted(artifact_id: Any, progress: float, *args: Any, **options: Any) -> Any:
        updates.append(progress)
        return await update(artifact_id, progress, *args, **options)

    monkeypatch.setattr(tasks, "aupdate_progress_artifact", counted)

    @flow
    def deflect() -> BatchReport:
        return create_phone_call_redirects(credentials, bodies(3), ledger_storage=storage)

    state = deflect(return_state=True)
    assert state.result().counts["sent"] == 3
    assert updates == [100.0]  # the engine's own last call (total not yet known as expected) is left out
    artifacts = _artifacts(state.state_details.flow_run_id)
    assert artifacts["intercom-batch-progress"].data == 100.0 and "intercom-batch-report" in artifacts


def test_a_stopped_batch_fails_the_task_with_its_report(prefect_server: None, sandbox: Sandbox, storage) -> None:
    credentials = IntercomCredentials(access_token="wrong-token", base_url=sandbox.url)

    @flow
    def deflect() -> BatchReport:
        return create_phone_call_redirects(credentials, bodies(20), ledger_storage=storage)

    state = deflect(return_state=True)
    assert state.is_failed()
    with pytest.raises(BatchStoppedError) as caught:
        state.result()
    assert caught.value.report.counts["not_sent"] == 20 and len(sandbox.received) == 1


_ATTEMPTS: list[int] = []


def _failing_once(count: int, fail_at: int) -> Iterator[dict[str, Any]]:
    for index, body in enumerate(bodies(count)):
        if index == fail_at and len(_ATTEMPTS) == 1:
            raise RuntimeError("the input broke off (first attempt only)")
        yield body


def test_retrying_a_failed_flow_run_does_not_resend(
    prefect_server: None, sandbox: Sandbox, storage: LocalFileSystem, credentials: IntercomCredentials
) -> None:
    _ATTEMPTS.clear()

    @flow(retries=1, retry_delay_seconds=0)
    def deflect() -> BatchReport:
        _ATTEMPTS.append(1)
        return create_phone_call_redirects(credentials, _failing_once(300, 170), ledger_storage=storage)

    report = deflect()
    assert len(_ATTEMPTS) == 2  # the first attempt's batch stopped (BatchStoppedError) when its input broke off
    # The first attempt sent every item it had read (170) before the input broke off.
    assert (report.run, report.counts["sent"], report.counts["skipped"]) == (1, 300 - 170, 170)
    texted = Counter(entry.body["phone"] for entry in sandbox.accepted)
    assert len(texted) == 300 and max(texted.values()) == 1


async def test_the_async_task_in_an_async_flow(
    prefect_server: None, sandbox: Sandbox, storage: LocalFileSystem, credentials: IntercomCredentials
) -> None:
    @flow
    async def deflect() -> BatchReport:
        return await create_phone_call_redirects(credentials, bodies(12), batch_key="async-1", ledger_storage=storage)

    report = await deflect()
    assert report.counts["sent"] == 12 and report.batch_key == "async-1"


async def test_a_failing_item_key_rejects_the_item_without_quoting_its_phone(
    sandbox: Sandbox, storage: LocalFileSystem
) -> None:
    def broken(body: dict[str, Any]) -> Any:
        if body["phone"].endswith("1"):
            raise KeyError(f"no account for {body['phone']}")
        return int(body["phone"][1:])  # not a string

    report = await send(sandbox.url, bodies(2), storage, item_key=broken)
    messages = [item.message or "" for item in report.items()]
    assert [item.outcome for item in report.items()] == [Outcome.REJECTED, Outcome.REJECTED]
    assert "must be a non-empty string" in messages[0] and "KeyError" in messages[1]
    assert not any(phone(index)[1:] in message for index in range(2) for message in messages)
    assert not sandbox.received


async def test_by_default_the_batch_keeps_rate_times_latency_in_flight(storage: LocalFileSystem) -> None:
    """At 300 ms a request, Intercom's 166.7 a second needs about 65 in flight: the default gets there by itself."""
    with Sandbox(token=SECRET_TOKEN, latency=0.3) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
        async with credentials.get_client(retry=RetryPolicy(), pacer=Pacer(), max_connections=100) as client:
            report = await asend_batch(client, bodies(400), batch_key="adaptive", ledger_storage=storage)
    assert report.counts["sent"] == 400
    assert 40 <= report.concurrency <= 100  # the old fixed default was 16


async def test_the_ledger_fits_its_linger_to_the_latency_of_the_batchs_requests(
    storage: LocalFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted: list[float] = []
    fit = BatchLedger.fit_linger

    def spy(ledger: BatchLedger, latency: float) -> None:
        fit(ledger, latency)
        fitted.append(ledger.linger)

    monkeypatch.setattr(BatchLedger, "fit_linger", spy)
    with Sandbox(token=SECRET_TOKEN, latency=0.2) as slow:
        report = await send(slow.url, bodies(12), storage, key="fitted-linger", concurrency=4)
    assert report.counts[Outcome.SENT] == 12 and len(fitted) == 12
    assert 0.0029 <= fitted[-1] <= 0.0045  # 1.5% of 200-300 ms (a slow machine adds to 200 ms; 5 ms at 333 ms and over)
