"""tests/README.md's map stays current: it names every module of the package, and only test files that exist."""

from __future__ import annotations

import re

from .conftest import PROJECT_ROOT

README = PROJECT_ROOT / "tests" / "README.md"
PACKAGE = PROJECT_ROOT / "prefect_intercom"


def package_modules() -> set[str]:
    """Every module file of the package as a dotted name (`prefect_intercom.batch.ledger`, `....__init__`)."""
    return {".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts) for path in PACKAGE.rglob("*.py")}


def mapped_modules() -> set[str]:
    """The modules the map's rows name (the first cell of each table row)."""
    return set(re.findall(r"^\| `(prefect_intercom(?:\.\w+)*)` \|", README.read_text(), re.MULTILINE))


def test_the_map_names_every_module_of_the_package() -> None:
    missing = sorted(package_modules() - mapped_modules())
    assert not missing, f"tests/README.md has no row for: {missing}"


def test_the_map_names_no_module_that_is_gone() -> None:
    gone = sorted(mapped_modules() - package_modules())
    assert not gone, f"tests/README.md has rows for modules that no longer exist: {gone}"


def test_every_tests_path_the_map_names_exists() -> None:
    paths = set(re.findall(r"`(tests/[^`\s]*)`", README.read_text()))
    assert paths, "tests/README.md names no tests/... path"
    absent = sorted(path for path in paths if not (PROJECT_ROOT / path).exists())
    assert not absent, f"tests/README.md names paths that do not exist: {absent}"
