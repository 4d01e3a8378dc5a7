"""deflect-calls sends typed custom attributes: the header's declarations and the workspace's types (issue 15, item 7).

End to end against the real sandbox over loopback, which records every body it receives and every
`GET /data_attributes`: a `vip:boolean` column arrives as a JSON boolean, a cell not of its type
rejects its row with its row number and column, the dry run refuses the same rows, and the
workspace's types are read exactly once per run.
"""

from __future__ import annotations

import csv
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

from prefect_intercom import IntercomCredentials
from prefect_intercom.cli import main as prefect_intercom
from prefect_intercom.flows.deflect_calls import deflect_calls
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN

WORKSPACE = {"vip": "boolean", "plan": "integer", "zip": "string"}
CALLERS = (
    "phone,vip:boolean,account_id:integer,plan,zip,note\n"
    "+14155550100,true,1001,7,02134,first\n"
    "+14155550101,FALSE,02134,8,02135,second\n"  # row 3: account_id is declared an integer
    "\n"
    "+14155550102,TRUE,17,x,1,\n"  # row 5: plan is an integer in the workspace
    "+14155550103,,,9,,\n"
)


@pytest.fixture
def workspace_sandbox() -> Iterator[Sandbox]:
    with Sandbox(token=SECRET_TOKEN, data_attributes=WORKSPACE) as running:
        yield running


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[None]:
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "storage"}):
        yield


def _block(url: str) -> str:
    name = f"typed-{uuid.uuid4().hex[:8]}"
    IntercomCredentials(access_token=SECRET_TOKEN, base_url=url).save(name, overwrite=True)
    return name


def _csv(tmp_path: Path, text: str = CALLERS) -> str:
    path = tmp_path / "callers.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


REFUSED = [
    "row 3: +1415•••0101 rejected: attribute_type; column 'account_id': '02134' is not an integer (declared in "
    "the header): an integer would lose its leading zero; declare the column account_id:string to keep it",
    "row 5: +1415•••0102 rejected: attribute_type; column 'plan': 'x' is not an integer (the workspace's type): "
    "write whole digits only, e.g. 1001 (no decimal point, exponent or separators)",
]


def test_typed_attributes_arrive_typed_and_a_bad_cell_is_rejected_with_its_row_and_column(
    prefect_server: None, storage: None, workspace_sandbox: Sandbox, tmp_path: Path, capsys
) -> None:
    report = tmp_path / "report.csv"
    block = _block(workspace_sandbox.url)
    assert prefect_intercom(["deflect-calls", _csv(tmp_path), "--block", block, "--report", str(report)]) == 0
    out = capsys.readouterr().out
    for line in REFUSED:
        assert line in out.splitlines(), out
    assert "Done: 2 sent, 2 rejected, 0 not_sent, 0 unknown, 0 skipped" in out
    assert "4155550101" not in out and "4155550102" not in out  # phones masked

    bodies = {entry.body["phone"]: entry.body for entry in workspace_sandbox.received}
    assert set(bodies) == {"+14155550100", "+14155550103"}  # nothing was sent for a refused row
    first = bodies["+14155550100"]["custom_attributes"]
    assert first == {"vip": True, "account_id": 1001, "plan": 7, "zip": "02134", "note": "first"}
    assert first["vip"] is True and type(first["account_id"]) is int  # JSON true and 1001 on the wire
    assert bodies["+14155550103"]["custom_attributes"] == {"plan": 9}  # empty cells are left out
    [read] = workspace_sandbox.reads  # once for the whole batch, not per row
    assert read.path == "/data_attributes?model=contact" and read.status == 200

    with open(report, newline="", encoding="utf-8") as handle:
        rows = {row["row"]: row for row in csv.DictReader(handle)}
    assert rows["3"]["outcome"] == "rejected" and rows["3"]["intercom_code"] == "attribute_type"
    assert rows["3"]["message"].startswith("column 'account_id': '02134' is not an integer")
    assert rows["5"]["outcome"] == "rejected" and rows["6"]["outcome"] == "sent"


def test_the_dry_run_refuses_the_same_rows_and_sends_nothing(
    prefect_server: None, workspace_sandbox: Sandbox, tmp_path: Path, capsys
) -> None:
    block = _block(workspace_sandbox.url)
    assert prefect_intercom(["deflect-calls", _csv(tmp_path), "--block", block, "--dry-run"]) == 0
    out = capsys.readouterr().out
    for line in REFUSED:
        assert line in out.splitlines(), out
    assert "Done: dry run, nothing sent: 2 valid, 2 rejected, 0 skipped" in out
    assert workspace_sandbox.received == [] and len(workspace_sandbox.reads) == 1


def test_without_the_scope_the_declared_types_still_apply_after_one_warning(
    prefect_server: None, storage: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with Sandbox(token=SECRET_TOKEN, data_attributes=WORKSPACE, data_attributes_status=403) as sandbox:
        result = deflect_calls(
            csv_path=_csv(tmp_path), block_name=_block(sandbox.url), batch_key=f"k-{uuid.uuid4().hex[:8]}"
        )
        bodies = {entry.body["phone"]: entry.body for entry in sandbox.received}
        assert len(sandbox.reads) == 1
    assert result["sent"] == 3 and result["rejected"] == 1  # plan 'x' is text now: only row 3 is refused
    assert bodies["+14155550100"]["custom_attributes"]["vip"] is True  # declared in the header
    assert bodies["+14155550100"]["custom_attributes"]["plan"] == "7"  # the workspace's type was not read
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    [warning] = [line for line in warnings if "custom attribute types" in line]
    assert "403" in warning and "read_users_companies scope" in warning and SECRET_TOKEN[:8] not in warning


def test_a_declared_type_the_workspace_contradicts_stops_the_run_before_sending(
    prefect_server: None, storage: None, workspace_sandbox: Sandbox, tmp_path: Path
) -> None:
    path = _csv(tmp_path, "phone,vip:integer\n+14155550100,1\n")
    state = deflect_calls.with_options(retries=0)(
        csv_path=path,
        block_name=_block(workspace_sandbox.url),
        batch_key=f"k-{uuid.uuid4().hex[:8]}",
        return_state=True,
    )
    assert state.is_failed()
    assert (
        "line 1 (the header): column 'vip:integer' declares 'vip' an integer, but the Intercom workspace defines "
        "the custom attribute 'vip' as a boolean" in (state.message or "")
    ), state.message
    assert workspace_sandbox.received == [] and len(workspace_sandbox.reads) == 1


def test_a_type_no_one_knows_is_one_sentence_and_exit_2_before_anything_runs(
    prefect_server: None, workspace_sandbox: Sandbox, tmp_path: Path, capsys
) -> None:
    path = _csv(tmp_path, "phone,vip:bool\n+14155550100,true\n")
    assert prefect_intercom(["deflect-calls", path, "--block", _block(workspace_sandbox.url)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "column 'vip:bool' declares the type 'bool', which is not one of string, integer, float, boolean" in line
    assert workspace_sandbox.received == [] and workspace_sandbox.reads == []
