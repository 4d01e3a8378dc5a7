"""Packaging: a plain (non-editable) install into a fresh virtualenv works from anywhere."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .conftest import PROJECT_ROOT

CHECK = """
import json, pathlib, prefect_intercom
from importlib import resources
from importlib.metadata import entry_points
from prefect_intercom import IntercomCredentials, IntercomValidationError, validate_request
from prefect_intercom.catalog import find

assert "site-packages" in prefect_intercom.__file__, prefect_intercom.__file__
files = sorted(entry.name for entry in resources.files("prefect_intercom.schemas").iterdir())
assert "phone_call_redirects.request.schema.json" in files, files
assert "phone_call_redirects.txt" in files, files
assert (pathlib.Path(prefect_intercom.__file__).parent / "py.typed").exists()
validate_request("phone_call_redirects", {"phone": "+14155550100"})
try:
    validate_request("phone_call_redirects", {"phone": "nope"})
except IntercomValidationError as error:
    assert error.errors[0].path == "/phone"
else:
    raise AssertionError("validation did not fail")
assert find("phone").name == "phone_call_redirects"
assert IntercomCredentials(access_token="x").intercom_version == "2.12"
collections = entry_points(group="prefect.collections")
assert [ep.value for ep in collections if ep.name == "prefect_intercom"] == ["prefect_intercom"]
print("ok", prefect_intercom.__version__)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, as `pip wheel` builds it from the source tree: built once a module."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(PROJECT_ROOT)],
        check=True,
        timeout=300,
    )
    [built] = dist.glob("prefect_intercom-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the package installed from its wheel (with the sandbox extra): built once a module."""
    tmp_path = tmp_path_factory.mktemp("wheel-venv")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    # The wheels `.ci/setup --full` downloaded for the README-route test, when there: the same
    # install without minutes of index look-ups.
    digest = hashlib.sha256((PROJECT_ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    wheels = PROJECT_ROOT / ".ci" / "tools" / "wheelhouse" / digest
    offline = ["--no-index", "--find-links", str(wheels)] if wheels.is_dir() else []
    # uv when the project's virtualenv has it (`.ci/setup` installs it): the same wheel and
    # metadata in seconds, where pip spent about 110 s of a CI run resolving (both byte-compile).
    # The README-route test (tests/e2e/readme_route.py) installs with pip, as the README says.
    uv = Path(sys.executable).with_name("uv")
    # `--compile-bytecode`, as pip does: the commands below would each compile Prefect again.
    installer = [str(uv), "pip", "install", "--compile-bytecode", "--python", str(env_dir / "bin" / "python")]
    if not uv.exists():
        installer = [str(env_dir / "bin" / "python"), "-m", "pip", "install"]
    subprocess.run([*installer, "--quiet", *offline, _wheel_with_extras(wheel)], check=True, cwd=tmp_path, timeout=600)
    return env_dir


@pytest.mark.e2e
def test_the_wheel_installs_into_a_fresh_virtualenv(wheel_venv: Path, tmp_path: Path) -> None:
    python = wheel_venv / "bin" / "python"
    result = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


def test_wheel_contains_the_schemas_and_py_typed(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "prefect_intercom/py.typed",
        "prefect_intercom/schemas/phone_call_redirects.txt",
        "prefect_intercom/schemas/phone_call_redirects.request.schema.json",
        "prefect_intercom/schemas/phone_call_redirects.headers.schema.json",
        "prefect_intercom/schemas/phone_call_redirects.endpoint.json",
    ):
        assert expected in names
    metadata = next(name for name in names if name.endswith("entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "prefect.collections" in entry_points
    assert "[console_scripts]\nprefect-intercom = prefect_intercom.cli:main" in entry_points
    package_dir = PROJECT_ROOT / "prefect_intercom"
    sources = {f"prefect_intercom/{path.relative_to(package_dir).as_posix()}" for path in package_dir.rglob("*.py")}
    sources |= {f"prefect_intercom/schemas/{path.name}" for path in (PROJECT_ROOT / "schemas").glob("*.py")}
    # The generator's inputs too (the docs page and Intercom's OpenAPI descriptions), so that
    # `python -m prefect_intercom.schemagen` over the installed schemas gives the installed files.
    schemas = [path for path in (PROJECT_ROOT / "schemas").iterdir() if path.is_file()]
    inputs = {f"prefect_intercom/schemas/{path.name}" for path in schemas}
    assert inputs - names == set()
    assert "prefect_intercom/schemagen/__main__.py" in sources
    assert sources - names == set(), "modules missing from the wheel: add their package to pyproject.toml"
    shipped = {name for name in names if name.startswith("prefect_intercom/") and name.endswith(".py")}
    assert shipped - sources == set(), "the wheel carries modules the source tree no longer has (a stale build/?)"


def _project() -> dict:
    import tomllib

    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def test_requires_python_is_what_prefect_needs_and_what_is_tested() -> None:
    from importlib.metadata import metadata

    from packaging.specifiers import SpecifierSet

    project = _project()
    ours = SpecifierSet(project["requires-python"])
    prefects = SpecifierSet(metadata("prefect")["Requires-Python"])
    tested = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert tested in ours and tested in prefects
    lowest = min(
        spec.version for spec in prefects if spec.operator in (">=", ">")
    )  # the oldest Python the installed Prefect runs on
    assert str(ours) == f">={lowest}"
    versions = [
        c.rsplit(" :: ", 1)[-1] for c in project["classifiers"] if c.startswith("Programming Language :: Python :: 3.")
    ]
    assert versions == [tested]  # a classifier names only a Python the suite runs on


def test_the_sandbox_dependencies_are_an_extra_the_test_extra_includes() -> None:
    project = _project()
    names = [dependency.split(">")[0].split("[")[0] for dependency in project["dependencies"]]
    assert "starlette" not in names and "uvicorn" not in names
    assert sorted(d.split(">")[0] for d in project["optional-dependencies"]["sandbox"]) == ["starlette", "uvicorn"]
    assert "prefect-intercom[sandbox]" in project["optional-dependencies"]["test"]
    assert any(dependency.startswith("phonenumbers>=") for dependency in project["dependencies"])


def test_without_its_extra_the_sandbox_says_what_to_install() -> None:
    # starlette and uvicorn come with Prefect, so their absence is simulated: once Prefect is
    # imported, a `None` entry in sys.modules makes the sandbox's import fail as if it were missing.
    for missing in ("uvicorn", "starlette.applications"):
        code = f"import sys, prefect_intercom.client; sys.modules[{missing!r}] = None\nimport prefect_intercom.sandbox"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("ImportError: the Intercom sandbox needs starlette and uvicorn"), last
        assert "pip install 'prefect-intercom[sandbox]'" in last and missing in last


def _wheel_with_extras(wheel: Path) -> str:
    """The wheel as a pip requirement, with the `sandbox` extra if the project has one (the sandbox's server)."""
    has_extra = re.search(r"^sandbox\s*=\s*\[", (PROJECT_ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    return f"{wheel}[sandbox]" if has_extra else str(wheel)


@pytest.mark.e2e
def test_the_command_works_from_a_wheel_in_a_fresh_virtualenv_outside_the_repository(
    wheel_venv: Path, tmp_path: Path
) -> None:
    """`prefect-intercom deflect-calls` and `test-request` from a wheel, run in an empty folder, no Prefect set up."""
    env_dir = wheel_venv
    command = env_dir / "bin" / "prefect-intercom"
    assert command.exists()
    work = tmp_path / "somewhere-else"
    work.mkdir()
    (work / "callers.csv").write_text("phone,issue_type\n+14155550100,Billing\n+1 415 555 0199,Support\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PATH=f"{env_dir / 'bin'}:{env.get('PATH', '')}")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"  # its temporary server, on a busy CI machine

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["prefect-intercom", *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )

    listed = run("--help")
    assert listed.returncode == 0 and "deflect-calls" in listed.stdout and "sandbox" in listed.stdout

    dry = run("deflect-calls", "callers.csv", "--dry-run", "--report", "report.csv")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "row 3: +1 415•••0199 rejected" in dry.stdout
    assert "Done: dry run, nothing sent: 1 valid, 1 rejected, 0 skipped" in dry.stdout
    assert "Traceback" not in dry.stderr  # no telemetry noise offline
    with open(work / "report.csv", newline="", encoding="utf-8") as handle:
        assert [row["outcome"] for row in csv.DictReader(handle)] == ["not_sent", "rejected"]

    missing = run("deflect-calls", "callers.csv", "--block", "nope")
    assert missing.returncode == 2 and "No Intercom credentials block named 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr

    sent = run("test-request", "--sandbox", "--phone", "+14155550100")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "**200 OK**" in sent.stdout and "Test request completed" in sent.stdout
    assert "usage: prefect-intercom test-request" in run("test-request", "--help").stdout
    assert "usage: prefect-intercom sandbox" in run("sandbox", "--help").stdout


DEPLOY_LOAD = """
import sys
from prefect.flows import load_flow_from_entrypoint
import prefect_intercom
names = [load_flow_from_entrypoint(entrypoint).name for entrypoint in sys.argv[1:]]
print(prefect_intercom.__file__)
print(" ".join(names))
"""


@pytest.mark.e2e
def test_prefect_loads_the_entrypoints_from_a_checkout_over_a_non_editable_install(wheel_venv: Path) -> None:
    """`prefect deploy --all` from the checkout after `pip install '.[sandbox]'` (issue 15, item 1).

    Prefect loads `flows/test_request.py` with the working directory first on `sys.path`, so the
    checkout's `prefect_intercom/` shadows the installed one; it has no `prefect_intercom.schemas`
    package, and the schemas must be found in the checkout's `schemas/` folder.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)  # the checkout first, as `prefect deploy` run from it has it
    result = subprocess.run(
        [
            str(wheel_venv / "bin" / "python"),
            "-c",
            DEPLOY_LOAD,
            "flows/test_request.py:test_request",
            "flows/deflect_calls.py:deflect_calls",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    where, names = result.stdout.strip().splitlines()[-2:]
    assert where.startswith(str(PROJECT_ROOT / "prefect_intercom")), where  # the checkout's code really ran
    assert names == "test-request deflect-calls"
