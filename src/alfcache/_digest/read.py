"""File digests: reading one task's files (runs inside a worker, a thread or a cluster's task).

A task (:func:`hash_task`) reads a file in blocks and feeds every requested digest from the same
block; ``hashlib`` and ``xxhash`` digest a block without holding the GIL. Small files are packed
into tasks folder by folder, and a task opens each folder once and its files relative to it
(``os.open(name, dir_fd=...)``): a full path would cost a lookup per path component on storage
that caches none. A file whose size or modification time changes while it is read is read once
more; if it changes again, or cannot be read, it is reported and left without a digest, and the
run goes on. Which files make a task, and where the tasks run, is
:mod:`alfcache._digest.schedule`'s.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import xxhash

from alfcache._exceptions import BadArgument
from alfcache._records import Reason, Skip
from alfcache._tables.schema import DIGEST_COLUMNS

ALGORITHMS: dict[str, tuple[str, ...]] = {
    "md5": ("md5",),
    "xxh3": ("xxh3",),
    "both": ("md5", "xxh3"),
}
"""The ``hash_algorithm`` choices and the digests each one computes."""

COLUMNS = DIGEST_COLUMNS
"""The datasets-table column of each digest (:data:`alfcache._tables.schema.DIGEST_COLUMNS`)."""

BLOCK_SIZE = 1 << 18
"""Bytes per read: small enough that the digest finds the block still in the core's L2 cache,
large enough that the read costs little next to the digest."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

_VANISHED = "file disappeared before it was hashed; not indexed"
_CHANGING = "size or modification time changed while it was read, twice; indexed without a hash"


class _Hasher(Protocol):
    def update(self, data: memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


_NEW: dict[str, Callable[[], _Hasher]] = {
    # FIPS-mode OpenSSL refuses MD5 unless told that it is not used for security.
    "md5": functools.partial(hashlib.md5, usedforsecurity=False),
    "xxh3": xxhash.xxh3_128,
}


def resolve_algorithms(hash_files: bool, hash_algorithm: str | None) -> tuple[str, ...]:
    """The digests to compute for ``hash_files`` and ``hash_algorithm``.

    Parameters
    ----------
    hash_files : bool
        Hash files; alone, this means MD5 (what ONE-api checks).
    hash_algorithm : {'md5', 'xxh3', 'both'}, optional
        The digests to compute; giving one turns hashing on.

    Returns
    -------
    tuple of str
        ``()``, ``('md5',)``, ``('xxh3',)`` or ``('md5', 'xxh3')``.

    Raises
    ------
    BadArgument
        ``hash_algorithm`` is not one of the choices.
    """
    if hash_algorithm is None:
        return ALGORITHMS["md5"] if hash_files else ()
    if not isinstance(hash_algorithm, str) or hash_algorithm not in ALGORITHMS:
        raise BadArgument(
            f"hash_algorithm={hash_algorithm!r} is not known; use one of "
            f"{', '.join(map(repr, ALGORITHMS))}"
        )
    return ALGORITHMS[hash_algorithm]


class _Board(Protocol):
    def add(self, n: int) -> None: ...

    def close(self) -> None: ...


class ReadResult(NamedTuple):
    """What a worker found for each file of a task, in the task's order."""

    sizes: list[int]
    """Size when read, -1 when the file could not be hashed."""
    mtimes: list[int]
    """Modification time (ns) when read, -1 when the file could not be hashed."""
    digests: list[list[str | None]]
    """One list per algorithm: lower-case hex digests, None when not hashed."""
    vanished: list[int]
    """Positions of the files that no longer exist."""
    skipped: list[Skip]


class _OutsideRoot(Exception):
    """The file is a link whose target lies outside the indexed folder (not read)."""


def _open(folder: int, name: str, confine: str | None) -> int:
    """Open ``name`` in ``folder`` to read; a link only when it leads inside ``confine``.

    A link's target is judged by the file actually opened (its path in ``/proc/self/fd``), so
    a link swapped between the walk and the reading cannot lead the reader elsewhere. Plain
    files cost no more than the open.

    Raises
    ------
    _OutsideRoot
        ``name`` is a link to a file outside ``confine`` (a real path), or where the file lies
        cannot be told.
    """
    # O_NONBLOCK: a file replaced by a FIFO since the walk must not hang the worker.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if confine is None:
        return os.open(name, flags, dir_fd=folder)
    try:
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=folder)
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # ELOOP: the name is a link
            raise
    fd = os.open(name, flags, dir_fd=folder)
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        target = None
    if target is None or not (target == confine or target.startswith(confine + "/")):
        os.close(fd)
        raise _OutsideRoot(target or "a file this system cannot locate")
    return fd


def _read(
    folder: int,
    name: str,
    algorithms: tuple[str, ...],
    view: memoryview,
    board: _Board,
    confine: str | None = None,
) -> tuple[int, int, list[str]] | None:
    """Digest a file, reading it again if it changed while it was read; None if it changed twice.

    Parameters
    ----------
    folder : int
        Descriptor of the file's folder.
    name : str
        The file's name in that folder.
    confine : str, optional
        Read a link only if its target lies in this folder (a real path); see :func:`_open`.

    Returns
    -------
    tuple of (int, int, list of str), or None
        Size and modification time (ns) of the content digested, and the hex digests.
    """
    for _ in range(2):
        fd = _open(folder, name, confine)
        with open(fd, "rb", buffering=0) as f:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise OSError(f"{name} is no longer a regular file")
            hashers = [_NEW[a]() for a in algorithms]
            n_read = 0
            while n := f.readinto(view):
                block = view[:n]
                for h in hashers:
                    h.update(block)
                n_read += n
                board.add(n)
            after = os.fstat(fd)
        if n_read == after.st_size and (before.st_size, before.st_mtime_ns) == (
            after.st_size,
            after.st_mtime_ns,
        ):
            return after.st_size, after.st_mtime_ns, [h.hexdigest() for h in hashers]
    return None


def hash_task(
    root: str,
    paths: Sequence[str],
    algorithms: tuple[str, ...],
    board: _Board,
    follow_symlinks: bool = False,
) -> ReadResult:
    """Digest the files of one task (runs inside a worker).

    Parameters
    ----------
    root : str
        Absolute path of the indexed folder.
    paths : sequence of str
        File paths relative to ``root``; files of one folder next to each other, so that the
        folder is opened once for all of them.
    algorithms : tuple of str
        Digests to compute, e.g. ``('md5', 'xxh3')``.
    board : FileBoard or _MemoryBoard
        Where to report the bytes read.
    follow_symlinks : bool
        Read links whose target lies outside ``root`` too; by default they are reported as
        ``symlink_outside_root`` and left without a digest: a run as root must not put the
        digest of a file only root may read into tables a link's owner can read.

    Returns
    -------
    ReadResult
    """
    view = memoryview(bytearray(BLOCK_SIZE))
    confine = None if follow_symlinks else os.path.realpath(root)
    out = ReadResult([], [], [[] for _ in algorithms], [], [])
    folders = _Folders(root)
    try:
        for i, rel in enumerate(paths):
            read = None
            parent, _, name = rel.rpartition("/")
            try:
                read = _read(folders.open(parent), name, algorithms, view, board, confine)
            except _OutsideRoot as exc:
                message = (
                    f"link to {exc} outside the root; indexed without a digest "
                    "(--follow-symlinks reads it)"
                )
                out.skipped.append(Skip(rel, Reason.SYMLINK_OUTSIDE_ROOT, message))
            except FileNotFoundError:
                out.vanished.append(i)
                out.skipped.append(Skip(rel, Reason.VANISHED, _VANISHED))
            except OSError as exc:
                message = f"cannot read: {exc.strerror or exc}; indexed without a hash"
                out.skipped.append(Skip(rel, Reason.UNREADABLE, message))
            else:
                if read is None:
                    out.skipped.append(Skip(rel, Reason.CHANGING, _CHANGING))
            unread: list[str | None] = [None] * len(algorithms)
            size, mtime, digests = read or (-1, -1, unread)
            out.sizes.append(size)
            out.mtimes.append(mtime)
            for column, digest in zip(out.digests, digests, strict=True):
                column.append(digest)
    finally:
        folders.close()
        board.close()
    return out


class _Folders:
    """The folder of the file being read, kept open while the next files are in it too."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.name: str | None = None
        self.fd = -1
        self.error: OSError | None = None

    def open(self, name: str) -> int:
        """A descriptor of folder ``name`` (relative to the root, '' for the root itself).

        Raises
        ------
        OSError
            The folder cannot be opened: the same error for each of its files, so a folder
            gone is each file ``vanished`` and one locked is each file ``unreadable``.
        """
        if name != self.name:
            self.close()
            self.name = name
            try:
                self.fd = os.open(f"{self.root}/{name}" if name else self.root, _DIR_FLAGS)
            except OSError as exc:
                self.error = exc
        if self.error is not None:
            raise self.error
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.error = -1, None
