"""The import graph runs one way: scripts/import_graph.py finds no cycle and no import up the
order of docs (leaf modules < _alf < _tables < _digest < _walk < _maintain < _index < the public
API < _cli).

"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "import_graph.py"


def _problems() -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(ROOT / "src")],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Problems: "))
    found = {line.strip() for line in lines[start + 1 :]}
    assert int(lines[start].split()[1]) == len(found)
    return done.returncode, found


def test_import_graph_has_no_cycle_and_no_import_up_the_order() -> None:
    code, found = _problems()
    assert found == set()
    assert code == 0


def test_the_script_finds_a_cycle_and_an_import_up_the_order(tmp_path: Path) -> None:
    package = tmp_path / "alfcache"
    (package / "_walk").mkdir(parents=True)
    (package / "_tables").mkdir()
    for init in (package, package / "_walk", package / "_tables"):
        (init / "__init__.py").write_text("")
    (package / "_paths.py").write_text("from alfcache._exceptions import X\n")
    (package / "_exceptions.py").write_text("def f():\n    from alfcache import _paths\n")
    (package / "_tables" / "build.py").write_text("from alfcache._walk.scan import Skip\n")
    (package / "_walk" / "scan.py").write_text("from .._tables import build\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    # At the top or inside a function, absolute or relative: every import counts.
    assert "cycle of modules: _exceptions <-> _paths" in done.stdout
    assert "cycle of modules: _tables.build <-> _walk.scan" in done.stdout
    assert "import up the order: _tables.build -> _walk.scan (_tables < _walk)" in done.stdout
