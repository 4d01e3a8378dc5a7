"""Events for Automations, read back from a real Prefect server's events API: outcomes and counts, never a phone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.events.worker import EventsWorker
from prefect.filesystems import LocalFileSystem

from prefect_intercom import IntercomCredentials, create_phone_call_redirect, create_phone_call_redirects
from prefect_intercom.sandbox import SMS_FAILS_PHONE, Sandbox

from .conftest import SECRET_TOKEN


def events_of(flow_run_id: Any, prefix: str, expected: int) -> list[Any]:
    """The events named `prefix*` related to the flow run (waits a few seconds for them to be stored)."""
    EventsWorker.drain_all()
    event_filter = EventFilter(
        event=EventNameFilter(prefix=[prefix]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
    )
    deadline = time.monotonic() + 20
    while True:
        with get_client(sync_client=True) as client:
            found = client.read_events(filter=event_filter, limit=50).events
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def test_a_batch_emits_finished_and_unknown_or_not_sent_events_with_counts_and_no_phone(
    prefect_server: None, tmp_path: Path
) -> None:
    with Sandbox(token=SECRET_TOKEN, faults={"503": 1.0}) as failing, Sandbox(token=SECRET_TOKEN) as sandbox:
        bodies = [{"phone": f"+1415555{index:04d}"} for index in range(5)] + [{"phone": SMS_FAILS_PHONE}]

        @flow
        def deflect() -> Any:
            credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
            storage = LocalFileSystem(basepath=str(tmp_path / "ledger"))
            create_phone_call_redirects(credentials, bodies, batch_key="events-1", ledger_storage=storage)
            unknown = IntercomCredentials(access_token=SECRET_TOKEN, base_url=failing.url)
            return create_phone_call_redirects(unknown, bodies[:2], batch_key="events-2", ledger_storage=storage)

        state = deflect(return_state=True)
    found = events_of(state.state_details.flow_run_id, "intercom.batch.", expected=4)
    by_key = {(event.event, event.payload["batch_key"]): event for event in found}
    assert set(by_key) == {
        ("intercom.batch.finished", "events-1"),
        ("intercom.batch.not_sent", "events-1"),
        ("intercom.batch.finished", "events-2"),
        ("intercom.batch.unknown", "events-2"),
    }
    first = by_key["intercom.batch.finished", "events-1"]
    assert first.payload["counts"] == {"sent": 5, "rejected": 0, "not_sent": 1, "unknown": 0, "skipped": 0}
    assert by_key["intercom.batch.unknown", "events-2"].payload["counts"]["unknown"] == 2
    assert first.resource.name == "events-1" and first.resource.id.startswith("intercom.batch.")
    text = " ".join(event.model_dump_json() for event in found)
    assert "5550000" not in text and SMS_FAILS_PHONE[1:] not in text and SECRET_TOKEN[:10] not in text


@pytest.mark.parametrize(
    ("phone", "faults", "outcome"),
    [
        ("+14155550100", {}, "sent"),
        (SMS_FAILS_PHONE, {}, "not_sent"),
        ("+14155550100", {"503": 1.0}, "unknown"),
        ("+1 415 555 0100", {}, "rejected"),
    ],
)
def test_a_single_send_emits_one_event_per_outcome(
    prefect_server: None, phone: str, faults: dict[str, float], outcome: str
) -> None:
    with Sandbox(token=SECRET_TOKEN, faults=faults) as sandbox:

        @flow
        def deflect() -> Any:
            credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
            return create_phone_call_redirect(credentials, phone)

        state = deflect(return_state=True)
    found = events_of(state.state_details.flow_run_id, "intercom.phone_call_redirect.", expected=1)
    assert [event.event for event in found] == [f"intercom.phone_call_redirect.{outcome}"]
    event = found[0]
    assert event.resource.id == "intercom.host.127.0.0.1"
    if outcome in ("sent", "not_sent", "unknown"):
        assert event.payload["status"] == {"sent": 200, "not_sent": 400, "unknown": 503}[outcome]
    text = event.model_dump_json()
    assert "5550100" not in text and SECRET_TOKEN[:10] not in text


def test_the_documented_automation_is_accepted_by_the_server_and_matches_the_batch_event(
    prefect_server: None,
) -> None:
    import importlib.util

    from prefect.automations import Automation
    from prefect.blocks.notifications import SlackWebhook

    SlackWebhook(url="https://hooks.slack.com/services/T000/B000/XXXX").save("intercom-alerts", overwrite=True)
    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "alert_on_unknown.py"
    spec = importlib.util.spec_from_file_location("alert_on_unknown", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    created = module.alert_on_unknown("slack-webhook/intercom-alerts")
    stored = Automation.read(id=created.id)
    assert stored.trigger.expect == {"intercom.batch.unknown"}
    from prefect_intercom.events import EVENT_PREFIX

    assert f"{EVENT_PREFIX}batch.unknown" in stored.trigger.expect
