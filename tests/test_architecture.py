"""The architecture holds: each module imports only what its room may, and the doc's tables are current."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("architecture_table", ROOT / "docs" / "architecture_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


rules = _load_rules()


def _package(root: Path, files: dict[str, str]) -> Path:
    """A toy `prefect_intercom` package under `root`, for showing that the rules catch a breach."""
    for name, text in files.items():
        path = root / "prefect_intercom" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "prefect_intercom"


# --- the package as it is -----------------------------------------------------------------------


def test_every_module_imports_only_what_its_room_may() -> None:
    assert rules.violations(rules.import_graph()) == []


def test_no_module_imports_itself_back_at_import_time() -> None:
    assert rules.cycles(rules.import_graph()) == []


def test_importing_the_package_loads_no_generator_parser_sandbox_or_flow_code() -> None:
    script = (
        "import sys, prefect, prefect.events, prefect.tasks, prefect.blocks.core\n"
        "before = set(sys.modules)\n"
        "import prefect_intercom\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    ours = [name for name in loaded if name == "prefect_intercom" or name.startswith("prefect_intercom.")]
    assert [name for name in ours if rules.room_of(name) in {"build", "dev", "flows"}] == []
    assert [name for name in loaded if name.split(".")[0] in {"starlette", "uvicorn"}] == []


def test_the_docs_tables_are_the_scripts_output() -> None:
    assert rules.doc_tables() == rules.tables(), "run: python docs/architecture_table.py --write"


def test_every_room_says_what_it_may_import() -> None:
    assert set(rules.ROOMS) == set(rules.MAY_IMPORT)
    assert {room for room, _ in rules.ROOM_STEMS} <= set(rules.ROOMS)


# --- the rules catch what they are for ----------------------------------------------------------


def test_a_runtime_module_importing_the_generator_is_a_violation_even_inside_a_function(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": '"""Front."""\n',
            "schemagen.py": '"""Generator."""\nLIMIT = 1\n',
            "validation.py": '"""Runtime."""\n\ndef check():\n    from prefect_intercom.schemagen import LIMIT\n',
        },
    )
    assert rules.violations(rules.import_graph(package)) == [
        "prefect_intercom.validation:4 -> prefect_intercom.schemagen (runtime may not import build)"
    ]


def test_names_from_the_package_init_are_refused_inside_the_package_but_submodules_are_not(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": '"""Front."""\nfrom prefect_intercom.client import Client\n__version__ = "1"\n',
            "log_filter.py": '"""Runtime."""\n',
            "client.py": (
                '"""Runtime."""\nfrom prefect_intercom import __version__, log_filter\nfrom . import log_filter\n'
            ),
        },
    )
    [breach] = rules.violations(rules.import_graph(package))
    assert breach.startswith("prefect_intercom.client:2 -> prefect_intercom (names from the package's __init__")
    assert rules.cycles(rules.import_graph(package)) == [["prefect_intercom", "prefect_intercom.client"]]


def test_batch_importing_flows_and_flows_importing_the_sandbox_at_the_top_are_violations(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": '"""Front."""\n',
            "batch/__init__.py": '"""Batch."""\n',
            "batch/engine.py": '"""Batch."""\nimport prefect_intercom.flows.deflect\n',
            "flows/__init__.py": '"""Flows."""\n',
            "flows/deflect.py": (
                '"""Flows."""\nfrom ..sandbox import app\n\ndef serve():\n    from ..sandbox import app\n'
            ),
            "sandbox/__init__.py": '"""Dev."""\n',
            "sandbox/app.py": '"""Dev."""\n',
        },
    )
    assert rules.violations(rules.import_graph(package)) == [
        "prefect_intercom.batch.engine:2 -> prefect_intercom.flows.deflect (batch may not import flows)",
        "prefect_intercom.flows.deflect:2 -> prefect_intercom.sandbox.app (flows imports dev only inside a function)",
    ]


def test_an_import_for_annotations_only_counts_against_the_rooms_but_makes_no_cycle(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": '"""Front."""\n',
            "batch/__init__.py": '"""Batch."""\n',
            "batch/report.py": '"""Batch."""\nfrom prefect_intercom.errors import Stopped\n',
            "errors.py": (
                '"""Runtime."""\nfrom typing import TYPE_CHECKING\n\n'
                "if TYPE_CHECKING:\n    from prefect_intercom.batch.report import Report\n"
            ),
        },
    )
    graph = rules.import_graph(package)
    assert rules.violations(graph) == [
        "prefect_intercom.errors:5 -> prefect_intercom.batch.report (runtime may not import batch)"
    ]
    assert rules.cycles(graph) == []  # it never runs


def test_a_flow_may_name_the_sandbox_in_annotations(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": '"""Front."""\n',
            "flows/__init__.py": '"""Flows."""\n',
            "flows/block.py": (
                '"""Flows."""\nfrom typing import TYPE_CHECKING\n\n'
                "if TYPE_CHECKING:\n    from prefect_intercom.sandbox import Sandbox\n"
            ),
            "sandbox/__init__.py": '"""Dev."""\n',
        },
    )
    assert rules.violations(rules.import_graph(package)) == []


@pytest.mark.parametrize(
    ("module", "room"),
    [
        ("prefect_intercom", "front"),
        ("prefect_intercom.client", "runtime"),
        ("prefect_intercom.cli", "flows"),
        ("prefect_intercom.sandbox.process", "dev"),
        ("prefect_intercom.sandbox.app", "dev"),
        ("prefect_intercom.codegen.schemagen", "build"),
        ("prefect_intercom.batch.lease", "batch"),
        ("prefect_intercom.schemagen.docs_page", "build"),
        ("prefect_intercom.flows.reports", "flows"),
        ("prefect_intercom.something_new", "runtime"),
    ],
)
def test_a_module_lands_in_the_room_its_name_says_and_a_new_one_in_runtime(module: str, room: str) -> None:
    assert rules.room_of(module) == room
