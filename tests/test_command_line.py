"""What both command lines share: `--block`/`--sandbox`, one-line answers, text made safe for a terminal."""

from __future__ import annotations

import pytest

from prefect_intercom.errors import IntercomConfigurationError
from prefect_intercom.flows import command_line
from prefect_intercom.flows.command_line import (
    SANDBOX_BLOCK_NAME,
    answer,
    block_problem,
    command_parser,
    parse_command,
    printable,
)


def test_printable_escapes_control_characters() -> None:
    assert printable("a\x1b[2J\x00\u202eb") == "a\\x1b[2J\\x00\\u202eb"


@pytest.mark.parametrize(
    ("argv", "block_name"),
    [([], "intercom"), (["--block", "mine"], "mine"), (["--sandbox"], SANDBOX_BLOCK_NAME)],
)
def test_the_block_a_command_loads(argv: list[str], block_name: str) -> None:
    args = parse_command(command_parser("prog", "A command."), argv)
    assert args.block_name == block_name
    assert args.dry_run is False and args.debug is False


def test_a_usage_error_is_one_line_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_command(command_parser("prog", "A command."), ["--sandbox", "--block", "x\x1b[2J"])
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("prog: error: argument --block: not allowed with argument --sandbox")
    assert line.endswith("(see --help)") and "\x1b" not in line


def test_an_answer_is_one_printable_sentence_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert answer("prog", "no block named 'a\x1b[31m'") == 2
    assert capsys.readouterr().err == "prog: no block named 'a\\x1b[31m'\n"


def test_a_block_that_cannot_be_loaded_is_one_sentence(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def missing(name: str, try_it: str | None) -> None:
        raise IntercomConfigurationError(f"No Intercom credentials block named {name!r}. {try_it}\nmore")

    def broken(name: str, try_it: str | None) -> None:
        raise RuntimeError("the Prefect API is unreachable\nat http://...")

    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")
    monkeypatch.setattr(command_line, "load_credentials", missing)
    assert (
        block_problem("nope", "use --sandbox", debug=False)
        == "No Intercom credentials block named 'nope'. use --sandbox"
    )
    monkeypatch.setattr(command_line, "load_credentials", broken)
    problem = block_problem("nope", None, debug=False)
    assert problem == "cannot load the Intercom credentials block 'nope': the Prefect API is unreachable"
    assert "Traceback" not in capsys.readouterr().err
    block_problem("nope", None, debug=True)
    assert "Traceback" in capsys.readouterr().err  # tracebacks only when asked for


def test_a_loadable_block_is_no_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command_line, "load_credentials", lambda name, try_it: object())
    assert block_problem("intercom", None, debug=False) is None
