"""Update by path (``--update --only PATH``): the tables of a full update, walking only PATH.

Each test indexes a tree, copies the tables, changes the tree, and updates one copy with a
full ``--update`` and the other with ``--only``: the two must be equal (``date_created``
aside), and the ``--only`` run must have listed and read only what lies below its paths.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers import forbid_uuids, snapshot
from conftest import MakeFiles
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alfcache
from alfcache._cli.main import main as cli_main
from alfcache._maintain.only import _covered, _outermost, plan_only
from alfcache._walk.scan import Rules

SESSION = "lab/Subjects/s1/2021-01-01/001"
OTHER = "lab/Subjects/s2/2021-01-01/001"
NO_LAB = "s3/2021-01-02/001"
FILES = [
    f"{SESSION}/alf/spikes.times.npy",
    f"{SESSION}/alf/probe00/spikes.clusters.npy",
    f"{SESSION}/trials.intervals.npy",
    f"{OTHER}/alf/spikes.times.npy",
    f"{NO_LAB}/wheel.position.npy",
]


def _run(root: Path, out: Path, **kwargs: Any) -> alfcache.IndexReport:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return alfcache.index(root, out, n_jobs=kwargs.pop("n_jobs", 1), **kwargs)


def _tables(out: Path) -> tuple[pa.Table, pa.Table]:
    """Both tables without their metadata (``date_created`` differs from run to run)."""
    ses, ds = (
        pq.read_table(out / name).replace_schema_metadata(None)
        for name in ("sessions.pqt", "datasets.pqt")
    )
    return ses, ds


def _indexed(root: Path, tmp_path: Path, **kwargs: Any) -> tuple[Path, Path]:
    """Index ``root`` once; two copies of its tables: ``full`` and ``only``."""
    full, only = tmp_path / "full", tmp_path / "only"
    _run(root, full, **kwargs)
    shutil.copytree(full, only)
    return full, only


def _both(
    root: Path, full: Path, only: Path, paths: list[str], **kwargs: Any
) -> alfcache.IndexReport:
    """A full update into ``full``, an update of ``paths`` into ``only``; they must agree."""
    _run(root, full, update=True, **kwargs)
    report = _run(root, only, update=True, only=paths, **kwargs)
    assert _tables(only) == _tables(full)
    return report


def test_a_new_session_is_added_by_its_path_alone(tmp_path: Path, make_files: MakeFiles):
    root = make_files(tmp_path / "data", FILES)
    full, only = _indexed(root, tmp_path, hash_files=True)
    new = "lab/Subjects/s1/2021-01-05/001"
    make_files(root, [f"{new}/alf/spikes.times.npy", f"{new}/raw/_iblrig_taskData.raw.jsonable"])
    report = _both(root, full, only, [new])
    # The session folder and its two collections: nothing else was listed, only its files read.
    assert report.listed == {"main": 3, "workers": 0}
    assert report.hashing is not None and report.hashing.files == 2
    assert report.changes is not None
    assert (report.changes.new, report.changes.untouched) == (2, len(FILES))


def test_make_parquet_db_updates_by_path(tmp_path: Path, make_files: MakeFiles):
    # The drop-in API takes the paths too, and makes what index(only=...) makes.
    root = make_files(tmp_path / "data", FILES)
    full, only = _indexed(root, tmp_path)
    new = "lab/Subjects/s1/2021-01-05/001"
    make_files(root, [f"{new}/alf/spikes.times.npy"])
    _run(root, full, update=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped, nothing to warn about
        alfcache.make_parquet_db(root, only, n_jobs=1, update=True, only=[root / new])
    assert _tables(only) == _tables(full)
    with pytest.raises(alfcache.BadArgument, match="needs update=True"):
        alfcache.make_parquet_db(root, only, only=[new])


def test_rows_outside_the_paths_are_carried_over_untouched(tmp_path: Path, make_files: MakeFiles):
    root = make_files(tmp_path / "data", FILES)
    _run(root, tmp_path / "out")
    # What only the previous tables know (QC set by hand) stays; a change outside the paths is
    # not seen (its file is not statted), a change inside is.
    datasets = pq.read_table(tmp_path / "out/datasets.pqt")
    qc = pa.array(["PASS"] * datasets.num_rows).dictionary_encode().cast(datasets["qc"].type)
    pq.write_table(
        datasets.set_column(datasets.schema.get_field_index("qc"), "qc", qc),
        tmp_path / "out/datasets.pqt",
    )
    (root / FILES[3]).write_bytes(b"longer than before")
    (root / FILES[0]).write_bytes(b"longer than before, too")
    _run(root, tmp_path / "out", update=True, only=[SESSION])
    rows = pq.read_table(tmp_path / "out/datasets.pqt").to_pylist()
    assert {r["qc"] for r in rows} == {"PASS"}
    sessions = pq.read_table(tmp_path / "out/sessions.pqt")
    subjects = dict(zip(sessions["id"].to_pylist(), sessions["subject"].to_pylist(), strict=True))
    sizes = {
        subjects[r["eid"]]: r["file_size"] for r in rows if r["rel_path"] == "alf/spikes.times.npy"
    }
    assert sizes == {"s1": 23, "s2": 10}


def test_files_gone_below_a_path_are_dropped_or_kept_missing(
    tmp_path: Path, make_files: MakeFiles
):
    root = make_files(tmp_path / "data", FILES)
    for keep_missing in (False, True):
        out = tmp_path / str(keep_missing)
        full, only = _indexed(root, out)
        (root / FILES[1]).unlink()
        shutil.rmtree(root / NO_LAB)  # a given path that is gone: its rows go too
        report = _both(root, full, only, [f"{SESSION}/alf", NO_LAB], keep_missing=keep_missing)
        assert report.changes is not None and report.changes.vanished == 2
        make_files(root, [FILES[1], FILES[4]])


@pytest.mark.parametrize(
    "path",
    [
        "lab",  # a lab folder
        "lab/Subjects/s1",  # a subject folder
        f"{SESSION}/alf/probe00",  # a collection: its session is walked
        f"{SESSION}/alf/probe00/spikes.clusters.npy",  # one file
        f"{SESSION}/alf/probe00/gone.times.npy",  # a file that is gone
    ],
)
def test_every_kind_of_path_gives_the_full_update(
    tmp_path: Path, make_files: MakeFiles, path: str
):
    root = make_files(tmp_path / "data", FILES)
    full, only = _indexed(root, tmp_path)
    make_files(root, [f"{SESSION}/alf/probe00/spikes.amps.npy"], b"new file")
    (root / f"{SESSION}/trials.intervals.npy").unlink()
    _both(root, full, only, [path])


def test_path_ids_are_updated_by_path_without_hashing_ids(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
):
    root = make_files(tmp_path / "data", FILES)
    full, only = _indexed(root, tmp_path, hash_ids=False)
    forbid_uuids(monkeypatch)  # the walk of the paths, and of the full update, in this process
    make_files(root, [f"{SESSION}/alf/probe00/spikes.amps.npy"], b"new file")
    (root / f"{OTHER}/alf/spikes.times.npy").unlink()
    _both(root, full, only, [SESSION, OTHER], hash_ids=False)
    rows = pq.read_table(only / "datasets.pqt").select(["eid", "id"]).to_pylist()
    assert {
        "eid": "lab/s1/2021-01-01/001",
        "id": f"{SESSION}/alf/probe00/spikes.amps.npy",
    } in rows
    assert f"{OTHER}/alf/spikes.times.npy" not in {row["id"] for row in rows}


def test_a_file_outside_sessions_or_no_path_at_all_walks_nothing(
    tmp_path: Path, make_files: MakeFiles
):
    # A file outside any session is in no table (a note beside the subjects, what find -newer
    # lists without -type d); an empty list is a nightly run with nothing new.
    root = make_files(tmp_path / "data", [*FILES, "lab/Subjects/notes.txt"])
    _run(root, tmp_path / "out")
    before = _tables(tmp_path / "out")
    for paths in (["lab/Subjects/notes.txt"], []):
        report = _run(root, tmp_path / "out", update=True, only=paths)
        assert report.listed == {"main": 0, "workers": 0}, paths
        assert _tables(tmp_path / "out") == before


def test_links_followed_below_a_path_as_in_a_full_run(tmp_path: Path, make_files: MakeFiles):
    root = make_files(tmp_path / "data", FILES)
    elsewhere = make_files(tmp_path / "elsewhere", ["raw/_iblrig_taskData.raw.jsonable"])
    full, only = _indexed(root, tmp_path, follow_symlinks=True)
    (root / SESSION / "raw_link").symlink_to(elsewhere / "raw")
    _both(root, full, only, [SESSION], follow_symlinks=True)
    rel_paths = pq.read_table(only / "datasets.pqt")["rel_path"].to_pylist()
    assert "raw_link/_iblrig_taskData.raw.jsonable" in rel_paths


def test_paths_are_absolute_or_relative_to_root_and_may_hold_links(
    tmp_path: Path, make_files: MakeFiles
):
    root = make_files(tmp_path / "data", FILES)
    (root / "latest").symlink_to(root / SESSION)
    for path in (str(root / SESSION), SESSION, "latest", f"{SESSION}/../001"):
        targets = plan_only(Rules(str(root.resolve())), [path], None)
        assert targets.walk == (SESSION,), path


def test_an_unpadded_session_beside_its_padded_twin_loses_as_in_a_full_run(
    tmp_path: Path, make_files: MakeFiles
):
    root = make_files(tmp_path / "data", FILES)
    full, only = _indexed(root, tmp_path)
    # 1 and 001 are one session: the full run keeps 001 and reports 1, whichever path is given.
    twin = "lab/Subjects/s1/2021-01-01/1"
    make_files(root, [f"{twin}/alf/other.times.npy"])
    report = _both(root, full, only, [twin])
    assert [s.path for s in report.skipped if s.reason == "session_clash"] == [twin]


def test_a_clash_anywhere_does_not_keep_vanished_sessions(tmp_path: Path, make_files: MakeFiles):
    # The folder that loses a clash is walked whole: no session can hide below it, so a full
    # update drops what vanished elsewhere, as --only does (they were found to disagree).
    root = make_files(tmp_path / "data", [*FILES, f"{NO_LAB[:-3]}1/wheel.position.npy"])
    full, only = _indexed(root, tmp_path)
    shutil.rmtree(root / OTHER)
    _both(root, full, only, ["lab"])
    assert "s2" not in pq.read_table(full / "sessions.pqt")["subject"].to_pylist()


def test_a_session_below_two_parents_is_resolved_as_in_a_full_run(
    tmp_path: Path, make_files: MakeFiles
):
    root = make_files(tmp_path / "data", FILES)
    full, only = _indexed(root, tmp_path)
    copy = f"backup/{NO_LAB}"
    make_files(root, [f"{copy}/wheel.position.npy", f"{copy}/wheel.timestamps.npy"])
    # The full run keeps the first in sort order, backup/...: the walk of backup must find
    # the folder at the root to lose to it.
    report = _both(root, full, only, ["backup"])
    assert [s.path for s in report.skipped if s.reason == "session_clash"] == [NO_LAB]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = cli_main(["index", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_paths_and_options_are_one_line_exit_2(
    tmp_path: Path, make_files: MakeFiles, capsys: pytest.CaptureFixture[str]
):
    root = make_files(tmp_path / "data", FILES)
    outside = make_files(tmp_path / "elsewhere", [f"{SESSION}/alf/spikes.times.npy"])
    (root / "escape").symlink_to(outside)
    out = str(tmp_path / "out")
    update = ["--update", "--only"]
    cases = [
        ([*update, str(outside)], f"--only {outside.resolve()} is not inside the indexed folder"),
        ([*update, "escape/lab"], f"--only {outside.resolve()}/lab is not inside"),
        ([*update, "../elsewhere"], "is not inside the indexed folder"),
        (["--only", SESSION], "--only needs --update"),
        (["--only-from", "-"], "--only-from needs --update"),
        ([*update, SESSION], f"no tables in {tmp_path.resolve()}/out to update by path"),
        ([*update, SESSION, "--backend", "dask", "--scheduler", "local"], "drop --backend dask"),
    ]
    for args, message in cases:
        code, err = _cli(capsys, str(root), "--out-dir", out, "-q", *args)
        assert code == 2 and len(err) == 1 and message in err[0], (args, err)
    assert not (tmp_path / "out/sessions.pqt").exists()
    code, err = _cli(capsys, str(root), "--only-from", str(tmp_path / "none.txt"), "--update")
    assert code == 2 and len(err) == 1 and "cannot read --only-from" in err[0], err


def test_a_path_relative_to_the_current_folder_is_refused(
    tmp_path: Path,
    make_files: MakeFiles,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    # `find data -newer STAMP` beside ROOT=data prints data/lab/...: below the root it names
    # nothing, and the update would have done nothing, saying so nowhere
    root = make_files(tmp_path / "data", FILES)
    _run(root, tmp_path / "out")
    before = snapshot(tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    code, err = _cli(capsys, "data", "--out-dir", "out", "-q", "--update", "--only", "data/lab")
    assert code == 2 and len(err) == 1, err
    assert "--only data/lab names nothing below the indexed folder" in err[0]
    assert snapshot(tmp_path / "out") == before
    # a folder gone from below the root, named relative to it, is still an update that drops it
    shutil.rmtree(root / SESSION)
    code, err = _cli(capsys, "data", "--out-dir", "out", "-q", "--update", "--only", SESSION)
    assert code == 0, err


def test_a_path_of_another_array_shard_is_refused(
    tmp_path: Path, make_files: MakeFiles, capsys: pytest.CaptureFixture[str]
):
    sessions = [f"lab/Subjects/s{i}/2021-01-01/001" for i in range(8)]
    root = make_files(tmp_path / "data", [f"{s}/alf/spikes.times.npy" for s in sessions])
    out = str(tmp_path / "part")
    assert cli_main(["index", str(root), "--out-dir", out, "--shard", "0/2", "-q"]) == 0
    mine = pq.read_table(f"{out}/sessions.pqt")["subject"].to_pylist()
    theirs = next(s for s in sessions if s.split("/")[2] not in mine)
    ours = next(s for s in sessions if s.split("/")[2] in mine)
    capsys.readouterr()
    args = [str(root), "--out-dir", out, "--shard", "0/2", "--update", "-q", "--only"]
    code, err = _cli(capsys, *args, f"{theirs}/alf")
    assert code == 2 and len(err) == 1 and "another array shard than 0/2" in err[0], err
    assert _cli(capsys, *args, ours)[0] == 0


def test_only_from_stdin_takes_the_output_of_find(tmp_path: Path, make_files: MakeFiles):
    root = make_files(tmp_path / "data", FILES)
    full, only = _indexed(root, tmp_path)
    for folder in root.rglob("*"):
        os.utime(folder, ns=(1, 1))  # everything older than the stamp ...
    stamp = tmp_path / "stamp"
    stamp.touch()
    # A stamp of 1970 rather than a fresh touch: `-newer` wants strictly newer, and a folder
    # made within the clock tick of the touch would carry the stamp's own time and go unlisted.
    os.utime(stamp, ns=(10**9, 10**9))
    new = "lab/Subjects/s2/2021-01-03/001"
    make_files(root, [f"{new}/alf/spikes.times.npy"])  # ... but what lands now
    found = subprocess.run(
        ["find", str(root), "-newer", str(stamp), "-type", "d"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{root}/{new}\n" in found
    assert f"{root}/lab/Subjects/s1\n" not in found  # not the whole tree
    env = {**os.environ, "PYTHONPATH": str(Path(alfcache.__file__).parents[1])}
    command = ["index", str(root), "--out-dir", str(only), "--update", "--only-from", "-"]
    done = subprocess.run(
        [sys.executable, "-m", "alfcache", *command, "-q", "-j", "1"],
        input=found,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    _run(root, full, update=True)
    assert _tables(only) == _tables(full)


# A tree of at most 3 subjects x 2 days x 2 sessions, with and without a lab, a clash, and
# the changes a transfer makes: new, rewritten and removed files and sessions.
_SUBJECTS = ["lab/Subjects/a", "lab/Subjects/b", "c"]
_SESSIONS = [f"{s}/2021-01-0{d}/00{n}" for s in _SUBJECTS for d in (1, 2) for n in (1, 2)] + [
    "c/2021-01-01/1",  # one session with c/2021-01-01/001
]
_NAMES = ["spikes.times.npy", "alf/trials.intervals.npy", "alf/probe00/spikes.clusters.npy"]
_change = st.tuples(
    st.sampled_from(["add", "rewrite", "remove", "remove_session"]),
    st.sampled_from(_SESSIONS),
    st.sampled_from(_NAMES),
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    start=st.sets(st.tuples(st.sampled_from(_SESSIONS), st.sampled_from(_NAMES)), max_size=10),
    changes=st.lists(_change, min_size=1, max_size=5),
    depth=st.sampled_from([1, 2, 3, 4, 5, 6]),
    keep_missing=st.booleans(),
)
def test_changes_below_the_paths_give_the_full_update(
    tmp_path_factory: pytest.TempPathFactory,
    start: set[tuple[str, str]],
    changes: list[tuple[str, str, str]],
    depth: int,
    keep_missing: bool,
):
    base = tmp_path_factory.mktemp("only")
    root = base / "data"
    root.mkdir()
    for session, name in start:
        path = root / session / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * len(name))
    full, only = _indexed(root, base, hash_files=True)
    paths = set()
    for kind, session, name in changes:
        path = root / session / name
        if kind == "add":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"new" * (1 + len(paths)))
        elif kind == "rewrite" and path.exists():
            path.write_bytes(path.read_bytes() + b"more")
        elif kind == "remove" and path.exists():
            path.unlink()
        elif kind == "remove_session" and (root / session).exists():
            shutil.rmtree(root / session)
        # The change is confined to a subtree: the path given is one of its folders above.
        names = f"{session}/{name}".split("/")
        paths.add("/".join(names[: min(depth, len(names))]))
    _both(root, full, only, sorted(paths), keep_missing=keep_missing)


@pytest.mark.parametrize("path", [SESSION, f"{SESSION}/raw", f"{SESSION}/raw/s9/2021-01-01/002"])
def test_a_nested_session_gives_the_full_update(tmp_path: Path, make_files: MakeFiles, path: str):
    nested = f"{SESSION}/raw/s9/2021-01-01/002"
    root = make_files(tmp_path / "data", [*FILES, f"{nested}/wheel.position.npy"])
    full, only = _indexed(root, tmp_path)
    make_files(root, [f"{nested}/wheel.timestamps.npy"])
    if path != nested:  # the changes lie below the path
        make_files(root, [f"{SESSION}/raw/trials.table.pqt"])
    report = _both(root, full, only, [path])
    assert [s.path for s in report.notices if s.reason == "nested_session"] == [nested]


class _NoScan(frozenset[str]):
    """Folders that may be looked up, never scanned."""

    def __iter__(self) -> Any:
        raise AssertionError("the folders were scanned: a check per folder given")


@pytest.mark.parametrize(
    ("rel", "folders", "covered"),
    [
        ("lab/Subjects/s1/2024-01-01/001", {"lab/Subjects/s1/2024-01-01/001"}, True),
        ("lab/Subjects/s1/2024-01-01/001", {"lab/Subjects/s1"}, True),
        ("lab/Subjects/s1/2024-01-01/001", {"lab"}, True),
        ("lab/Subjects/s1/2024-01-01/001", {""}, True),  # the root covers everything
        ("lab/Subjects/s1/2024-01-01/001", {"lab/Subjects/s1/2024-01-01/001/alf"}, False),
        ("lab/Subjects/s1/2024-01-01/001", {"lab/Subjects/s"}, False),  # a prefix, not a folder
        ("lab/Subjects/s1/2024-01-01/001", {"lab/Subjects/s1/2024-01-01/00"}, False),
        ("lab/Subjects/s1/2024-01-01/001", {"lab/Subjects/s1-old"}, False),
        ("lab/Subjects/s1/2024-01-01/001", set(), False),
        ("lab", {"lab/Subjects"}, False),
    ],
)
def test_covered_looks_up_the_path_and_the_folders_above_it(
    rel: str, folders: set[str], covered: bool
) -> None:
    # Every previous session is checked against the paths given, which may be thousands:
    # a scan of them per check took 15 s at 1,000 paths and 30,000 sessions.
    assert _covered(rel, _NoScan(folders)) is covered


def test_outermost_keeps_only_the_folders_below_no_other() -> None:
    folders = ["a/b", "a", "a-b", "a/b/c", "b/c", "ab", "b/c/d", "b/cd"]
    assert _outermost(folders) == ("a", "a-b", "ab", "b/c", "b/cd")
