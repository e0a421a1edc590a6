"""Each fact of the tables has one home (issue 20): the session folder, the import direction.

The session folder is one rule in two forms (:mod:`alfcache._alf.paths`): the Python function
prune and update use and the Polars expression the builder and verify use must agree. The
tables (``alfcache._tables``) sit below the maintenance verbs and never import them.
"""

from __future__ import annotations

import ast
import datetime
from pathlib import Path

import polars as pl
import pytest

import alfcache
from alfcache._alf.paths import padded, session_folder, session_folder_expr

PACKAGE = Path(alfcache.__file__).parent

# (lab, subject, date, number, folder with the number as written, folder ONE-api rebuilds)
PARTS = [
    ("lab", "s1", "2021-01-01", "001", "lab/Subjects/s1/2021-01-01/001", None),
    (
        "lab",
        "s1",
        "2021-01-01",
        "1",
        "lab/Subjects/s1/2021-01-01/1",
        "lab/Subjects/s1/2021-01-01/001",
    ),
    ("", "s.1-a", "2021-01-01", "01", "s.1-a/2021-01-01/01", "s.1-a/2021-01-01/001"),
    ("cortexlab", "KS022", "2019-12-10", "999", "cortexlab/Subjects/KS022/2019-12-10/999", None),
]


@pytest.mark.parametrize(("lab", "subject", "date", "number", "written", "rebuilt"), PARTS)
def test_session_folder_python_and_polars_agree(
    lab: str, subject: str, date: str, number: str, written: str, rebuilt: str | None
) -> None:
    rebuilt = rebuilt or written
    assert session_folder(lab, subject, date, number) == written
    assert session_folder(lab, subject, datetime.date.fromisoformat(date), int(number)) == rebuilt
    frame = pl.DataFrame(
        {"lab": [lab], "subject": [subject], "date": [date], "number": [number]}
    ).with_columns(day=pl.col("date").str.to_date(), num=pl.col("number").cast(pl.Int64))
    as_written = frame.select(session_folder_expr(pl.col("number"))).item()
    assert as_written == written
    # verify's frames hold a Date and an integer number: the folder ONE-api rebuilds
    dated = frame.with_columns(date=pl.col("day"))
    assert dated.select(session_folder_expr(padded(pl.col("num")))).item() == rebuilt


def _imports(path: Path) -> set[str]:
    """The ``alfcache`` modules ``path`` imports (at any level of the module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("alfcache")}


@pytest.mark.parametrize("path", sorted((PACKAGE / "_tables").glob("*.py")), ids=lambda p: p.name)
def test_tables_never_import_the_maintenance_verbs(path: Path) -> None:
    assert not {n for n in _imports(path) if n.startswith("alfcache._maintain")}
