"""``load_tables`` and ``merge_tables`` against one-api 3.0.0's, on the same files and records.

Every test runs both implementations on the same input and compares what they return (frames,
``_meta``, the merged tables, the errors), so a departure from one-api shows up as a failure.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import one.alf.cache as reference
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import alfcache
from alfcache.synth import make_tree

NEW_ID = uuid.UUID("05afa634-c593-4d85-b5e6-b71410140e63")


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Cache folders: alfcache's (uuid and path ids, hashed) and one-api's own tables."""
    base = tmp_path_factory.mktemp("tables")
    root = base / "data"
    make_tree(root, 6, empty_every=0, max_file_size=256)
    out = {name: base / name for name in ("uuid", "path", "hashed", "one_api")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        alfcache.make_parquet_db(root, out["uuid"], n_jobs=1)
        alfcache.make_parquet_db(root, out["path"], hash_ids=False, n_jobs=1)
        alfcache.make_parquet_db(root, out["hashed"], hash_algorithm="both", n_jobs=1)
        out["one_api"].mkdir()
        reference.make_parquet_db(root, out["one_api"])
    return out


def _assert_same_load(folder: Path, **kwargs: Any) -> tuple[Any, Any]:
    ours = alfcache.load_tables(folder, **kwargs)
    theirs = reference.load_tables(folder, **kwargs)
    assert set(ours) == set(theirs)
    for name in theirs:
        if name == "_meta":
            continue
        pd.testing.assert_frame_equal(ours[name], theirs[name])
        assert list(ours[name].index.names) == list(theirs[name].index.names)
        assert [type(v) for v in ours[name].index.get_level_values(0)] == [
            type(v) for v in theirs[name].index.get_level_values(0)
        ]
    assert set(ours["_meta"]) == set(theirs["_meta"])
    assert ours["_meta"]["raw"] == theirs["_meta"]["raw"]
    assert ours["_meta"]["created_time"] == theirs["_meta"]["created_time"]
    for key in ("modified_time", "saved_time"):
        assert ours["_meta"][key] is theirs["_meta"][key] is None
    assert ours.sessions is ours["sessions"]  # a Bunch: attributes too
    return ours, theirs


@pytest.mark.parametrize("name", ["uuid", "path", "hashed", "one_api"])
def test_load_tables_matches_one_api(trees: dict[str, Path], name: str) -> None:
    ours, _ = _assert_same_load(trees[name])
    assert len(ours["datasets"]) > 0
    if name != "path":
        assert isinstance(ours["sessions"].index[0], uuid.UUID)
    else:
        assert isinstance(ours["sessions"].index[0], str)
    assert ours["sessions"].index.is_monotonic_increasing


def test_load_tables_of_an_empty_folder(tmp_path: Path) -> None:
    ours, _ = _assert_same_load(tmp_path)
    assert ours["sessions"].empty and ours["_meta"]["created_time"] is None


def test_load_tables_glob_pattern(trees: dict[str, Path]) -> None:
    ours, _ = _assert_same_load(trees["uuid"], glob_pattern="sessions.*")
    assert ours["datasets"].empty and not ours["sessions"].empty


def _write(path: Path, frame: pd.DataFrame, meta: dict[str, Any] | None, index: bool) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=index)
    metadata = {} if index is False else dict(table.schema.metadata)
    if not index:
        metadata.pop(b"pandas", None)
    if meta is not None:
        metadata[b"one_metadata"] = json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata(metadata), path)


def test_table_without_index_metadata_and_unsorted(tmp_path: Path) -> None:
    """Index from every column named like 'id', sorted by name; rows sorted by index."""
    eids = [str(uuid.uuid4()) for _ in range(3)]
    frame = pd.DataFrame(
        {
            "rel_path": ["c.d.npy", "a.b.npy", "e.f.npy"],
            "id": [str(uuid.uuid4()) for _ in range(3)],
            "eid": eids[::-1],
            "file_size": np.array([1, 2, 3], dtype=np.uint64),
        }
    )
    _write(tmp_path / "datasets.pqt", frame, {"date_created": "2024-01-02 03:04"}, index=False)
    ours, _ = _assert_same_load(tmp_path)
    assert list(ours["datasets"].index.names) == ["eid", "id"]
    assert ours["_meta"]["created_time"] == datetime.datetime(2024, 1, 2, 3, 4)


def test_table_without_date_created_is_skipped_with_a_warning(
    trees: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = pd.read_parquet(trees["uuid"] / "sessions.pqt")
    _write(tmp_path / "sessions.pqt", frame, {"origin": "x"}, index=True)
    with caplog.at_level(logging.WARNING):
        ours, _ = _assert_same_load(tmp_path)
    assert ours["sessions"].empty and ours["_meta"]["raw"] == {"sessions": {"origin": "x"}}
    assert [r.getMessage() for r in caplog.records if r.name == "alfcache"] == [
        f"{tmp_path / 'sessions.pqt'} does not appear to be a valid table. Skipping"
    ]


def test_table_without_id_columns_fails_like_one_api(tmp_path: Path) -> None:
    frame = pd.DataFrame({"subject": ["a"], "lab": ["b"]})
    _write(tmp_path / "sessions.pqt", frame, {"date_created": "2024-01-02 03:04"}, index=False)
    with pytest.raises(KeyError, match="Failed to set index"):
        reference.load_tables(tmp_path)
    with pytest.raises(KeyError, match="Failed to set index"):
        alfcache.load_tables(tmp_path)


def test_old_tables_are_patched_like_one_api(tmp_path: Path) -> None:
    """Integer UUID pairs, 'project', no qc, a session_path column; min_api_version 1.0."""
    ids = [uuid.uuid4() for _ in range(2)]
    eids = [uuid.uuid4() for _ in range(2)]
    halves = np.array([np.frombuffer(u.bytes, dtype=np.int64) for u in ids])
    eid_halves = np.array([np.frombuffer(u.bytes, dtype=np.int64) for u in eids])
    datasets = pd.DataFrame(
        {
            "id_0": halves[:, 0],
            "id_1": halves[:, 1],
            "eid_0": eid_halves[:, 0],
            "eid_1": eid_halves[:, 1],
            "rel_path": ["alf/a.b.npy", "alf/c.d.npy"],
            "session_path": ["lab/Subjects/s/2020-01-01/001"] * 2,
            "file_size": np.array([1, 2], dtype=np.uint64),
            "exists": [True, False],
        }
    ).set_index(["id_0", "id_1"])
    sessions = pd.DataFrame(
        {
            "id_0": eid_halves[:, 0],
            "id_1": eid_halves[:, 1],
            "subject": ["s", "s"],
            "project": ["p", "q"],
        }
    ).set_index(["id_0", "id_1"])
    meta = {"date_created": "2020-01-01 00:00", "min_api_version": "1.0.0"}
    _write(tmp_path / "datasets.pqt", datasets, meta, index=True)
    _write(tmp_path / "sessions.pqt", sessions, meta, index=True)
    ours, _ = _assert_same_load(tmp_path)
    assert "projects" in ours["sessions"].columns and "qc" in ours["datasets"].columns
    assert "session_path" not in ours["datasets"].columns


# --------------------------------------------------------------------------------------------
# merge_tables
# --------------------------------------------------------------------------------------------


def _both(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    loaded = reference.load_tables(folder)
    return copy.deepcopy(loaded), copy.deepcopy(loaded)


def _assert_same_merge(
    folder: Path, strict: bool = False, **records: Callable[[dict[str, Any]], Any]
) -> dict[str, Any]:
    """Merge the records each factory builds from the loaded cache, with both implementations."""
    ours, theirs = _both(folder)
    got = alfcache.merge_tables(ours, strict=strict, **{k: f(ours) for k, f in records.items()})
    want = reference.merge_tables(
        theirs, strict=strict, **{k: f(theirs) for k, f in records.items()}
    )
    assert type(got) is type(want)
    for name in ("sessions", "datasets"):
        pd.testing.assert_frame_equal(ours[name], theirs[name])
    assert (ours["_meta"]["modified_time"] is None) == (theirs["_meta"]["modified_time"] is None)
    return ours


def _new_and_changed_datasets(cache: dict[str, Any]) -> pd.DataFrame:
    """Two changed rows (one with an extra column to drop) and a new one lacking columns."""
    datasets = cache["datasets"]
    changed = datasets.iloc[:2].copy()
    changed["file_size"] = changed["file_size"] + 1
    changed["exists"] = False
    changed["not_in_cache"] = 1.5
    eid = datasets.index[0][0]
    new = pd.DataFrame(
        {"rel_path": ["alf/new.thing.npy"], "file_size": [7], "exists": [True]},
        index=pd.MultiIndex.from_tuples([(eid, NEW_ID)], names=["eid", "id"]),
    )
    records = pd.concat([changed, new, changed.iloc[:1]])  # a duplicate: the first one is kept
    # Columns the records lack are added as nullable (alfcache's hashed tables have extras).
    return records.drop(columns=[c for c in ("hash", "mtime_ns", "xxh3_128") if c in records])


@pytest.mark.parametrize("name", ["uuid", "hashed"])
def test_merge_tables_matches_one_api(trees: dict[str, Path], name: str) -> None:
    ours = _assert_same_merge(trees[name], datasets=_new_and_changed_datasets)
    assert "alf/new.thing.npy" in set(ours["datasets"]["rel_path"])
    assert ours["datasets"].index.is_monotonic_increasing


def test_merge_a_series_of_sessions(trees: dict[str, Path]) -> None:
    def one_session(cache: dict[str, Any]) -> pd.Series:
        row = cache["sessions"].iloc[0].copy()
        row["subject"] = "renamed"
        return row

    ours = _assert_same_merge(trees["uuid"], sessions=one_session)
    assert "renamed" in set(ours["sessions"]["subject"])


def test_merge_nothing(trees: dict[str, Path]) -> None:
    ours, _ = _both(trees["uuid"])
    assert alfcache.merge_tables(ours, sessions=None, datasets=pd.DataFrame()) is None
    assert ours["_meta"]["modified_time"] is None
    assert _assert_same_merge(trees["uuid"], sessions=lambda c: None)


def test_merge_strict_needs_the_same_columns(trees: dict[str, Path]) -> None:
    for merge in (alfcache.merge_tables, reference.merge_tables):
        cache, _ = _both(trees["uuid"])
        records = _new_and_changed_datasets(cache)
        with pytest.raises(AssertionError):
            merge(cache, strict=True, datasets=records)


def test_merge_into_an_unknown_table(trees: dict[str, Path]) -> None:
    for merge in (alfcache.merge_tables, reference.merge_tables):
        cache, _ = _both(trees["uuid"])
        with pytest.raises(KeyError, match="not in cache"):
            merge(cache, subjects=cache["sessions"])


def test_merge_fills_exists_columns_from_exists(trees: dict[str, Path]) -> None:
    """A cache column ``exists_<store>`` the records lack takes the records' ``exists``."""
    ours, theirs = _both(trees["uuid"])
    records = {id(cache): _new_and_changed_datasets(cache) for cache in (ours, theirs)}
    for cache in (ours, theirs):
        cache["datasets"]["exists_aws"] = True
    got = alfcache.merge_tables(ours, datasets=records[id(ours)])
    want = reference.merge_tables(theirs, datasets=records[id(theirs)])
    assert type(got) is type(want)
    pd.testing.assert_frame_equal(ours["datasets"], theirs["datasets"])
    new = ours["datasets"][ours["datasets"]["rel_path"] == "alf/new.thing.npy"]
    assert new["exists_aws"].tolist() == [True]  # the record's exists, not a null


def _column_chunks(table: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each column of ``table``'s first row group: its compression and encodings."""
    group = pq.ParquetFile(table).metadata.row_group(0)
    chunks = (group.column(i) for i in range(group.num_columns))
    return {c.path_in_schema: (c.compression, c.encodings) for c in chunks}


@pytest.mark.parametrize(
    ("name", "plain"),
    [("uuid", {"id", "hash"}), ("path", {"hash"}), ("hashed", {"id", "hash", "xxh3_128"})],
)
def test_random_hex_columns_are_written_plain(
    trees: dict[str, Path], name: str, plain: set[str]
) -> None:
    """UUIDs and digests do not shrink: they skip the dictionary and Snappy (time to write);
    every other column, path ids among them, keeps both."""
    for table in ("sessions.pqt", "datasets.pqt"):
        for column, (compression, encodings) in _column_chunks(trees[name] / table).items():
            if column in plain:
                assert (compression, "RLE_DICTIONARY" in encodings) == ("UNCOMPRESSED", False)
            else:
                assert compression == "SNAPPY", (table, column)
