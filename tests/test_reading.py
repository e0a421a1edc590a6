"""Reading files for their digests: many in flight, opened in their folder, faults reported.

Expected digests come from ``hashlib`` on the file contents, never from alfcache. Files are
read through :func:`alfcache._digest.schedule.digest_files` directly (what an index or update
calls after the walk), so that the tree can change between the walk and the reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import python_env

import alfcache
import alfcache._digest.read
import alfcache._digest.schedule
from alfcache._digest.read import hash_task
from alfcache._digest.schedule import (
    LARGE_FILE,
    digest_files,
    folder_codes,
    plan_thread_tasks,
)

SESSION = "lab/Subjects/s1/2021-01-01/001"


def _small_files(root: Path, folders: int, per_folder: int) -> list[str]:
    """``folders`` x ``per_folder`` files of distinct random content below ``root``."""
    rng = np.random.default_rng(0)
    paths = []
    for f in range(folders):
        for i in range(per_folder):
            rel = f"{SESSION}/alf/c{f:02d}/obj{i}.attr.npy"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(rng.bytes(int(rng.integers(1, 5000))))
            paths.append(rel)
    return paths


def _slow_opens(monkeypatch: pytest.MonkeyPatch, delay: float) -> None:
    """Make every open of this process wait ``delay`` seconds, as on network storage."""
    real_open = os.open

    def waiting_open(*args: Any, **kwargs: Any) -> int:
        time.sleep(delay)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(alfcache._digest.read.os, "open", waiting_open)


def _digest(root: Path, paths: list[str], **kwargs: Any) -> alfcache._digest.schedule.Digests:
    sizes = [(root / p).stat().st_size for p in paths]
    return digest_files(str(root), paths, sizes, ("md5",), **kwargs)


def test_many_small_files_read_by_several_threads_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where opening waits, small files are read by up to ``depth`` threads even with one
    job: the opens in flight decide the speed. The first four reads wait for each other, so
    the run fails unless four files are being read at the same time."""
    paths = _small_files(tmp_path, folders=20, per_folder=40)
    _slow_opens(monkeypatch, 0.001)
    real_md5 = alfcache._digest.read._NEW["md5"]
    together = threading.Barrier(4, timeout=30)
    started = []
    lock = threading.Lock()

    def meeting() -> Any:
        with lock:
            started.append(threading.current_thread().name)
            first = len(started) <= 4
        if first:
            together.wait()  # raises BrokenBarrierError if fewer than 4 threads read at once
        return real_md5()

    monkeypatch.setitem(alfcache._digest.read._NEW, "md5", meeting)
    found = _digest(tmp_path, paths, n_jobs=1, depth=8)
    assert found.columns["md5"] == [
        hashlib.md5((tmp_path / p).read_bytes()).hexdigest() for p in paths
    ]
    assert found.sizes.tolist() == [(tmp_path / p).stat().st_size for p in paths]
    assert not found.skipped
    assert len(set(started[:4])) == 4
    assert all(name.startswith("alfcache-open") for name in started)


def test_large_files_read_one_per_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large files go to the ``n_jobs`` readers, never to the many threads that open small
    files where opening waits."""
    paths = []
    for i in range(6):
        rel = f"{SESSION}/raw_ephys_data/_spikeglx_ephysData_g0_t{i}.imec0.ap.cbin"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(os.urandom(LARGE_FILE + i))
        paths.append(rel)
    paths += _small_files(tmp_path, folders=2, per_folder=5)
    real_read = alfcache._digest.read._read
    readers: dict[str, str] = {}

    def recording(folder: int, name: str, *args: Any) -> Any:
        readers[name] = threading.current_thread().name
        return real_read(folder, name, *args)

    monkeypatch.setattr(alfcache._digest.read, "_read", recording)
    _slow_opens(monkeypatch, 0.001)
    found = _digest(tmp_path, paths, n_jobs=2, depth=16)
    assert found.columns["md5"] == [
        hashlib.md5((tmp_path / p).read_bytes()).hexdigest() for p in paths
    ]
    large = {readers[p.rpartition("/")[2]] for p in paths[:6]}
    small = {readers[p.rpartition("/")[2]] for p in paths[6:]}
    assert 1 <= len(large) <= 2 and all(t.startswith("alfcache-read") for t in large)
    assert all(t.startswith("alfcache-open") for t in small)


@pytest.mark.parametrize(
    ("delay", "n_jobs", "runner", "threads"),
    [(0.0, 2, "processes", None), (0.0, 1, "threads", 1), (0.002, 2, "threads", 16)],
)
def test_readers_follow_how_long_an_open_takes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    delay: float,
    n_jobs: int,
    runner: str,
    threads: int | None,
) -> None:
    """Small files go to the worker processes on local disk (one job: one thread), but to
    ``depth`` threads when opening a file waits (every open of this process sleeps).

    A real open on a loaded machine may take longer than ``SLOW_OPEN``: local disk is an
    injected open time of 0, only the slow opens are measured (a sleep is a lower bound)."""
    paths = _small_files(tmp_path, folders=4, per_folder=25)
    used: list[tuple[str, int | None]] = []
    for name in ("processes", "threads"):
        real = getattr(alfcache._digest.schedule, f"_run_in_{name}")

        def spy(*args: Any, real: Any = real, name: str = name) -> None:
            used.append((name, args[8] if name == "threads" else None))
            real(*args)

        monkeypatch.setattr(alfcache._digest.schedule, f"_run_in_{name}", spy)
    if delay:
        _slow_opens(monkeypatch, delay)
    else:
        monkeypatch.setattr(alfcache._digest.schedule, "open_latency", lambda root, paths: 0.0)
    found = _digest(tmp_path, paths, n_jobs=n_jobs, depth=16)
    assert used == [(runner, threads)]
    assert found.columns["md5"] == [
        hashlib.md5((tmp_path / p).read_bytes()).hexdigest() for p in paths
    ]


def test_thread_plan_packs_small_files_folder_by_folder() -> None:
    """Each folder's small files sit together (one open of the folder for all of them), every
    file is in exactly one task and large files come first, alone."""
    rng = np.random.default_rng(3)
    paths = [f"s/f{rng.integers(0, 30)}/x{i}.a.npy" for i in range(3000)]
    sizes = rng.integers(0, 40_000, len(paths))
    sizes[::500] = LARGE_FILE * 3
    folders = folder_codes(paths)
    tasks, large = plan_thread_tasks(sizes, 2, folders, depth=64)
    flat = np.concatenate(tasks)
    assert sorted(flat.tolist()) == list(range(len(paths)))
    assert large == 6 and all(len(t) == 1 for t in tasks[:large])
    assert (sizes[flat[:large]] >= LARGE_FILE).all() and (sizes[flat[large:]] < LARGE_FILE).all()
    packed = folders[flat[large:]]
    assert (np.diff(packed) >= 0).all()  # folder after folder, never back
    assert len(tasks) - large >= 64  # enough tasks for every thread


def test_files_opened_relative_to_their_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task opens each folder once and its files by name in it, never by a full path (a
    lookup per path component on network storage)."""
    paths = _small_files(tmp_path, folders=5, per_folder=7)
    calls: list[tuple[str, int | None]] = []
    real_open = os.open

    def spying_open(path: Any, flags: int, *args: Any, dir_fd: int | None = None) -> int:
        calls.append((str(path), dir_fd))
        return real_open(path, flags, *args, dir_fd=dir_fd)

    monkeypatch.setattr(alfcache._digest.read.os, "open", spying_open)
    board = alfcache._digest.schedule._MemoryBoard([0], 0, threading.Event())
    result = hash_task(str(tmp_path), paths, ("md5",), board)
    assert result.digests[0] == [
        hashlib.md5((tmp_path / p).read_bytes()).hexdigest() for p in paths
    ]
    by_name = [p for p, fd in calls if fd is not None]
    by_path = [p for p, fd in calls if fd is None]
    assert sorted(by_name) == sorted(p.rpartition("/")[2] for p in paths)
    assert sorted(by_path) == sorted({str(tmp_path / p.rpartition("/")[0]) for p in paths})


def test_folder_gone_or_replaced_before_reading(tmp_path: Path) -> None:
    """A folder removed after the walk makes each of its files ``vanished``; a folder replaced
    by a file makes each ``unreadable``; the other folders are read."""
    paths = _small_files(tmp_path, folders=3, per_folder=2)
    sizes = [(tmp_path / p).stat().st_size for p in paths]
    kept = {p: hashlib.md5((tmp_path / p).read_bytes()).hexdigest() for p in paths[4:]}
    gone, replaced = (tmp_path / SESSION / "alf" / f"c{f:02d}" for f in (0, 1))
    shutil.rmtree(gone)
    shutil.rmtree(replaced)
    replaced.write_bytes(b"not a folder")
    found = digest_files(str(tmp_path), paths, sizes, ("md5",), n_jobs=1)
    assert found.vanished.tolist() == [True, True, False, False, False, False]
    reasons = sorted((s.path, s.reason) for s in found.skipped)
    assert reasons == sorted(
        [(p, "vanished") for p in paths[:2]] + [(p, "unreadable") for p in paths[2:4]]
    )
    assert all("Not a directory" in s.message for s in found.skipped if s.reason == "unreadable")
    assert dict(zip(paths[4:], found.columns["md5"][4:], strict=True)) == kept
    assert found.columns["md5"][:4] == [None] * 4


READ_AS_OTHER_USER = """
import json, sys
from alfcache._digest.schedule import digest_files
root, paths, sizes = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
found = digest_files(root, paths, sizes, ("md5",), n_jobs=1)
print(json.dumps({"md5": found.columns["md5"],
                  "skipped": [[s.path, s.reason, s.message] for s in found.skipped]}))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to read as an unprivileged user",
)
def test_folder_that_cannot_be_entered_as_another_user(world_readable_dir: Path) -> None:
    """Real permissions (root reads everything, so this runs as ``nobody``): a folder that may
    be listed but not entered opens, and each of its files is ``unreadable``."""
    root = world_readable_dir / "data"
    paths = _small_files(root, folders=2, per_folder=2)
    for entry in [root, *root.rglob("*")]:
        entry.chmod(0o755 if entry.is_dir() else 0o644)
    (root / SESSION / "alf/c00").chmod(0o744)  # others: list, but not open what is inside
    sizes = [(root / p).stat().st_size for p in paths]
    proc = subprocess.run(
        [
            *("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"),
            *(sys.executable, "-c", READ_AS_OTHER_USER, str(root)),
            *(json.dumps(paths), json.dumps(sizes)),
        ],
        env=python_env(),
        cwd=world_readable_dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if proc.returncode and "Permission denied" in proc.stderr and "python" in proc.stderr:
        pytest.skip(f"'nobody' cannot run this Python: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert [(p, r) for p, r, _ in found["skipped"]] == [(p, "unreadable") for p in paths[:2]]
    assert all("Permission denied" in m for _, _, m in found["skipped"])
    assert found["md5"][:2] == [None, None]
    assert found["md5"][2:] == [
        hashlib.md5((root / p).read_bytes()).hexdigest() for p in paths[2:]
    ]
