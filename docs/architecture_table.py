"""The package's rooms, what each may import, and the generated tables of `docs/architecture.md`.

One source for three readers: `docs/architecture.md` (its tables are this script's output),
`tests/test_architecture.py` (holds the package to `MAY_IMPORT` and the doc to `tables()`),
and `bench/import_graph.py` (prints `import_graph()`). It reads the package with `ast` only,
so it works on whatever modules exist, and a new module lands in the strictest room (runtime)
until a stem below says otherwise.

Usage:
    python docs/architecture_table.py          # print the tables
    python docs/architecture_table.py --write  # put them into docs/architecture.md
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "prefect_intercom"
PACKAGE_DIR = ROOT / PACKAGE
DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- begin generated tables: python docs/architecture_table.py --write -->"
END = "<!-- end generated tables -->"

# A module is in the room of the first stem it is, or sits under (`stem.x`), or extends (`stem_x`);
# anything else is runtime (the strictest room).
ROOM_STEMS: list[tuple[str, str]] = [
    ("build", "schemagen"),
    ("build", "codegen"),
    ("build", "build"),
    ("dev", "sandbox"),
    ("dev", "dev"),
    ("dev", "testing"),
    ("flows", "flows"),
    ("flows", "cli"),
    ("batch", "batch"),
]

ROOMS: dict[str, str] = {
    "front": "the package's `__init__`: the public names, nothing else",
    "runtime": "the core every send goes through: credentials, validation, client, responses, retry, hosts, pacing, "
    "the single-send tasks, errors",
    "batch": "many sends in one task run: engine, ledger, report, lease",
    "flows": "the flows, their command lines and reports, on top of the single send and the batch",
    "build": "build-time code generation: docs page and OpenAPI description in, schemas out",
    "dev": "development and test tooling: the sandbox (the `sandbox` extra)",
}

MAY_IMPORT: dict[str, frozenset[str]] = {
    "front": frozenset({"runtime", "batch"}),
    "runtime": frozenset({"runtime"}),
    "batch": frozenset({"runtime", "batch"}),
    "flows": frozenset({"runtime", "batch", "flows", "dev"}),
    "build": frozenset({"runtime", "build"}),
    "dev": frozenset({"runtime", "build", "dev"}),
}

# (importer's room, imported room): allowed only inside a function (an optional extra).
LAZY_ONLY: frozenset[tuple[str, str]] = frozenset({("flows", "dev")})


@dataclass(frozen=True)
class Import:
    """One import of a package module by another, as written in the source.

    Attributes:
        importer: The importing module's dotted name.
        target: The imported module's dotted name (a submodule when `from x import submodule`).
        line: The line of the import statement.
        lazy: Inside a function (runs when called) or under `if TYPE_CHECKING:` (never runs): not when
            the importer is imported. Lazy imports are held to the rooms too.
        names_from_front: `from prefect_intercom import name` where `name` is not a module.
    """

    importer: str
    target: str
    line: int
    lazy: bool
    names_from_front: bool = False


def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package by dotted name (`pkg/__init__.py` is `pkg`), sorted."""
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return dict(sorted(found.items()))


def room_of(module: str) -> str:
    """The room a module lives in (see `ROOM_STEMS`); the package itself is the front."""
    if module == PACKAGE:
        return "front"
    name = module.removeprefix(PACKAGE + ".")
    for room, stem in ROOM_STEMS:
        if name == stem or name.startswith((stem + ".", stem + "_")):
            return room
    return "runtime"


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, modules: set[str]) -> None:
        self.module, self.is_package, self.modules = module, is_package, modules
        self.imports: list[Import] = []
        self._depth = 0

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
        if name == "TYPE_CHECKING":  # annotations only: held to the rooms, but never run (as if lazy)
            self._depth += 1
            for child in node.body:
                self.visit(child)
            self._depth -= 1
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _add(self, target: str, line: int, names_from_front: bool = False) -> None:
        found = Import(self.module, target, line, self._depth > 0, names_from_front)
        if found not in self.imports:  # `from x import a, b` is one import of x
            self.imports.append(found)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                self._add(alias.name, node.lineno, names_from_front=alias.name == PACKAGE)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.module.split(".")
            anchor = anchor if self.is_package else anchor[:-1]
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join(anchor + ([node.module] if node.module else []))
        if base != PACKAGE and not base.startswith(PACKAGE + "."):
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in self.modules:
                self._add(submodule, node.lineno)
            else:
                self._add(base, node.lineno, names_from_front=base == PACKAGE)


def imports_of(module: str, path: Path, modules: set[str]) -> list[Import]:
    """The package imports in one module's source, those under `if TYPE_CHECKING:` as lazy."""
    collector = _Collector(module, path.name == "__init__.py", modules)
    collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return collector.imports


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, list[Import]]:
    """Every module of the package and the package imports it makes, in source order."""
    files = module_files(package_dir)
    return {module: imports_of(module, path, set(files)) for module, path in files.items()}


def violations(graph: dict[str, list[Import]]) -> list[str]:
    """Every import that breaks a rule, one line each: `importer:line -> target (why)`."""
    found: list[str] = []
    for imports in graph.values():
        for item in imports:
            mine, theirs = room_of(item.importer), room_of(item.target)
            where = f"{item.importer}:{item.line} -> {item.target}"
            if item.names_from_front:
                found.append(f"{where} (names from the package's __init__: import them from their module)")
            elif theirs not in MAY_IMPORT[mine]:
                found.append(f"{where} ({mine} may not import {theirs})")
            elif (mine, theirs) in LAZY_ONLY and not item.lazy:
                found.append(f"{where} ({mine} imports {theirs} only inside a function)")
    return found


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Import cycles among imports that run at import time (not in functions), each as a module list."""
    edges = {
        module: sorted({i.target for i in imports if not i.lazy and i.target != module})
        for module, imports in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges.get(module, []):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    return found


def _first_line(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    return docstring.strip().splitlines()[0].replace("|", "\\|") if docstring else "(no docstring)"


def tables(package_dir: Path = PACKAGE_DIR) -> str:
    """The rooms table and the module table (path, lines, room, job) of `docs/architecture.md`."""
    lines = ["| room | what lives there | may import |", "|---|---|---|"]
    for room, job in ROOMS.items():
        allowed = ", ".join(sorted(MAY_IMPORT[room]))
        lazy = [other for mine, other in sorted(LAZY_ONLY) if mine == room]
        note = f" ({', '.join(lazy)} only inside a function)" if lazy else ""
        lines.append(f"| {room} | {job} | {allowed}{note} |")
    lines += ["", "| module | lines | room | its job |", "|---|---:|---|---|"]
    for module, path in module_files(package_dir).items():
        relative = path.relative_to(package_dir.parent).as_posix()
        count = len(path.read_text(encoding="utf-8").splitlines())
        lines.append(f"| `{relative}` | {count} | {room_of(module)} | {_first_line(path)} |")
    return "\n".join(lines) + "\n"


def doc_tables(doc: Path = DOC) -> str:
    """The tables as they stand in the doc, between its markers."""
    text = doc.read_text(encoding="utf-8")
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip("\n") + "\n"


def write(doc: Path = DOC) -> None:
    """Put the generated tables into the doc, between its markers."""
    text = doc.read_text(encoding="utf-8")
    head, tail = text[: text.index(BEGIN) + len(BEGIN)], text[text.index(END) :]
    doc.write_text(f"{head}\n{tables()}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        print(tables(), end="")
