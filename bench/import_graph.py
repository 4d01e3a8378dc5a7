"""Print the package's import graph: each module, its room and the package modules it imports.

For the closing note of an architecture change. Reads the sources with `ast` (through
`docs/architecture_table.py`, which also holds the rooms and their rules): imports inside a
function or under `if TYPE_CHECKING:` are marked `(lazy)`. Ends with the
rule breaches and import-time cycles found (none, when the architecture test passes).

Usage:
    python bench/import_graph.py            # module [room] (lines) -> imports
    python bench/import_graph.py --rooms    # room -> rooms, with the number of imports
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("architecture_table", ROOT / "docs" / "architecture_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _short(module: str) -> str:
    return module.removeprefix("prefect_intercom.") if module != "prefect_intercom" else "(front)"


def main() -> None:
    """Print the graph (or the room-to-room summary with `--rooms`), then the breaches and cycles."""
    rules = _rules()
    graph = rules.import_graph()
    files = rules.module_files()
    if "--rooms" in sys.argv[1:]:
        pairs = Counter(
            (rules.room_of(i.importer), rules.room_of(i.target)) for imports in graph.values() for i in imports
        )
        for (mine, theirs), count in sorted(pairs.items()):
            print(f"{mine:8} -> {theirs:8} {count:4}")
    else:
        for module, imports in graph.items():
            lines = len(files[module].read_text(encoding="utf-8").splitlines())
            targets = sorted({_short(i.target) + (" (lazy)" if i.lazy else "") for i in imports})
            print(f"{_short(module)} [{rules.room_of(module)}] ({lines}) -> {', '.join(targets) or '-'}")
    edges = sum(len({i.target for i in imports}) for imports in graph.values())
    print(f"\n{len(graph)} modules, {edges} internal imports")
    print("breaches:", *(rules.violations(graph) or ["none"]), sep="\n  ")
    print("import-time cycles:", *([" -> ".join(c) for c in rules.cycles(graph)] or ["none"]), sep="\n  ")


if __name__ == "__main__":
    main()
