"""A command answers a configuration or input problem with one sentence and exit code 2 (issue 15, item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from prefect.settings import get_current_settings


def _command(*args: str, api: bool = True) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_LOGGING_LEVEL"}
    if api:
        env["PREFECT_API_URL"] = str(get_current_settings().api.url)
    return subprocess.run(
        [sys.executable, "-m", "prefect_intercom.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )


def test_test_request_with_a_missing_block_is_one_sentence_and_exit_2(prefect_server: None) -> None:
    name = f"nope-{uuid.uuid4().hex[:6]}"
    result = _command("test-request", "--block", name, "--phone", "+14155550100")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and "Traceback" not in result.stderr
    debug = _command("test-request", "--block", name, "--phone", "+14155550100", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr  # tracebacks only when asked for


def test_test_request_with_an_invalid_phone_is_one_sentence_and_exit_2(prefect_server: None) -> None:
    result = _command("test-request", "--block", "intercom", "--phone", "12")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "/phone" in lines[0], result.stderr


def test_version_and_one_spelling_of_block_across_commands() -> None:
    from prefect_intercom import __version__

    version = _command("--version", api=False)
    assert version.returncode == 0 and version.stdout.strip() == f"prefect-intercom {__version__}"
    for command in ("test-request", "deflect-calls"):
        usage = _command(command, "--help", api=False).stdout
        assert "--block NAME" in usage and "--block BLOCK" not in usage, command


def test_the_missing_block_hint_of_deflect_calls_fits_deflect_calls(prefect_server: None, tmp_path) -> None:
    csv_file = tmp_path / "callers.csv"
    csv_file.write_text("phone\n+14155550100\n", encoding="utf-8")
    result = _command("deflect-calls", str(csv_file), "--block", f"nope-{uuid.uuid4().hex[:6]}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "test-request" not in result.stderr and "--sandbox instead of --block" in result.stderr
