"""The deflect_calls flow and the `deflect-calls` command: a CSV in, every row in one outcome, refused rows named."""

from __future__ import annotations

import csv
import importlib.util
import sys
import uuid
from collections import Counter
from pathlib import Path
from types import ModuleType

import fsspec
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.filesystems import LocalFileSystem
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.utilities.callables import parameter_schema

from prefect_intercom import IntercomCredentials
from prefect_intercom.cli import main as prefect_intercom
from prefect_intercom.sandbox import SMS_FAILS_PHONE, Sandbox

from .conftest import PROJECT_ROOT, SECRET_TOKEN, clear_of_window_edge


def _load_flow_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deflect_calls", PROJECT_ROOT / "flows" / "deflect_calls.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["deflect_calls"] = module
    spec.loader.exec_module(module)
    return module


deflect = _load_flow_module()


@pytest.fixture
def callers_csv(tmp_path: Path) -> Path:
    lines = ["phone,issue_type,priority"]
    lines += [f"+1415555{n:04d},Billing,{'High' if n % 2 else 'Low'}" for n in range(40)]
    lines += ["+1 415 555 0199,Billing,High", ",Support,Low", f"{SMS_FAILS_PHONE},Support,Low"]
    path = tmp_path / "callers.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def block_name(prefect_server: None, sandbox: Sandbox) -> str:
    name = f"deflect-{uuid.uuid4().hex[:8]}"
    IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url).save(name, overwrite=True)
    return name


def _report_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _flow_run_count() -> int:
    with get_client(sync_client=True) as client:
        return client.count_flow_runs()


def test_flow_sends_a_csv_and_a_rerun_with_the_batch_key_sends_nothing_twice(
    block_name: str, sandbox: Sandbox, callers_csv: Path, tmp_path: Path
) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path / "results"))
    storage.save(f"results-{uuid.uuid4().hex[:8]}", overwrite=True)
    flow = deflect.deflect_calls.with_options(result_storage=storage)
    key = f"campaign-{uuid.uuid4().hex[:8]}"

    first = flow(csv_path=str(callers_csv), block_name=block_name, batch_key=key, concurrency=4)
    assert first == {"batch_key": key, "sent": 40, "rejected": 2, "not_sent": 1, "unknown": 0, "skipped": 0}
    texted = Counter(entry.body["phone"] for entry in sandbox.accepted)
    assert len(texted) == 40 and max(texted.values()) == 1
    assert sandbox.accepted[0].body["custom_attributes"]["issue_type"] == "Billing"
    ledger_files = list((tmp_path / "results").rglob("record-*"))
    assert ledger_files  # the ledger went to the flow's result storage

    second = flow(csv_path=str(callers_csv), block_name=block_name, batch_key=key, concurrency=4)
    assert second == {"batch_key": key, "sent": 0, "rejected": 2, "not_sent": 1, "unknown": 0, "skipped": 40}
    assert len(sandbox.accepted) == 40
    assert [entry.body["phone"] for entry in sandbox.received].count(SMS_FAILS_PHONE) == 2  # refusals may go again


def test_command_line_against_the_sandbox(prefect_server: None, callers_csv: Path, tmp_path: Path, capsys) -> None:
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "storage"}):
        assert deflect.main([str(callers_csv), "--sandbox", "--concurrency", "4"]) == 0
    out = capsys.readouterr().out
    assert "Done: 40 sent, 2 rejected, 1 not_sent, 0 unknown, 0 skipped" in out and "40 texted a phone" in out
    assert list((tmp_path / "storage").rglob("record-*"))  # the default: Prefect's local result storage


def test_the_command_names_every_refused_row_and_reports_every_row_in_input_order(
    block_name: str, sandbox: Sandbox, callers_csv: Path, tmp_path: Path, capsys
) -> None:
    report = tmp_path / "out" / "report.csv"
    report.parent.mkdir()
    code = prefect_intercom(
        ["deflect-calls", str(callers_csv), "--block", block_name, "--concurrency", "4", "--report", str(report)]
    )
    assert code == 0
    out = capsys.readouterr().out
    # Row numbers as a spreadsheet shows them (header = row 1), phones masked, the reason.
    assert "row 42: +1 415•••0199 rejected: /phone: '+1 415•••0199' is not a phone number in E.164" in out
    assert "row 43: (no phone) rejected: /phone: ''" in out
    assert "row 44: +1500•••0001 not_sent: 400 sms_failed; SMS was not sent" in out
    assert sum(line.startswith("row ") for line in out.splitlines()) == 3  # only the refused rows
    assert "+14155550199" not in out and SMS_FAILS_PHONE not in out and SECRET_TOKEN not in out
    assert "resume" not in out

    rows = _report_rows(report)
    assert list(rows[0]) == ["row", "outcome", "status", "intercom_code", "request_id", "message"]
    assert [row["row"] for row in rows] == [str(n) for n in range(2, 45)]  # one line per input row, in order
    assert Counter(row["outcome"] for row in rows) == {"sent": 40, "rejected": 2, "not_sent": 1}
    assert rows[0]["status"] == "200" and rows[0]["request_id"]
    assert rows[-1] | {"request_id": ""} == {
        "row": "44",
        "outcome": "not_sent",
        "status": "400",
        "intercom_code": "sms_failed",
        "request_id": "",
        "message": "SMS was not sent due to an unknown error",
    }


def test_dry_run_validates_the_whole_file_and_sends_nothing(
    block_name: str, sandbox: Sandbox, callers_csv: Path, tmp_path: Path, capsys
) -> None:
    report = tmp_path / "dry.csv"
    assert prefect_intercom(["deflect-calls", str(callers_csv), "--dry-run", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "row 42: +1 415•••0199 rejected" in out and "row 43: (no phone) rejected" in out
    assert "Done: dry run, nothing sent: 41 valid, 2 rejected, 0 skipped" in out
    assert sandbox.received == []
    rows = _report_rows(report)
    assert len(rows) == 43 and Counter(row["outcome"] for row in rows) == {"not_sent": 41, "rejected": 2}
    assert rows[0]["intercom_code"] == "dry_run"


@pytest.mark.parametrize("block", ["no-such-block", "intercom-credentials/no-such-block"])
def test_a_missing_block_is_one_line_naming_it_exit_2_no_run_and_no_resume_hint(
    prefect_server: None, callers_csv: Path, capsys, block: str
) -> None:
    runs = _flow_run_count()
    assert prefect_intercom(["deflect-calls", str(callers_csv), "--block", block]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("prefect-intercom deflect-calls: No Intercom credentials block named 'no-such-block'")
    assert "Traceback" not in captured.out + captured.err and "--batch-key" not in captured.err
    assert _flow_run_count() == runs  # nothing ran, so nothing was retried


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "cannot read the CSV missing.csv: [Errno 2] No such file or directory"),
        (["{csv}", "--phone-column", "tel"], "no 'tel' column (columns: phone, issue_type, priority)"),
        (["{csv}", "--attribute", "vip"], "no column 'vip'"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line_and_exit_2(
    callers_csv: Path, capsys, args: list[str], message: str
) -> None:
    argv = ["deflect-calls", *(arg.format(csv=callers_csv) for arg in args)]
    assert prefect_intercom(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert message in line


def test_a_run_that_stops_after_sending_names_the_batch_key_to_resume_with(
    prefect_server: None, callers_csv: Path, capsys
) -> None:
    """A rate-limit window two hours away stops the batch after two sends: then, and only then, a resume hint."""
    clear_of_window_edge(7200, margin=120)
    with Sandbox(token=SECRET_TOKEN, rate_limit=2, rate_limit_window=7200) as limited:
        name = f"deflect-{uuid.uuid4().hex[:8]}"
        IntercomCredentials(access_token=SECRET_TOKEN, base_url=limited.url).save(name)
        key = f"campaign-{uuid.uuid4().hex[:8]}"
        code = prefect_intercom(["deflect-calls", str(callers_csv), "--block", name, "--batch-key", key])
    captured = capsys.readouterr()
    assert code == 1
    assert len(limited.accepted) == 2
    assert (
        f"Failed after 2 sent; run the same command again to resume (batch key {key}): nobody is texted twice."
        in captured.err
    )
    assert "Deflect calls failed:" in captured.err


def test_the_csv_and_the_report_may_be_fsspec_urls(prefect_server: None, callers_csv: Path) -> None:
    with fsspec.open("memory://deflect/callers.csv", "w") as handle:
        handle.write(callers_csv.read_text(encoding="utf-8"))
    result = deflect.deflect_calls(
        csv_path="memory://deflect/callers.csv", dry_run=True, report_path="memory://deflect/report.csv"
    )
    assert result == {"batch_key": None, "dry_run": True, "valid": 41, "rejected": 2, "skipped": 0}
    with fsspec.open("memory://deflect/report.csv", "r") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 43 and rows[40]["outcome"] == "rejected"


def test_every_parameter_has_a_title_and_help_in_the_run_form() -> None:
    properties = parameter_schema(deflect.deflect_calls).model_dump()["properties"]
    assert properties["csv_path"]["title"] == "CSV file"
    for name, field in properties.items():
        assert field["title"] != name and field["title"][0].isupper(), name
        assert field.get("description"), name


def test_prefect_yaml_has_a_deflect_calls_deployment_that_loads() -> None:
    from prefect.flows import load_flow_from_entrypoint

    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    [deployment] = [entry for entry in config["deployments"] if entry["name"] == "deflect-calls"]
    flow = load_flow_from_entrypoint(str(PROJECT_ROOT / deployment["entrypoint"]))
    assert flow.name == "deflect-calls"
    parameters = flow.validate_parameters({**deployment["parameters"], "csv_path": "s3://bucket/callers.csv"})
    assert parameters["dry_run"] is False and parameters["block_name"] == "intercom"


def test_the_package_command_lists_its_subcommands_and_refuses_unknown_ones(capsys) -> None:
    assert prefect_intercom([]) == 2
    assert "test-request" in capsys.readouterr().out
    assert prefect_intercom(["send-everything"]) == 2
    assert "unknown command 'send-everything'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        prefect_intercom(["deflect-calls", "--help"])
    assert exited.value.code == 0
    assert "usage: prefect-intercom deflect-calls" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        prefect_intercom(["sandbox", "--help"])
    assert exited.value.code == 0
    assert "usage: prefect-intercom sandbox" in capsys.readouterr().out
