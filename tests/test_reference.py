"""Parity with ONE-api's own ``one.alf.cache.make_parquet_db`` on the 240-session parity tree.

The reference (one-api 3.0.0, pinned by the ``test`` extra) and alfcache index the same tree
into separate output folders; the tables must describe the same sessions and datasets, and
ONE-api's loader must turn both into frames of the same shape and dtypes.

Known, intended differences that are not compared:

* ids with ``hash_ids=True``: the reference derives them from a random namespace (they change
  on every run), alfcache's are UUID v3 from a fixed namespace; tables are joined by content.
* dataset ids with ``hash_ids=False``: the PyPI releases write just ``rel_path``, alfcache the
  documented ``<session ALF path>/<rel_path>``.
* ``hash``: the reference writes ``''`` for unhashed files, alfcache null (ONE-api then skips
  the MD5 check instead of logging a mismatch for every file).
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from one.alf.cache import load_tables
from one.alf.cache import make_parquet_db as reference_make_parquet_db

import alfcache
from alfcache.synth import TreeSummary

SESSION_KEY = ["lab", "subject", "date", "number"]
DATASET_CONTENT = ["rel_path", "file_size", "exists", "qc"]
UUID3 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-3[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
HASH_IDS = pytest.mark.parametrize("hash_ids", [False, True], ids=["path_ids", "hash_ids"])


@pytest.fixture(scope="module")
def reference(parity_tree: TreeSummary, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reference's tables for both id modes: ``{hash_ids: out_dir}``."""
    out = {}
    for hash_ids in (False, True):
        out_dir = tmp_path_factory.mktemp(f"reference-hash_ids-{hash_ids}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas deprecation noise from the reference
            reference_make_parquet_db(parity_tree.root, out_dir=out_dir, hash_ids=hash_ids)
        out[hash_ids] = out_dir
    return out


@pytest.fixture(scope="module")
def ours(parity_tree: TreeSummary, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """alfcache's tables for both id modes and a serial and a parallel scan.

    ``{(hash_ids, n_jobs): out_dir}``.
    """
    out = {}
    for hash_ids in (False, True):
        for n_jobs in (1, 2):
            out_dir = tmp_path_factory.mktemp(f"ours-hash_ids-{hash_ids}-jobs-{n_jobs}")
            alfcache.make_parquet_db(
                parity_tree.root, out_dir=out_dir, hash_ids=hash_ids, n_jobs=n_jobs
            )
            out[hash_ids, n_jobs] = out_dir
    return out


def _read(folder: Path, table: str) -> pd.DataFrame:
    """A table as written, every column (index columns too) as a plain column."""
    df = pd.read_parquet(folder / f"{table}.pqt")
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    return df


def _sessions(folder: Path) -> pd.DataFrame:
    df = _read(folder, "sessions")
    df["lab"] = df["lab"].fillna("")  # '' and null both mean "no lab"
    df["date"] = df["date"].astype(str)
    df["number"] = df["number"].astype(int)
    return df


def _datasets(folder: Path) -> pd.DataFrame:
    """Datasets joined to their session's (lab, subject, date, number) through the eid."""
    ses = _sessions(folder).rename(columns={"id": "eid"})[["eid", *SESSION_KEY]]
    dsets = _read(folder, "datasets")
    dsets["file_size"] = dsets["file_size"].astype("int64")
    dsets["qc"] = dsets["qc"].astype(str)
    joined = dsets.merge(ses, on="eid", how="left", validate="many_to_one")
    assert joined["subject"].notna().all(), "datasets whose eid is not in the sessions table"
    return joined


def _sorted(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return df[columns].sort_values(columns).reset_index(drop=True)


def test_reference_is_the_pinned_release():
    """The parity target is one-api 3.0.0 (the ``test`` extra pins it)."""
    from one import __version__

    assert __version__ == "3.0.0"


def test_parity_tree_has_no_empty_session(parity_tree: TreeSummary, reference: dict):
    """The reference's hash_ids=True path asserts on empty sessions; the tree must have none."""
    assert len(_sessions(reference[True])) == parity_tree.sessions > 0
    assert len(_read(reference[True], "datasets")) == parity_tree.datasets > 0


@HASH_IDS
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_same_sessions(
    parity_tree: TreeSummary, reference: dict, ours: dict, hash_ids: bool, n_jobs: int
):
    ref, got = _sessions(reference[hash_ids]), _sessions(ours[hash_ids, n_jobs])
    assert len(got) == len(ref) == parity_tree.sessions
    assert not got.duplicated(SESSION_KEY).any()
    columns = SESSION_KEY if hash_ids else ["id", *SESSION_KEY]
    pd.testing.assert_frame_equal(_sorted(got, columns), _sorted(ref, columns))
    # Both write empty task protocols and projects.
    for col in ("task_protocol", "projects"):
        assert set(got[col].fillna("")) == set(ref[col].fillna("")) == {""}


@HASH_IDS
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_same_datasets(
    parity_tree: TreeSummary, reference: dict, ours: dict, hash_ids: bool, n_jobs: int
):
    ref, got = _datasets(reference[hash_ids]), _datasets(ours[hash_ids, n_jobs])
    assert len(got) == len(ref) == parity_tree.datasets
    columns = [*SESSION_KEY, *DATASET_CONTENT]
    if not hash_ids:
        columns = ["eid", *columns]  # path eids are lab/subject/date/number in both
    pd.testing.assert_frame_equal(_sorted(got, columns), _sorted(ref, columns))
    assert (ref["hash"] == "").all()
    assert got["hash"].isna().all()


def test_hashed_ids_are_unique_lowercase_uuid3(ours: dict):
    for n_jobs in (1, 2):
        ses = _read(ours[True, n_jobs], "sessions")
        dsets = _read(ours[True, n_jobs], "datasets")
        for ids in (ses["id"], dsets["id"], dsets["eid"]):
            assert ids.map(lambda s: UUID3.fullmatch(s) is not None).all()
        assert ses["id"].is_unique
        assert dsets["id"].is_unique
        assert set(dsets["eid"]) == set(ses["id"])
    # A fixed namespace: the serial and the parallel scan give the same ids.
    serial = _read(ours[True, 1], "datasets").sort_values(["eid", "id"])
    parallel = _read(ours[True, 2], "datasets").sort_values(["eid", "id"])
    pd.testing.assert_frame_equal(serial.reset_index(drop=True), parallel.reset_index(drop=True))


def test_path_dataset_ids_are_session_alf_path_and_rel_path(ours: dict):
    """The documented id (the PyPI reference writes just rel_path; see the module docstring)."""
    dsets = _datasets(ours[False, 2])
    expected = dsets.apply(
        lambda row: "/".join(
            [
                *([row["lab"], "Subjects"] if row["lab"] else []),
                *row["eid"].split("/")[-3:],  # subject/date/number as the folders are named
                row["rel_path"],
            ]
        ),
        axis=1,
    )
    assert (dsets["id"] == expected).all(), dsets.loc[dsets["id"] != expected, ["id"]].head()
    assert dsets["id"].is_unique


def _pandas_layout(file: Path) -> tuple[list, list]:
    """The index and the columns pandas records in a file, its version and creator aside."""
    pandas = json.loads(pq.read_schema(file).metadata[b"pandas"])
    columns = [c for c in pandas["columns"] if c["name"] != "default_revision"]
    return pandas["index_columns"], columns


@HASH_IDS
def test_same_layout(reference: dict, ours: dict, hash_ids: bool):
    """The same columns in the same order, Arrow types, and pandas index and column metadata.

    So ``pd.read_parquet`` gives the frame one-api's tables give: with path ids, the ids are
    columns over a ``RangeIndex`` (``df.loc[0]``, ``df["id"]``); with hashed ids, the index.
    One Arrow type differs on purpose: an unhashed ``hash`` is Arrow's null type in ours (its
    pandas metadata that of one-api's string column), because pandas 3 reads a null *string*
    as NaN, which one-api takes for a digest (``hash is not None``): it would MD5 every file
    it loads and log a mismatch (``test_one_client.test_unhashed_tables_skip_the_md5_check``).
    """
    for table in ("sessions", "datasets"):
        ref = pq.read_schema(reference[hash_ids] / f"{table}.pqt")
        got = pq.read_schema(ours[hash_ids, 2] / f"{table}.pqt")
        if table == "datasets":
            # alfcache's one extra column, as the extra columns of Alyx's tables: last but
            # the index (test_default_revision).
            got = got.remove(got.get_field_index("default_revision"))
        assert got.names == ref.names, table
        if table == "datasets":
            position = ref.get_field_index("hash")
            assert (ref.types[position], got.types[position]) == (pa.string(), pa.null())
            ref, got = ref.remove(position), got.remove(position)
        assert got.types == ref.types, table
        assert _pandas_layout(ours[hash_ids, 2] / f"{table}.pqt") == _pandas_layout(
            reference[hash_ids] / f"{table}.pqt"
        ), table
        ref_df = pd.read_parquet(reference[hash_ids] / f"{table}.pqt")
        got_df = pd.read_parquet(ours[hash_ids, 2] / f"{table}.pqt")
        assert type(got_df.index) is type(ref_df.index), table
        assert got_df.index.names == ref_df.index.names, table
        assert [c for c in got_df.columns if c != "default_revision"] == list(ref_df.columns)


@HASH_IDS
def test_same_one_metadata(parity_tree: TreeSummary, reference: dict, ours: dict, hash_ids: bool):
    for table in ("sessions", "datasets"):
        ref = json.loads(
            pq.read_schema(reference[hash_ids] / f"{table}.pqt").metadata[b"one_metadata"]
        )
        got = json.loads(
            pq.read_schema(ours[hash_ids, 2] / f"{table}.pqt").metadata[b"one_metadata"]
        )
        assert got["origin"] == ref["origin"] == str(Path(parity_tree.root).resolve())
        # 'YYYY-MM-DD HH:MM', naive; both written within the same few seconds.
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", got["date_created"])
        pd.Timestamp(got["date_created"])


def _element_types(values) -> set[type]:
    return {type(v) for v in values if not pd.isna(v)}


def _assert_loaded_alike(got: pd.DataFrame, ref: pd.DataFrame, table: str) -> None:
    assert list(got.index.names) == list(ref.index.names), table
    for level in range(got.index.nlevels):
        got_level = got.index.get_level_values(level)
        ref_level = ref.index.get_level_values(level)
        assert got_level.dtype == ref_level.dtype, (table, level)
        assert _element_types(got_level) == _element_types(ref_level), (table, level)
    assert got.index.is_monotonic_increasing, table
    extra = ["default_revision"] if table == "datasets" else []  # test_default_revision
    assert list(got.columns) == list(ref.columns) + extra, table
    for col in ref.columns:
        assert got[col].dtype == ref[col].dtype, (table, col, got[col].dtype, ref[col].dtype)
        if table == "datasets" and col == "hash":
            continue  # ours null, the reference's ''
        assert _element_types(got[col]) == _element_types(ref[col]), (table, col)


@HASH_IDS
def test_loaded_by_one_alike(reference: dict, ours: dict, hash_ids: bool):
    """ONE-api's loader (``load_tables``, what ``One.load_cache`` calls) treats both alike."""
    ref, got = load_tables(reference[hash_ids]), load_tables(ours[hash_ids, 2])
    for table in ("sessions", "datasets"):
        _assert_loaded_alike(got[table], ref[table], table)
    # Hash: null in ours, '' in the reference.
    assert got["datasets"]["hash"].isna().all()
    assert (ref["datasets"]["hash"] == "").all()
    if hash_ids:  # ONE-api casts UUID indices to uuid.UUID
        assert _element_types(got["sessions"].index) == {uuid.UUID}
    # Same content once loaded (ids aside, see the module docstring).
    ref_ses = ref["sessions"].reset_index(drop=hash_ids)
    got_ses = got["sessions"].reset_index(drop=hash_ids)
    ref_ses["lab"] = ref_ses["lab"].fillna("")
    got_ses["lab"] = got_ses["lab"].fillna("")
    columns = list(ref_ses.columns)
    pd.testing.assert_frame_equal(_sorted(got_ses, columns), _sorted(ref_ses, columns))

    ref_ds = ref["datasets"].reset_index()
    got_ds = got["datasets"].reset_index()
    ses_key = {"ref": ref["sessions"], "got": got["sessions"]}
    for name, df in (("ref", ref_ds), ("got", got_ds)):
        key = ses_key[name].loc[df["eid"], ["subject", "date", "number"]].reset_index(drop=True)
        df[["subject", "date", "number"]] = key.to_numpy()
    columns = ["subject", "date", "number", *DATASET_CONTENT]
    pd.testing.assert_frame_equal(_sorted(got_ds, columns), _sorted(ref_ds, columns))
