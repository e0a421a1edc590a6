"""Faults injected into a run in this process, shared by the test modules that need them."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

import alfcache._hash
import alfcache._scan


def grow_on_read(monkeypatch: pytest.MonkeyPatch, target: Path, times: int) -> list[int]:
    """Make the first ``times`` reads of ``target`` append to it after their first block.

    Returns the list that gets one item per read (the tree must hold no other file to hash).
    """
    real_md5 = alfcache._hash._NEW["md5"]
    reads: list[int] = []

    class Growing:
        def __init__(self) -> None:
            self.inner = real_md5()
            self.grow = False

        def update(self, data: memoryview) -> None:
            if self.grow:
                self.grow = False
                with open(target, "ab") as f:
                    f.write(b"more")
            self.inner.update(data)

        def hexdigest(self) -> str:
            return self.inner.hexdigest()

    def new() -> Growing:
        hasher = Growing()
        reads.append(1)
        hasher.grow = len(reads) <= times
        return hasher

    monkeypatch.setitem(alfcache._hash._NEW, "md5", new)
    return reads


def eio_listing(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make the walk's listing of ``folder`` fail with EIO, as a flaky network mount does.

    The walk lists folders by descriptor; any other listing (the test's own) is left alone.
    """
    real_scandir = os.scandir

    def failing_scandir(fd: Any = ".") -> Any:
        if isinstance(fd, int) and os.readlink(f"/proc/self/fd/{fd}") == str(folder):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_scandir(fd)

    monkeypatch.setattr(alfcache._scan.os, "scandir", failing_scandir)
