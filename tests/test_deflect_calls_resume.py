"""The same file is the same campaign: Ctrl-C or SIGTERM, then the same command again, texts nobody twice.

The command runs as users run it, a child process (`python -m prefect_intercom.cli deflect-calls`),
against the sandbox in a process of its own, which counts what each phone received. The child's
SIGINT disposition is reset to the default (a background job of a non-interactive shell starts
with it ignored), as a terminal's is.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem
from prefect.settings import get_current_settings

from prefect_intercom import IntercomCredentials
from prefect_intercom.cli import main as prefect_intercom
from prefect_intercom.flows.deflect_calls import deflect_calls
from prefect_intercom.sandbox.process import SandboxProcess, sandbox_process

from .conftest import SECRET_TOKEN

ROWS = 300
SLOW = ("--latency", "0.05")  # with --concurrency 2: about 40 texts a second, slow enough to interrupt
RESUME = re.compile(
    r"^(Interrupted|Terminated) after (\d+) sent; run the same command again to resume "
    r"\(batch key (campaign-[a-p]{20})\): nobody is texted twice\.$",
    re.MULTILINE,
)
DONE_KEY = re.compile(r"^Done: .* \(batch key (campaign-[a-p]{20})\)$", re.MULTILINE)


def write_callers(path: Path, rows: int = ROWS) -> Path:
    path.write_text("phone,issue_type\n" + "".join(f"+1415{index:07d},Billing\n" for index in range(rows)))
    return path


def child_env(home: Path, api_url: str | None) -> dict[str, str]:
    """The environment of a command-line child: its own Prefect home; the test's server, or a temporary one."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def start_command(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "prefect_intercom.cli", "deflect-calls", *args]
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run_command(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    child = start_command(env, *args)
    out, err = child.communicate(timeout=timeout)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def interrupt_when(
    child: subprocess.Popen[str], sandbox: SandboxProcess, received: int, send: Callable[[], None]
) -> tuple[str, str]:
    """Interrupt the child once the sandbox has received `received` requests; its output once it exits."""
    import time

    deadline = time.monotonic() + 240
    while len(sandbox.records()) < received:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)
    send()
    out, err = child.communicate(timeout=180)
    return out, err


def api_url() -> str:
    return str(get_current_settings().api.url)


def save_block(url: str) -> str:
    name = f"resume-{uuid.uuid4().hex[:8]}"
    IntercomCredentials(access_token=SECRET_TOKEN, base_url=url).save(name)
    return name


# --- the key ---------------------------------------------------------------------------------


def test_the_campaign_key_is_the_content_and_the_app_and_nothing_else() -> None:
    from prefect_intercom.batch.campaign import campaign_key

    content = hashlib.sha256(b"phone\n+14155550100\n").hexdigest()
    key = campaign_key(content, "https://api.intercom.io")
    assert re.fullmatch(r"campaign-[a-p]{20}", key)
    assert campaign_key(content.upper(), "https://api.intercom.io/") == key
    assert campaign_key(hashlib.sha256(b"phone\n+14155550101\n").hexdigest(), "https://api.intercom.io") != key
    assert campaign_key(content, "https://api.eu.intercom.io") != key
    assert campaign_key(content, "https://api.intercom.io", nonce="run-1") not in (
        key,
        campaign_key(content, "https://api.intercom.io", nonce="run-2"),
    )
    from prefect_intercom.batch.engine import check_batch_key

    for number in range(2_000):  # never a digit run the batch key check would take for a phone
        check_batch_key(campaign_key(hashlib.sha256(str(number).encode()).hexdigest(), "https://api.intercom.io"))
    with pytest.raises(ValueError, match="SHA-256"):
        campaign_key("callers.csv", "https://api.intercom.io")


def test_one_pass_counts_the_rows_and_hashes_the_bytes(tmp_path: Path) -> None:
    from prefect_intercom.batch.csv_input import count_csv_rows, scan_csv

    data = '\ufeffphone,note\n+14155550100,"two\nlines"\n+14155550101,x'.encode()
    path = tmp_path / "callers.csv"
    path.write_bytes(data)
    scan = scan_csv(path)
    assert scan.rows == count_csv_rows(path) == 2
    assert scan.sha256 == hashlib.sha256(data).hexdigest()


# --- interrupted, then the same command again --------------------------------------------------


@pytest.mark.e2e
def test_ctrl_c_then_the_same_command_again_texts_everyone_exactly_once(tmp_path: Path) -> None:
    """Ctrl-C as a terminal sends it (to the whole process group), with Prefect's temporary server."""
    env = child_env(tmp_path / "home", api_url=None)
    callers = write_callers(tmp_path / "callers.csv")
    with sandbox_process(*SLOW, token=SECRET_TOKEN) as sandbox:
        saving = f"from prefect_intercom import IntercomCredentials as C; C(access_token={SECRET_TOKEN!r}, "
        saving += f"base_url={sandbox.url!r}).save('intercom')"
        subprocess.run([sys.executable, "-c", saving], env=env, check=True, timeout=300, capture_output=True)
        args = (str(callers), "--block", "intercom", "--concurrency", "2", "--no-progress")
        child = start_command(env, *args)
        _, err = interrupt_when(child, sandbox, 40, lambda: os.killpg(child.pid, signal.SIGINT))
        first = sandbox.accepted_phones()
        again = run_command(env, *args)
        texted = sandbox.accepted_phones()
    assert len(texted) == ROWS and set(texted.values()) == {1}, texted.most_common(3)  # everyone, exactly once
    assert child.returncode == 130, err[-3000:]
    [resume] = RESUME.findall(err)
    assert resume[0] == "Interrupted" and int(resume[1]) == sum(first.values()) < ROWS
    assert "Traceback" not in err
    assert again.returncode == 0, again.stderr[-3000:]
    assert DONE_KEY.findall(again.stdout) == [resume[2]]  # the same campaign, found again
    assert f"skipped (batch key {resume[2]})" in again.stdout


@pytest.mark.e2e
def test_sigterm_then_the_same_command_again_texts_everyone_exactly_once(prefect_server: None, tmp_path: Path) -> None:
    env = child_env(tmp_path / "home", api_url())
    callers = write_callers(tmp_path / "callers.csv")
    with sandbox_process(*SLOW, token=SECRET_TOKEN) as sandbox:
        args = (str(callers), "--block", save_block(sandbox.url), "--concurrency", "2", "--no-progress")
        child = start_command(env, *args)
        _, err = interrupt_when(child, sandbox, 40, lambda: child.send_signal(signal.SIGTERM))
        first = sandbox.accepted_phones()
        again = run_command(env, *args)
        texted = sandbox.accepted_phones()
    assert len(texted) == ROWS and set(texted.values()) == {1}, texted.most_common(3)
    assert child.returncode == 143, err[-3000:]
    [resume] = RESUME.findall(err)
    assert resume[0] == "Terminated" and int(resume[1]) == sum(first.values()) < ROWS
    assert "Traceback" not in err
    assert again.returncode == 0, again.stderr[-3000:]
    assert DONE_KEY.findall(again.stdout) == [resume[2]]


# --- the flow, as deployment runs call it ------------------------------------------------------


@pytest.mark.e2e
def test_two_flow_runs_of_the_same_file_without_a_batch_key_text_everyone_once(
    prefect_server: None, tmp_path: Path
) -> None:
    callers = write_callers(tmp_path / "callers.csv", rows=50)
    storage = LocalFileSystem(basepath=str(tmp_path / "results"))
    storage.save(f"results-{uuid.uuid4().hex[:8]}")
    flow = deflect_calls.with_options(result_storage=storage)
    with sandbox_process(token=SECRET_TOKEN) as sandbox:
        block = save_block(sandbox.url)
        first = flow(csv_path=str(callers), block_name=block, concurrency=4)
        second = flow(csv_path=str(callers), block_name=block, concurrency=4)
        texted = sandbox.accepted_phones()
    assert len(texted) == 50 and set(texted.values()) == {1}, texted.most_common(3)
    assert (first["sent"], second["sent"], second["skipped"]) == (50, 0, 50)
    assert re.fullmatch(r"campaign-[a-p]{20}", first["batch_key"])
    assert second["batch_key"] == first["batch_key"]


# --- sending again on purpose; the ledger's storage ----------------------------------------------


@pytest.mark.e2e
def test_send_again_texts_everyone_again_under_a_new_key_it_prints(prefect_server: None, tmp_path: Path) -> None:
    env = child_env(tmp_path / "home", api_url())
    callers = write_callers(tmp_path / "callers.csv", rows=20)
    with sandbox_process(token=SECRET_TOKEN) as sandbox:
        args = (str(callers), "--block", save_block(sandbox.url), "--no-progress")
        first = run_command(env, *args)
        again = run_command(env, *args, "--send-again")
        [new_key] = re.findall(r"again as a new batch, batch key (campaign-[a-p]{20})", again.stdout)
        resumed = run_command(env, *args, "--batch-key", new_key)
        texted = sandbox.accepted_phones()
    assert (first.returncode, again.returncode, resumed.returncode) == (0, 0, 0), again.stderr[-3000:]
    [old_key] = DONE_KEY.findall(first.stdout)
    assert new_key != old_key and DONE_KEY.findall(again.stdout) == [new_key]
    assert "Done: 20 sent" in again.stdout and "Done: 0 sent" in resumed.stdout
    assert len(texted) == 20 and set(texted.values()) == {2}  # twice on purpose, never a third time


@pytest.mark.e2e
def test_ledger_storage_puts_the_ledger_in_the_named_block(prefect_server: None, tmp_path: Path) -> None:
    env = child_env(tmp_path / "home", api_url())
    env["PREFECT_LOCAL_STORAGE_PATH"] = str(tmp_path / "default-storage")
    callers = write_callers(tmp_path / "callers.csv", rows=10)
    name = f"ledger-{uuid.uuid4().hex[:8]}"
    LocalFileSystem(basepath=str(tmp_path / "shared-ledger")).save(name)
    with sandbox_process(token=SECRET_TOKEN) as sandbox:
        args = (str(callers), "--block", save_block(sandbox.url), "--no-progress")
        done = run_command(env, *args, "--ledger-storage", f"local-file-system/{name}")
        texted = sandbox.accepted_phones()
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(texted) == 10
    assert list((tmp_path / "shared-ledger" / "prefect-intercom-ledger").rglob("record-*"))
    assert not list((tmp_path / "default-storage").rglob("record-*"))


def test_a_missing_ledger_storage_block_is_one_line_and_exit_2_before_anything_is_sent(
    prefect_server: None, tmp_path: Path, capsys
) -> None:
    callers = write_callers(tmp_path / "callers.csv", rows=3)
    with sandbox_process(token=SECRET_TOKEN) as sandbox:
        argv = ["deflect-calls", str(callers), "--block", save_block(sandbox.url)]
        code = prefect_intercom([*argv, "--ledger-storage", "local-file-system/no-such-ledger"])
        received = sandbox.records()
    [line] = capsys.readouterr().err.splitlines()
    assert code == 2 and received == []
    assert "cannot load the ledger storage block 'local-file-system/no-such-ledger'" in line
