"""Faults injected into a run in this process, shared by the test modules that need them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import alfcache._hash


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
    real_md5 = alfcache._hash._NEW["md5"]
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

    monkeypatch.setitem(alfcache._hash._NEW, "md5", new)
    return reads


def grow_on_read(monkeypatch: pytest.MonkeyPatch, target: Path, times: int) -> list[int]:
    """Make the first ``times`` reads of ``target`` append to it after their first block."""
    return change_on_read(monkeypatch, target, times)
