"""The tests that docs/rules.md cites exist, so that the page cannot point at nothing.

The page cites ``test_x.py::test_y``, then ``::test_z`` for more tests of the last file named,
a file alone (``test_loadable.py``), or a test by its name alone (``test_very_deep_tree``).
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
RULES = TESTS.parent / "docs" / "rules.md"

_CITATION = re.compile(r"(?P<file>test_\w+\.py)(?:::(?P<test>test_\w+))?|::(?P<more>test_\w+)")
_BARE = re.compile(r"`(test_\w+)`")


def _defined(file: str) -> set[str]:
    return set(re.findall(r"^def (test_\w+)\(", (TESTS / file).read_text(), flags=re.MULTILINE))


def cited(text: str) -> tuple[set[str], set[tuple[str, str]], set[str]]:
    """The files, (file, test) pairs and bare test names that ``text`` cites."""
    files: set[str] = set()
    tests: set[tuple[str, str]] = set()
    last = None
    for match in _CITATION.finditer(text):
        if match["file"]:
            last = match["file"]
            files.add(last)
        test = match["test"] or match["more"]
        if test:
            assert last is not None, f"::{test} cited before any test file"
            tests.add((last, test))
    return files, tests, set(_BARE.findall(text))


def test_every_test_docs_rules_cites_exists() -> None:
    files, tests, bare = cited(RULES.read_text())
    assert len(tests) > 50, tests  # the parser still finds the citations
    missing_files = sorted(f for f in files if not (TESTS / f).is_file())
    assert not missing_files, f"docs/rules.md cites test files that do not exist: {missing_files}"
    missing = sorted(f"{f}::{t}" for f, t in tests if t not in _defined(f))
    assert not missing, f"docs/rules.md cites tests that do not exist: {missing}"
    everywhere = set().union(*(_defined(p.name) for p in TESTS.glob("test_*.py")))
    assert not bare - everywhere, f"docs/rules.md names tests that do not exist: {bare}"
