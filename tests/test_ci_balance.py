"""The list that starts CI's slowest test files first names files that exist (a renamed file drops out of it)."""

from __future__ import annotations

from .conftest import PROJECT_ROOT, SLOWEST_FILES_FIRST


def test_every_file_the_ci_order_names_exists_once() -> None:
    assert len(set(SLOWEST_FILES_FIRST)) == len(SLOWEST_FILES_FIRST)
    missing = [path for path in SLOWEST_FILES_FIRST if not (PROJECT_ROOT / path).is_file()]
    assert missing == [], f"tests/conftest.py SLOWEST_FILES_FIRST names files that are gone: {missing}"
