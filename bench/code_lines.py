"""Count the package's code lines: no docstrings, no comments, no blank lines.

`ast` finds the docstrings (module, class, function), `tokenize` the comments; a line counts
when a token other than a comment, a newline or an indent is on it outside a docstring.

Usage:
    python bench/code_lines.py                   # total of prefect_intercom/
    python bench/code_lines.py --each            # one line per module, then the total
    python bench/code_lines.py path [path ...]   # other files or directories
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT})


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def code_lines(path: Path) -> int:
    """The number of lines of `path` that hold code (not a docstring, comment or blank)."""
    text = path.read_text(encoding="utf-8")
    docstrings = _docstring_lines(ast.parse(text))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in SKIP or token.type == tokenize.ENDMARKER:
            continue
        lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docstrings)
    return len(lines)


def main(argv: list[str]) -> None:
    """Print the total code lines of the given paths (default: the package)."""
    each = "--each" in argv
    targets = [Path(a) for a in argv if a != "--each"] or [ROOT / "prefect_intercom"]
    files = sorted(f for t in targets for f in ([t] if t.is_file() else t.rglob("*.py")))
    total = 0
    for path in files:
        count = code_lines(path)
        total += count
        if each:
            print(f"{count:6} {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    print(f"{total} code lines in {len(files)} files")


if __name__ == "__main__":
    main(sys.argv[1:])
