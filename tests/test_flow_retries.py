"""Flow retries do not resend: on a real Prefect server, counting what the sandbox received per phone."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.filesystems import LocalFileSystem
from prefect.runtime import flow_run as current_flow_run

from prefect_intercom import (
    IntercomAPIError,
    IntercomCredentials,
    PhoneCallRedirect,
    RetryPolicy,
    acreate_phone_call_redirect,
    create_phone_call_redirect,
)
from prefect_intercom.errors import EarlierAttemptUnknownError
from prefect_intercom.idempotency import KEY_PREFIX, MARKER_SUFFIX
from prefect_intercom.privacy import mask_phone
from prefect_intercom.sandbox import SMS_FAILS_PHONE, Sandbox

from .conftest import SECRET_TOKEN

pytestmark = pytest.mark.usefixtures("prefect_server")

PHONE = "+14155550100"
OTHER_PHONE = "+447911123456"


def _fail_the_first_attempt() -> None:
    if current_flow_run.run_count == 1:
        raise RuntimeError("a later step of the flow failed")


def _texts(sandbox: Sandbox) -> Counter[str]:
    return Counter(entry.body["phone"] for entry in sandbox.received)


async def _task_run_state_names(flow_run_id: UUID) -> list[str]:
    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted(run.state.name for run in runs if run.state is not None)


@flow(retries=1, retry_delay_seconds=0)
def send_then_fail(credentials: IntercomCredentials, phone: str, retry_unknown: bool = False) -> PhoneCallRedirect:
    retry = RetryPolicy(retry_unknown=True, max_attempts=1) if retry_unknown else RetryPolicy()
    result = create_phone_call_redirect(credentials, phone, {"issue_type": "Billing"}, retry=retry)
    _fail_the_first_attempt()
    return result


@flow(retries=1, retry_delay_seconds=0)
def send_each_phone_twice(credentials: IntercomCredentials) -> list[PhoneCallRedirect]:
    in_turn = [create_phone_call_redirect(credentials, PHONE) for _ in range(2)]
    submitted = [create_phone_call_redirect.submit(credentials, OTHER_PHONE) for _ in range(2)]
    _fail_the_first_attempt()
    return in_turn + [future.result() for future in submitted]


@flow(retries=1, retry_delay_seconds=0)
async def async_send_twice_then_fail(credentials: IntercomCredentials, phone: str) -> list[PhoneCallRedirect]:
    results = await asyncio.gather(
        acreate_phone_call_redirect(credentials, phone), create_phone_call_redirect(credentials, phone)
    )
    _fail_the_first_attempt()
    return list(results)


@flow(retries=1, retry_delay_seconds=0)
def send_without_memory_then_fail(credentials: IntercomCredentials, phone: str) -> PhoneCallRedirect:
    result = create_phone_call_redirect.with_options(cache_policy=NO_CACHE)(credentials, phone)
    _fail_the_first_attempt()
    return result


@flow(retries=1, retry_delay_seconds=0)
def send_what_the_attempt_says(
    first: IntercomCredentials, second: IntercomCredentials, attributes: list[dict[str, str]]
) -> PhoneCallRedirect:
    attempt = current_flow_run.run_count
    result = create_phone_call_redirect(first if attempt == 1 else second, PHONE, attributes[attempt - 1])
    _fail_the_first_attempt()
    return result


@flow(retries=1, retry_delay_seconds=0)
async def send_cut_off_in_flight(credentials: IntercomCredentials, phone: str) -> PhoneCallRedirect:
    return await acreate_phone_call_redirect.with_options(timeout_seconds=1)(credentials, phone)


def test_a_flow_retry_returns_the_earlier_redirect_and_texts_nobody_again(
    sandbox: Sandbox, credentials: IntercomCredentials
) -> None:
    state = send_then_fail(credentials, PHONE, return_state=True)

    assert state.is_completed()
    result = state.result()
    assert isinstance(result, PhoneCallRedirect)
    assert (result.phone, result.request_id) == (mask_phone(PHONE), sandbox.received[0].request_id)
    assert _texts(sandbox) == {PHONE: 1}
    assert asyncio.run(_task_run_state_names(state.state_details.flow_run_id)) == ["Cached", "Completed"]


def test_the_remembered_send_is_in_the_flows_result_storage_without_the_token(
    sandbox: Sandbox, credentials: IntercomCredentials, tmp_path: Path
) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path / "results"))
    storage.save(f"flow-retries-{uuid.uuid4().hex[:8]}", overwrite=True)

    result = send_then_fail.with_options(result_storage=storage)(credentials, PHONE)

    files = {path.name: path.read_bytes() for path in (tmp_path / "results").iterdir()}
    remembered = [data for name, data in files.items() if name.startswith(KEY_PREFIX) and "." not in name]
    markers = [data for name, data in files.items() if name.endswith(MARKER_SUFFIX)]
    assert len(remembered) == 1 and len(markers) == 1
    assert result.request_id and result.request_id.encode() in remembered[0]  # the search sees the data
    assert PHONE.encode() not in markers[0]
    assert all(
        SECRET_TOKEN.encode() not in data and SECRET_TOKEN.split("_")[-1].encode() not in data
        for data in files.values()
    )


def test_two_deliberate_sends_of_one_phone_text_twice_and_a_retry_resends_neither(
    sandbox: Sandbox, credentials: IntercomCredentials
) -> None:
    results = send_each_phone_twice(credentials)

    assert _texts(sandbox) == {PHONE: 2, OTHER_PHONE: 2}
    assert sorted(result.request_id for result in results) == sorted(entry.request_id for entry in sandbox.received)


async def test_the_async_task_in_an_async_flow_under_gather_is_not_resent(
    sandbox: Sandbox, credentials: IntercomCredentials
) -> None:
    results = await async_send_twice_then_fail(credentials, PHONE)

    assert _texts(sandbox) == {PHONE: 2}
    assert sorted(result.request_id for result in results) == sorted(entry.request_id for entry in sandbox.received)


def test_a_5xx_is_not_remembered_and_the_retry_does_not_guess_it_away() -> None:
    with Sandbox(token=SECRET_TOKEN, faults={"500": 1.0}) as failing:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=failing.url)
        state = send_then_fail(credentials, PHONE, return_state=True)

        assert state.is_failed()
        with pytest.raises(EarlierAttemptUnknownError) as caught:
            state.result()
        assert "status_code=500" in caught.value.earlier
        assert _texts(failing) == {PHONE: 1}  # the person may have been texted once; never twice


def test_with_retry_unknown_a_5xx_is_sent_again_on_the_retry() -> None:
    with Sandbox(token=SECRET_TOKEN, faults={"500": 1.0}) as failing:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=failing.url)
        state = send_then_fail(credentials, PHONE, retry_unknown=True, return_state=True)

        assert state.is_failed()
        assert _texts(failing) == {PHONE: 2}


def test_a_call_refused_with_a_4xx_is_sent_again_on_the_retry(
    sandbox: Sandbox, credentials: IntercomCredentials
) -> None:
    state = send_then_fail(credentials, SMS_FAILS_PHONE, return_state=True)

    with pytest.raises(IntercomAPIError) as caught:
        state.result()
    assert caught.value.status_code == 400
    assert _texts(sandbox) == {SMS_FAILS_PHONE: 2}  # 400 sms_failed: nobody was texted, so the retry tries again


async def test_a_send_cut_off_in_flight_is_not_sent_again_on_the_retry(credentials: IntercomCredentials) -> None:
    with Sandbox(token=SECRET_TOKEN, latency=4.0) as slow:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=slow.url)
        state = await send_cut_off_in_flight(credentials, PHONE, return_state=True)

        with pytest.raises(EarlierAttemptUnknownError) as caught:
            await state.result()
        assert caught.value.earlier == "in flight"
        assert _texts(slow) == {PHONE: 1}


def test_outside_a_flow_every_call_sends(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    first = create_phone_call_redirect(credentials, PHONE)
    second = create_phone_call_redirect(credentials, PHONE)

    assert first.request_id != second.request_id
    assert _texts(sandbox) == {PHONE: 2}


def test_the_opt_out_sends_again_on_the_retry_and_remembers_nothing(
    sandbox: Sandbox, credentials: IntercomCredentials, tmp_path: Path
) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path / "results"))
    storage.save(f"flow-retries-{uuid.uuid4().hex[:8]}", overwrite=True)

    send_without_memory_then_fail.with_options(result_storage=storage)(credentials, PHONE)

    assert _texts(sandbox) == {PHONE: 2}
    assert not list((tmp_path / "results").glob(f"{KEY_PREFIX}*"))


def test_different_custom_attributes_are_different_calls(sandbox: Sandbox, credentials: IntercomCredentials) -> None:
    send_what_the_attempt_says(credentials, credentials, [{"issue_type": "Billing"}, {"issue_type": "Sales"}])

    assert [entry.body["custom_attributes"] for entry in sandbox.received] == [
        {"issue_type": "Billing"},
        {"issue_type": "Sales"},
    ]


def test_the_same_attributes_in_another_order_are_the_same_call(
    sandbox: Sandbox, credentials: IntercomCredentials
) -> None:
    send_what_the_attempt_says(credentials, credentials, [{"a": "1", "b": "2"}, {"b": "2", "a": "1"}])

    assert _texts(sandbox) == {PHONE: 1}


def test_another_intercom_app_on_the_same_host_is_another_call(
    sandbox: Sandbox, credentials: IntercomCredentials
) -> None:
    other_app = IntercomCredentials(access_token="tok_of_another_app", base_url=sandbox.url)

    state = send_what_the_attempt_says(credentials, other_app, [{"a": "1"}, {"a": "1"}], return_state=True)

    assert state.is_failed()  # the sandbox knows only the first app's token: 401
    assert [entry.status for entry in sandbox.received] == [200, 401]
