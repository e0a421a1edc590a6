"""Cache maintenance: patch_cache, remove_cache_table_files and remove_missing_datasets.

Each function is checked on its own and against ``one.alf.cache`` (ONE-api 3.0.0) where the
reference behaves as documented. Two reference quirks are avoided in the differential tests
(see ``alfcache._maintain.prune``): it only looks at files directly in a session folder, and it
compares file paths with the datasets frame's *index*, so only path ids equal to ``rel_path``
work there.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import one.alf.cache as C
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from iblutil.io import parquet
from packaging.version import Version

import alfcache
from alfcache._maintain.prune import prune_locked
from alfcache._tables.one_api import _uuid_strings, read_cache_tables
from alfcache.synth import TreeSummary, make_tree

MakeFiles = Callable[[Path, Iterable[str]], Path]

SES = "cortexlab/Subjects/SW0000/2024-01-01/001"
"""A session of ``tree`` with datasets."""
EMPTY_SES = "cortexlab/Subjects/SW0000/2024-04-01/001"
"""An empty session of ``tree`` (in the tables)."""


@pytest.fixture
def tree(tmp_path: Path) -> TreeSummary:
    """Like ``small_tree`` but half the size: 12 sessions of one lab, session 10 empty."""
    return make_tree(tmp_path / "data", 12, empty_every=10)


def _index(root: Path, **kwargs: object) -> None:
    alfcache.make_parquet_db(root, n_jobs=1, **kwargs)


def _files(root: Path) -> set[str]:
    """Every file below ``root`` (POSIX, relative), folders excluded."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


def _rel(paths: Iterable[Path], root: Path) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in paths]


# -------------------------------------------------------------------------------------------------
# patch_cache
# -------------------------------------------------------------------------------------------------


def _int_ids(n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]
    return ids, parquet.str2np(ids)


def _old_datasets(n: int = 6, seed: int = 0) -> tuple[pd.DataFrame, list[str], list[str]]:
    """An ONE 1.x-style datasets table: int id pairs, eid pairs as columns, session_path."""
    rng = np.random.default_rng(seed)
    ids, id_np = _int_ids(n, rng)
    eids, eid_np = _int_ids(n, rng)
    frame = pd.DataFrame(
        {
            "id_0": id_np[:, 0],
            "id_1": id_np[:, 1],
            "eid_0": eid_np[:, 0],
            "eid_1": eid_np[:, 1],
            "session_path": [f"lab/Subjects/s/2021-01-01/{i:03d}" for i in range(n)],
            "rel_path": [f"alf/obj{i}.attr.npy" for i in range(n)],
            "file_size": np.arange(n, dtype=np.int64),
            "hash": [None] * n,
            "exists": True,
        }
    ).set_index(["id_0", "id_1"])
    return frame, ids, eids


def _old_sessions(n: int = 5, seed: int = 1) -> tuple[pd.DataFrame, list[str]]:
    """An ONE 1.x-style sessions table: int id pairs in the index, a 'project' column."""
    ids, id_np = _int_ids(n, np.random.default_rng(seed))
    frame = pd.DataFrame(
        {
            "id_0": id_np[:, 0],
            "id_1": id_np[:, 1],
            "lab": "lab",
            "subject": "s",
            "date": pd.Timestamp("2021-01-01").date(),
            "number": np.arange(1, n + 1, dtype=np.uint16),
            "task_protocol": "",
            "project": "ibl",
        }
    ).set_index(["id_0", "id_1"])
    return frame, ids


def test_uuid_strings_match_iblutil() -> None:
    rng = np.random.default_rng(3)
    ids = [uuid.UUID(bytes=rng.bytes(16)) for _ in range(50)]
    ids += [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID(int=1 << 63)]
    halves = parquet.uuid2np(ids)
    got = _uuid_strings(halves[:, 0], halves[:, 1])
    assert got.dtype == object
    assert list(got) == [str(u) for u in ids] == parquet.np2str(halves)
    assert len(_uuid_strings(np.array([], np.int64), np.array([], np.int64))) == 0


def test_uuid_strings_accept_uint64_bits() -> None:
    halves = parquet.str2np([str(uuid.UUID(int=2**128 - 1))])
    got = _uuid_strings(halves[:, 0].view(np.uint64), halves[:, 1].view(np.uint64))
    assert list(got) == ["ffffffff-ffff-ffff-ffff-ffffffffffff"]


@pytest.mark.parametrize("min_api_version", [None, "1.12.9", "1.13.0", "2.6.0", "2.7.0", "3.0"])
def test_patch_cache_matches_reference_datasets(min_api_version: str | None) -> None:
    frame, ids, eids = _old_datasets()
    before = frame.copy()
    ours = alfcache.patch_cache(frame, min_api_version, "datasets")
    ref = C.patch_tables(frame.copy(), min_api_version, "datasets")
    pd.testing.assert_frame_equal(ours, ref)
    pd.testing.assert_frame_equal(frame, before)  # input untouched
    assert ours.index.names == ["eid", "id"]
    assert list(ours.index) == list(zip(eids, ids, strict=True))
    assert "session_path" not in ours.columns


@pytest.mark.parametrize("min_api_version", [None, "1.12.9", "1.13.0", "2.0.0"])
def test_patch_cache_matches_reference_sessions(min_api_version: str | None) -> None:
    frame, ids = _old_sessions()
    before = frame.copy()
    ours = alfcache.patch_cache(frame, min_api_version, "sessions")
    ref = C.patch_tables(frame.copy(), min_api_version, "sessions")
    pd.testing.assert_frame_equal(ours, ref)
    pd.testing.assert_frame_equal(frame, before)
    assert ours.index.name == "id"
    assert list(ours.index) == ids
    renamed = min_api_version is None or Version(min_api_version) < Version("1.13")
    assert ("projects" in ours.columns) is renamed
    assert "qc" not in ours.columns


def test_patch_cache_qc_column() -> None:
    frame = pd.DataFrame({"eid": ["e"] * 3, "id": ["a", "b", "c"], "rel_path": ["x.y.z"] * 3})
    frame = frame.set_index(["eid", "id"])
    patched = alfcache.patch_cache(frame, "2.6.9", "datasets")
    assert patched["qc"].dtype == alfcache.QC_TYPE
    assert patched["qc"].tolist() == ["NOT_SET"] * 3
    assert "qc" not in alfcache.patch_cache(frame, "2.7.0", "datasets").columns
    assert "qc" not in alfcache.patch_cache(frame, None, "sessions").columns
    assert "qc" not in frame.columns


def test_patch_cache_leaves_current_tables_alone(tree: TreeSummary) -> None:
    _index(tree.root)
    for name in ("sessions", "datasets"):
        table = pd.read_parquet(tree.root / f"{name}.pqt")
        assert alfcache.patch_cache(table, "3.0.0", name) is table
        assert alfcache.patch_cache(table, None, name).equals(table)


VERSIONS = [
    "0",
    "0.0.0",
    "1.12",
    "1.12.9",
    "1.13",
    "1.13.0",
    "1.13.0rc1",
    "1.13.0.dev0",
    "1.13.0a2",
    "1.13.0a2.dev1",
    "1.13.0.post1",
    "1.13.0-2",
    "1.13.0.post1.dev0",
    "1.13.0rc1.post2",
    "1.13.1",
    "2.7.0",
    "2.7.0b1",
    "2.7.0beta2",
    "2.7.0c3",
    "2.7",
    "2.10.0",
    "v2.11",
    "3.0.0",
    "3.0.0+local",
    "10.0",
    "1.13.0RC1",
]


@pytest.mark.parametrize("min_api_version", VERSIONS)
def test_patch_cache_compares_versions_like_one_api(min_api_version: str) -> None:
    """Pre-releases, post-releases, local labels and padding, on both tables."""
    for name, table in (("datasets", _old_datasets()[0]), ("sessions", _old_sessions()[0])):
        ours = alfcache.patch_cache(table, min_api_version, name)
        ref = C.patch_tables(table.copy(), min_api_version, name)
        assert list(ours.columns) == list(ref.columns), (name, min_api_version)


@pytest.mark.parametrize("bad", ["latest", "x1.2", "1.2.3foo", "1..2"])
def test_patch_cache_rejects_bad_version(bad: str) -> None:
    frame, _ = _old_sessions()
    with pytest.raises(alfcache.BadArgument, match="min_api_version"):
        alfcache.patch_cache(frame, bad, "sessions")


# -------------------------------------------------------------------------------------------------
# remove_cache_table_files
# -------------------------------------------------------------------------------------------------


def _table_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("cache_info.json", "sessions.pqt", "datasets.pqt", "other.pqt", "keep.txt"):
        (folder / name).write_text("x")
    return folder


def test_remove_cache_table_files(tmp_path: Path) -> None:
    ours = _table_folder(tmp_path / "ours")
    ref = _table_folder(tmp_path / "ref")
    removed = alfcache.remove_cache_table_files(ours)
    assert _rel(removed, ours) == _rel(C.remove_table_files(ref), ref)
    assert _rel(removed, ours) == ["cache_info.json", "sessions.pqt", "datasets.pqt"]
    assert sorted(os.listdir(ours)) == ["keep.txt", "other.pqt"]


def test_remove_cache_table_files_warns_for_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _table_folder(tmp_path / "t")
    (folder / "cache_info.json").unlink()
    with caplog.at_level(logging.WARNING, logger="alfcache"):
        removed = alfcache.remove_cache_table_files(str(folder), tables=["other", "missing"])
    assert removed == [folder / "other.pqt"]
    warned = [r.getMessage() for r in caplog.records if r.name == "alfcache"]
    assert warned == [
        f"{folder / 'cache_info.json'} not found",
        f"{folder / 'missing.pqt'} not found",
    ]


# -------------------------------------------------------------------------------------------------
# remove_missing_datasets
# -------------------------------------------------------------------------------------------------

NO_LAB_SES = "SW9999/2024-01-01/001"
NO_LAB_FILES = [f"{NO_LAB_SES}/alf/trials.table.pqt", f"{NO_LAB_SES}/notes.txt"]


def test_nothing_to_remove_on_a_fresh_index(
    tree: TreeSummary, make_files: MakeFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_files(tree.root, NO_LAB_FILES)
    assert not any((root / EMPTY_SES).iterdir())  # an empty session, listed in the tables
    for hash_ids in (True, False):
        _index(root, hash_ids=hash_ids)
        assert alfcache.remove_missing_datasets(root) == []
        assert alfcache.remove_missing_datasets(root, read_cache_tables(root)) == []
    # ONE-api's loader (ids cast to uuid.UUID, dates as date objects) gives the same answer
    _index(root)
    assert alfcache.remove_missing_datasets(root, C.load_tables(root)) == []
    out = capsys.readouterr().out
    assert out == "The following session and datasets would be removed:\n\t\n" * 5


EXTRA_DATASETS = [
    f"{SES}/alf/extra.times.npy",  # nested: not seen by the reference
    f"{SES}/alf/probe00/#2024-06-01#/spikes.times.npy",
    f"{SES}/_ibl_extra.table.pqt",
    f"{NO_LAB_SES}/alf/extra.times.npy",
    f"{EMPTY_SES}/wheel.position.npy",
]
NEW_SESSION_DATASETS = [
    "newlab/Subjects/NEW01/2024-05-05/001/alf/trials.table.pqt",
    "newlab/Subjects/NEW01/2024-05-05/001/top.times.npy",
    "extra/SW0000/2024-01-01/001/spikes.times.npy",  # below an extra folder
]
# An unpadded folder beside the table's 001 session is a clash the indexer leaves out: the
# tables say nothing about its files, so they are never removed.
CLASH_DATASETS = ["cortexlab/Subjects/SW0000/2024-01-01/1/spikes.times.npy"]
NON_ALF = [
    f"{SES}/alf/notes.txt",
    "newlab/Subjects/NEW02/2024-05-05/002/README",
    "cortexlab/Subjects/SW0000/2024-01-01/readme.md",
    "loose.times.npy",  # not in a session
]
NEW_SESSIONS = [
    "newlab/Subjects/NEW01/2024-05-05/001",
    "newlab/Subjects/NEW02/2024-05-05/002",
    "newlab/Subjects/NEW03/2024-05-05/003",
    "extra/SW0000/2024-01-01/001",  # no lab, unlike the table's SW0000
]


@pytest.fixture
def pruned_tree(tree: TreeSummary, make_files: MakeFiles) -> Path:
    """``tree`` plus a no-lab session, indexed, then grown by files not in the tables."""
    root = make_files(tree.root, NO_LAB_FILES)
    _index(root)
    make_files(root, EXTRA_DATASETS + NEW_SESSION_DATASETS + NON_ALF + CLASH_DATASETS)
    (root / NEW_SESSIONS[2]).mkdir(parents=True)  # an empty session folder
    return root


def test_flags_files_and_sessions_not_in_the_tables(pruned_tree: Path) -> None:
    before = _files(pruned_tree)
    flagged = alfcache.remove_missing_datasets(pruned_tree)
    assert flagged == sorted(flagged)
    assert all(isinstance(p, Path) for p in flagged)
    assert set(_rel(flagged, pruned_tree)) == {
        *EXTRA_DATASETS,
        *NEW_SESSION_DATASETS,
        *NEW_SESSIONS,
    }
    assert _files(pruned_tree) == before  # dry by default

    kept_sessions = alfcache.remove_missing_datasets(pruned_tree, remove_empty_sessions=False)
    assert set(_rel(kept_sessions, pruned_tree)) == {*EXTRA_DATASETS, *NEW_SESSION_DATASETS}


def test_indexed_unpadded_session_is_kept(tmp_path: Path, make_files: MakeFiles) -> None:
    """alfcache indexes a folder named ``1``; pruning must not take it for a stranger."""
    root = make_files(tmp_path / "data", ["lab/Subjects/s1/2021-01-01/1/alf/spikes.times.npy"])
    _index(root)
    assert alfcache.remove_missing_datasets(root, dry=False) == []
    assert (root / "lab/Subjects/s1/2021-01-01/1/alf/spikes.times.npy").is_file()


def test_dry_run_prints_the_list(pruned_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flagged = alfcache.remove_missing_datasets(str(pruned_tree), dry=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "The following session and datasets would be removed:"
    assert lines[1:] == ["\t" + p for p in sorted(map(str, flagged))]


def test_the_library_prune_returns_and_never_prints(
    pruned_tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only remove_missing_datasets prints (one-api's dry-run listing); the function under it
    # and under the command line returns the paths, dry or not.
    flagged = alfcache.remove_missing_datasets(str(pruned_tree), dry=True)
    capsys.readouterr()
    for dry in (True, False):
        paths = prune_locked(
            pruned_tree,
            pruned_tree,
            None,
            remove_empty_sessions=True,
            dry=dry,
            lock_timeout=1.0,
            any_origin=False,
        )
        assert capsys.readouterr().out == ""
        assert set(paths) <= set(flagged) and paths
    assert not any(p.exists() for p in flagged if p.suffix)


def test_removes_only_the_flagged_files(pruned_tree: Path) -> None:
    root = pruned_tree
    before = _files(root)
    removed = alfcache.remove_missing_datasets(root, dry=False)
    # Only what was removed is returned: the session kept for its README is not (it was).
    kept = NEW_SESSIONS[1]
    assert set(_rel(removed, root)) == {*EXTRA_DATASETS, *NEW_SESSION_DATASETS, *NEW_SESSIONS} - {
        kept
    }
    assert _files(root) == before - {*EXTRA_DATASETS, *NEW_SESSION_DATASETS}
    # Emptied and empty new sessions are gone with their empty parents, up to (not including)
    # the folder directly below the cache folder.
    assert not (root / "newlab/Subjects/NEW01").exists()
    assert not (root / "newlab/Subjects/NEW03").exists()
    assert not (root / "extra/SW0000").exists()
    assert (root / "extra").is_dir()
    # A new session holding a non-ALF file stays, as do table sessions (even empty ones).
    assert (root / kept / "README").is_file()
    assert (root / EMPTY_SES).is_dir()
    assert (root / "cortexlab/Subjects/SW0000/2024-01-01/1").is_dir()
    # The emptied revision folder inside a kept session is left as it is.
    assert (root / SES / "alf/probe00/#2024-06-01#").is_dir()
    # Running again still flags the session kept for its non-ALF file, and keeps it again.
    assert _rel(alfcache.remove_missing_datasets(root), root) == [kept]
    assert alfcache.remove_missing_datasets(root, dry=False) == []


def test_never_removes_the_cache_folder(tmp_path: Path, make_files: MakeFiles) -> None:
    root = make_files(tmp_path / "data", ["s1/2021-01-01/001/alf/spikes.times.npy"])
    tables = {"sessions": alfcache.EMPTY_SESSIONS_FRAME, "datasets": alfcache.EMPTY_DATASETS_FRAME}
    flagged = alfcache.remove_missing_datasets(root, tables, dry=False)
    assert _rel(flagged, root) == ["s1/2021-01-01/001", "s1/2021-01-01/001/alf/spikes.times.npy"]
    assert os.listdir(root) == ["s1"]  # the subject folder sits directly below the cache folder
    assert os.listdir(root / "s1") == []


def test_null_lab_and_string_ids(tree: TreeSummary, make_files: MakeFiles) -> None:
    root = make_files(tree.root, NO_LAB_FILES)
    _index(root)
    tables = read_cache_tables(root)
    sessions = tables["sessions"]
    tables["sessions"] = sessions.assign(lab=sessions["lab"].replace("", None))
    assert tables["sessions"]["lab"].isna().sum() == 1
    assert alfcache.remove_missing_datasets(root, tables) == []


def _strip_pandas_metadata(file: Path) -> None:
    table = pq.read_table(file)
    meta = {k: v for k, v in table.schema.metadata.items() if k != b"pandas"}
    pq.write_table(table.replace_schema_metadata(meta), file)


def test_loader_sets_the_index_from_id_columns(tree: TreeSummary) -> None:
    root = tree.root
    _index(root)
    expected = read_cache_tables(root)
    for name in ("sessions", "datasets"):
        _strip_pandas_metadata(root / f"{name}.pqt")
        assert isinstance(pd.read_parquet(root / f"{name}.pqt").index, pd.RangeIndex)
    tables = read_cache_tables(root)
    assert tables["sessions"].index.names == ["id"]
    assert tables["datasets"].index.names == ["eid", "id"]
    for name in ("sessions", "datasets"):
        pd.testing.assert_frame_equal(tables[name], expected[name], check_dtype=False)
    assert alfcache.remove_missing_datasets(root) == []


def test_loader_patches_old_tables(tmp_path: Path) -> None:
    frame, _ = _old_sessions()
    file = tmp_path / "sessions.pqt"
    table = pa.Table.from_pandas(frame.reset_index(), preserve_index=False)
    meta = {b"one_metadata": json.dumps({"date_created": "2021-01-01 00:00"}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), file)
    pd.DataFrame({"eid": [], "id": [], "rel_path": []}).to_parquet(tmp_path / "datasets.pqt")
    tables = read_cache_tables(tmp_path)
    assert tables["sessions"].index.name == "id"
    assert "projects" in tables["sessions"].columns
    assert "qc" in tables["datasets"].columns


def test_missing_table_is_an_error(tree: TreeSummary) -> None:
    _index(tree.root)
    (tree.root / "datasets.pqt").unlink()
    with pytest.raises(FileNotFoundError, match=r"datasets\.pqt"):
        alfcache.remove_missing_datasets(tree.root)


# Differential: files only directly in session folders, path ids equal to rel_path (see module
# docstring), so the reference does what its docstring says.

REF_EXTRA = [
    f"{SES}/_ibl_extra.table.pqt",
    f"{EMPTY_SES}/wheel.position.npy",
    f"{NO_LAB_SES}/top.times.npy",
    "newlab/Subjects/NEW01/2024-05-05/001/top.times.npy",
    "newlab/Subjects/NEW02/2024-05-05/002/README",
    # No unpadded ``1`` folder here: the reference flags it, with its datasets, as a stranger,
    # which we deliberately do not (test_indexed_unpadded_session_is_kept).
    "SW9998/2024-01-01/002/spikes.times.npy",
    f"{SES}/alf/notes.txt",
]


@pytest.mark.parametrize("remove_empty_sessions", [True, False])
def test_matches_reference_in_dry_mode(
    tree: TreeSummary,
    make_files: MakeFiles,
    capsys: pytest.CaptureFixture[str],
    remove_empty_sessions: bool,
) -> None:
    root = make_files(tree.root, NO_LAB_FILES)
    C.make_parquet_db(root, hash_ids=False)
    tables = C.load_tables(root)
    # Forget one top-level dataset of a session in the tables.
    datasets = tables["datasets"]
    dropped = datasets["rel_path"] == "_ibl_experiment.description.yaml"
    first = datasets.index[dropped][0]
    tables["datasets"] = datasets.drop(index=[first])
    make_files(root, REF_EXTRA)
    (root / "newlab/Subjects/NEW03/2024-05-05/003").mkdir(parents=True)

    ours = alfcache.remove_missing_datasets(root, tables, remove_empty_sessions, dry=True)
    ours_out = capsys.readouterr().out
    ref = C.remove_missing_datasets(root, tables, remove_empty_sessions, dry=True)
    ref_out = capsys.readouterr().out
    assert list(map(str, ours)) == list(map(str, ref))
    assert ours_out == ref_out
    assert len(ours) >= 6
