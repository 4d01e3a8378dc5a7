"""`prefect-intercom deflect-calls` refuses bad input and a bad report file before anything is sent (issue 16).

The command runs as a child process against a sandbox in its own process, which counts what was
sent: each refusal is one line of stderr, exit code 2, and the sandbox received nothing.
"""

from __future__ import annotations

import csv
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_intercom.cli import main as prefect_intercom
from prefect_intercom.flows import report_file
from prefect_intercom.sandbox.process import SandboxProcess, sandbox_process

from .conftest import SECRET_TOKEN
from .test_deflect_calls_resume import api_url, child_env, run_command, save_block

GOOD = "phone,issue\n+14155550100,Billing\n+14155550101,Support\n"


@pytest.fixture(scope="module")
def counting_sandbox() -> Iterator[SandboxProcess]:
    """One sandbox in a process of its own for the module; each test looks at what arrived during it."""
    with sandbox_process(token=SECRET_TOKEN) as running:
        yield running


def _refused(
    sandbox: SandboxProcess, tmp_path: Path, csv_text: str | None, *args: str, csv_path: str | None = None
) -> tuple[str, list]:
    """Run the command on a file (or `csv_path`) with `args`: its one stderr line, and what the sandbox received."""
    path = tmp_path / "callers.csv"
    if csv_text is not None:
        path.write_text(csv_text, encoding="utf-8")
    before = len(sandbox.records())
    env = child_env(tmp_path / "home", api_url())
    done = run_command(env, csv_path or str(path), "--block", save_block(sandbox.url), *args, timeout=120)
    received = sandbox.records()[before:]
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "\x1b" not in done.stderr
    return lines[0], received


@pytest.mark.parametrize(
    ("csv_text", "args", "sentence"),
    [
        ("phone,issue,phone\n+14155550100,x,+14155550199\n", (), r"line 1 \(the header\) has 2 columns named like"),
        ("phone,issue, PHONE\n+14155550100,x,+14155550199\n", (), r"line 1 \(the header\) has 2 columns named like"),
        ("mobile,Mobile\n+14155550100,+14155550199\n", ("--phone-column", "mobile"), "2 columns named like 'mobile'"),
        ('phone,issue\n+14155550100,"Billing\n+14155550101,x\n+14155550102,y\n', (), r"line 2: a quoted field starts"),
        ("phone,issue\n+14155550100," + "=" * 70_000 + "\n", (), r"line 2: a field is longer than 64 KiB"),
        ("phone\n" + "1," * 600_000 + "\n", (), r"line 2 is longer than 1024 KiB"),
        ("phone,issue\n+14155550100,\x1b[2J\x00\n", (), r"line 2 holds a NUL byte"),
        (GOOD, ("--concurrency", "0"), r"error: argument --concurrency: 0 is not 1 or more \(see --help\)$"),
        (GOOD, ("--concurrency", "-3"), r"error: argument --concurrency: -3 is not 1 or more"),
    ],
)
def test_bad_input_is_one_sentence_exit_2_and_nothing_is_sent(
    prefect_server: None,
    counting_sandbox: SandboxProcess,
    tmp_path: Path,
    csv_text: str,
    args: tuple[str, ...],
    sentence: str,
) -> None:
    line, received = _refused(counting_sandbox, tmp_path, csv_text, *args)
    assert received == []
    assert pytest.importorskip("re").search(sentence, line), line


def test_a_file_that_never_ends_is_one_sentence(
    prefect_server: None, counting_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    line, received = _refused(counting_sandbox, tmp_path, None, csv_path="/dev/zero")
    assert received == [] and "line 1 is longer than 1024 KiB" in line


@pytest.mark.parametrize("report", ["same", "spelled", "symlink", "directory", "/dev/full", "no-folder"])
def test_a_report_that_cannot_be_written_stops_the_run_before_anything_is_sent(
    prefect_server: None, counting_sandbox: SandboxProcess, tmp_path: Path, report: str
) -> None:
    callers = tmp_path / "callers.csv"
    (tmp_path / "link.csv").symlink_to(callers)
    target = {
        "same": str(callers),
        "spelled": str(tmp_path / "." / "home" / ".." / "callers.csv"),
        "symlink": str(tmp_path / "link.csv"),
        "directory": str(tmp_path),
        "/dev/full": "/dev/full",
        "no-folder": str(tmp_path / "nowhere" / "report.csv"),
    }[report]
    line, received = _refused(counting_sandbox, tmp_path, GOOD, "--report", target)
    assert received == [] and "report" in line
    assert callers.read_text(encoding="utf-8") == GOOD


def test_rows_are_numbered_as_the_file_has_them_on_the_terminal_and_in_the_report(
    prefect_server: None, tmp_path: Path
) -> None:
    callers = tmp_path / "callers.csv"
    callers.write_text("phone,issue\n\n\n+14155550100,x\n\n+1415\x1b[31m5550101,\x1b]0;owned\x07\n", encoding="utf-8")
    report = tmp_path / "report.csv"
    done = run_command(child_env(tmp_path / "home", api_url()), str(callers), "--dry-run", "--report", str(report))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout
    [problem] = [line for line in done.stdout.splitlines() if line.startswith("row ")]
    assert problem.startswith("row 6: ") and "\\x1b" in problem
    with open(report, newline="", encoding="utf-8") as handle:
        assert [row["row"] for row in csv.DictReader(handle)] == ["4", "6"]


def test_a_report_that_fails_after_sending_still_prints_the_counts_and_how_to_resume(
    prefect_server: None, tmp_path: Path, capsys, monkeypatch
) -> None:
    def full(*args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report_file, "write_report_csv", full)
    callers = tmp_path / "callers.csv"
    callers.write_text(GOOD, encoding="utf-8")
    with sandbox_process(token=SECRET_TOKEN) as sandbox:
        argv = ["deflect-calls", str(callers), "--block", save_block(sandbox.url), "--report", str(tmp_path / "r.csv")]
        code = prefect_intercom(argv)
        texted = sum(sandbox.accepted_phones().values())
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and texted == 2
    report = tmp_path / "r.csv"
    assert err[0] == f"Deflect calls failed: cannot write the report {report}: [Errno 28] No space left on device"
    assert err[1].startswith("Rows: 2 sent")
    assert err[2].startswith("Failed after 2 sent; run the same command again to resume (batch key campaign-")
