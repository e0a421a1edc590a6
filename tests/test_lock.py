"""Two runs, one output folder: the lock keeps their tables from mixing.

A run renames its two tables into place one after the other; a second run writing into the
same folder at that moment could leave one run's ``sessions.pqt`` beside the other's
``datasets.pqt``. The command lines run as subprocesses; a ``sitecustomize`` on their
``PYTHONPATH`` pauses the first run between its two renames, and marks when the second one
reaches the lock, so the overlap happens every time, not by luck of timing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from _helpers import python_env, with_sitecustomize

import alfcache
from alfcache import OutDirLocked
from alfcache._tables.lock import LOCK_FILE, out_dir_lock

DEADLINE = 60.0  # seconds for a state to be reached; only reached on failure
SPIKES = "alf/spikes.times.npy"

# PAUSE_AFTER_SESSIONS=DIR: after renaming sessions.pqt into place, create DIR/renamed and
# wait for DIR/go. MARK_LOCK=FILE: create FILE when the run first tries the output lock.
HOOKS = """
import os, pathlib, time
_pause = os.environ.get("PAUSE_AFTER_SESSIONS")
if _pause:
    _replace = pathlib.Path.replace
    def _paused_replace(self, target):
        result = _replace(self, target)
        if pathlib.Path(target).name == "sessions.pqt":
            pathlib.Path(_pause, "renamed").touch()
            deadline = time.monotonic() + 60
            while not pathlib.Path(_pause, "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return result
    pathlib.Path.replace = _paused_replace
_mark = os.environ.get("MARK_LOCK")
if _mark:
    import alfcache._tables.lock
    _try = alfcache._tables.lock._try_lock
    def _marked(path):
        pathlib.Path(_mark).touch()
        return _try(path)
    alfcache._tables.lock._try_lock = _marked
"""


def _start(tmp_path: Path, args: list[str | Path], **env: str) -> subprocess.Popen[str]:
    hooks = with_sitecustomize(tmp_path, HOOKS)
    return subprocess.Popen(
        [sys.executable, "-m", "alfcache", "index", *map(str, args), "--jobs", "1", "--quiet"],
        env=python_env(hooks, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"run ended before {path.name}: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path.name} never appeared")
        time.sleep(0.05)


def _origins(out: Path) -> set[str]:
    return {
        json.loads(pq.read_schema(out / name).metadata[b"one_metadata"])["origin"]
        for name in ("sessions.pqt", "datasets.pqt")
    }


def _tree(make_files: Any, root: Path, subject: str) -> Path:
    return make_files(root, [f"{subject}/2021-01-0{d}/001/{SPIKES}" for d in range(1, 4)])


def test_overlapping_runs_never_mix_tables(tmp_path: Path, make_files: Any) -> None:
    tree_a = _tree(make_files, tmp_path / "a", "mouseA")
    tree_b = _tree(make_files, tmp_path / "b", "mouseB")
    out = tmp_path / "out"
    pause = tmp_path / "pause"
    pause.mkdir()
    first = _start(tmp_path, [tree_a, "--out-dir", out], PAUSE_AFTER_SESSIONS=str(pause))
    _wait_for(pause / "renamed", first)  # A's sessions.pqt is in place, its datasets.pqt not

    mark = tmp_path / "b-reached-the-lock"
    second = _start(tmp_path, [tree_b, "--out-dir", out], MARK_LOCK=str(mark))
    _wait_for(mark, second)
    time.sleep(1.0)  # long enough for B to write both tables, were it not waiting
    assert second.poll() is None, second.communicate()
    holder = json.loads((out / LOCK_FILE).read_text())
    assert holder["pid"] == first.pid

    (pause / "go").touch()
    assert first.wait(DEADLINE) == 0, first.communicate()
    _, err = second.communicate(timeout=DEADLINE)
    assert second.returncode == 0, err
    # Both tables are B's: written after A's pair was complete, never interleaved with it.
    assert _origins(out) == {str(tree_b.resolve())}
    sessions = pq.read_table(out / "sessions.pqt").to_pydict()
    datasets = pq.read_table(out / "datasets.pqt").to_pydict()
    assert set(sessions["subject"]) == {"mouseB"}
    assert set(datasets["eid"]) == set(sessions["id"])
    assert not (out / LOCK_FILE).exists()


def test_second_run_gives_up_naming_the_other(tmp_path: Path, make_files: Any) -> None:
    root = _tree(make_files, tmp_path / "data", "mouse")
    out = tmp_path / "out"
    alfcache.make_parquet_db(root, out, n_jobs=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with out_dir_lock(out):  # this process plays the other run
        proc = _start(tmp_path, [root, "--out-dir", out, "--lock-timeout", "0.5"])
        _, err = proc.communicate(timeout=DEADLINE)
        with pytest.raises(OutDirLocked, match=f"PID {os.getpid()} on") as caught:
            alfcache.index(root, out, n_jobs=1, lock_timeout=0)
    assert isinstance(caught.value, TimeoutError)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("alfcache: error: output folder"), err
    assert f"PID {os.getpid()} on {socket.gethostname()}" in lines[0]
    assert "waited 0.5 s" in lines[0] and "--lock-timeout" in lines[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # lock file gone too


def test_lock_is_taken_again_after_release(tmp_path: Path) -> None:
    # The holder removes the lock file on release; the next run must create and lock a new
    # one, not hold a lock on the removed file while a third run locks the new one.
    with out_dir_lock(tmp_path, timeout=0):
        pass
    with out_dir_lock(tmp_path, timeout=0) as lock:
        assert lock.exists()
        with pytest.raises(OutDirLocked), out_dir_lock(tmp_path, timeout=0.2):
            pass
    assert not lock.exists()


def test_a_lock_file_removed_between_open_and_flock_is_not_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This run opens the lock file; before its flock, the holder releases and removes it and a
    # third run creates and locks a new one. A lock on the removed file protects nothing.
    import fcntl

    lock = tmp_path / LOCK_FILE
    lock.touch()
    real_flock = fcntl.flock
    third: list[int] = []

    def holder_leaves_then_third_run_locks(fd: int, operation: int) -> None:
        if not third:
            lock.unlink()
            third.append(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644))
            real_flock(third[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", holder_leaves_then_third_run_locks)
    try:
        with pytest.raises(OutDirLocked), out_dir_lock(tmp_path, timeout=0.2):
            pass
    finally:
        os.close(third[0])


@pytest.mark.parametrize("bad", [-1, float("nan"), "10", True])
def test_bad_lock_timeout(tmp_path: Path, make_files: Any, bad: object) -> None:
    root = _tree(make_files, tmp_path / "data", "mouse")
    with pytest.raises(alfcache.BadArgument, match="lock_timeout"):
        alfcache.index(root, tmp_path / "out", n_jobs=1, lock_timeout=bad)  # type: ignore[arg-type]


def test_cli_bad_lock_timeout(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "alfcache", "index", str(tmp_path), "--lock-timeout", "-1"],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("alfcache: error: argument --lock-timeout: -1 seconds")


def _prune(tmp_path: Path, root: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    hooks = with_sitecustomize(tmp_path, HOOKS)
    return subprocess.Popen(
        [sys.executable, "-m", "alfcache", "prune", str(root), "--apply", *args],
        env=python_env(hooks, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _indexed_with_a_stray(make_files: Any, root: Path) -> Path:
    """An indexed tree, then a dataset file the tables do not hold (what prune deletes)."""
    _tree(make_files, root, "mouse")
    alfcache.make_parquet_db(root, n_jobs=1)
    return make_files(root, ["mouse/2021-01-01/001/alf/stray.times.npy"]) / (
        "mouse/2021-01-01/001/alf/stray.times.npy"
    )


def test_prune_waits_for_the_index_run_writing_its_tables(tmp_path: Path, make_files: Any) -> None:
    root = tmp_path / "data"
    stray = _indexed_with_a_stray(make_files, root)
    mark = tmp_path / "prune-reached-the-lock"
    with out_dir_lock(root):  # this process plays an index run renaming its tables
        proc = _prune(tmp_path, root, MARK_LOCK=str(mark))
        _wait_for(mark, proc)
        time.sleep(1.0)  # long enough to read the tables and delete, were it not waiting
        assert proc.poll() is None, proc.communicate()
        assert stray.exists()
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err
    assert not stray.exists()
    assert not (root / LOCK_FILE).exists()


def test_prune_and_table_removal_give_up_naming_the_other_run(
    tmp_path: Path, make_files: Any
) -> None:
    root = tmp_path / "data"
    stray = _indexed_with_a_stray(make_files, root)
    before = sorted(p.name for p in root.iterdir())
    with out_dir_lock(root):
        proc = _prune(tmp_path, root, "--lock-timeout", "0.5")
        _, err = proc.communicate(timeout=DEADLINE)
        with pytest.raises(OutDirLocked, match=f"PID {os.getpid()} on"):
            alfcache.remove_missing_datasets(root, dry=False, lock_timeout=0)
        with pytest.raises(OutDirLocked, match=f"PID {os.getpid()} on"):
            alfcache.remove_cache_table_files(root, lock_timeout=0)
        # A dry run deletes nothing: it does not wait.
        assert alfcache.remove_missing_datasets(root, dry=True) == [stray]
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"alfcache: error: output folder {root} is being written"), err
    assert "waited 0.5 s" in lines[0]
    assert stray.exists()
    assert sorted(p.name for p in root.iterdir()) == before
