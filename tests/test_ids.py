"""Deterministic ids: the column-at-a-time UUID v3 equals ``uuid.uuid3`` row by row, and the
ids the walk makes are those of each kept session's ALF path."""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from _helpers import forbid_uuids, index_quietly, read_tables
from conftest import MakeFiles

import alfcache
import alfcache._tables.build
import alfcache._walk.local
from alfcache._alf import ids
from alfcache._alf.ids import NAMESPACE, uuid3_joined, uuid3_strings
from alfcache._records import ScanResult
from alfcache._tables.build import assemble
from alfcache._walk.scan import Rules, Start, scan_folders

CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-3[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

FIXED_NAMES: list[str] = [
    "",
    "a",
    "lab/Subjects/s1/2021-01-01/001",
    "s1/2021-01-01/001",
    "lab/Subjects/s1/2021-01-01/001/alf/probe00/#2024-05-06#/spikes.times.npy",
    "ünïcode/2021-01-01/001",
    "中文/2021-01-01/001/alf/中文.times.npy",
    "emoji 🐭/2021-01-01/001",
    "tab\tand\nnewline",
    "x" * 10_000,
]


def _random_names(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcXYZ019_-./# " + "éü中🐭" + "\u0000\u00ff\u07ff\u0800\uffff"
    names = []
    for _ in range(n):
        length = rng.choice([0, 1, 2, 5, 20, 60, 200])
        names.append("".join(rng.choice(alphabet) for _ in range(length)))
    return names


def _expected(names: list[str]) -> list[str]:
    return [str(uuid.uuid3(NAMESPACE, name)) for name in names]


def test_namespace_is_exported_and_fixed() -> None:
    assert alfcache.NAMESPACE is NAMESPACE
    assert isinstance(NAMESPACE, uuid.UUID)
    # The namespace is part of the id format: changing it changes every id ever written.
    assert str(NAMESPACE) == "2a6e3c58-8e0a-4b1f-9d36-6c1f0b5a1c3e"


def test_fixed_names_equal_uuid3() -> None:
    got = uuid3_strings(FIXED_NAMES)
    assert isinstance(got, pa.Array)
    assert pa.types.is_string(got.type) or pa.types.is_large_string(got.type)
    assert got.null_count == 0
    assert got.to_pylist() == _expected(FIXED_NAMES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Written out once from ``uuid.uuid3(NAMESPACE, name)`` with the standard library;
        # guards against a drift of the namespace or of the text encoding.
        ("lab/Subjects/s1/2021-01-01/001", "1e2b0172-4c51-32d0-afb1-7736fd4619f3"),
        ("", "5d534ba4-3e6c-3802-8247-9f184a0f8dc5"),
        ("ü", "8446fcb8-87ca-30c3-a3de-6ced3f89b853"),
    ],
    ids=repr,
)
def test_known_values(name: str, expected: str) -> None:
    assert uuid3_strings([name]).to_pylist() == [expected]


@pytest.mark.parametrize("seed", [0, 1])
def test_random_names_equal_uuid3(seed: int) -> None:
    names = _random_names(3000, seed)
    got = uuid3_strings(names).to_pylist()
    assert len(got) == len(names)
    assert got == _expected(names)


@pytest.mark.parametrize("md5", ["builtin", "openssl"])
def test_either_md5_gives_the_ids_of_uuid3(md5: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython's own MD5 makes the ids where the build has it, OpenSSL's where it does not."""
    if md5 == "openssl":
        monkeypatch.setattr(ids, "_md5", hashlib.md5)
    else:
        assert ids._md5 is not hashlib.md5, "this CPython has no _md5: the faster path is untested"
    names = _random_names(500, 5)
    folders = [name.rpartition("/")[0] or "s1/2021-01-01/001" for name in names]
    joined = [f"{folder}/{name}" for folder, name in zip(folders, names, strict=True)]
    assert uuid3_strings(names).to_pylist() == _expected(names)
    assert uuid3_joined(folders, names).to_pylist() == _expected(joined)


def test_version_variant_and_case() -> None:
    names = _random_names(2000, 2) + FIXED_NAMES
    for text in uuid3_strings(names).to_pylist():
        assert CANONICAL.fullmatch(text), text
        parsed = uuid.UUID(text)
        assert parsed.version == 3
        assert parsed.variant == uuid.RFC_4122
        assert text == text.lower() == str(parsed)


def test_distinct_names_give_distinct_ids() -> None:
    names = sorted(set(_random_names(3000, 3)))
    assert len(set(uuid3_strings(names).to_pylist())) == len(names)


def test_order_and_duplicates_preserved() -> None:
    names = ["b", "a", "b", "", "a"]
    got = uuid3_strings(names).to_pylist()
    assert got == _expected(names)
    assert got[0] == got[2] and got[1] == got[4] and got[0] != got[1]


def test_empty_input() -> None:
    got = uuid3_strings([])
    assert len(got) == 0
    assert got.to_pylist() == []


def test_deterministic_across_calls() -> None:
    names = _random_names(500, 4)
    assert uuid3_strings(names).to_pylist() == uuid3_strings(list(names)).to_pylist()


def test_uuid3_joined_equals_uuid3_of_the_joined_path() -> None:
    session = "lab/Subjects/s1/2021-01-01/001"
    folders = [session, "s1/2021-01-01/1", session]
    names = ["alf/a.b.npy", "alf/#2024-01-01#/a.b.npy", "raw/c.d.npy"]
    joined = [f"{folder}/{name}" for folder, name in zip(folders, names, strict=True)]
    assert uuid3_joined(folders, names).to_pylist() == _expected(joined)


# Session folders as written on disk, and the ALF path each one's ids are hashed from.
_WALKED = {
    "a/s1/2021-01-01/001": "s1/2021-01-01/001",  # kept: the first path of the clash below
    "b/s1/2021-01-01/001": None,  # the same ALF path below another folder: left out
    "s2/2021-01-02/1": None,  # loses to 001 of the same day: left out
    "s2/2021-01-02/001": "s2/2021-01-02/001",
    "s3/2021-01-03/02": "s3/2021-01-03/02",  # unpadded, no clash: hashed as written
    "lab1/Subjects/s4/2021-01-04/001": "lab1/Subjects/s4/2021-01-04/001",
    "s4/2021-01-04/001": "s4/2021-01-04/001",  # lab=lab1 makes it clash with the one above
    "s6/2021-01-06/001": "s6/2021-01-06/001",
    "s6/2021-01-06/001/alf/s5/2021-01-05/001": "s5/2021-01-05/001",  # nested
}


@pytest.mark.parametrize("lab", [None, "lab1"])
def test_walk_made_ids_are_uuid3_of_the_folder_alf_path(
    tmp_path: Path, make_files: MakeFiles, lab: str | None
) -> None:
    """The walk hashes each row's ids (alfcache._walk.scan): equal to uuid3 of the kept
    session's ALF path as written on disk, through clashes, nesting and ``lab=`` (which fills
    the lab column and decides clashes, but never enters the ids)."""
    files = ["alf/spikes.times.npy", "alf/#2024-01-01#/spikes.times.npy"]
    make_files(tmp_path, [f"{session}/{f}" for session in _WALKED for f in files])
    index_quietly(tmp_path, tmp_path, n_jobs=1, lab=lab)
    sessions, datasets = read_tables(tmp_path)
    left_out = {"s4/2021-01-04/001"} if lab else set()
    alf_paths = [p for p in _WALKED.values() if p is not None and p not in left_out]
    assert sorted(sessions["id"].to_pylist()) == sorted(_expected(alf_paths))
    expected = {
        (str(uuid.uuid3(NAMESPACE, p)), str(uuid.uuid3(NAMESPACE, f"{p}/{f}")))
        for p in alf_paths
        for f in files
    }
    rows = zip(datasets["eid"].to_pylist(), datasets["id"].to_pylist(), strict=True)
    assert set(rows) == expected
    assert datasets.num_rows == len(expected)


@pytest.mark.parametrize("root_below", ["", "lab1/Subjects"])
def test_walk_started_inside_a_session_hashes_its_alf_path(
    tmp_path: Path, make_files: MakeFiles, root_below: str
) -> None:
    """A folder task handed to another process mid-session: the walk that lists it never met
    the session folder, and takes its ALF path from the names, the root's included."""
    make_files(tmp_path, ["lab1/Subjects/s1/2021-01-01/001/alf/probe00/spikes.times.npy"])
    root = tmp_path / root_below if root_below else tmp_path
    session = "lab1/Subjects/s1/2021-01-01/001"
    start = session.removeprefix(f"{root_below}/") if root_below else session
    result = scan_folders(Rules(str(root)), [Start(f"{start}/alf", True)])
    expected = _expected([f"{session}/alf/probe00/spikes.times.npy"])
    assert result.datasets["id"].to_pylist() == expected


def test_a_file_found_twice_is_one_row_the_first_found(
    tmp_path: Path, make_files: MakeFiles
) -> None:
    """A task walked again (a Dask task rerun) finds its files twice: one row each, as
    first found, whichever order the walks arrive in."""
    make_files(tmp_path, ["s1/2021-01-01/001/alf/a.b.npy", "s1/2021-01-01/002/alf/a.b.npy"])
    first = scan_folders(Rules(str(tmp_path)), [Start("", True)])
    (tmp_path / "s1/2021-01-01/001/alf/a.b.npy").write_bytes(b"longer than before")
    again = scan_folders(Rules(str(tmp_path)), [Start("s1/2021-01-01/001", True)])
    for results, size in (([first, again], 10), ([again, first], 18)):
        tables = assemble([ScanResult(r.sessions, r.datasets) for r in results], hash_ids=True)
        assert tables.datasets.num_rows == 2
        assert tables.sessions.num_rows == 2
        ids, sizes = tables.datasets["id"].to_pylist(), tables.datasets["file_size"]
        changed = ids.index(str(uuid.uuid3(NAMESPACE, "s1/2021-01-01/001/alf/a.b.npy")))
        assert sizes[changed].as_py() == size


def test_a_walk_without_hash_ids_leaves_the_ids_null(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(tmp_path, ["lab1/Subjects/s1/2021-01-01/001/alf/spikes.times.npy"])
    forbid_uuids(monkeypatch)
    result = scan_folders(Rules(str(tmp_path), hash_ids=False), [Start("", True)])
    for batch in (result.sessions, result.datasets):
        assert batch.num_rows == 1
        assert batch.schema.field("id").nullable
        assert batch["id"].type == pa.large_string()
        assert batch["id"].null_count == 1


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_path_ids_are_made_without_hashing_and_as_before(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch, n_jobs: int
) -> None:
    """``hash_ids=False``: no process of the walk computes a UUID (the assembler threw them
    away: 0.8 s of MD5 per million rows), and the tables are those of the walk that still
    hashed them, through clashes and nesting."""
    root = tmp_path / "data"
    files = ["alf/spikes.times.npy", "alf/#2024-01-01#/spikes.times.npy"]
    make_files(root, [f"{session}/{f}" for session in _WALKED for f in files])
    before = assemble([scan_folders(Rules(str(root)), [Start("", True)])], hash_ids=False)
    forbid_uuids(monkeypatch)
    ids: list[pa.Array] = []

    def assemble_rows(results: list[ScanResult], **kwargs: Any) -> Any:
        ids.extend(a for r in results for a in (r.sessions["id"], r.datasets["id"]))
        return assemble(results, **kwargs)

    monkeypatch.setattr(alfcache._tables.build, "assemble", assemble_rows)
    if n_jobs > 1:
        # The worker starts at once from the fork server (Polars is loaded here), so the patch
        # above does not reach it: the rows it sends show it hashed nothing. This process
        # lists slowly, so that the worker takes part.
        monkeypatch.setattr(alfcache._walk.local, "LATE_START_SECONDS", 0.0)
        scandir = os.scandir

        def slow_scandir(*args: Any) -> Any:
            time.sleep(0.02)
            return scandir(*args)

        monkeypatch.setattr(os, "scandir", slow_scandir)
    report = index_quietly(root, tmp_path / "out", n_jobs=n_jobs, io_depth=n_jobs, hash_ids=False)
    assert (report.listed["workers"] > 0) == (n_jobs > 1), report.listed
    assert sum(map(len, ids)) == len(_WALKED) * (1 + len(files))
    assert [a.null_count for a in ids] == [len(a) for a in ids]
    sessions, datasets = read_tables(tmp_path / "out")
    alf_paths = [p for p in _WALKED.values() if p is not None]
    path_ids = [p.replace("/Subjects/", "/") for p in alf_paths]
    assert sorted(sessions["id"].to_pylist()) == sorted(path_ids)
    rows = zip(datasets["eid"].to_pylist(), datasets["id"].to_pylist(), strict=True)
    assert sorted(rows) == sorted(
        (path_id, f"{p}/{f}")
        for p, path_id in zip(alf_paths, path_ids, strict=True)
        for f in files
    )
    for table, old in ((sessions, before.sessions), (datasets, before.datasets)):
        assert table.select(old.column_names).to_pylist() == old.to_pylist()
