"""The package's house rules: one exceptions module, the version apart, no import cycle, a light import.

These read the package's source with `ast` (and, for what an import loads, a fresh
interpreter), so they hold for whatever modules exist.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import prefect_intercom
from prefect_intercom import errors

PACKAGE_DIR = Path(prefect_intercom.__file__).parent
PACKAGE = "prefect_intercom"

# Build-time and development code that `import prefect_intercom` must not load.
NOT_LOADED_BY_IMPORT = (
    "prefect_intercom.schemagen",
    "prefect_intercom.schemagen.docs_page",
    "prefect_intercom.schemagen.openapi_description",
    "prefect_intercom.sandbox",
    "prefect_intercom.sandbox.process",
)
# The sandbox's web stack: asserted absent unless Prefect itself loads it.
SANDBOX_LIBRARIES = ("starlette", "uvicorn")

# Exceptions that may live outside `errors`: each never leaves its module.
LOCAL_EXCEPTIONS = {
    ("prefect_intercom.flows.deflect_calls_cli", "StartError"),  # the command line turns it into one line, exit 2
    ("prefect_intercom.flows.deflect_calls_cli", "Terminated"),  # SIGTERM as Ctrl-C; main turns it into exit 143
}


def _modules() -> Iterator[tuple[str, Path]]:
    """Every module of the package: its dotted name and its file."""
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join((PACKAGE, *parts)), path


MODULES = dict(_modules())


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is loaded: not in functions, classes or `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _top_level_imports(node.body)
            yield from _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(handler.body for handler in node.handlers)):
                yield from _top_level_imports(block)
        elif isinstance(node, ast.With):
            yield from _top_level_imports(node.body)


def _imported_modules(name: str, path: Path) -> set[str]:
    """The package's modules that module `name` imports when loaded (`prefect_intercom` is the package `__init__`)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            # `from pkg import sub` imports the submodule; `from pkg import Name` runs pkg's `__init__`.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        found.update(target for target in targets if target in MODULES)
    return found


def _import_graph() -> dict[str, set[str]]:
    return {name: _imported_modules(name, path) - {name} for name, path in MODULES.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or `None` when the graph has none."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target in on_stack:
                return [*stack[stack.index(target) :], target]
            if target not in done and (cycle := visit(target)):
                return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def test_importing_the_package_loads_no_generator_parser_or_sandbox_code() -> None:
    script = (
        "import sys, prefect\n"
        f"before = {{m for m in {SANDBOX_LIBRARIES!r} if m in sys.modules}}\n"
        "import prefect_intercom\n"
        f"ours = sorted(m for m in sys.modules if m.startswith({NOT_LOADED_BY_IMPORT!r}))\n"
        f"extra = sorted(m for m in {SANDBOX_LIBRARIES!r} if m in sys.modules and m not in before)\n"
        "print(ours, extra)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)

    assert ran.stdout.strip() == "[] []", ran.stdout + ran.stderr


def test_the_package_has_no_import_cycle() -> None:
    assert _find_cycle(_import_graph()) is None


def test_no_module_of_the_package_imports_the_package_init() -> None:
    importers = sorted(name for name, imported in _import_graph().items() if PACKAGE in imported)

    assert importers == []


def test_the_cycle_check_finds_a_module_importing_a_name_from_the_package_init() -> None:
    graph = _import_graph()
    graph["prefect_intercom.client"] = graph["prefect_intercom.client"] | {
        PACKAGE
    }  # `from prefect_intercom import __version__`

    cycle = _find_cycle(graph)

    assert cycle is not None and PACKAGE in cycle and "prefect_intercom.client" in cycle


def test_the_version_lives_in_its_own_module_that_imports_nothing_of_the_package() -> None:
    from prefect_intercom import _version, client

    assert prefect_intercom.__version__ == _version.__version__
    assert client.USER_AGENT.startswith(f"prefect-intercom/{_version.__version__} ")
    assert _import_graph()["prefect_intercom._version"] == set()


def test_every_public_exception_is_defined_in_the_errors_module() -> None:
    elsewhere = []
    for name, path in MODULES.items():
        if name == "prefect_intercom.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = [ast.unparse(base) for base in node.bases]
            if (
                any(base.endswith(("Error", "Exception")) for base in bases)
                and (name, node.name) not in LOCAL_EXCEPTIONS
            ):
                elsewhere.append(f"{name}.{node.name}")

    assert elsewhere == []


def _handed_on(name: str, path: Path) -> list[str]:
    """Names a module hands on without defining them: `import x as x`, or imported names in its `__all__`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    found = [
        f"{name}.{alias.name} (as itself)"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    ]
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            listed = [item.value for item in getattr(node.value, "elts", []) if isinstance(item, ast.Constant)]
            found += [f"{name}.{listed_name} (in __all__)" for listed_name in listed if listed_name in imported]
    return found


def test_every_public_name_has_one_import_path() -> None:
    """Only the package `__init__`s gather names; no module re-exports what another defines."""
    handed_on = [
        entry for name, path in MODULES.items() if path.name != "__init__.py" for entry in _handed_on(name, path)
    ]

    assert handed_on == []


def test_the_one_path_check_finds_a_re_export(tmp_path: Path) -> None:
    module = tmp_path / "lease.py"
    module.write_text(
        "from prefect_intercom.errors import BatchKeyBusyError, LedgerError as LedgerError\n"
        "__all__ = ['BatchKeyBusyError', 'hold']\n\ndef hold(): ...\n",
        encoding="utf-8",
    )

    assert _handed_on("lease", module) == ["lease.LedgerError (as itself)", "lease.BatchKeyBusyError (in __all__)"]


def test_the_errors_module_docstring_draws_every_exception_it_defines() -> None:
    defined = [
        value.__name__
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == errors.__name__
    ]

    assert errors.__doc__ is not None
    assert [name for name in defined if not re.search(rf"\b{name}\b", errors.__doc__)] == []


def test_every_exception_of_the_package_belongs_to_the_family() -> None:
    defined = [value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, Exception)]

    assert [cls.__name__ for cls in defined if not issubclass(cls, errors.IntercomError)] == []
    assert issubclass(errors.DocsPageError, ValueError)  # as before it joined the family
