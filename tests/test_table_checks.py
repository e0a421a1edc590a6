"""What a verb checks of the tables before it acts on them (issue 17): whose tree they are,
whether they are whole, whether both are of one run, and whether they can be read at all.

Every refusal is one line on stderr with exit 2; nothing on disk changes.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers import exit_code, index_quietly, snapshot

import alfcache
from alfcache._exceptions import BadArgument

FILES = [
    "lab1/Subjects/A/2024-01-01/001/alf/x.y.npy",
    "lab1/Subjects/B/2024-01-02/001/alf/x.y.npy",
    "lab1/Subjects/C/2024-01-03/001/alf/x.y.npy",
    "lab1/Subjects/D/2024-01-04/001/alf/x.y.npy",
]


def _index(root: Path, out: Path | None = None, **kwargs: Any) -> None:
    index_quietly(root, out, n_jobs=1, **kwargs)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[object, str]:
    return exit_code([str(a) for a in argv]), capsys.readouterr().err


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.npy"))


@pytest.fixture
def two_trees(tmp_path: Path, make_files: Any) -> tuple[Path, Path]:
    """Tree ``one`` with tables of its own; tree ``two`` holding one more session."""
    one = make_files(tmp_path / "one", FILES[:2])
    two = make_files(tmp_path / "two", FILES)
    _index(one)
    return one, two


# --------------------------------------------------------------------------------------------
# item 3: origin and partial tables
# --------------------------------------------------------------------------------------------


def test_prune_apply_refuses_another_trees_tables(
    two_trees: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = two_trees
    before = _files(two)
    code, err = _cli(capsys, "prune", two, "--tables", one, "--apply")
    assert code == 2
    assert err.count("\n") == 1 and f"were made from {one}, not {two}" in err
    assert "--any-origin" in err
    assert _files(two) == before
    # moved on purpose: the override deletes what those tables lack
    code, err = _cli(capsys, "prune", two, "--tables", one, "--apply", "--any-origin")
    assert code == 0, err
    assert _files(two) == FILES[:2]


def test_remove_missing_datasets_refuses_another_trees_tables(
    two_trees: tuple[Path, Path],
) -> None:
    one, two = two_trees
    for name in ("sessions.pqt", "datasets.pqt"):
        shutil.copy(one / name, two / name)
    before = _files(two)
    with pytest.raises(BadArgument, match="--any-origin"):
        alfcache.remove_missing_datasets(two, dry=False)
    assert _files(two) == before
    # a dry run deletes nothing and is not checked, as ONE-api's
    assert len(alfcache.remove_missing_datasets(two, dry=True)) == 4
    alfcache.remove_missing_datasets(two, dry=False, any_origin=True)
    assert _files(two) == FILES[:2]


def test_verify_refuses_another_trees_tables(
    two_trees: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = two_trees
    code, err = _cli(capsys, "verify", two, "--tables", one, "--quiet")
    assert code == 2
    assert err.count("\n") == 1 and f"were made from {one}, not {two}" in err
    code, err = _cli(capsys, "verify", two, "--tables", one, "--any-origin", "--jobs", "1")
    assert code == 1 and "extra_session" in err


def test_partial_tables_are_refused_even_with_any_origin(
    two_trees: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, two = two_trees
    part = tmp_path / "parts/0"
    _index(two, part, shard=(0, 2))
    before = _files(two)
    for argv in (("prune", "--apply"), ("verify", "--quiet")):
        code, err = _cli(capsys, argv[0], two, "--tables", part, *argv[1:], "--any-origin")
        assert code == 2
        assert err.count("\n") == 1 and "are partial (shard 0/2" in err
        assert "alfcache merge" in err
    assert _files(two) == before


def test_tables_without_an_absolute_origin_are_accepted(
    two_trees: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Alyx's tables name a database, one-api's what it was given: only a folder is checked
    one, two = two_trees
    other = tmp_path / "other"
    other.mkdir()
    for name in ("sessions.pqt", "datasets.pqt"):
        table = pq.read_table(one / name)
        meta = dict(table.schema.metadata)
        meta[b"one_metadata"] = b'{"date_created": "2024-01-01 00:00", "origin": "alyx"}'
        pq.write_table(table.replace_schema_metadata(meta), other / name)
    code, err = _cli(capsys, "prune", two, "--tables", other, "--apply")
    assert code == 0, err
    assert _files(two) == FILES[:2]


def _origin(tables: Path) -> object:
    return json.loads(pq.read_schema(tables / "sessions.pqt").metadata[b"one_metadata"])["origin"]


@pytest.mark.parametrize("shard", [None, (0, 2)], ids=["whole", "shard"])
def test_update_of_a_moved_tree_needs_any_origin(
    tmp_path: Path, make_files: Any, capsys: pytest.CaptureFixture[str], shard: Any
) -> None:
    old, out = make_files(tmp_path / "old", FILES), tmp_path / "out"
    _index(old, out, hash_files=True, shard=shard)
    new = old.rename(tmp_path / "new")  # the lab moved its server's data
    before = snapshot(out)
    where = ["--shard", "0/2"] if shard else []
    code, err = _cli(capsys, "index", new, "--out-dir", out, "--update", *where, "-j", "1", "-q")
    assert code == 2
    assert err.count("\n") == 1 and f"{old}" in err and "--any-origin" in err
    assert snapshot(out) == before
    report = alfcache.index(new, out, n_jobs=1, update=True, shard=shard, any_origin=True)
    assert _origin(out) == str(new)
    # the rows carried over: ids and digests as they were, no file read again
    assert report.hashing is not None and report.hashing.files == 0
    assert report.changes is not None and report.changes.unchanged == report.datasets > 0
    kept = ["eid", "id", "rel_path", "hash"]
    was = pq.read_table(pa.BufferReader(before["datasets.pqt"])).select(kept)
    assert pq.read_table(out / "datasets.pqt").select(kept).equals(was)


def test_any_origin_needs_update(
    two_trees: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    one, _ = two_trees
    with pytest.raises(BadArgument, match="any_origin=True needs update=True"):
        alfcache.index(one, n_jobs=1, any_origin=True)
    code, err = _cli(capsys, "index", one, "--any-origin", "-q")
    assert (
        code == 2
        and err
        == "alfcache: error: --any-origin needs --update: it updates the tables of a moved tree\n"
    )


# --------------------------------------------------------------------------------------------
# item 11: malformed tables
# --------------------------------------------------------------------------------------------

VERBS = [("info",), ("verify", "--quiet"), ("prune",), ("prune", "--apply"), ("index", "--update")]


def _not_utf8(table: pa.Table, column: str) -> pa.Table:
    """``table`` whose first value of ``column`` holds the byte 0xff (pyarrow writes it as is)."""
    index = table.schema.get_field_index(column)
    values = table[column].combine_chunks()
    data = b"alf/x\xff.y.npy"
    offsets = np.array([0, len(data), *[len(data)] * (len(values) - 1)], dtype=np.int32)
    broken = pa.Array.from_buffers(
        pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    return table.set_column(index, table.schema.field(index), broken)


@pytest.mark.parametrize("argv", VERBS, ids=lambda a: " ".join(a))
def test_a_truncated_table_is_one_line_exit_2(
    tmp_path: Path, make_files: Any, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    root = make_files(tmp_path / "data", FILES)
    _index(root)
    table = root / "datasets.pqt"
    table.write_bytes(table.read_bytes()[:200])
    code, err = _cli(capsys, argv[0], root, *argv[1:])
    assert code == 2
    assert err.count("\n") == 1 and f"{table}: Parquet magic bytes not found" in err
    assert _files(root) == FILES


@pytest.mark.parametrize("argv", VERBS, ids=lambda a: " ".join(a))
def test_a_value_that_is_not_utf8_is_reported(
    tmp_path: Path, make_files: Any, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    # verify panicked in Polars, prune raised, info said ONE-api can load the tables and
    # --update carried the row forward
    root = make_files(tmp_path / "data", FILES)
    _index(root)
    table = root / "datasets.pqt"
    pq.write_table(_not_utf8(pq.read_table(table), "rel_path"), table)
    before = table.read_bytes()
    code, err = _cli(capsys, argv[0], root, *argv[1:])
    expected = "datasets.pqt: column 'rel_path' holds a value that is not UTF-8"
    if argv[0] == "info":
        assert code == 1 and "do not meet what ONE-api needs" in err
        assert alfcache.info(root).errors == [
            f"{expected} (In chunk 0: Invalid: Invalid UTF8 sequence at string index 0): "
            "ONE-api fails to load it"
        ]
    else:
        assert code == 2
        assert err.count("\n") == 1 and expected in err
    assert table.read_bytes() == before and _files(root) == FILES


# --------------------------------------------------------------------------------------------
# item 12: a pair of two runs
# --------------------------------------------------------------------------------------------


def _run_id(table: Path) -> object:
    return json.loads(pq.read_schema(table).metadata[b"alfcache"])["run"]


@pytest.fixture
def two_runs(tmp_path: Path, make_files: Any) -> Path:
    """A tree whose sessions.pqt is of a second run, its datasets.pqt of the first, as a run
    killed between its two renames leaves them."""
    root = make_files(tmp_path / "data", FILES)
    _index(root)
    first = root / "datasets.pqt"
    kept = first.read_bytes()
    _index(root)
    assert _run_id(root / "sessions.pqt") == _run_id(first)  # one run, one id
    first.write_bytes(kept)
    assert _run_id(root / "sessions.pqt") != _run_id(first)
    return root


def test_info_reports_a_pair_of_two_runs(two_runs: Path) -> None:
    errors = alfcache.info(two_runs).errors
    assert len(errors) == 1
    assert "sessions.pqt and datasets.pqt were written by two runs" in errors[0]


@pytest.mark.parametrize(
    "argv", [("verify", "--quiet"), ("index", "--update"), ("prune", "--apply")], ids=str
)
def test_verbs_refuse_a_pair_of_two_runs(
    two_runs: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    tables = [(two_runs / n).read_bytes() for n in ("sessions.pqt", "datasets.pqt")]
    code, err = _cli(capsys, argv[0], two_runs, *argv[1:])
    assert code == 2
    assert err.count("\n") == 1 and "were written by two runs" in err
    assert [(two_runs / n).read_bytes() for n in ("sessions.pqt", "datasets.pqt")] == tables


def test_load_tables_warns_of_a_pair_of_two_runs(
    two_runs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # one-api's load_tables does not check: it loads, and says why
    with caplog.at_level(logging.WARNING, logger="alfcache"):
        cache = alfcache.load_tables(two_runs)
    assert len(cache["datasets"]) == len(FILES)
    assert [r.getMessage() for r in caplog.records if "two runs" in r.getMessage()] != []
