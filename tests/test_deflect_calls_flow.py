"""The deflect_calls flow: a CSV in, every row in one outcome, re-runs that text nobody twice."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from prefect.filesystems import LocalFileSystem
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

from prefect_intercom import IntercomCredentials
from prefect_intercom.sandbox import SMS_FAILS_PHONE, Sandbox

from .conftest import PROJECT_ROOT, SECRET_TOKEN


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
    assert "'sent': 40" in out and "40 texted a phone" in out
    assert list((tmp_path / "storage").rglob("record-*"))  # the default: Prefect's local result storage
