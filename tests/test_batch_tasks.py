"""The batch as Prefect tasks (`prefect_intercom.batch.tasks`): default batch keys per flow run attempt."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.filesystems import LocalFileSystem

from prefect_intercom import IntercomCredentials, create_phone_call_redirects
from prefect_intercom.batch import default_batch_key
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN


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


def test_default_keys_number_the_calls_of_a_flow_run_attempt_and_restart_with_each_attempt(
    prefect_server: None,
) -> None:
    attempts: list[list[str]] = []

    @flow(retries=1, retry_delay_seconds=0)
    def numbered() -> None:
        attempts.append([default_batch_key() for _ in range(3)])
        if len(attempts) == 1:
            raise RuntimeError("fail the first attempt")

    numbered()
    first, retry = attempts
    assert [key.rsplit("/", 1)[1] for key in first] == ["batch-0", "batch-1", "batch-2"]
    assert retry == first and first[0].startswith("flow-run-")
