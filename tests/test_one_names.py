"""one-api 3.x's names in ``alfcache``: ``patch_tables``, ``remove_table_files``,
``cast_index_object``, ``default_cache`` and ``merge_tables(..., origin=)``.

Differential where the installed one-api has the name (3.0.0 has the first three, 3.1+ all);
marked ``one`` so ``scripts/test`` runs them again under the newest one-api, where every
comparison runs.
"""

from __future__ import annotations

import copy
import inspect
import uuid
import warnings
from pathlib import Path

import numpy as np
import one.alf.cache as reference
import pandas as pd
import pytest

import alfcache

pytestmark = pytest.mark.one

IDS = [str(uuid.UUID(int=i, version=4)) for i in (3, 1, 2)]
HAS_ORIGIN = "origin" in inspect.signature(reference.merge_tables).parameters


def test_seed_names_stay() -> None:
    assert alfcache.patch_tables is alfcache.patch_cache
    assert alfcache.remove_table_files is alfcache.remove_cache_table_files


@pytest.mark.parametrize("levels", [1, 2])
def test_cast_index_object_matches_one_api(levels: int) -> None:
    def frame() -> pd.DataFrame:
        df = pd.DataFrame({"x": [1, 2, 3]}, index=pd.Index(IDS, name="id"))
        if levels == 2:
            df.index = pd.MultiIndex.from_arrays([IDS, IDS[::-1]], names=["eid", "id"])
        return df

    ours, theirs = frame(), frame()
    got = alfcache.cast_index_object(ours)
    want = reference.cast_index_object(theirs)
    assert got is ours
    pd.testing.assert_frame_equal(got, want)
    assert {type(v) for v in got.index.get_level_values(0)} == {uuid.UUID}
    str_back = alfcache.cast_index_object(frame(), str)
    assert list(str_back.index.get_level_values(0)) == IDS


def test_patch_tables_matches_one_api() -> None:
    table = pd.DataFrame(
        {
            "rel_path": ["a.b.npy", "c.d.npy"],
            "session_path": ["x", "y"],
            "project": ["p", "q"],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        want = reference.patch_tables(table.copy(), "1.0.0", "datasets")
    got = alfcache.patch_tables(table.copy(), "1.0.0", "datasets")
    pd.testing.assert_frame_equal(got, want)


def test_remove_table_files_matches_one_api(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    removed = {}
    for name, remove in (
        ("ours", alfcache.remove_table_files),
        ("theirs", reference.remove_table_files),
    ):
        folder = tmp_path / name
        folder.mkdir()
        for file in ("sessions.pqt", "datasets.pqt", "cache_info.json", "other.pqt"):
            (folder / file).write_text("x")
        removed[name] = [p.name for p in remove(folder, tables=("sessions", "datasets", "gone"))]
        assert sorted(p.name for p in folder.iterdir()) == ["other.pqt"]
    assert (
        removed["ours"]
        == removed["theirs"]
        == [
            "cache_info.json",
            "sessions.pqt",
            "datasets.pqt",
        ]
    )


@pytest.mark.parametrize("origin", ["", "alyx.example.org"])
def test_default_cache(origin: str) -> None:
    got = alfcache.default_cache(origin)
    for name in ("sessions", "datasets"):
        pd.testing.assert_frame_equal(got[name], getattr(alfcache, f"EMPTY_{name.upper()}_FRAME"))
        assert got[name] is not getattr(alfcache, f"EMPTY_{name.upper()}_FRAME")
        raw = got["_meta"]["raw"][name]
        assert raw["origin"] == ({origin} if origin else set())
        pd.Timestamp(raw["date_created"])
    assert got["_meta"]["raw"]["sessions"] is not got["_meta"]["raw"]["datasets"]
    assert got.sessions is got["sessions"]
    if hasattr(reference, "default_cache"):  # one-api 3.1+
        want = reference.default_cache(origin)
        assert set(got) == set(want)
        for name in ("sessions", "datasets"):
            pd.testing.assert_frame_equal(got[name], want[name])
        assert {k: v for k, v in got["_meta"].items() if k != "raw"} == {
            k: v for k, v in want["_meta"].items() if k != "raw"
        }
        for name in ("sessions", "datasets"):
            assert got["_meta"]["raw"][name]["origin"] == want["_meta"]["raw"][name]["origin"]


def _session(eid: uuid.UUID) -> pd.Series:
    record = pd.Series(
        {
            "lab": "lab",
            "subject": "s",
            "date": pd.Timestamp("2024-01-01").date(),
            "number": np.uint16(1),
            "task_protocol": "",
            "projects": "",
        },
        name=eid,
    )
    return record


def test_merge_tables_origin() -> None:
    """The origin joins the set of the updated table's raw metadata, as in one-api 3.1+."""
    eid = uuid.UUID(int=5, version=4)
    ours = alfcache.default_cache()
    assert alfcache.merge_tables(ours, origin="db1", sessions=_session(eid)) is not None
    assert ours["_meta"]["raw"]["sessions"]["origin"] == {"db1"}
    assert ours["_meta"]["raw"]["datasets"]["origin"] == set()  # not updated
    alfcache.merge_tables(ours, origin="db2", sessions=_session(uuid.UUID(int=6, version=4)))
    assert ours["_meta"]["raw"]["sessions"]["origin"] == {"db1", "db2"}
    assert len(ours["sessions"]) == 2
    if HAS_ORIGIN:
        theirs = reference.default_cache()
        reference.merge_tables(theirs, origin="db1", sessions=_session(eid))
        reference.merge_tables(
            theirs, origin="db2", sessions=_session(uuid.UUID(int=6, version=4))
        )
        pd.testing.assert_frame_equal(ours["sessions"], theirs["sessions"])
        for name in ("sessions", "datasets"):
            assert ours["_meta"]["raw"][name]["origin"] == theirs["_meta"]["raw"][name]["origin"]


def test_merge_tables_origin_into_loaded_tables(tmp_path: Path) -> None:
    """Loaded tables hold the origin as written (a string): it becomes a set with the new one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        root = tmp_path / "data"
        (root / "lab/Subjects/s/2024-01-01/001/alf").mkdir(parents=True)
        (root / "lab/Subjects/s/2024-01-01/001/alf/spikes.times.npy").write_bytes(b"x")
        alfcache.make_parquet_db(root, n_jobs=1)
    cache = alfcache.load_tables(root)
    written = cache["_meta"]["raw"]["sessions"]["origin"]
    alfcache.merge_tables(cache, origin="db1", sessions=_session(uuid.UUID(int=9, version=4)))
    assert cache["_meta"]["raw"]["sessions"]["origin"] == {written, "db1"}


def test_merge_tables_without_origin_leaves_it() -> None:
    cache = alfcache.default_cache("here")
    before = copy.deepcopy(cache["_meta"]["raw"])
    alfcache.merge_tables(cache, sessions=_session(uuid.UUID(int=7, version=4)))
    assert cache["_meta"]["raw"] == before
