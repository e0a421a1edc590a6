"""Incremental updates: ``update=True`` gives the tables a full re-index gives, reading less.

Every test changes a tree on disk between two runs and compares the update with a full re-index
of the same tree into another folder; digests are checked against ``hashlib`` on the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers import index_quietly
from _inject import eio_listing

import alfcache
import alfcache._maintain.update
from alfcache.synth import DATASET_FILES, make_tree

SESSION = "cortexlab/Subjects/SW0000/2024-01-01/001"  # the first session make_tree writes
GONE_SESSION = "cortexlab/Subjects/SW0000/2024-01-01/002"


def _run(root: Path, out: Path, **kwargs: Any) -> alfcache.IndexReport:
    return index_quietly(root, out, n_jobs=kwargs.pop("n_jobs", 1), **kwargs)


def _tables(out: Path) -> tuple[pa.Table, pa.Table]:
    """Both tables without their metadata (``date_created`` differs from run to run)."""
    return tuple(  # type: ignore[return-value]
        pq.read_table(out / name).replace_schema_metadata(None)
        for name in ("sessions.pqt", "datasets.pqt")
    )


def _rows(out: Path, *columns: str) -> dict[str, tuple[Any, ...]]:
    datasets = pq.read_table(out / "datasets.pqt")
    eids = dict(
        zip(
            pq.read_table(out / "sessions.pqt")["id"].to_pylist(),
            _session_folders(out),
            strict=True,
        )
    )
    return {
        f"{eids[row['eid']]}/{row['rel_path']}": tuple(row[c] for c in columns)
        for row in datasets.to_pylist()
    }


def _session_folders(out: Path) -> list[str]:
    folders = []
    for s in pq.read_table(out / "sessions.pqt").to_pylist():
        lab = f"{s['lab']}/Subjects/" if s["lab"] else ""
        folders.append(f"{lab}{s['subject']}/{s['date']}/{s['number']:03d}")
    return folders


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _rewrite(path: Path, data: bytes, newer_by_s: float = 10.0) -> None:
    """Write ``data`` and move the modification time clearly forward (coarse file systems)."""
    before = path.stat().st_mtime_ns
    path.write_bytes(data)
    later = before + int(newer_by_s * 1e9)
    os.utime(path, ns=(later, later))


def _set_hash(out: Path, rel_path: str, digest: str) -> None:
    """Plant ``digest`` as the stored MD5 of ``rel_path`` in the table of a previous run."""
    table = pq.read_table(out / "datasets.pqt")
    hashes = [
        digest if rel == rel_path else h
        for rel, h in zip(table["rel_path"].to_pylist(), table["hash"].to_pylist(), strict=True)
    ]
    index = table.schema.get_field_index("hash")
    table = table.set_column(index, "hash", pa.array(hashes, pa.string()))
    pq.write_table(table, out / "datasets.pqt")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """12 sessions with and without lab (no empty session), random sizes up to 4 KiB."""
    root = tmp_path / "data"
    make_tree(root, 12, empty_every=0, max_file_size=4096)
    return root


def _change_tree(root: Path) -> dict[str, int]:
    """New, changed, vanished and touched files, a new and a vanished session."""
    ses = root / SESSION
    same_size = ses / "alf/_ibl_trials.choice.npy"
    _rewrite(same_size, bytes(b ^ 0xFF for b in same_size.read_bytes()))  # same size, new bytes
    _rewrite(ses / "alf/_ibl_trials.intervals.npy", b"a different size")
    touched = ses / "alf/licks.times.npy"
    _rewrite(touched, touched.read_bytes())  # same bytes, newer time: read again
    (ses / "alf/probe00/spikes.amps.npy").unlink()
    (ses / "alf/new.dataset.npy").write_bytes(b"new")
    new_session = root / "newlab/Subjects/NEW01/2024-06-01/001/alf"
    new_session.mkdir(parents=True)
    (new_session / "spikes.times.npy").write_bytes(b"new session")
    shutil.rmtree(root / GONE_SESSION)  # a whole session: every dataset of make_tree
    return {"new": 2, "changed": 3, "vanished": 1 + len(DATASET_FILES)}


# --------------------------------------------------------------------------------------------
# update == full re-index
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["md5", "both"])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_update_equals_full_reindex(
    tree: Path, tmp_path: Path, algorithm: str, n_jobs: int
) -> None:
    out, full = tmp_path / "out", tmp_path / "full"
    first = _run(tree, out, hash_algorithm=algorithm, n_jobs=n_jobs)
    expected = _change_tree(tree)

    report = _run(tree, out, hash_algorithm=algorithm, update=True, n_jobs=n_jobs)
    _run(tree, full, hash_algorithm=algorithm, n_jobs=n_jobs)
    assert _tables(out) == _tables(full)

    assert report.changes is not None and report.hashing is not None
    changes = report.changes
    assert (changes.new, changes.changed, changes.vanished) == (
        expected["new"],
        expected["changed"],
        expected["vanished"],
    )
    assert changes.unchanged == first.datasets - expected["changed"] - expected["vanished"]
    assert report.hashing.files == expected["new"] + expected["changed"]  # nothing else read
    digests = _rows(out, "hash", "file_size")
    assert digests == {rel: (_md5(tree / rel), (tree / rel).stat().st_size) for rel in digests}


def test_unchanged_files_keep_their_digests_unread(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(tree, out, hash_files=True)
    # Plant digests a re-read would replace: one on a file that stays, one on a touched file.
    planted = "0" * 32
    _set_hash(out, "alf/_ibl_wheel.position.npy", planted)
    _set_hash(out, "alf/licks.times.npy", planted)
    for path in tree.rglob("licks.times.npy"):
        _rewrite(path, path.read_bytes(), newer_by_s=1)

    report = _run(tree, out, update=True)
    rows = _rows(out, "hash")
    kept = [rel for rel, (h,) in rows.items() if h == planted]
    assert kept and all(rel.endswith("alf/_ibl_wheel.position.npy") for rel in kept)
    touched = [rel for rel in rows if rel.endswith("alf/licks.times.npy")]
    assert touched and all(rows[rel] == (_md5(tree / rel),) for rel in touched)
    assert report.hashing is not None and report.hashing.files == len(touched)


def test_nothing_changed_reads_nothing(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _run(tree, out, hash_algorithm="both", n_jobs=2)
    before = _tables(out)
    report = _run(tree, out, update=True, n_jobs=2)
    assert _tables(out) == before
    assert report.hashing is not None
    assert report.hashing.algorithms == ("md5", "xxh3")  # taken from the previous tables
    assert report.hashing.files == 0
    assert report.changes == alfcache._maintain.update.Changes(0, 0, first.datasets, 0)


def test_update_with_new_algorithm_reads_what_lacks_it(tree: Path, tmp_path: Path) -> None:
    out, full = tmp_path / "out", tmp_path / "full"
    first = _run(tree, out, hash_files=True)
    report = _run(tree, out, hash_algorithm="both", update=True)
    _run(tree, full, hash_algorithm="both")
    assert _tables(out) == _tables(full)
    assert report.hashing is not None and report.hashing.files == first.datasets


def test_update_of_unhashed_tables(tree: Path, tmp_path: Path) -> None:
    out, full = tmp_path / "out", tmp_path / "full"
    _run(tree, out)
    _change_tree(tree)
    report = _run(tree, out, update=True)
    _run(tree, full)
    assert _tables(out) == _tables(full)
    assert "mtime_ns" not in _tables(out)[1].column_names  # ONE-api's columns only
    assert report.hashing is not None and report.hashing.files == 0


@pytest.mark.parametrize("hash_ids", [True, False])
def test_update_with_path_ids(tree: Path, tmp_path: Path, hash_ids: bool) -> None:
    out, full = tmp_path / "out", tmp_path / "full"
    _run(tree, out, hash_files=True, hash_ids=hash_ids)
    _change_tree(tree)
    _run(tree, out, update=True, hash_ids=hash_ids)
    _run(tree, full, hash_files=True, hash_ids=hash_ids)
    assert _tables(out) == _tables(full)
    with pytest.raises(alfcache.BadArgument, match="ids"):
        alfcache.index(tree, out, update=True, hash_ids=not hash_ids, n_jobs=1)


def _to_previous_layout(out: Path) -> None:
    """Rewrite both tables as alfcache 0.1.0 laid them out, whatever their ids.

    Ids first and recorded as the pandas index (``pd.read_parquet`` made them the index); the
    other schema metadata is kept as written.
    """
    from alfcache._tables.schema import pandas_metadata

    for name, ids in (("sessions.pqt", ("id",)), ("datasets.pqt", ("eid", "id"))):
        table = pq.read_table(out / name)
        table = table.select([*ids, *(n for n in table.column_names if n not in ids)])
        metadata = dict(table.schema.metadata)
        metadata[b"pandas"] = pandas_metadata(table.schema, ids, table.num_rows)
        pq.write_table(table.replace_schema_metadata(metadata), out / name)


def _layout(out: Path) -> list[tuple[list[str], Any]]:
    """Each table's column order and the pandas index it records."""
    return [
        (
            pq.read_schema(out / name).names,
            json.loads(pq.read_schema(out / name).metadata[b"pandas"])["index_columns"],
        )
        for name in ("sessions.pqt", "datasets.pqt")
    ]


@pytest.mark.parametrize("hash_ids", [True, False])
def test_update_of_previous_layout_equals_full_reindex(
    tree: Path, tmp_path: Path, hash_ids: bool
) -> None:
    """Tables laid out as alfcache 0.1.0 wrote them update to the tables of a fresh index."""
    out, full = tmp_path / "out", tmp_path / "full"
    _run(tree, out, hash_files=True, hash_ids=hash_ids)
    _to_previous_layout(out)
    assert _layout(out)[0][1] == ["id"]
    _change_tree(tree)
    _run(tree, out, update=True, hash_ids=hash_ids)
    _run(tree, full, hash_files=True, hash_ids=hash_ids)
    assert _tables(out) == _tables(full)
    assert _layout(out) == _layout(full)


# --------------------------------------------------------------------------------------------
# vanished datasets
# --------------------------------------------------------------------------------------------


def test_keep_missing(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(tree, out, hash_files=True)
    before = _rows(out, "hash", "file_size", "mtime_ns")
    sessions_before = _tables(out)[0].num_rows
    expected = _change_tree(tree)

    report = _run(tree, out, update=True, keep_missing=True)
    assert report.changes is not None and report.changes.vanished == expected["vanished"]
    rows = _rows(out, "exists", "hash", "file_size", "mtime_ns")
    missing = {rel: row[1:] for rel, row in rows.items() if not row[0]}
    assert len(missing) == expected["vanished"]
    assert all(not (tree / rel).exists() for rel in missing)
    assert missing == {rel: before[rel] for rel in missing}  # kept as they were
    assert all((tree / rel).is_file() for rel, row in rows.items() if row[0])
    # the vanished session keeps its row, so its datasets still have a session
    assert _tables(out)[0].num_rows == sessions_before + 1
    assert any(folder == GONE_SESSION for folder in _session_folders(out))

    # a second update keeps them; a plain update drops them
    _run(tree, out, update=True, keep_missing=True)
    assert _rows(out, "exists", "hash", "file_size", "mtime_ns") == rows
    _run(tree, out, update=True)
    assert all(row[0] for row in _rows(out, "exists").values())
    assert GONE_SESSION not in _session_folders(out)


def test_keep_missing_needs_update(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(alfcache.BadArgument, match="update"):
        alfcache.index(tree, tmp_path / "out", keep_missing=True)


# --------------------------------------------------------------------------------------------
# previous tables that are missing, foreign or broken
# --------------------------------------------------------------------------------------------


def test_update_without_tables_indexes_everything(tree: Path, tmp_path: Path) -> None:
    out, full = tmp_path / "out", tmp_path / "full"
    with pytest.warns(RuntimeWarning, match="no tables in .* to update"):
        report = alfcache.index(tree, out, update=True, hash_files=True, n_jobs=1)
    assert report.changes is None
    _run(tree, full, hash_files=True)
    assert _tables(out) == _tables(full)


def test_update_of_one_api_tables_keeps_their_ids(tree: Path, tmp_path: Path) -> None:
    """Tables from ONE-api's own make_parquet_db: random-namespace ids, a QC set, no mtime_ns."""
    from one.alf.cache import make_parquet_db

    out = tmp_path / "out"

    out.mkdir()
    # hash_files=False: ONE-api 3.0.0 MD5s each file through a fresh 256 MB buffer (0.4 s).
    make_parquet_db(tree, out_dir=out)
    theirs_ses, theirs_ds = (pq.read_table(out / n) for n in ("sessions.pqt", "datasets.pqt"))
    qc = pa.DictionaryArray.from_arrays(
        pa.array([1] + [0] * (theirs_ds.num_rows - 1), pa.int8()),
        theirs_ds["qc"].chunk(0).dictionary,
        ordered=True,
    )
    qc_index = theirs_ds.schema.get_field_index("qc")
    pq.write_table(theirs_ds.set_column(qc_index, "qc", qc), out / "datasets.pqt")
    passed = (theirs_ds["eid"][0].as_py(), theirs_ds["id"][0].as_py())
    assert set(theirs_ds["hash"].to_pylist()) == {""}  # one-api 3.0.0's "not hashed"

    report = _run(tree, out, update=True)
    assert report.hashing is not None and report.hashing.algorithms == ()  # '' is no digest
    assert pq.read_table(out / "datasets.pqt")["hash"].null_count == theirs_ds.num_rows
    report = _run(tree, out, update=True, hash_files=True)
    ours_ses, ours_ds = _tables(out)
    assert sorted(ours_ses["id"].to_pylist()) == sorted(theirs_ses["id"].to_pylist())

    def keys_of(table: pa.Table) -> list[tuple[str, str]]:
        return list(zip(table["eid"].to_pylist(), table["id"].to_pylist(), strict=True))

    assert sorted(keys_of(ours_ds)) == sorted(
        keys_of(theirs_ds)
    )  # their dataset ids are unique only with the eid
    qc = dict(zip(keys_of(ours_ds), ours_ds["qc"].to_pylist(), strict=True))
    assert qc.pop(passed) == "PASS"
    assert set(qc.values()) == {"NOT_SET"}
    # no mtime_ns in their table: every file is read
    assert report.hashing is not None and report.hashing.files == theirs_ds.num_rows
    digests = _rows(out, "hash")
    assert digests == {rel: (_md5(tree / rel),) for rel in digests}


def test_unreadable_previous_table(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(tree, out)
    (out / "datasets.pqt").write_bytes(b"not parquet")
    with pytest.raises(alfcache.BadArgument, match="cannot update"):
        alfcache.index(tree, out, update=True, n_jobs=1)
    assert (out / "datasets.pqt").read_bytes() == b"not parquet"  # left as it was


def test_cli_update_summary(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(tree, out, hash_files=True)
    expected = _change_tree(tree)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "alfcache", "index", str(tree), "--out-dir", str(out)),
            *("--update", "--keep-missing", "--json", "-j", "1"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["update"]["new"] == expected["new"]
    assert summary["update"]["vanished"] == expected["vanished"]
    assert summary["hashing"]["files"] == expected["new"] + expected["changed"]
    assert f"{expected['vanished']} vanished (kept with exists=False)" in proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "alfcache", "index", str(tree), "--keep-missing", "-j", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert bad.returncode == 2 and "update" in bad.stderr


# --------------------------------------------------------------------------------------------
# ONE-api loads what an update writes
# --------------------------------------------------------------------------------------------


@pytest.mark.one
@pytest.mark.filterwarnings("ignore:No default revision for dataset")  # one-api, any table
def test_one_loads_updated_hashed_tables(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Updated tables with ``mtime_ns``, ``xxh3_128`` and ``exists=False`` rows, in the data root.

    One(mode='local') must load them and ``load_dataset`` must find every MD5 right; a file
    corrupted afterwards proves that the check ran.
    """
    from one.api import One

    _run(tree, tree, hash_algorithm="both")
    _change_tree(tree)
    _run(tree, tree, update=True, keep_missing=True, n_jobs=2)

    one = One(cache_dir=tree, mode="local")
    datasets = one._cache["datasets"]
    assert {"mtime_ns", "xxh3_128"} <= set(datasets.columns)
    assert list(datasets.index.names) == ["eid", "id"]
    assert (~datasets["exists"]).sum() > 0
    eid = one.path2eid(tree / SESSION)
    assert eid is not None
    listed = set(one.list_datasets(eid))
    changed = [
        "alf/_ibl_trials.choice.npy",
        "alf/_ibl_trials.intervals.npy",
        "alf/new.dataset.npy",
    ]
    assert set(changed) <= listed
    with caplog.at_level(logging.WARNING):
        for rel in changed:
            file = one.load_dataset(eid, rel, download_only=True)
            assert file is not None and Path(file) == tree / SESSION / rel
    mismatches = [r.getMessage() for r in caplog.records if "mismatch" in r.getMessage()]
    assert mismatches == []

    victim = tree / SESSION / changed[0]
    victim.write_bytes(bytes(len(victim.read_bytes())))  # same size, other bytes
    with caplog.at_level(logging.WARNING):
        one.load_dataset(eid, changed[0], download_only=True)
    assert any("md5 mismatch" in r.getMessage() for r in caplog.records)


def test_hashing_and_updating_never_import_pandas(tree: Path, tmp_path: Path) -> None:
    code = (
        "import sys, alfcache; "
        "alfcache.index(sys.argv[1], sys.argv[2], hash_algorithm='both', n_jobs=2); "
        "alfcache.index(sys.argv[1], sys.argv[2], update=True, keep_missing=True, n_jobs=1); "
        "print('pandas' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tree), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("number", ["1000", "0001", "01234"])
def test_a_long_session_number_folder_carries_nothing_over(
    tmp_path: Path, make_files: Any, number: str
) -> None:
    # issue 17 item 5: the walk goes through subject/date/NNNN (not a session): it hides
    # nothing, so a file deleted elsewhere is dropped as vanished, as a full re-index drops it
    session = "lab1/Subjects/A/2024-01-01/001/alf"
    root = make_files(tmp_path / "data", [f"{session}/x.y.npy", f"{session}/z.y.npy"])
    (root / f"lab1/Subjects/B/2021-01-01/{number}").mkdir(parents=True)
    out = tmp_path / "out"
    _run(root, out)
    (root / session / "z.y.npy").unlink()
    report = _run(root, out, update=True)
    assert report.changes is not None
    assert (report.changes.vanished, report.changes.carried_over) == (1, 0)
    assert list(_rows(out)) == ["lab1/Subjects/A/2024-01-01/001/alf/x.y.npy"]


def test_a_nested_session_below_an_unreadable_folder_is_carried_over(
    tmp_path: Path, make_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 17 item 6: S9/2024-01-08/002 lies below S1's session; while lab1/Subjects/S1
    # cannot be listed (EIO) the walk finds neither, and the nested one must not be dropped
    outer = "lab1/Subjects/S1/2024-01-08/001"
    nested = f"{outer}/raw/S9/2024-01-08/002/alf/b.c.npy"
    root = make_files(tmp_path / "data", [f"{outer}/alf/a.b.npy", nested])
    out = tmp_path / "out"
    _run(root, out)
    before = _tables(out)
    eio_listing(monkeypatch, root / "lab1/Subjects/S1")
    report = _run(root, out, update=True)
    assert [(s.path, s.reason) for s in report.skipped] == [("lab1/Subjects/S1", "unreadable")]
    assert report.changes is not None
    assert (report.changes.vanished, report.changes.carried_over) == (0, 2)
    assert _tables(out) == before


def test_dataset_keys_are_equal_exactly_where_session_and_rel_path_are() -> None:
    import polars as pl

    # Pairs that spell the same text when put together, a pair on one side only, a null.
    fresh = pl.DataFrame(
        {
            "eid": ["a", "a/b", "a", "x", None],
            "rel_path": ["b/c.d.npy", "c.d.npy", "e.f.npy", "y.z.npy", "e.f.npy"],
        }
    )
    previous = pl.DataFrame(
        {
            "eid": ["a/b", "a", "q", "a", "a"],
            "rel_path": ["c.d.npy", "b/c.d.npy", "e.f.npy", None, "e.f.npy"],
        }
    )
    key, previous_key = alfcache._maintain.update._dataset_keys(fresh, previous)
    fresh_pairs = list(fresh.iter_rows())
    previous_pairs = list(previous.iter_rows())
    for i, pair in enumerate(fresh_pairs):
        for j, other in enumerate(previous_pairs):
            same = None not in pair and pair == other
            assert (key[i] is not None and key[i] == previous_key[j]) == same, (pair, other)
    assert key.null_count() == 1 and previous_key.null_count() == 1
