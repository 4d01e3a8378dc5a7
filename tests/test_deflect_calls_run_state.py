"""A deflect-calls run says who was not texted on the run page: its final state, a summary artifact, WARNING logs."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from prefect_intercom import IntercomCredentials
from prefect_intercom.flows.deflect_calls import deflect_calls
from prefect_intercom.sandbox import SMS_FAILS_PHONE, Sandbox

from .conftest import SECRET_TOKEN


def _csv(tmp_path: Path, phones: list[str]) -> str:
    path = tmp_path / "callers.csv"
    path.write_text("phone,issue_type\n" + "".join(f"{phone},Billing\n" for phone in phones), encoding="utf-8")
    return str(path)


def _block(url: str) -> str:
    name = f"run-state-{uuid.uuid4().hex[:8]}"
    IntercomCredentials(access_token=SECRET_TOKEN, base_url=url).save(name, overwrite=True)
    return name


def _flow_run_artifacts(flow_run_id: uuid.UUID) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_someone_not_texted_is_completed_with_problems_a_summary_artifact_and_warnings(
    prefect_server: None, sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    phones = ["+14155550100", "+14155550101", "+1 415 555 0199", SMS_FAILS_PHONE]
    caplog.set_level(logging.INFO)
    state = deflect_calls(
        csv_path=_csv(tmp_path, phones),
        block_name=_block(sandbox.url),
        batch_key=f"k-{uuid.uuid4().hex[:8]}",
        return_state=True,
    )
    assert state.is_completed() and state.name == "Completed with problems", (state.name, state.message)
    assert "2 not texted" in (state.message or "")
    assert state.result()["sent"] == 2
    with get_client(sync_client=True) as client:
        on_server = client.read_flow_run(state.state_details.flow_run_id).state
    assert on_server.name == "Completed with problems"

    artifacts = _flow_run_artifacts(state.state_details.flow_run_id)
    [summary] = [a for a in artifacts if a.task_run_id is None and a.type == "markdown"]
    assert "row 4 (" in summary.data and "row 5 (" in summary.data  # rows as a spreadsheet shows them
    assert "To resume" in summary.data
    assert "5500001" not in summary.data and "4155550199" not in summary.data  # phones masked

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("1 row(s) not sent: row 5" in line for line in warnings), warnings
    assert any("1 row(s) rejected: row 4" in line for line in warnings), warnings
    assert not any("5500001" in line for line in warnings)


def test_everyone_texted_is_a_plain_completed(prefect_server: None, sandbox: Sandbox, tmp_path: Path) -> None:
    state = deflect_calls(
        csv_path=_csv(tmp_path, ["+14155550100"]),
        block_name=_block(sandbox.url),
        batch_key=f"k-{uuid.uuid4().hex[:8]}",
        return_state=True,
    )
    assert state.is_completed() and state.name == "Completed"
    assert "everyone texted" in (state.message or "")


def test_someone_who_may_have_been_texted_fails_the_run(prefect_server: None, tmp_path: Path) -> None:
    with Sandbox(token=SECRET_TOKEN, faults={"500": 1.0}) as failing:
        state = deflect_calls.with_options(retries=0)(
            csv_path=_csv(tmp_path, ["+14155550100"]),
            block_name=_block(failing.url),
            batch_key=f"k-{uuid.uuid4().hex[:8]}",
            return_state=True,
        )
    assert state.is_failed(), (state.name, state.message)
    assert "1 unknown" in (state.message or "") and "Intercom" in (state.message or "")
    [summary] = [a for a in _flow_run_artifacts(state.state_details.flow_run_id) if a.task_run_id is None]
    assert "May have been texted (unknown)" in summary.data and "row 2 (" in summary.data


def test_someone_who_may_have_been_texted_fails_the_run_without_its_automatic_retry(
    prefect_server: None, tmp_path: Path
) -> None:
    """With the flow's own `retries=1`, as deployed: a retry would end `Completed with problems` (issue 15)."""
    with Sandbox(token=SECRET_TOKEN, faults={"503": 1.0}, fault_effect=1.0) as failing:
        state = deflect_calls(
            csv_path=_csv(tmp_path, ["+14155550100"]),
            block_name=_block(failing.url),
            batch_key=f"k-{uuid.uuid4().hex[:8]}",
            return_state=True,
        )
        posted = failing.received  # reads are kept apart (`failing.reads`)
    assert state.is_failed() and state.name == "Failed", (state.name, state.message)
    assert "1 unknown" in (state.message or "")
    assert len(posted) == 1, posted  # one attempt of the flow run: no retry
    with get_client(sync_client=True) as client:
        on_server = client.read_flow_run(state.state_details.flow_run_id)
    assert (on_server.state.name, on_server.run_count) == ("Failed", 1)


def test_every_row_shown_to_people_is_numbered_as_a_spreadsheet_shows_it(
    prefect_server: None, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The table artifact says `row` (header = row 1), and a duplicate names the row it repeats (issue 15, item 3)."""
    phones = ["+14155550100", "+14155550101", "+14155550100"]
    report = tmp_path / "report.csv"
    state = deflect_calls(
        csv_path=_csv(tmp_path, phones),
        block_name=_block(sandbox.url),
        batch_key=f"k-{uuid.uuid4().hex[:8]}",
        report_path=str(report),
        return_state=True,
    )
    assert state.is_completed()
    [table] = [a for a in _flow_run_artifacts(state.state_details.flow_run_id) if a.type == "table"]
    rows = table.data if isinstance(table.data, list) else __import__("json").loads(table.data)
    assert all("item" not in row for row in rows)
    assert sorted(row["row"] for row in rows) == [2, 3, 4]
    [duplicate] = [row for row in rows if row["outcome"] == "skipped"]
    assert duplicate["row"] == 4 and duplicate["message"] == "same phone as row 2"
    assert "4,skipped,,duplicate_in_batch,,same phone as row 2" in report.read_text(encoding="utf-8")
