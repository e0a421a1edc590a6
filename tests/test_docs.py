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


# --------------------------------------------------------------------------------------------
# the README and the reference pages
# --------------------------------------------------------------------------------------------

REPO = TESTS.parent
README = REPO / "README.md"
PAGES = [
    README,
    REPO / "CHANGELOG.md",
    REPO / "benchmarks" / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
]
_FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (code may hold brackets that are not links)."""
    return _FENCE.sub("", page.read_text())


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces
    as hyphens, a repeated heading numbered (``-1``, ``-2``)."""
    anchors: set[str] = set()
    count: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", _prose(page), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = count.get(slug, 0)
        count[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_every_link_between_the_pages_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in _LINK.findall(_prose(page)):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert len(PAGES) > 8, PAGES  # the reference pages are found
    assert not broken, broken


def test_readme_is_a_first_screen() -> None:
    text = README.read_text()
    # The two commands come first, and both scripts exist.
    first_block = re.search(r"^```\w*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert first_block, "the README has no code block"
    lines = [line.split() for line in first_block[1].splitlines()]
    commands = [words[0] for words in lines if words and not words[0].startswith("#")]
    assert commands[:2] == ["scripts/demo", "scripts/test"], commands
    assert all((REPO / c).is_file() for c in commands[:2])
    # Short, with the reference in docs/ and the benchmark history out of it.
    assert len(text.splitlines()) <= 250, len(text.splitlines())
    assert "bench:begin" not in text
    # Only public API: no private module of the package.
    private = sorted(set(re.findall(r"alfcache\._\w+", text)))
    assert not private, f"the README names private modules: {private}"


def test_bench_writes_its_table_into_the_benchmarks_page() -> None:
    # scripts/bench hands plots.py the page whose one marked block holds the reference table.
    page = REPO / "benchmarks" / "README.md"
    assert page.read_text().count("<!-- bench:begin -->") == 1
    assert page.read_text().count("<!-- bench:end -->") == 1
    assert "plots.py --readme benchmarks/README.md" in (REPO / "scripts" / "bench").read_text()
