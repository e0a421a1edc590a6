"""Faults injected into runs, in this process or in a subprocess, shared by the test modules."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import alfcache._digest.read
import alfcache._walk.scan


def _append(target: Path) -> None:
    with open(target, "ab") as f:
        f.write(b"more")


def rewrite_in_place(target: Path) -> None:
    """Give ``target`` other bytes of the same size and a later modification time."""
    data = target.read_bytes()
    with open(target, "r+b") as f:
        f.write(bytes(b ^ 0xFF for b in data))
    mtime = target.stat().st_mtime_ns + 1_000_000_000
    os.utime(target, ns=(mtime, mtime))


def change_on_read(
    monkeypatch: pytest.MonkeyPatch,
    target: Path,
    times: int,
    change: Callable[[Path], None] = _append,
) -> list[int]:
    """Make the first ``times`` reads of ``target`` ``change`` it after their first block.

    Returns the list that gets one item per read (the tree must hold no other file to hash).
    """
    real_md5 = alfcache._digest.read._NEW["md5"]
    reads: list[int] = []

    class Changing:
        def __init__(self) -> None:
            self.inner = real_md5()
            self.change = False

        def update(self, data: memoryview) -> None:
            if self.change:
                self.change = False
                change(target)
            self.inner.update(data)

        def hexdigest(self) -> str:
            return self.inner.hexdigest()

    def new() -> Changing:
        hasher = Changing()
        reads.append(1)
        hasher.change = len(reads) <= times
        return hasher

    monkeypatch.setitem(alfcache._digest.read._NEW, "md5", new)
    return reads


def grow_on_read(monkeypatch: pytest.MonkeyPatch, target: Path, times: int) -> list[int]:
    """Make the first ``times`` reads of ``target`` append to it after their first block."""
    return change_on_read(monkeypatch, target, times)


# A sitecustomize.py for command-line runs in subprocesses (test_checkpoint, test_slurm): put
# its folder first on their PYTHONPATH. READ_LOG=FILE: sleep READ_DELAY s before each file is
# read, append its path after. KILL_AT=N: SIGKILL this process as the N-th file is about to be
# read. SAVE_EVERY: the checkpoint interval, in seconds. FILE.taken gets the files whose
# digests the main thread took (a checkpoint saved then holds them). READ_IN_WORKERS=1: read on
# worker processes (with -j 2).
READ_HOOKS = """
import os, pathlib, signal, time
_log = os.environ.get("READ_LOG")
if _log:
    import alfcache._digest.checkpoint, alfcache._digest.read, alfcache._digest.schedule
    if os.environ.get("SAVE_EVERY"):
        alfcache._digest.checkpoint.SAVE_EVERY = float(os.environ["SAVE_EVERY"])
    if os.environ.get("READ_IN_WORKERS"):
        # Files read on worker processes, not threads.
        alfcache._digest.schedule.FILE_COST = 1 << 40
    _kill_at = int(os.environ.get("KILL_AT", "0"))
    _real = alfcache._digest.read._read
    def _logged_read(folder, name, *args):
        # Files are opened relative to their open folder: log the whole path.
        path = os.readlink(f"/proc/self/fd/{folder}") + "/" + name
        # The sleep first: the main thread then has saved the last task's checkpoint.
        time.sleep(float(os.environ.get("READ_DELAY", "0.4")))
        log = pathlib.Path(_log)
        done = log.read_text().count("\\n") if log.exists() else 0
        if _kill_at and done + 1 >= _kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        result = _real(folder, name, *args)
        with open(log, "a") as f:
            f.write(path + "\\n")
        return result
    alfcache._digest.read._read = _logged_read
    _on_task = alfcache._digest.checkpoint._Saver.on_task
    def _logged_on_task(self, rows, result):
        # what a checkpoint saved now would hold: the main thread has taken these digests
        _on_task(self, rows, result)
        with open(_log + ".taken", "a") as f:
            f.write("".join(self.paths[row] + "\\n" for row in rows))
    alfcache._digest.checkpoint._Saver.on_task = _logged_on_task
"""


def eio_listing(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make the walk's listing of ``folder`` fail with EIO, as a flaky network mount does.

    The walk lists folders by descriptor; any other listing (the test's own) is left alone.
    """
    real_scandir = os.scandir

    def failing_scandir(fd: Any = ".") -> Any:
        if isinstance(fd, int) and os.readlink(f"/proc/self/fd/{fd}") == str(folder):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_scandir(fd)

    monkeypatch.setattr(alfcache._walk.scan.os, "scandir", failing_scandir)
