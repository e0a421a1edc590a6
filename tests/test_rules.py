"""Documented rules that no other test held: each test here failed a deliberate bug.

Checked against independent oracles where the code under test could share a bug with itself:
digests from ``hashlib`` of the files, rows from a plain (not updated) index.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from _helpers import write_file

import alfcache
import alfcache._walk.local
import alfcache._walk.scan

SPIKES = "alf/spikes.times.npy"


def _rows(out: Path) -> list[tuple[str, str, int, str | None]]:
    """(session id, rel_path, file_size, hash) of every dataset, sorted."""
    table = pq.read_table(out / "datasets.pqt").to_pydict()
    hashes = table.get("hash", [None] * len(table["rel_path"]))
    return sorted(zip(table["eid"], table["rel_path"], table["file_size"], hashes, strict=True))


def test_update_reads_a_file_whose_size_changed_with_the_same_mtime(tmp_path: Path) -> None:
    root = tmp_path / "data"
    path = write_file(root, f"s1/2021-01-01/001/{SPIKES}", b"before")
    write_file(root, "s1/2021-01-01/001/alf/spikes.amps.npy", b"kept")
    out = tmp_path / "out"
    alfcache.index(root, out, n_jobs=1, hash_files=True)
    mtime_ns = path.stat().st_mtime_ns
    path.write_bytes(b"after, and longer")
    os.utime(path, ns=(mtime_ns, mtime_ns))  # a copy that kept the time stamp
    alfcache.index(root, out, n_jobs=1, update=True, hash_files=True)
    got = {rel: (size, md5) for _, rel, size, md5 in _rows(out)}
    assert got[SPIKES] == (17, hashlib.md5(b"after, and longer").hexdigest())
    assert got["alf/spikes.amps.npy"] == (4, hashlib.md5(b"kept").hexdigest())


def test_update_matches_sessions_by_lab_too(tmp_path: Path) -> None:
    # The same subject/date/number with and without a lab: two sessions, not one.
    root = tmp_path / "data"
    for session in ("lab1/Subjects/m1/2024-01-01/001", "m1/2024-01-01/001"):
        write_file(root, f"{session}/{SPIKES}", session.encode())
    alfcache.index(root, tmp_path / "plain", n_jobs=1, hash_files=True)
    out = tmp_path / "out"
    alfcache.index(root, out, n_jobs=1, hash_files=True)
    write_file(root, "m1/2024-01-01/001/alf/spikes.amps.npy", b"new")
    write_file(root, "lab1/Subjects/m1/2024-01-01/001/alf/spikes.amps.npy", b"new, with a lab")
    alfcache.index(root, out, n_jobs=1, update=True)
    alfcache.index(root, tmp_path / "plain", n_jobs=1, hash_files=True)
    assert _rows(out) == _rows(tmp_path / "plain")
    assert len(_rows(out)) == 4
    assert pq.read_table(out / "sessions.pqt").num_rows == 2


def test_update_digests_match_hashlib(tmp_path: Path) -> None:
    """A hashed update checked against the files themselves, not against another run."""
    root = tmp_path / "data"
    files = {
        f"s{i}/2021-01-01/001/alf/x{j}.times.npy": bytes([i, j]) * 3
        for i in range(3)
        for j in range(3)
    }
    for rel, content in files.items():
        write_file(root, rel, content)
    out = tmp_path / "out"
    alfcache.index(root, out, n_jobs=1, hash_files=True)
    changed = "s1/2021-01-01/001/alf/x1.times.npy"
    write_file(root, changed, b"other bytes")
    files[changed] = b"other bytes"
    alfcache.index(root, out, n_jobs=2, update=True, hash_files=True)
    table = pq.read_table(out / "datasets.pqt").to_pydict()
    sessions = pq.read_table(out / "sessions.pqt").to_pydict()
    folder = {
        eid: f"{subject}/{date}/{number:03d}"
        for eid, subject, date, number in zip(
            sessions["id"], sessions["subject"], sessions["date"], sessions["number"], strict=True
        )
    }
    got = {
        f"{folder[eid]}/{rel}": md5
        for eid, rel, md5 in zip(table["eid"], table["rel_path"], table["hash"], strict=True)
    }
    assert got == {rel: hashlib.md5(content).hexdigest() for rel, content in files.items()}


def test_warning_names_the_first_five_and_counts_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_file(root, f"s1/2021-01-01/001/{SPIKES}", b"x")
    for day in range(30, 37):  # seven impossible dates, each reported
        (root / f"s2/2021-02-{day:02d}/001").mkdir(parents=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alfcache.make_parquet_db(root, tmp_path / "out", n_jobs=1)
    [message] = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert message.startswith("7 entries skipped (not indexed): ")
    assert " (and 2 more). " in message
    assert message.count("invalid_date") == 5
    assert "s2/2021-02-30/001: invalid_date" in message
    assert "s2/2021-02-36/001" not in message


def test_root_inside_a_sessions_alf_folder_indexes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_file(root, f"s1/2021-01-01/001/{SPIKES}", b"x")
    with pytest.warns(RuntimeWarning, match="No sessions found"):
        report = alfcache.index(root / "s1/2021-01-01/001/alf", tmp_path / "out", n_jobs=1)
    assert (report.sessions, report.datasets) == (0, 0)


def test_session_clash_below_two_parents_keeps_the_first(tmp_path: Path) -> None:
    # lab1/Subjects/m1/... and lab1/Subjects/m1/... below two other folders: one ALF path
    root = tmp_path / "data"
    for parent in ("b_copy", "a_orig"):
        write_file(root, f"{parent}/lab1/Subjects/m1/2024-01-01/001/{SPIKES}", parent.encode())
    report = alfcache.index(root, tmp_path / "out", n_jobs=2)
    assert report.sessions == 1
    assert [(s.path, s.reason) for s in report.skipped] == [
        ("b_copy/lab1/Subjects/m1/2024-01-01/001", "session_clash")
    ]


def test_library_raises_root_not_readable() -> None:
    """As 'nobody' in a forked child (root may read everything), through the library."""
    public = Path(tempfile.mkdtemp(prefix="alfcache-test-"))  # tmp_path is private to root
    public.chmod(0o755)
    root = public / "data"
    write_file(root, f"s1/2021-01-01/001/{SPIKES}", b"x")
    root.chmod(0o000)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, call the library, send back what it raised
        os.close(read)
        outcome: object = None
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            alfcache.index(root, "/nonexistent-out", n_jobs=1)
        except BaseException as exc:
            outcome = (type(exc).__name__, isinstance(exc, PermissionError), str(exc))
        with os.fdopen(write, "wb") as f:
            pickle.dump(outcome, f)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        outcome = pickle.load(f)
    os.waitpid(pid, 0)
    root.chmod(0o755)
    shutil.rmtree(public)
    assert outcome is not None, "the library raised nothing"
    name, is_permission_error, message = outcome
    assert (name, is_permission_error) == ("RootNotReadable", True)
    assert str(root) in message


def test_shared_task_that_starts_inside_a_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An outer session whose folders hold 16 sessions. Listings in this process are slow, so
    # the walk adds threads and hands folders to them and to the worker process: those tasks
    # start inside the outer session and must carry it (its nested sessions are reported, its
    # own file stays its own).
    root = tmp_path / "data"
    outer = "m1/2021-01-01/001"
    write_file(root, f"{outer}/{SPIKES}", b"outer")
    inner = [f"{outer}/x{i}/2021-01-02/{j:03d}" for i in range(4) for j in range(1, 5)]
    for session in inner:
        write_file(root, f"{session}/{SPIKES}", session.encode())
    one = alfcache.index(root, tmp_path / "out1", n_jobs=1, io_depth=1)
    real = os.scandir

    def slow_scandir(*args: Any) -> Any:
        time.sleep(0.02)
        return real(*args)

    monkeypatch.setattr(os, "scandir", slow_scandir)
    monkeypatch.setattr(alfcache._walk.local, "LATE_START_SECONDS", 0.0)
    threads = alfcache.index(root, tmp_path / "out2", n_jobs=1, io_depth=16)
    two = alfcache.index(root, tmp_path / "out3", n_jobs=2, io_depth=16)
    expected = [(session, "nested_session") for session in inner]
    assert threads.threads > 1, threads  # folders inside the session went to other threads
    assert two.listed["workers"] > 0, two.listed  # ... and to the other process
    for report in (one, threads, two):
        assert report.skipped == []
        nested = [(s.path, s.reason) for s in report.notices if s.reason == "nested_session"]
        assert nested == expected
    for out in ("out2", "out3"):
        for name in ("sessions.pqt", "datasets.pqt"):
            assert pq.read_table(tmp_path / "out1" / name).equals(
                pq.read_table(tmp_path / out / name)
            )


class _FailingEntry:
    """A ``os.DirEntry`` whose ``stat`` fails with an I/O error (as on a failing disk)."""

    def __init__(self, entry: os.DirEntry[str]) -> None:
        self._entry = entry
        self.name = entry.name

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._entry.is_dir(follow_symlinks=follow_symlinks)

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._entry.is_file(follow_symlinks=follow_symlinks)

    def is_symlink(self) -> bool:
        return self._entry.is_symlink()

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        raise OSError(errno.EIO, os.strerror(errno.EIO), self.name)


def test_walk_reports_other_errors_as_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed listing, stat or link resolution that is not 'gone' or 'denied' is unreadable."""
    root = tmp_path / "data"
    session = "s1/2021-01-01/001"
    write_file(root, f"{session}/{SPIKES}", b"ok")
    write_file(root, f"{session}/alf/bad.times.npy", b"x")
    write_file(root, f"{session}/raw/spikes.times.npy", b"x")
    (root / session / "alf" / "link.times.npy").symlink_to(root / session / SPIKES)
    scandir = os.scandir

    def failing_scandir(fd: int) -> Any:
        if not isinstance(fd, int):  # not the walk's (it lists folder descriptors)
            return scandir(fd)
        entries = list(scandir(fd))
        if any(e.name == "spikes.times.npy" for e in entries) and any(
            e.name == "bad.times.npy" for e in entries
        ):
            return [
                _FailingEntry(e) if e.name in ("bad.times.npy", "link.times.npy") else e
                for e in entries
            ]
        if [e.name for e in entries] == ["spikes.times.npy"] and os.readlink(
            f"/proc/self/fd/{fd}"
        ).endswith("/raw"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return entries

    monkeypatch.setattr(alfcache._walk.scan.os, "scandir", failing_scandir)
    report = alfcache.index(root, tmp_path / "out", n_jobs=1)
    assert [(s.path, s.reason) for s in report.skipped] == [
        (f"{session}/alf/bad.times.npy", "unreadable"),
        (f"{session}/alf/link.times.npy", "unreadable"),
        (f"{session}/raw", "unreadable"),
    ]
    assert all("Input/output error" in s.message for s in report.skipped)
    assert report.datasets == 1


def test_path_longer_than_the_system_allows_is_unreadable(tmp_path: Path) -> None:
    root = tmp_path / "data"
    session = root / "s1/2021-01-01/001"
    write_file(session, SPIKES, b"ok")
    # Built by descending into each folder: the whole path is never given to the system.
    fd = os.open(session, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    try:
        while len(str(session)) + depth * 201 < 4200:
            os.mkdir("d" * 200, dir_fd=fd)
            child = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            depth += 1
    finally:
        os.close(fd)
    report = alfcache.index(root, tmp_path / "out", n_jobs=1)
    [skip] = report.skipped
    assert skip.reason == "unreadable"
    assert "File name too long" in skip.message
    assert report.datasets == 1


def test_link_followed_inside_a_session_belongs_to_it(tmp_path: Path) -> None:
    # A session whose folders are links to folders kept elsewhere (a collection moved to
    # another disk): with --follow-symlinks each link's walk starts inside the session and must
    # carry it, as the walk of a real folder would. Its files are the session's datasets, a
    # session below a link is nested in it, and a folder named like a date is not a near miss.
    session = "m1/2021-01-01/001"
    below = {
        "alf/linked": ["spikes.times.npy", "probe00/spikes.amps.npy"],
        "alf/2024-1-5": ["clusters.depths.npy"],
        "alf/m2/2021-01-02/001": ["trials.choice.npy"],
    }
    trees = {}
    for kind in ("links", "folders"):
        root = tmp_path / kind / "data"
        write_file(root, f"{session}/{SPIKES}", b"own")
        for i, (rel, files) in enumerate(below.items()):
            folder = tmp_path / kind / "elsewhere" / str(i)
            for name in files:
                write_file(folder, name, f"{rel}/{name}".encode())
            (root / session / rel).parent.mkdir(parents=True, exist_ok=True)
            if kind == "links":
                (root / session / rel).symlink_to(folder, target_is_directory=True)
            else:
                folder.rename(root / session / rel)
        report = alfcache.index(root, tmp_path / kind / "out", n_jobs=1, follow_symlinks=True)
        trees[kind] = (report, tmp_path / kind / "out")
    links, folders = (trees[kind][0] for kind in ("links", "folders"))
    assert links.skipped == folders.skipped == []
    nested = f"{session}/alf/m2/2021-01-02/001"
    for report in (links, folders):
        # not_loadable too: ONE-api looks for the nested session at m2/2021-01-02/001
        assert [(s.path, s.reason) for s in report.notices] == [
            (nested, "nested_session"),
            (nested, "not_loadable"),
        ]
    datasets = pq.read_table(trees["links"][1] / "datasets.pqt").to_pydict()
    eids = dict(zip(datasets["rel_path"], datasets["eid"], strict=True))
    session_eid = eids[SPIKES]
    for rel in (
        "alf/linked/spikes.times.npy",
        "alf/linked/probe00/spikes.amps.npy",
        "alf/2024-1-5/clusters.depths.npy",
    ):
        assert eids.get(rel) == session_eid, rel
    for name in ("sessions.pqt", "datasets.pqt"):
        assert pq.read_table(trees["links"][1] / name).equals(
            pq.read_table(trees["folders"][1] / name)
        )
