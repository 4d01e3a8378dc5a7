"""A command answers a configuration or input problem with one sentence and exit code 2 (issue 15, item 5)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from functools import cache
from pathlib import Path

from prefect.settings import get_current_settings

from prefect_intercom import IntercomCredentials
from prefect_intercom.sandbox import Sandbox


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


@cache
def _help(command: str) -> subprocess.CompletedProcess[str]:
    """`prefect-intercom COMMAND --help`, run once for every test that reads it."""
    return _command(command, "--help", api=False)


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
        usage = _help(command).stdout
        assert "--block NAME" in usage and "--block BLOCK" not in usage, command


def test_the_missing_block_hint_of_deflect_calls_fits_deflect_calls(prefect_server: None, tmp_path) -> None:
    csv_file = tmp_path / "callers.csv"
    csv_file.write_text("phone\n+14155550100\n", encoding="utf-8")
    result = _command("deflect-calls", str(csv_file), "--block", f"nope-{uuid.uuid4().hex[:6]}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "test-request" not in result.stderr and "--sandbox instead of --block" in result.stderr


def _wrong_token_run(sandbox: Sandbox, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    callers = tmp_path / "callers.csv"
    callers.write_text("phone,issue\n" + "".join(f"+1415555{n:04d},x\n" for n in range(300)), encoding="utf-8")
    name = f"wrong-{uuid.uuid4().hex[:6]}"
    IntercomCredentials(access_token="tok_WRONG_0c9e7f1d2b3a4e5f", base_url=sandbox.url).save(name, overwrite=True)
    return _command("deflect-calls", str(callers), "--block", name, "--batch-key", f"k-{uuid.uuid4().hex[:8]}", *extra)


def test_a_wrong_token_in_deflect_calls_is_one_line_naming_the_status_and_the_code_and_nothing_is_sent(
    prefect_server: None, sandbox: Sandbox, tmp_path: Path
) -> None:
    result = _wrong_token_run(sandbox, tmp_path)
    assert result.returncode == 2, result.stderr  # a configuration problem, found before any text
    assert len(sandbox.received) == 0  # the token is refused when the workspace's types are read: no text tried
    assert len(sandbox.reads) == 1
    warnings = [text for text in result.stderr.splitlines() if "| WARNING |" in text]
    assert not warnings, result.stderr
    lines = [text for text in result.stderr.strip().splitlines() if text]
    assert len(lines) == 1, result.stderr  # no INFO lines, no failure records, no traceback: the one line
    [line] = lines
    assert "401 [unauthorized] Access Token Invalid" in line and "nothing was sent" in line, line
    assert "Check the access token" in line
    assert "Traceback" not in result.stdout + result.stderr
    printed = [text for text in result.stdout.splitlines() if text.strip()]
    assert len(printed) == len(set(printed)) and len(printed) <= 3, result.stdout  # no line per row not attempted


def test_a_wrong_token_with_debug_shows_the_tracebacks(prefect_server: None, sandbox: Sandbox, tmp_path: Path) -> None:
    result = _wrong_token_run(sandbox, tmp_path, "--debug")
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert "401 [unauthorized]" in result.stderr.strip().splitlines()[-1]


def _options(usage: str) -> dict[str, str]:
    """Each option of a command's --help and its metavar ('' for a flag), from the options list."""
    found: dict[str, str] = {}
    for line in usage.splitlines():
        for match in re.finditer(r"(?:^|, )(--[a-z][a-z-]*)(?: ([A-Za-z_.=]+))?", line.strip()):
            found.setdefault(match.group(1), match.group(2) or "")
    return found


def test_every_option_shared_by_commands_is_spelled_the_same_in_each_help() -> None:
    commands = ("test-request", "deflect-calls", "sandbox")
    helps = {command: _help(command) for command in commands}
    assert all(result.returncode == 0 for result in helps.values()), {c: r.stderr for c, r in helps.items()}
    options = {command: _options(result.stdout) for command, result in helps.items()}
    for flow_command in ("test-request", "deflect-calls"):  # the commands that run a flow share these
        for option, metavar in {"--block": "NAME", "--sandbox": "", "--dry-run": "", "--debug": ""}.items():
            assert options[flow_command].get(option) == metavar, (flow_command, option, options[flow_command])
    for option in set().union(*options.values()) - {"--help"}:
        spellings = {command: found[option] for command, found in options.items() if option in found}
        assert len(set(spellings.values())) == 1, (option, spellings)
