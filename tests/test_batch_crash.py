"""A crash costs only what was in flight: SIGKILL a batch in its own process, re-run it, count texts per phone.

The sandbox runs in a process of its own and records every request on arrival, so what it
says was accepted is what people received, whatever happened to the client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from prefect_intercom.sandbox.process import SandboxProcess, sandbox_process

from .conftest import SECRET_TOKEN, clear_of_window_edge

CHILD = Path(__file__).with_name("batch_child.py")
COUNT = 1_000
CONCURRENCY = 50

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_server")]


def phone(index: int) -> str:
    return f"+1415{index:07d}"


def start_batch(url: str, storage: Path, key: str, *extra: str) -> subprocess.Popen[str]:
    from prefect.settings import get_current_settings

    command = [sys.executable, str(CHILD), url, str(storage), key, str(COUNT), "--token", SECRET_TOKEN, *extra]
    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}  # the ledger key lives there
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run_batch(url: str, storage: Path, key: str, *extra: str) -> dict:
    child = start_batch(url, storage, key, *extra)
    out, err = child.communicate(timeout=240)
    assert child.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def received(sandbox: SandboxProcess) -> int:
    return len(sandbox.records())


def kill_when(child: subprocess.Popen[str], condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, child.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the batch never reached the point to kill it at"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.75])
def test_sigkill_while_sending_then_a_rerun_texts_everyone_once_and_only_the_in_flight_are_unknown(
    fraction: float, tmp_path: Path
) -> None:
    storage = tmp_path / "ledger"
    flags = ("--latency", "0.15", "--rate-limit", "1000000", "--rate-limit-window", "1")
    with sandbox_process(*flags, token=SECRET_TOKEN) as sandbox:
        child = start_batch(sandbox.url, storage, "crash", "--concurrency", str(CONCURRENCY), "--no-lock")
        kill_when(child, lambda: received(sandbox) >= COUNT * fraction)
        first = sandbox.accepted_phones()
        rerun = run_batch(sandbox.url, storage, "crash", "--concurrency", str(CONCURRENCY), "--no-lock")
        texted = sandbox.accepted_phones()
    counts, reasons = rerun["counts"], rerun["reasons"]
    assert max(texted.values()) == 1  # zero duplicates
    assert counts["skipped"] + counts["sent"] == COUNT
    # Only what was in flight at the kill is unknown: at most `concurrency`, never a whole chunk.
    unknown = reasons.get("skipped unknown_in_earlier_run", 0)
    assert unknown <= CONCURRENCY
    assert reasons.get("skipped already_sent", 0) + unknown == counts["skipped"]
    assert COUNT - len(texted) <= unknown  # whoever was never texted is one of those in flight
    assert len(first) <= counts["skipped"] <= len(first) + CONCURRENCY


def test_sigkill_while_waiting_for_a_rate_limit_window_leaves_nothing_unknown(tmp_path: Path) -> None:
    storage = tmp_path / "ledger"
    flags = ("--latency", "0.05", "--rate-limit", "60", "--rate-limit-window", "60")
    clear_of_window_edge(60, margin=15)
    with sandbox_process(*flags, token=SECRET_TOKEN) as sandbox:
        child = start_batch(sandbox.url, storage, "window", "--concurrency", "20", "--no-lock")

        def waiting_for_the_window() -> bool:
            before = received(sandbox)
            if before < 60:
                return False
            time.sleep(0.5)  # every answer is back; nothing more goes out until the window resets
            return received(sandbox) == before

        kill_when(child, waiting_for_the_window)
        first = sandbox.accepted_phones()
    port = str(urlsplit(sandbox.url).port)  # the same app: the ledger is per API root
    with sandbox_process("--latency", "0.05", "--port", port, token=SECRET_TOKEN) as fresh:
        rerun = run_batch(fresh.url, storage, "window", "--concurrency", "20", "--no-lock")
        second = fresh.accepted_phones()
    counts = rerun["counts"]
    assert counts["skipped"] == len(first)  # exactly what was texted, all recorded as sent
    assert counts["sent"] == COUNT - len(first) == len(second)
    assert not set(first) & set(second)
    assert Counter({**first, **second}) == Counter({phone(index): 1 for index in range(COUNT)})


def test_two_runs_of_one_batch_key_released_at_the_same_instant_never_both_send(
    prefect_server: None, tmp_path: Path
) -> None:
    from prefect.settings import get_current_settings

    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    storage = tmp_path / "ledger"
    with sandbox_process("--latency", "0.02", token=SECRET_TOKEN) as sandbox:
        for attempt in range(3):
            key = f"race-{attempt}"
            start_at = f"{time.time() + 4:.3f}"  # both children are up and waiting by then
            command = [sys.executable, str(CHILD), sandbox.url, str(storage), key, "200", "--token", SECRET_TOKEN]
            children = [
                subprocess.Popen([*command, "--start-at", start_at], stdout=subprocess.PIPE, text=True, env=env)
                for _ in range(2)
            ]
            results = [json.loads(child.communicate(timeout=120)[0].strip().splitlines()[-1]) for child in children]
            busy = [result for result in results if "busy" in result]
            done = [result for result in results if "counts" in result]
            # One run sent everything; the other was refused at once, naming the key and how to resume.
            if len(done) == 2:  # or ran strictly after the first had finished: then it sent nothing
                assert sorted(result["counts"]["sent"] for result in done) == [0, 200]
            else:
                assert len(busy) == 1 and done[0]["counts"]["sent"] == 200
                assert key in busy[0]["busy"]
        texted = sandbox.accepted_phones()
    assert len(texted) == 200 and set(texted.values()) == {3}  # each phone once per batch key, never twice per key
