"""The README's deployment steps as written, run from a fresh `git clone` (issue 15, item 1).

The steps are read from README.md's section `SECTION` (its `bash` blocks), so the test and the
README cannot drift apart. Each line runs with `bash -c` in the clone, with a fresh virtualenv's
`bin` first on PATH (as an activated virtualenv has it) and a fresh `PREFECT_HOME`. What the test
changes, and nothing else:

- the README's ports (4200, 8090) become free loopback ports;
- `pip install` gets `--no-index --find-links <wheelhouse> --no-compile`: the same install from
  wheels downloaded once (`.ci/setup --full`, or here on first use) instead of minutes of index
  look-ups per run;
- `prefect server start` is not run: the browser test's server (same Prefect, own PREFECT_HOME,
  127.0.0.1) stands in for it, so the UI checks see these deployments' runs;
- lines the README runs "in its own terminal" run in the background until the module ends.

The `prefect deployment run` lines are the test's own step (`ReadmeRoute.run_commands`).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import venv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SECTION = "## Deployments: a work pool and a worker"
README_API_PORT = "4200"
README_SANDBOX_PORT = "8090"
STEP_SECONDS = 600  # a generous bound on one command (the install on a loaded machine), not a timing assertion
_COMMENT = re.compile(r"\s{2,}#\s?(?P<comment>.*)$")


@dataclass(frozen=True)
class Step:
    """One README command line."""

    command: str
    comment: str

    @property
    def background(self) -> bool:
        """Whether the README runs it in its own terminal (a server, a worker, the sandbox)."""
        return "own terminal" in self.comment


def readme_steps(readme: str) -> list[Step]:
    """Every command line of the README's deployment section, in order, without its trailing comment."""
    if SECTION not in readme:
        raise AssertionError(f"README.md has no section {SECTION!r}")
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    steps = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            found = _COMMENT.search(line)
            command = line[: found.start()] if found else line
            if command.strip():
                steps.append(Step(command.strip(), found.group("comment") if found else ""))
    return steps


def wheelhouse(project_root: Path) -> Path:
    """Wheels of the package's dependencies (and the build backend), downloaded once per pyproject.toml.

    `.ci/setup --full` fills the same folder (`.ci/tools/wheelhouse/<sha256 of pyproject.toml, 12 digits>`);
    without it, the first run downloads them here (a minute or two).
    """
    digest = hashlib.sha256((project_root / "pyproject.toml").read_bytes()).hexdigest()[:12]
    path = project_root / ".ci" / "tools" / "wheelhouse" / digest
    if not path.is_dir():
        partial = path.with_name(f"{digest}.{os.getpid()}.partial")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "-d", str(partial), ".[sandbox]", "setuptools>=77"],
            cwd=project_root,
            check=True,
            timeout=STEP_SECONDS,
        )
        try:
            partial.rename(path)
        except OSError:  # another test process finished first: use its copy
            pass
    return path


Starter = Callable[[str, list[str], Path, dict[str, str]], subprocess.Popen[bytes]]
"""Starts a background process (name, command, cwd, env) and stops it with the stack."""


@dataclass
class ReadmeRoute:
    """A fresh clone and virtualenv, set up by the README's deployment steps against a running server."""

    project_root: Path
    base: Path
    api_port: int
    sandbox_port: int
    logs: Path
    clone: Path = field(init=False)
    venv: Path = field(init=False)
    home: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    run_commands: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clone = self.base / "prefect-intercom"
        self.venv = self.base / "venv"
        self.home = self.base / "prefect-home"
        self.home.mkdir(parents=True)
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PREFECT_") and key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
        }
        project_bin = str(Path(sys.executable).parent)
        path = [entry for entry in inherited.get("PATH", "").split(os.pathsep) if entry and entry != project_bin]
        self.env = {
            **inherited,
            "PATH": os.pathsep.join([str(self.venv / "bin"), *path]),
            "VIRTUAL_ENV": str(self.venv),
            "PREFECT_HOME": str(self.home),
            # The worker looks for work every second (default 10 s), as docs/deployments.md says the tests do.
            "PREFECT_WORKER_QUERY_SECONDS": "1",
        }

    @property
    def sandbox_url(self) -> str:
        """The README's sandbox, on its free port."""
        return f"http://127.0.0.1:{self.sandbox_port}"

    def substitute(self, command: str, wheels: Path) -> str:
        """The README's command with the test's ports and the wheelhouse (see the module docstring)."""
        command = command.replace(f"127.0.0.1:{README_API_PORT}", f"127.0.0.1:{self.api_port}")
        command = command.replace(f"127.0.0.1:{README_SANDBOX_PORT}", f"127.0.0.1:{self.sandbox_port}")
        command = command.replace(f"--port {README_SANDBOX_PORT}", f"--port {self.sandbox_port}")
        if command.startswith("pip install "):
            command = command.replace(
                "pip install ", f"pip install --no-index --find-links {wheels} --no-compile --quiet ", 1
            )
        return command

    def set_up(self, start: Starter, server_ready: Callable[[], None]) -> None:
        """Clone, make the virtualenv, then every README step but the server and the runs.

        Args:
            start: Starts a background step (see `Starter`).
            server_ready: Returns once the Prefect server answers: the install runs before, the rest after.
        """
        started = time.monotonic()
        wheels = wheelhouse(self.project_root)
        self.timings["wheelhouse"] = round(time.monotonic() - started, 1)
        self._timed(
            "git clone",
            lambda: subprocess.run(
                ["git", "clone", "--quiet", str(self.project_root), str(self.clone)],
                check=True,
                capture_output=True,
                timeout=STEP_SECONDS,
            ),
        )
        self._timed("venv", lambda: venv.create(self.venv, with_pip=True))
        steps = readme_steps((self.clone / "README.md").read_text(encoding="utf-8"))  # the clone's own README
        for number, step in enumerate(steps, 1):
            if step.command.startswith("prefect server start"):
                self.skipped.append(step.command)
                continue
            command = self.substitute(step.command, wheels)
            if not step.command.startswith("pip install"):
                server_ready()
            if step.command.startswith("prefect deployment run"):
                self.run_commands.append(command)
            elif step.background:
                start(f"readme-{number:02d}", ["bash", "-c", command], self.clone, self.env)
            else:
                self._timed(step.command[:40], lambda command=command, number=number: self.run(command, number))

    def run(self, command: str, number: int) -> str:
        """Run one command in the clone; its output goes to `logs/readme-NN.log` and is returned."""
        return self.run_together([command], number)[0]

    def run_together(self, commands: list[str], first_number: int) -> list[str]:
        """Run commands at the same time (as in two terminals), each in the clone; their outputs, in order."""
        logs = [self.logs / f"readme-{number:02d}.log" for number in range(first_number, first_number + len(commands))]
        processes = []
        for command, log in zip(commands, logs, strict=True):
            log.write_text(f"$ {command}\n", encoding="utf-8")
            with log.open("a", encoding="utf-8") as output:
                processes.append(
                    subprocess.Popen(
                        ["bash", "-c", command], cwd=self.clone, env=self.env, stdout=output, stderr=subprocess.STDOUT
                    )
                )
        outputs = []
        for command, log, process in zip(commands, logs, processes, strict=True):
            returncode = process.wait(timeout=STEP_SECONDS)
            output = log.read_text(encoding="utf-8")
            if returncode != 0:
                raise AssertionError(f"README step failed ({returncode}): {command}\n{output[-4000:]}")
            outputs.append(output)
        return outputs

    def _timed(self, name: str, action: Callable[[], object]) -> None:
        started = time.monotonic()
        action()
        self.timings[name] = round(time.monotonic() - started, 1)
