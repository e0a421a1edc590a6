"""End to end: folders on disk in, ``sessions.pqt`` and ``datasets.pqt`` out.

Every test builds its own small tree; expected values come from the tree itself (paths written,
file contents, ``uuid.uuid3``, ``hashlib``, ONE-api's ``QC_TYPE``), never from alfcache.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers import index_quietly, read_tables, run_alfcache
from one.alf.cache import QC_TYPE as ONE_QC_TYPE

import alfcache
import alfcache._tables.store
from alfcache.synth import DATASET_FILES, TreeSummary

MakeFiles = Callable[[Path, Iterable[str]], Path]  # the conftest fixture
NAMESPACE = uuid.UUID("2a6e3c58-8e0a-4b1f-9d36-6c1f0b5a1c3e")  # documented, fixed
QC_LEVELS = ["NOT_SET", "PASS", "WARNING", "FAIL", "CRITICAL"]
# Hashed ids (the default) are the frame's index, stored last, as one-api's make_parquet_db does.
SESSIONS_COLUMNS = ["lab", "subject", "date", "number", "task_protocol", "projects", "id"]
DATASETS_COLUMNS = [
    "rel_path",
    "file_size",
    "hash",
    "exists",
    "qc",
    "default_revision",
    "eid",
    "id",
]
TABLE_FILES = {"sessions.pqt", "datasets.pqt"}
JOBS = [1, 2]

# A small explicit tree: a lab session, a no-lab session numbered '1', an empty session.
BASIC = [
    "lab/Subjects/s1/2021-01-01/001/alf/spikes.times.npy",
    "lab/Subjects/s1/2021-01-01/001/alf/probe00/#2024-05-06#/spikes.amps.npy",
    "lab/Subjects/s1/2021-01-01/001/_ibl_experiment.description.yaml",
    "s2/2021-01-02/1/raw_video_data/_iblrig_leftCamera.raw.mp4",
]
BASIC_EMPTY_SESSION = "s3/2021-01-03/002"


@pytest.fixture
def basic(tmp_path: Path, make_files: MakeFiles) -> Path:
    root = make_files(tmp_path / "data", BASIC)
    (root / BASIC_EMPTY_SESSION).mkdir(parents=True)
    return root


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _rows(table: pa.Table, *columns: str) -> list[tuple[Any, ...]]:
    return sorted(zip(*(table[c].to_pylist() for c in columns), strict=True))


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _uuid3(name: str) -> str:
    return str(uuid.uuid3(NAMESPACE, name))


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _one_metadata(path: Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata
    assert meta is not None and b"one_metadata" in meta
    return json.loads(meta[b"one_metadata"])


# --------------------------------------------------------------------------------------------
# schemas, types, metadata
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", JOBS)
def test_schemas_and_types(small_tree: TreeSummary, tmp_path: Path, n_jobs: int) -> None:
    out = tmp_path / "out"
    report = index_quietly(small_tree.root, out, n_jobs=n_jobs)
    sessions, datasets = read_tables(out)

    assert sessions.column_names == SESSIONS_COLUMNS
    for name in ("id", "lab", "subject", "task_protocol", "projects"):
        assert _is_string(sessions.schema.field(name).type), name
    assert sessions.schema.field("date").type == pa.date32()
    assert sessions.schema.field("number").type == pa.uint16()

    assert datasets.column_names == DATASETS_COLUMNS
    for name in ("eid", "id", "rel_path"):
        assert _is_string(datasets.schema.field(name).type), name
    # Not hashing: Arrow's null type, which pandas 2 and 3 both read as None (a null string
    # reads as NaN under pandas 3, and ONE-api then re-hashes every file it loads).
    assert datasets.schema.field("hash").type == pa.null()
    assert datasets.schema.field("file_size").type == pa.uint64()
    assert datasets.schema.field("exists").type == pa.bool_()
    qc_type = datasets.schema.field("qc").type
    assert pa.types.is_dictionary(qc_type)
    assert qc_type.ordered
    assert _is_string(qc_type.value_type)

    assert sessions.num_rows == small_tree.sessions == report.sessions
    assert datasets.num_rows == small_tree.datasets == report.datasets
    assert report.bytes == small_tree.bytes
    assert datasets["file_size"].null_count == 0
    assert datasets["rel_path"].null_count == 0
    assert datasets["hash"].null_count == datasets.num_rows  # not hashing: null, never ''
    assert datasets["exists"].null_count == 0
    assert all(datasets["exists"].to_pylist())
    assert set(datasets["qc"].to_pylist()) == {"NOT_SET"}
    for chunk in datasets["qc"].chunks:
        assert chunk.dictionary.to_pylist() == QC_LEVELS
    for name in ("task_protocol", "projects"):
        assert set(sessions[name].to_pylist()) <= {"", None}
    assert sessions["id"].null_count == 0 and datasets["eid"].null_count == 0


@pytest.mark.parametrize("n_jobs", JOBS)
def test_small_tree_contents(small_tree: TreeSummary, tmp_path: Path, n_jobs: int) -> None:
    out = tmp_path / "out"
    index_quietly(small_tree.root, out, n_jobs=n_jobs, hash_ids=False)
    sessions, datasets = read_tables(out)
    expected_rel = sorted(f"{c}/{n}" if c else n for c, n in DATASET_FILES)
    by_session: dict[str, list[str]] = {}
    for eid, rel in _rows(datasets, "eid", "rel_path"):
        by_session.setdefault(eid, []).append(rel)
    # the fixture leaves every 10th session empty: 2 of 24
    assert len(by_session) == small_tree.sessions - 2
    for rels in by_session.values():
        assert sorted(rels) == expected_rel
    assert set(by_session) < set(sessions["id"].to_pylist())
    # non-ALF files (notes.txt, README, .DS_Store, ...) never become datasets
    assert not any(
        os.path.basename(rel) in {"notes.txt", ".DS_Store", "README", "raw_data", "log.txt"}
        for rel in datasets["rel_path"].to_pylist()
    )


def test_pandas_restores_index_and_dtypes(basic: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fn_ses, fn_dsets = alfcache.make_parquet_db(basic, out, n_jobs=1)
    assert (fn_ses, fn_dsets) == (out / "sessions.pqt", out / "datasets.pqt")
    ses = pd.read_parquet(fn_ses)
    dsets = pd.read_parquet(fn_dsets)
    assert list(ses.index.names) == ["id"]
    assert list(ses.columns) == SESSIONS_COLUMNS[:-1]
    assert list(dsets.index.names) == ["eid", "id"]
    assert list(dsets.columns) == DATASETS_COLUMNS[:-2]
    assert ses["number"].dtype == "uint16"
    assert all(isinstance(d, datetime.date) for d in ses["date"])
    assert str(dsets["file_size"].dtype) in {"UInt64", "uint64"}
    assert dsets["exists"].dtype == bool
    assert dsets["qc"].dtype == ONE_QC_TYPE
    assert list(dsets["qc"].cat.categories) == QC_LEVELS
    assert dsets["qc"].cat.ordered
    # every dataset's eid is a session id
    assert set(dsets.index.get_level_values("eid")) <= set(ses.index)


@pytest.mark.parametrize("n_jobs", JOBS)
def test_one_metadata(basic: Path, tmp_path: Path, n_jobs: int) -> None:
    out = tmp_path / "out"
    before = datetime.datetime.now().replace(second=0, microsecond=0)
    index_quietly(basic, out, n_jobs=n_jobs)
    after = datetime.datetime.now()
    for name in TABLE_FILES:
        meta = _one_metadata(out / name)
        assert {"date_created", "origin"} <= set(meta)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", meta["date_created"])
        created = datetime.datetime.strptime(meta["date_created"], "%Y-%m-%d %H:%M")
        assert before <= created <= after
        assert meta["origin"] == str(basic.resolve())


# --------------------------------------------------------------------------------------------
# ids
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", JOBS)
def test_uuid_ids_from_alf_paths(basic: Path, tmp_path: Path, n_jobs: int) -> None:
    out = tmp_path / "out"
    index_quietly(basic, out, n_jobs=n_jobs)
    sessions, datasets = read_tables(out)
    ses1 = "lab/Subjects/s1/2021-01-01/001"
    ses2 = "s2/2021-01-02/1"
    assert _rows(sessions, "id", "lab", "subject", "date", "number") == sorted(
        [
            (_uuid3(ses1), "lab", "s1", datetime.date(2021, 1, 1), 1),
            (_uuid3(ses2), "", "s2", datetime.date(2021, 1, 2), 1),
            (_uuid3(BASIC_EMPTY_SESSION), "", "s3", datetime.date(2021, 1, 3), 2),
        ]
    )
    expected = []
    for path in BASIC:
        ses = ses1 if path.startswith(ses1) else ses2
        rel = path[len(ses) + 1 :]
        expected.append((_uuid3(ses), _uuid3(f"{ses}/{rel}"), rel))
    assert _rows(datasets, "eid", "id", "rel_path") == sorted(expected)
    for eid in sessions["id"].to_pylist():
        parsed = uuid.UUID(eid)
        assert parsed.version == 3 and str(parsed) == eid


@pytest.mark.parametrize("n_jobs", JOBS)
def test_path_ids(basic: Path, tmp_path: Path, n_jobs: int) -> None:
    out = tmp_path / "out"
    index_quietly(basic, out, n_jobs=n_jobs, hash_ids=False)
    sessions, datasets = read_tables(out)
    assert sorted(sessions["id"].to_pylist()) == sorted(
        ["lab/s1/2021-01-01/001", "s2/2021-01-02/1", "s3/2021-01-03/002"]
    )
    assert _rows(datasets, "eid", "id", "rel_path") == sorted(
        [
            (
                "lab/s1/2021-01-01/001",
                "lab/Subjects/s1/2021-01-01/001/alf/spikes.times.npy",
                "alf/spikes.times.npy",
            ),
            (
                "lab/s1/2021-01-01/001",
                "lab/Subjects/s1/2021-01-01/001/alf/probe00/#2024-05-06#/spikes.amps.npy",
                "alf/probe00/#2024-05-06#/spikes.amps.npy",
            ),
            (
                "lab/s1/2021-01-01/001",
                "lab/Subjects/s1/2021-01-01/001/_ibl_experiment.description.yaml",
                "_ibl_experiment.description.yaml",
            ),
            (
                "s2/2021-01-02/1",
                "s2/2021-01-02/1/raw_video_data/_iblrig_leftCamera.raw.mp4",
                "raw_video_data/_iblrig_leftCamera.raw.mp4",
            ),
        ]
    )


def test_ids_deterministic_across_runs_and_jobs(small_tree: TreeSummary, tmp_path: Path) -> None:
    results = []
    for i, n_jobs in enumerate([1, 1, 2]):
        out = tmp_path / f"out{i}"
        index_quietly(small_tree.root, out, n_jobs=n_jobs)
        sessions, datasets = read_tables(out)
        results.append(
            (
                _rows(sessions, "id", "lab", "subject", "date", "number"),
                _rows(datasets, "eid", "id", "rel_path", "file_size"),
            )
        )
    assert results[0] == results[1] == results[2]
    assert len(results[0][0]) == small_tree.sessions
    assert len({row[1] for row in results[0][1]}) == small_tree.datasets  # ids unique


def test_deep_tree_same_with_one_and_two_jobs(tmp_path: Path, make_files: MakeFiles) -> None:
    # deeper than the shard planner opens: workers start inside sessions and collections
    deep = "a/b/c/d/e/f/g/h"
    files = [
        f"{deep}/s1/2021-01-01/001/alf/probe00/x/y/z/spikes.times.npy",
        f"{deep}/s1/2021-01-01/001/alf/probe00/x/y/spikes.amps.npy",
        f"{deep}/s1/2021-01-01/001/trials.table.pqt",
        f"{deep}/lab/Subjects/s2/2021-01-02/003/alf/{'/'.join('klmnopqrs')}/wheel.position.npy",
        "s3/2021-01-03/001/1/2/3/4/5/6/7/8/9/licks.times.npy",
    ]
    root = make_files(tmp_path / "data", files)
    outs = []
    for n_jobs in JOBS:
        out = tmp_path / f"out{n_jobs}"
        report = index_quietly(root, out, n_jobs=n_jobs, hash_ids=False)
        assert (report.sessions, report.datasets) == (3, 5)
        outs.append(_rows(read_tables(out)[1], "eid", "id", "rel_path"))
    assert outs[0] == outs[1]
    assert ("s1/2021-01-01/001", "alf/probe00/x/y/z/spikes.times.npy") in [
        (eid, rel) for eid, _, rel in outs[0]
    ]
    assert ("lab/s2/2021-01-02/003", f"alf/{'/'.join('klmnopqrs')}/wheel.position.npy") in [
        (eid, rel) for eid, _, rel in outs[0]
    ]


# --------------------------------------------------------------------------------------------
# what is a session, what is a dataset
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", JOBS)
def test_empty_session_folder_yields_a_row(basic: Path, tmp_path: Path, n_jobs: int) -> None:
    out = tmp_path / "out"
    index_quietly(basic, out, n_jobs=n_jobs, hash_ids=False)
    sessions, datasets = read_tables(out)
    assert "s3/2021-01-03/002" in sessions["id"].to_pylist()
    assert "s3/2021-01-03/002" not in datasets["eid"].to_pylist()


@pytest.mark.parametrize("n_jobs", JOBS)
def test_dataset_belongs_to_innermost_session(
    tmp_path: Path, make_files: MakeFiles, n_jobs: int
) -> None:
    outer = "lab/Subjects/s1/2021-01-01/001"
    inner = f"{outer}/sub/s2/2021-02-02/002"
    root = make_files(
        tmp_path / "data",
        [
            f"{outer}/alf/spikes.times.npy",
            f"{outer}/sub/spikes.amps.npy",
            f"{inner}/alf/wheel.position.npy",
            f"{inner}/trials.table.pqt",
        ],
    )
    out = tmp_path / "out"
    index_quietly(root, out, n_jobs=n_jobs, hash_ids=False)
    sessions, datasets = read_tables(out)
    assert sorted(sessions["id"].to_pylist()) == ["lab/s1/2021-01-01/001", "s2/2021-02-02/002"]
    assert _rows(datasets, "eid", "rel_path") == [
        ("lab/s1/2021-01-01/001", "alf/spikes.times.npy"),
        ("lab/s1/2021-01-01/001", "sub/spikes.amps.npy"),
        ("s2/2021-02-02/002", "alf/wheel.position.npy"),
        ("s2/2021-02-02/002", "trials.table.pqt"),
    ]


@pytest.mark.parametrize("n_jobs", JOBS)
def test_root_is_a_session_folder(tmp_path: Path, make_files: MakeFiles, n_jobs: int) -> None:
    root = make_files(
        tmp_path / "mylab/Subjects/s1/2021-01-01/001",
        ["alf/spikes.times.npy", "alf/probe00/spikes.amps.npy", "trials.table.pqt", "notes.txt"],
    )
    out = tmp_path / "out"
    report = index_quietly(root, out, n_jobs=n_jobs, hash_ids=False)
    sessions, datasets = read_tables(out)
    assert _rows(sessions, "id", "lab", "subject", "date", "number") == [
        ("mylab/s1/2021-01-01/001", "mylab", "s1", datetime.date(2021, 1, 1), 1)
    ]
    assert _rows(datasets, "eid", "rel_path") == [
        ("mylab/s1/2021-01-01/001", "alf/probe00/spikes.amps.npy"),
        ("mylab/s1/2021-01-01/001", "alf/spikes.times.npy"),
        ("mylab/s1/2021-01-01/001", "trials.table.pqt"),
    ]
    assert report.ignored == 1


def test_non_alf_files_skipped(tmp_path: Path, make_files: MakeFiles) -> None:
    ses = "s1/2021-01-01/001"
    junk = ["notes.txt", ".DS_Store", "README", "raw_data", "alf/log.txt", "alf/spike_train.npy"]
    root = make_files(tmp_path / "data", [f"{ses}/alf/spikes.times.npy"])
    make_files(root, [f"{ses}/{j}" for j in junk])
    out = tmp_path / "out"
    report = index_quietly(root, out, n_jobs=1)
    _, datasets = read_tables(out)
    assert datasets["rel_path"].to_pylist() == ["alf/spikes.times.npy"]
    assert report.ignored == len(junk)


@pytest.mark.parametrize("n_jobs", JOBS)
def test_files_outside_sessions_skipped(
    tmp_path: Path, make_files: MakeFiles, n_jobs: int
) -> None:
    root = make_files(
        tmp_path / "data",
        [
            "top.level.npy",
            "s1/subject.level.npy",
            "s1/2021-01-01/date.level.npy",
            "s1/2021-01-01/0001/bad.number.npy",
            "foo bar/2021-01-01/001/space.subject.npy",
            "s1/2021-01-01/001/alf/spikes.times.npy",
        ],
    )
    out = tmp_path / "out"
    report = index_quietly(root, out, n_jobs=n_jobs, hash_ids=False)
    sessions, datasets = read_tables(out)
    assert sessions["id"].to_pylist() == ["s1/2021-01-01/001"]
    assert datasets["id"].to_pylist() == ["s1/2021-01-01/001/alf/spikes.times.npy"]
    assert report.datasets == 1


# --------------------------------------------------------------------------------------------
# lab=
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", JOBS)
def test_lab_fills_the_lab(tmp_path: Path, make_files: MakeFiles, n_jobs: int) -> None:
    root = make_files(
        tmp_path / "data",
        [
            "s1/2021-01-01/001/spikes.times.npy",
            "mylab/Subjects/s2/2021-01-02/001/spikes.times.npy",  # same lab: no conflict
        ],
    )
    out = tmp_path / "out"
    index_quietly(root, out, n_jobs=n_jobs, lab="mylab")
    sessions, _ = read_tables(out)
    assert _rows(sessions, "subject", "lab") == [("s1", "mylab"), ("s2", "mylab")]


def test_lab_conflict_raises(tmp_path: Path, make_files: MakeFiles) -> None:
    root = make_files(
        tmp_path / "data",
        [
            "s1/2021-01-01/001/spikes.times.npy",
            "otherlab/Subjects/s2/2021-01-02/001/spikes.times.npy",
        ],
    )
    out = tmp_path / "out"
    with pytest.raises(alfcache.LabConflict) as info:
        index_quietly(root, out, n_jobs=1, lab="mylab")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "mylab" in message
    assert "otherlab" in message
    assert "otherlab/Subjects/s2/2021-01-02/001" in message
    assert not (out.exists() and _listing(out) & TABLE_FILES)


# --------------------------------------------------------------------------------------------
# warnings on empty results
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", JOBS)
def test_empty_root(tmp_path: Path, make_files: MakeFiles, n_jobs: int) -> None:
    root = make_files(tmp_path / "data", ["notes.txt", "s1/top.level.npy"])
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning, match="No sessions found"):
        report = alfcache.index(root, out, n_jobs=n_jobs)
    assert (report.sessions, report.datasets) == (0, 0)
    sessions, datasets = read_tables(out)
    assert sessions.num_rows == 0 and datasets.num_rows == 0
    assert sessions.column_names == SESSIONS_COLUMNS
    assert datasets.column_names == DATASETS_COLUMNS
    assert sessions.schema.field("date").type == pa.date32()
    assert sessions.schema.field("number").type == pa.uint16()
    assert datasets.schema.field("file_size").type == pa.uint64()
    assert pa.types.is_dictionary(datasets.schema.field("qc").type)
    ses = pd.read_parquet(out / "sessions.pqt")
    dsets = pd.read_parquet(out / "datasets.pqt")
    assert list(ses.index.names) == ["id"]
    assert list(dsets.index.names) == ["eid", "id"]
    # With no rows, parquet stores no dictionary values: pandas reads an ordered categorical
    # without categories (the reference's empty table reads back the same way).
    assert isinstance(dsets["qc"].dtype, pd.CategoricalDtype)
    assert dsets["qc"].dtype.ordered
    assert str(dsets["file_size"].dtype) in {"UInt64", "uint64"}
    assert ses["number"].dtype == "uint16"


def test_empty_root_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    with pytest.warns(RuntimeWarning, match="No sessions found"):
        alfcache.make_parquet_db(root, n_jobs=1)
    assert _listing(root) == TABLE_FILES


def test_sessions_without_datasets(tmp_path: Path, make_files: MakeFiles) -> None:
    root = make_files(tmp_path / "data", ["s1/2021-01-01/001/notes.txt"])
    (root / "s2/2021-01-01/001").mkdir(parents=True)
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning, match="No datasets found"):
        report = alfcache.index(root, out, n_jobs=1)
    assert (report.sessions, report.datasets) == (2, 0)
    sessions, datasets = read_tables(out)
    assert sessions.num_rows == 2 and datasets.num_rows == 0
    assert datasets.column_names == DATASETS_COLUMNS


def test_no_warning_when_both_tables_have_rows(basic: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alfcache.make_parquet_db(basic, tmp_path / "out", n_jobs=1)
    # only the report (``basic`` holds a session folder '1', which ONE-api cannot load)
    assert [str(w.message) for w in caught if str(w.message).startswith("No ")] == []
    assert all("not_loadable" in str(w.message) for w in caught)


# --------------------------------------------------------------------------------------------
# output folder
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", JOBS)
def test_only_the_two_tables_are_left(basic: Path, tmp_path: Path, n_jobs: int) -> None:
    out = tmp_path / "out"
    out.mkdir()
    index_quietly(basic, out, n_jobs=n_jobs)
    assert _listing(out) == TABLE_FILES
    index_quietly(basic, out, n_jobs=n_jobs)  # overwriting
    assert _listing(out) == TABLE_FILES


def test_default_out_dir_is_root(basic: Path) -> None:
    before = {p.relative_to(basic) for p in basic.rglob("*")}
    fn_ses, fn_dsets = alfcache.make_parquet_db(basic, n_jobs=1)
    assert (fn_ses, fn_dsets) == (basic / "sessions.pqt", basic / "datasets.pqt")
    after = {p.relative_to(basic) for p in basic.rglob("*")}
    assert after - before == {Path("sessions.pqt"), Path("datasets.pqt")}
    # the tables in the root are not indexed on the next run
    alfcache.make_parquet_db(basic, n_jobs=1)
    assert pq.read_table(basic / "datasets.pqt").num_rows == len(BASIC)


def test_out_dir_created_when_missing(basic: Path, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "c"
    fn_ses, fn_dsets = alfcache.make_parquet_db(basic, out, n_jobs=1)
    assert out.is_dir()
    assert fn_ses.parent == out and fn_dsets.parent == out
    assert _listing(out) == TABLE_FILES


@pytest.mark.parametrize("where", ["file", "below_file"])
def test_out_dir_is_a_file(basic: Path, tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a folder")
    out = blocker if where == "file" else blocker / "sub"
    with pytest.raises(alfcache.BadOutDir) as info:
        alfcache.make_parquet_db(basic, out, n_jobs=1)
    assert isinstance(info.value, NotADirectoryError)
    assert isinstance(info.value, alfcache.AlfcacheError)
    assert blocker.read_bytes() == b"not a folder"


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_root(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "nope"
    if kind == "file":
        root.write_bytes(b"x")
    with pytest.raises(alfcache.BadRoot) as info:
        alfcache.make_parquet_db(root, tmp_path / "out", n_jobs=1)
    assert isinstance(info.value, NotADirectoryError)
    assert str(root) in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("n_jobs", [0, -2, 1.5, True, "2"])
def test_bad_n_jobs(basic: Path, tmp_path: Path, n_jobs: Any) -> None:
    with pytest.raises(alfcache.BadArgument) as info:
        alfcache.make_parquet_db(basic, tmp_path / "out", n_jobs=n_jobs)
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "out" / "sessions.pqt").exists()


@pytest.mark.parametrize("fail_on_call", [1, 2])
def test_failed_write_leaves_previous_tables(
    basic: Path,
    tmp_path: Path,
    make_files: MakeFiles,
    monkeypatch: pytest.MonkeyPatch,
    fail_on_call: int,
) -> None:
    out = tmp_path / "out"
    alfcache.make_parquet_db(basic, out, n_jobs=1)
    old = {name: (out / name).read_bytes() for name in TABLE_FILES}
    # the tree changes, so a successful write would change both tables
    make_files(basic, ["s9/2021-09-09/001/alf/spikes.times.npy"])

    real_write = pq.write_table
    calls = []

    def failing_write(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == fail_on_call:
            raise OSError(28, "No space left on device")
        real_write(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", failing_write)
    with pytest.raises(OSError) as info:
        alfcache.make_parquet_db(basic, out, n_jobs=1)
    assert isinstance(info.value, alfcache.WriteFailed)
    assert len(calls) == fail_on_call
    assert {name: (out / name).read_bytes() for name in TABLE_FILES} == old
    assert _listing(out) == TABLE_FILES  # no temporary file left behind

    monkeypatch.undo()
    alfcache.make_parquet_db(basic, out, n_jobs=1)
    assert (out / "sessions.pqt").read_bytes() != old["sessions.pqt"]
    assert (out / "datasets.pqt").read_bytes() != old["datasets.pqt"]


# --------------------------------------------------------------------------------------------
# sizes and hashes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", JOBS)
def test_file_sizes_and_hashes(tmp_path: Path, n_jobs: int) -> None:
    root = tmp_path / "data"
    contents = {
        "s1/2021-01-01/001/alf/spikes.times.npy": b"",
        "s1/2021-01-01/001/alf/spikes.amps.npy": b"a" * 1000,
        "s1/2021-01-01/002/trials.table.pqt": bytes(range(256)) * 7,
    }
    for rel, data in contents.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    out = tmp_path / "out"
    report = index_quietly(root, out, n_jobs=n_jobs, hash_ids=False, hash_files=True)
    _, datasets = read_tables(out)
    expected = sorted(
        (rel.replace("s1/", "", 1), len(data), hashlib.md5(data).hexdigest())
        for rel, data in contents.items()
    )
    got = sorted(
        (eid.split("/", 1)[1] + "/" + rel, size, digest)
        for eid, rel, size, digest in _rows(datasets, "eid", "rel_path", "file_size", "hash")
    )
    assert got == expected
    assert report.bytes == sum(len(d) for d in contents.values())


# --------------------------------------------------------------------------------------------
# skipped folders
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", JOBS)
def test_session_clash_keeps_padded_folder(
    tmp_path: Path, make_files: MakeFiles, n_jobs: int
) -> None:
    root = make_files(
        tmp_path / "data",
        [
            "s1/2021-01-01/1/alf/from.unpadded.npy",
            "s1/2021-01-01/001/alf/from.padded.npy",
            "s1/2021-01-01/2/alf/spikes.times.npy",  # no clash: kept as written
        ],
    )
    out = tmp_path / "out"
    report = index_quietly(root, out, n_jobs=n_jobs, hash_ids=False)
    sessions, datasets = read_tables(out)
    assert _rows(sessions, "id", "number") == [("s1/2021-01-01/001", 1), ("s1/2021-01-01/2", 2)]
    assert _rows(datasets, "eid", "rel_path") == [
        ("s1/2021-01-01/001", "alf/from.padded.npy"),
        ("s1/2021-01-01/2", "alf/spikes.times.npy"),
    ]
    assert [(s.path, s.reason) for s in report.skipped] == [("s1/2021-01-01/1", "session_clash")]
    assert "s1/2021-01-01/001" in report.skipped[0].message


@pytest.mark.parametrize("n_jobs", JOBS)
def test_impossible_date_skipped(tmp_path: Path, make_files: MakeFiles, n_jobs: int) -> None:
    root = make_files(
        tmp_path / "data",
        [
            "lab/Subjects/s1/2021-02-30/001/alf/spikes.times.npy",
            "lab/Subjects/s1/2021-02-28/001/alf/spikes.times.npy",
        ],
    )
    out = tmp_path / "out"
    report = index_quietly(root, out, n_jobs=n_jobs, hash_ids=False)
    sessions, datasets = read_tables(out)
    assert sessions["id"].to_pylist() == ["lab/s1/2021-02-28/001"]
    assert datasets["eid"].to_pylist() == ["lab/s1/2021-02-28/001"]
    assert [(s.path, s.reason) for s in report.skipped] == [
        ("lab/Subjects/s1/2021-02-30/001", "invalid_date")
    ]


def test_make_parquet_db_warns_about_skipped(tmp_path: Path, make_files: MakeFiles) -> None:
    root = make_files(
        tmp_path / "data",
        ["s1/2021-02-30/001/spikes.times.npy", "s1/2021-02-28/001/spikes.times.npy"],
    )
    warning = r"1 entry skipped \(not indexed\): s1/2021-02-30/001: invalid_date"
    with pytest.warns(RuntimeWarning, match=warning):
        alfcache.make_parquet_db(root, tmp_path / "out", n_jobs=1)


# --------------------------------------------------------------------------------------------
# odd folder names must not break the whole run
# --------------------------------------------------------------------------------------------


def test_non_ascii_digit_number_folder_does_not_crash(
    tmp_path: Path, make_files: MakeFiles
) -> None:
    # Arabic-Indic '001' matches the number pattern \d{1,3} of Python's re (\d is Unicode)
    number = "\u0660\u0660\u0661"
    root = make_files(
        tmp_path / "data",
        [f"s1/2021-01-01/{number}/alf/spikes.times.npy", "s2/2021-01-01/001/alf/spikes.times.npy"],
    )
    out = tmp_path / "out"
    report = index_quietly(root, out, n_jobs=1, hash_ids=False)
    sessions, _ = read_tables(out)
    assert "s2/2021-01-01/001" in sessions["id"].to_pylist()
    odd = [r for r in _rows(sessions, "subject", "number") if r[0] == "s1"]
    skipped = [s for s in report.skipped if s.path.startswith("s1/")]
    # ONE-api's own pattern (spec.is_session_path) takes it for a session: so does the walk,
    # whose shortcut for folders named without a leading digit must count these digits too.
    assert odd == [("s1", 1)]
    assert skipped == []


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses non-UTF-8 names")
def test_undecodable_folder_name_does_not_crash(tmp_path: Path, make_files: MakeFiles) -> None:
    root = make_files(tmp_path / "data", ["s2/2021-01-01/001/alf/spikes.times.npy"])
    bad = os.path.join(os.fsencode(root), b"s1/2021-01-01/001/alf\xff")
    os.makedirs(bad)
    with open(os.path.join(bad, b"spikes.times.npy"), "wb") as f:
        f.write(b"x")
    out = tmp_path / "out"
    report = index_quietly(root, out, n_jobs=1, hash_ids=False)
    _, datasets = read_tables(out)
    assert "s2/2021-01-01/001" in datasets["eid"].to_pylist()
    # the file that cannot be stored as UTF-8 is reported, not silently lost
    assert report.skipped


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_alfcache("index", *args, cwd=cwd)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("alfcache: error:"), stderr
    return lines[0]


def test_cli_json(basic: Path, tmp_path: Path, make_files: MakeFiles) -> None:
    make_files(basic, ["s1/2021-02-30/001/spikes.times.npy"])
    out = tmp_path / "out"
    proc = _cli(basic, "--out-dir", out, "--jobs", "1", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert {"sessions", "datasets", "skipped"} <= set(summary)
    assert summary["sessions"] == 3
    assert summary["datasets"] == len(BASIC)
    # One sense per key: ``tasks`` counts the walk's folder tasks (``shards`` before, see
    # CHANGELOG.md), ``shard`` is the array shard (``--shard K/N``), None for the whole tree.
    assert summary["tasks"] >= 1 and "shards" not in summary and summary["shard"] is None
    assert [(s["path"], s["reason"]) for s in summary["skipped"]] == [
        ("s1/2021-02-30/001", "invalid_date")
    ]
    assert _listing(out) == TABLE_FILES
    assert pq.read_table(out / "datasets.pqt").num_rows == len(BASIC)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_cli_bad_root(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "nope"
    if kind == "file":
        root.write_bytes(b"x")
    proc = _cli(root, "--jobs", "1", cwd=tmp_path)
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert str(root) in line
    assert proc.stdout == ""


def test_cli_out_dir_is_a_file(basic: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_bytes(b"x")
    proc = _cli(basic, "--out-dir", out, "--jobs", "1", cwd=tmp_path)
    assert proc.returncode == 2
    _one_error_line(proc.stderr)


def test_cli_lab_conflict(basic: Path, tmp_path: Path) -> None:
    proc = _cli(basic, "--out-dir", tmp_path / "out", "--jobs", "1", "--lab", "x", cwd=tmp_path)
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "lab/Subjects/s1/2021-01-01/001" in line


@pytest.mark.parametrize("jobs", ["0", "-2", "two"])
def test_cli_bad_jobs(basic: Path, tmp_path: Path, jobs: str) -> None:
    proc = _cli(basic, "--out-dir", tmp_path / "out", "--jobs", jobs, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--jobs" in proc.stderr
    assert not (tmp_path / "out").exists()
