"""``alfcache info`` and ``alfcache prune``, run as a user runs them (exit codes, ``--json``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers import exit_code, forbid_uuids, index_quietly

import alfcache
from alfcache.synth import LABS, TreeSummary, make_tree

SESSION = "cortexlab/Subjects/SW0000/2024-01-01/001"


def _index(root: Path, out: Path | None = None, **kwargs: Any) -> None:
    index_quietly(root, out, n_jobs=1, **kwargs)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int | str | None, str, str]:
    code = exit_code(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tree(tmp_path: Path) -> TreeSummary:
    return make_tree(tmp_path / "data", 6, empty_every=0, no_lab_every=3, max_file_size=256)


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def test_info_of_alfcache_tables(tree: TreeSummary, capsys: pytest.CaptureFixture[str]) -> None:
    _index(tree.root, hash_algorithm="both")
    code, out, _ = _cli(capsys, "info", str(tree.root), "--json")
    summary = json.loads(out)
    assert code == 0
    on_disk = pq.read_table(tree.root / "sessions.pqt").to_pylist()
    assert summary["sessions"] == tree.sessions == len(on_disk)
    assert summary["datasets"] == tree.datasets
    assert summary["bytes"] == tree.bytes
    assert summary["missing_datasets"] == 0
    assert summary["labs"] == sorted({s["lab"] for s in on_disk if s["lab"]})
    assert set(summary["labs"]) <= set(LABS)
    assert summary["subjects"] == len({s["subject"] for s in on_disk})
    assert summary["first_date"] == str(min(s["date"] for s in on_disk))
    assert summary["last_date"] == str(max(s["date"] for s in on_disk))
    assert summary["origin"] == str(tree.root.resolve())
    assert summary["created"] is not None
    assert summary["id_kind"] == "uuid3"
    assert summary["digests"] == ["md5", "xxh3"]
    assert summary["alfcache_version"] == alfcache.__version__
    assert summary["options"]["hash_algorithm"] == "both"
    assert summary["one_api"] == {"ok": True, "errors": [], "warnings": []}


def test_info_bytes_leave_out_kept_missing_rows(
    tree: TreeSummary, capsys: pytest.CaptureFixture[str]
) -> None:
    _index(tree.root)
    datasets = pq.read_table(tree.root / "datasets.pqt").to_pylist()
    gone = [d for d in datasets if d["file_size"]][:2]
    session = {s["id"]: s for s in pq.read_table(tree.root / "sessions.pqt").to_pylist()}
    for row in gone:
        s = session[row["eid"]]
        folder = "/".join(
            p for p in (s["lab"] and f"{s['lab']}/Subjects", s["subject"], str(s["date"])) if p
        )
        (tree.root / folder / f"{s['number']:03d}" / row["rel_path"]).unlink()
    _index(tree.root, update=True, keep_missing=True)
    code, out, _ = _cli(capsys, "info", str(tree.root), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["missing_datasets"] == 2
    assert summary["datasets"] == tree.datasets
    # rows kept with exists=False hold a size, but no byte of them is on disk
    assert summary["bytes"] == tree.bytes - sum(d["file_size"] for d in gone)


def test_info_human_output(tree: TreeSummary, capsys: pytest.CaptureFixture[str]) -> None:
    _index(tree.root, hash_ids=False)
    code, out, err = _cli(capsys, "info", str(tree.root))
    assert code == 0 and err == ""
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["ids"] == "path"
    assert lines["digests"] == "none"
    assert lines["written"] == f"by alfcache {alfcache.__version__}"
    assert lines["ONE-api"] == "can load these tables"


def test_info_of_one_api_tables(
    one_api_tables: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, tables = one_api_tables
    code, out, _ = _cli(capsys, "info", str(tables), "--json")
    summary = json.loads(out)
    assert code == 0
    assert summary["alfcache_version"] is None and summary["options"] is None
    assert summary["id_kind"] == "uuid3" and summary["digests"] == []
    assert summary["one_api"]["ok"] is True
    # one-api writes '' for "not hashed": ONE-api then MD5s every file it loads; and no
    # default_revision column: ONE-api warns on every load.
    warned = summary["one_api"]["warnings"]
    assert len(warned) == 2 and all(w.startswith("datasets.pqt") for w in warned)
    assert "''" in warned[0]
    assert "no default_revision column" in warned[1]


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = change(pq.read_table(path))
    pq.write_table(table, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def _set(name: str, values: Callable[[pa.Table], pa.Array]) -> Callable[[pa.Table], pa.Table]:
    def change(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index(name)
        array = values(table)
        return table.set_column(index, pa.field(name, array.type), array)

    return change


def _no_pandas_metadata_and(column: str) -> Callable[[pa.Table], pa.Table]:
    def change(table: pa.Table) -> pa.Table:
        metadata = {k: v for k, v in table.schema.metadata.items() if k != b"pandas"}
        table = table.append_column(column, pa.array([1] * table.num_rows))
        return table.replace_schema_metadata(metadata)

    return change


@pytest.mark.parametrize(
    ("table", "change", "message"),
    [
        ("sessions", _set("date", lambda t: t["date"].cast(pa.string())), "'date' is string"),
        (
            "datasets",
            _set("qc", lambda t: t["qc"].cast(pa.string())),
            "'qc' is string, ONE-api needs an ordered dictionary",
        ),
        (
            "datasets",
            _set("qc", lambda t: t["qc"].cast(pa.dictionary(pa.int8(), pa.string()))),
            "must be ordered",
        ),
        (
            "datasets",
            _set("file_size", lambda t: pa.array([None] * t.num_rows, pa.uint64())),
            "null file_size",
        ),
        ("datasets", lambda t: t.replace_schema_metadata(None), "no key-value metadata"),
        (
            "sessions",
            lambda t: t.replace_schema_metadata({b"one_metadata": b'{"origin": "x"}'}),
            "no one_metadata date_created",
        ),
        ("datasets", _no_pandas_metadata_and("inode_id"), "would index it by"),
        (
            "sessions",
            _set("id", lambda t: pa.array(["a/b/2020-01-01/1", *t["id"].to_pylist()[1:]])),
            "mix UUIDs and other strings",
        ),
    ],
)
def test_info_finds_what_one_api_cannot_use(
    tree: TreeSummary,
    capsys: pytest.CaptureFixture[str],
    table: str,
    change: Callable[[pa.Table], pa.Table],
    message: str,
) -> None:
    _index(tree.root)
    _rewrite(tree.root / f"{table}.pqt", change)
    code, out, err = _cli(capsys, "info", str(tree.root))
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("  error: ")]
    assert len(errors) == 1 and message in errors[0], out
    assert "ONE-api   CANNOT use these tables" in out
    assert err.startswith("alfcache: the tables in") and len(err.splitlines()) == 1


def test_info_warns_about_digests_one_api_rejects(
    tree: TreeSummary, capsys: pytest.CaptureFixture[str]
) -> None:
    _index(tree.root)
    hashes = ["D41D8CD98F00B204E9800998ECF8427E", "", *[None] * (tree.datasets - 2)]
    _rewrite(tree.root / "datasets.pqt", _set("hash", lambda t: pa.array(hashes, pa.string())))
    code, out, _ = _cli(capsys, "info", str(tree.root), "--json")
    one_api = json.loads(out)["one_api"]
    assert code == 0 and one_api["ok"] and one_api["errors"] == []
    assert len(one_api["warnings"]) == 2
    assert "1 hash value(s) are '' instead of null" in one_api["warnings"][0]
    assert "1 hash value(s) are not lower-case MD5 hex" in one_api["warnings"][1]


def test_info_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(capsys, "info", str(tmp_path / "nowhere"))[0] == 2
    tmp_path.joinpath("sessions.pqt").write_text("not parquet")
    tmp_path.joinpath("datasets.pqt").write_text("not parquet")
    code, _, err = _cli(capsys, "info", str(tmp_path))
    assert code == 2 and "is it a parquet file?" in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------------------------
# prune
# --------------------------------------------------------------------------------------------


def _litter(root: Path) -> list[str]:
    """Add what the tables lack: two ALF files, a session folder; and a non-ALF file."""
    extra = [f"{SESSION}/alf/extra.thing.npy", f"{SESSION}/raw/deep/extra.other.bin"]
    for rel in extra:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / SESSION / "alf/notes.txt").write_text("not ALF: never pruned")
    empty = "cortexlab/Subjects/SW0000/2025-01-01/001"
    (root / empty / "alf").mkdir(parents=True)
    return sorted([*extra, empty])


def test_prune_is_dry_by_default(tree: TreeSummary, capsys: pytest.CaptureFixture[str]) -> None:
    _index(tree.root)
    expected = _litter(tree.root)
    code, out, err = _cli(capsys, "prune", str(tree.root))
    assert code == 0
    assert out.splitlines() == expected
    assert all((tree.root / rel).exists() for rel in expected)
    where = tree.root.resolve()
    dry = "3 paths would be removed (dry run; --apply deletes)"
    assert err == f"alfcache: prune: {dry} in {where}\n"
    code, out, _ = _cli(capsys, "prune", str(tree.root), "--json")
    assert json.loads(out) == {
        "root": str(tree.root.resolve()),
        "tables": str(tree.root.resolve()),
        "applied": False,
        "paths": expected,
    }


def test_prune_can_keep_session_folders(
    tree: TreeSummary, capsys: pytest.CaptureFixture[str]
) -> None:
    _index(tree.root)
    files = [rel for rel in _litter(tree.root) if not rel.endswith("/001")]
    code, out, _ = _cli(capsys, "prune", str(tree.root), "--keep-empty-sessions", "--apply")
    assert code == 0 and out.splitlines() == files
    assert (tree.root / "cortexlab/Subjects/SW0000/2025-01-01/001/alf").is_dir()
    assert not any((tree.root / rel).exists() for rel in files)


def test_prune_apply_then_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, tables = tmp_path / "data", tmp_path / "tables"
    make_tree(root, 4, empty_every=0, max_file_size=64)
    _index(root, tables)
    forbid_uuids(monkeypatch)  # both match the tree by names, never by id: they hash none
    expected = _litter(root)
    code, out, _ = _cli(capsys, "prune", str(root), "--tables", str(tables), "--apply", "--json")
    assert code == 0 and json.loads(out)["paths"] == expected and json.loads(out)["applied"]
    assert not any((root / rel).exists() for rel in expected)
    assert (root / SESSION / "alf/notes.txt").exists()
    code, out, _ = _cli(capsys, "verify", str(root), "--tables", str(tables), "--jobs", "1")
    assert code == 0


def test_prune_without_tables_deletes_nothing(
    tree: TreeSummary, capsys: pytest.CaptureFixture[str]
) -> None:
    _litter(tree.root)
    before = sorted(p for p in tree.root.rglob("*"))
    code, _, err = _cli(capsys, "prune", str(tree.root), "--apply")
    assert code == 2 and "cannot prune" in err and "not found" in err
    assert len(err.splitlines()) == 1
    assert sorted(p for p in tree.root.rglob("*")) == before


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "alfcache", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout == f"alfcache {alfcache.__version__}\n"


def test_info_version_5_ids(tree: TreeSummary, capsys: pytest.CaptureFixture[str]) -> None:
    _index(tree.root)
    ids = pa.array([str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))) for i in range(tree.sessions)])
    _rewrite(tree.root / "sessions.pqt", _set("id", lambda t: ids))
    code, out, _ = _cli(capsys, "info", str(tree.root), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["id_kind"] == "uuid5"
    assert summary["one_api"]["warnings"] == [
        "UUID version 5 session ids load, but ONE-api's eid2path rejects them"
    ]
