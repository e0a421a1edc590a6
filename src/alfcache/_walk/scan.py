"""The walk: where a row is born.

A :class:`Walk` lists folders with ``os.scandir`` on a folder descriptor and classifies every
entry; who lists which folder, on how many threads and processes, is decided in
:mod:`alfcache._walk.engine`. A walk's work is a stack of plain :data:`Task` values, so a
folder can be handed to another thread or process as it is found. :func:`scan_folders` walks
given folders in one thread (the pure function: plain arguments in, Arrow out). Workers never
import Polars or pandas, so that they stay cheap.

Rules (documented in docs/rules.md, with the reason code of every report):

* a folder is a session when its last folder names are ``subject/date/number`` (whole names),
  with ``lab/Subjects`` before them for a lab; a folder with an impossible date or a four-digit
  number is reported, not indexed;
* a file is a dataset when it lies at any depth below a session and its name is valid ALF; it
  belongs to its innermost session (a nested session is reported);
* symbolic links to files are indexed (size of the target); symbolic links to folders are not
  followed unless ``follow_symlinks``; then the workers only report them and the main process
  chooses (:func:`plan_links`) so that no real folder is indexed twice, whatever the sharding;
* FIFOs, sockets and device nodes are never opened, only reported;
* with an array shard (``--shard K/N``, :mod:`alfcache._alf.sharding`) a session folder of another
  shard is not entered, nor anything below it; a session inside a session goes with the outer
  one, whose walk finds it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow as pa

from alfcache._alf.grammar import (
    has_long_number,
    is_dataset_name,
    is_real_date,
    near_miss,
    session_parts,
)
from alfcache._alf.ids import uuid3_joined, uuid3_strings
from alfcache._alf.paths import session_folder
from alfcache._alf.sharding import ArrayShard
from alfcache._records import (
    DATASET_BATCH_SCHEMA,
    SESSION_BATCH_SCHEMA,
    Reason,
    ScanResult,
    Skip,
)
from alfcache._tables.arrow import numeric_array, string_array, with_offsets


# Not slots=True: Python 3.10 cannot unpickle a frozen dataclass with slots, and workers
# receive it pickled.
@dataclass(frozen=True)
class Rules:
    """What a walk indexes and how: the facts every layer of a walk shares.

    Made once per run from the caller's options and handed down as it is: to every listing
    thread, to the worker processes (pickled) and to the Dask tasks (each with its own part of
    the array shard, see :mod:`alfcache._walk.dask`). So it must stay picklable and hold only
    plain values; the layers read its fields rather than keep copies of them.

    Attributes
    ----------
    root : str
        Absolute path of the indexed folder.
    follow_symlinks : bool
        Report symbolic links to folders in ``ScanResult.links`` (for :func:`plan_links`)
        instead of as ``symlink_not_followed``.
    array_shard : ArrayShard, optional
        Walk only the sessions of this shard of an array job (``--shard K/N``); None for every
        session.
    hash_ids : bool
        Fill the ``id`` columns of the rows with UUID v3 ids; when False they are null (the
        tables' path ids are made from the other columns, see
        :func:`alfcache._tables.build.assemble`), and no MD5 is computed.
    """

    root: str
    follow_symlinks: bool = False
    array_shard: ArrayShard | None = None
    hash_ids: bool = True


class Start(NamedTuple):
    """Where a walk starts (a folder task): a folder relative to the root, walked deep or flat.

    Not an array shard (:class:`alfcache._alf.sharding.ArrayShard`), which is a set of sessions.
    """

    rel_dir: str
    deep: bool


class _Session(NamedTuple):
    rel_dir: str
    prefix: str
    """Path of the folder being walked relative to the session, '' or ending in '/'."""

    def __reduce__(self) -> tuple[object, tuple[str, str, int]]:
        # Tasks travel between processes, and the walk tells "no session" and "another array
        # shard's session" by identity (a root that is a session is _Session("", "") too).
        marker = 1 if self is _NO_SESSION else 2 if self is _OTHER_SHARD else 0
        return _session, (self.rel_dir, self.prefix, marker)


def _session(rel_dir: str, prefix: str, marker: int) -> _Session:
    return (_Session(rel_dir, prefix), _NO_SESSION, _OTHER_SHARD)[marker]


_NO_SESSION = _Session("", "")
_OTHER_SHARD = _Session("<a session of another array shard>", "")
"""What :meth:`Walk.enter_session` returns for a session another array task indexes."""

Task = tuple[str, tuple[str, ...], _Session]
"""A folder to list: its path relative to the root, its last four names and its session.
Plain values, so a task can go to another thread or process as it is."""

Stack = deque[Task]
_SESSION_TEXT = ("session", "lab", "subject", "date", "number")
"""The text columns of a session row the walk fills as it enters a session folder."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_PATH_MAX = 4096
"""Linux's limit on a path's length in bytes, its final NUL included."""
_OPEN_ANCESTORS = 8
"""Folders a walk keeps open so that their subfolders open by one name (see ``Walk._open``):
ALF trees are about seven folders deep, and a process runs up to 64 listing threads."""

# The same few hundred names recur in every session; caching the verdict takes the regular
# expression off the per-file path.
_is_dataset_name = functools.lru_cache(maxsize=1 << 16)(is_dataset_name)


def _is_utf8(name: str) -> bool:
    """False for names holding undecodable bytes (``os`` maps them to lone surrogates)."""
    if name.isascii():
        return True
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def plan_links(
    root: str, links: Iterable[str], indexed: dict[str, str]
) -> tuple[list[Start], list[Skip]]:
    """Choose which links to folders to follow, so that no real folder is indexed twice.

    Runs in the main process between rounds of the walk: the workers only report the links
    they meet, so the choice does not depend on how the tree was cut into folder tasks. Links
    are taken in sorted order; a link is followed unless its target (real path) is, contains or
    lies inside a folder already indexed: the root itself or the target of a link followed
    before.

    Parameters
    ----------
    root : str
        Absolute, resolved path of the indexed folder.
    links : iterable of str
        Links to folders, relative to ``root``.
    indexed : dict of str to str
        Real paths already indexed and how (``"the root"``, ``"link a/b"``); the targets of the
        links chosen here are added to it.

    Returns
    -------
    list of Start
        A deep start for every link to follow, walked through the link's own path.
    list of Skip
        A ``symlink_revisit`` record for every other link.
    """
    starts: list[Start] = []
    skipped: list[Skip] = []
    for rel in sorted(links):
        target = os.path.realpath(os.path.join(root, rel))
        seen = next((p for p in indexed if os.path.commonpath([p, target]) in (p, target)), None)
        if seen is None:
            indexed[target] = f"link {rel}"
            starts.append(Start(rel, True))
        else:
            skipped.append(
                Skip(
                    rel,
                    Reason.SYMLINK_REVISIT,
                    f"link target {target} overlaps {seen} ({indexed[seen]}), which is "
                    "indexed already; not followed",
                )
            )
    return starts, skipped


def session_id_name(root_names: tuple[str, ...], rel_dir: str) -> str:
    """The ALF path a session's ids are hashed from: its folder names as written on disk.

    ``lab/Subjects/subject/date/number`` (the lab from the folders, ``lab=`` does not enter
    it) for the session folder ``rel_dir`` below the root whose names are ``root_names``.
    """
    names = root_names + (tuple(rel_dir.split("/")) if rel_dir else ())
    parts = session_parts(names)
    if parts is None:
        raise ValueError(f"not a session folder: {rel_dir!r}")
    return session_folder(*parts)


def _session_of(root_names: tuple[str, ...], rel_dir: str) -> _Session:
    """The innermost session folder at or above ``rel_dir`` (but not above the root)."""
    rel_names = tuple(rel_dir.split("/")) if rel_dir else ()
    names = root_names + rel_names
    for depth in range(len(rel_names), -1, -1):
        parts = session_parts(names[: len(root_names) + depth])
        if parts is not None and is_real_date(parts.date):
            session_rel = "/".join(rel_names[:depth])
            inner = "/".join(rel_names[depth:])
            return _Session(session_rel, f"{inner}/" if inner else "")
    return _NO_SESSION


class Walk:
    """The state of one worker's walk: columns being filled, skip records, visited folders.

    Parameters
    ----------
    rules : Rules
        The folder to walk and how.
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.root_names = tuple(p for p in rules.root.split("/") if p)
        self._root_fd: int | None = None
        self._ancestors: list[tuple[str, int]] = []
        """Open folders, each inside the one before: the last listed folder that has
        subfolders and those above it (``rel_dir`` and descriptor)."""
        self._reset()

    def _reset(self) -> None:
        self.links: list[str] = []
        self.ses: dict[str, list[str]] = {k: [] for k in _SESSION_TEXT}
        self.ses_num: list[int] = []
        self.ds_session: list[str] = []
        self.ds_rel_path: list[str] = []
        self.ds_size: list[int] = []
        self.ds_mtime: list[int] = []
        self.alf_paths: dict[str, str] = {}
        """The ALF path (:func:`session_id_name`) of each session folder met since the reset,
        when ``rules.hash_ids``."""
        self.skipped: list[Skip] = []
        self.ignored = 0
        self.listed = 0

    def skip(self, rel: str, reason: str, message: str) -> None:
        self.skipped.append(Skip(rel or ".", reason, message))

    def enter_session(
        self, rel_dir: str, names: tuple[str, ...], outer: _Session
    ) -> _Session | None:
        """Register ``rel_dir`` as a session when it is one; report the near misses.

        ``outer`` is the session ``rel_dir`` lies in, if any: a session inside it is reported.
        Returns ``_OTHER_SHARD`` for an outermost session of another array shard.
        """
        # A session folder's name is its number: a name that does not start with a digit (a
        # collection, a subject; most folders) is neither a session nor a long number.
        numbered = names[-1][:1].isdecimal()
        parts = session_parts(names) if numbered else None
        if parts is None:
            if numbered and has_long_number(names):
                self.skip(
                    rel_dir,
                    Reason.INVALID_NUMBER,
                    f"session number {names[-1]} has more than three digits; not a session",
                )
            elif outer is _NO_SESSION and (why := near_miss(names)):
                self.skip(rel_dir, Reason.NEAR_MISS, why)
            return None
        if not is_real_date(parts.date):
            self.skip(rel_dir, Reason.INVALID_DATE, f"{parts.date} is not a calendar date")
            return None
        # The array-shard hook: decided on the folder's own names, so no task needs a global
        # listing; sessions nested in a session go with it (they are only found by its walk).
        rules = self.rules  # bound once: two of its fields are read for every session found
        shard = rules.array_shard
        owned = shard is None or shard.owns(parts.subject, parts.date, parts.number)
        if outer is _NO_SESSION and not owned:
            return _OTHER_SHARD
        if outer is not _NO_SESSION:
            self.skip(
                rel_dir,
                Reason.NESTED_SESSION,
                f"indexed as a session of its own, inside session {outer.rel_dir or '.'}",
            )
        for key, value in zip(self.ses, (rel_dir, *parts), strict=True):
            self.ses[key].append(value)
        self.ses_num.append(int(parts.number))
        if rules.hash_ids:
            self.alf_paths[rel_dir] = session_folder(*parts)
        return _Session(rel_dir, "")

    def _in_array_shard(self, rel_dir: str) -> bool:
        """Whether the outermost session at or above ``rel_dir`` (if any) is this task's."""
        rel_names = tuple(rel_dir.split("/")) if rel_dir else ()
        for depth in range(len(rel_names) + 1):
            parts = session_parts(self.root_names + rel_names[:depth])
            if parts is not None and is_real_date(parts.date):
                shard = self.rules.array_shard
                return shard is None or shard.owns(parts.subject, parts.date, parts.number)
        return True

    @contextlib.contextmanager
    def rooted(self) -> Iterator[None]:
        """List folders relative to a descriptor of the root while in this context.

        Opening ``lab/Subjects/subject/date/number/alf`` from the root's descriptor skips the
        lookup of the root's own path: 7% of the walk's system time at 312,000 folders. The
        thread that lists is the one that opens and closes it, so no descriptor is closed
        under a listing. A root that cannot be opened is listed by its path, and its error
        reported by the listing as before.
        """
        try:
            self._root_fd = os.open(self.rules.root, _DIR_FLAGS)
        except OSError:
            self._root_fd = None
        try:
            yield
        finally:
            self._close_ancestors("")
            if self._root_fd is not None:
                os.close(self._root_fd)
                self._root_fd = None

    def _close_ancestors(self, rel_dir: str) -> None:
        """Close the open folders that are not above ``rel_dir`` ("": all of them)."""
        ancestors = self._ancestors
        while ancestors and not rel_dir.startswith(ancestors[-1][0] + "/"):
            os.close(ancestors.pop()[1])

    def _open(self, rel_dir: str, path: str) -> int:
        """A descriptor of the folder ``rel_dir`` (at ``path``).

        Opened from the nearest open folder above it, most often its parent, by the names
        below that folder: on storage that revalidates every name of a path with a round trip
        (a network file system without attribute caching), opening
        ``lab/Subjects/subject/date/number/alf`` from the root costs six of them, and at
        10,500 files such lookups were half of all requests.
        """
        self._close_ancestors(rel_dir)
        # A character takes at most 4 bytes: most paths need no encoding (300 ns a folder).
        if len(path) >= _PATH_MAX // 4 and len(os.fsencode(path)) >= _PATH_MAX:
            # Listed by one name it would open, but no program could open its files by path.
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
        if self._ancestors:
            above, fd = self._ancestors[-1]
            try:
                return os.open(rel_dir[len(above) + 1 :], _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno != errno.EMFILE:
                    raise
                # Out of descriptors (a low limit, many threads): let go of the kept folders
                # rather than report this one unlistable.
                self._close_ancestors("")
        if self._root_fd is None:
            return os.open(path, _DIR_FLAGS)
        return os.open(rel_dir or ".", _DIR_FLAGS, dir_fd=self._root_fd)

    def walk(self, start: Start) -> None:
        stack = deque([self.start(start)])
        with self.rooted():
            while stack:
                self._list(*stack.pop(), stack, start.deep)

    def start(self, start: Start) -> Task:
        """The first task of a walk from ``start``; emits its folder's row if that is a session."""
        rel_names = tuple(start.rel_dir.split("/")) if start.rel_dir else ()
        names = self.root_names + rel_names
        # Whoever walks a folder emits its session row; a walk may also start inside a session.
        outer = (
            _session_of(self.root_names, start.rel_dir.rpartition("/")[0])
            if start.rel_dir
            else _NO_SESSION
        )
        if not self._in_array_shard(start.rel_dir):
            # A start inside, or at, a session another array task indexes: nothing to list.
            return start.rel_dir, names[-4:], _OTHER_SHARD
        session = self.enter_session(start.rel_dir, names, outer) or _session_of(
            self.root_names, start.rel_dir
        )
        return start.rel_dir, names[-4:], session

    def list_folder(self, task: Task, stack: Stack) -> tuple[int, int]:
        """List one folder of a deep walk; its subfolders go on ``stack``.

        Returns the sessions (its subfolders that are) and dataset files it found.
        """
        sessions, files = len(self.ses_num), len(self.ds_session)
        self._list(*task, stack, True)
        return len(self.ses_num) - sessions, len(self.ds_session) - files

    def _list(
        self,
        rel_dir: str,
        tail: tuple[str, ...],
        session: _Session,
        stack: Stack,
        deep: bool,
    ) -> None:
        if session is _OTHER_SHARD:
            return
        root = self.rules.root  # once per folder, never per entry
        path = f"{root}/{rel_dir}" if rel_dir else root
        try:
            # Listing through a folder descriptor makes every stat() below relative to it
            # (fstatat), instead of a lookup of the whole path per file.
            fd = self._open(rel_dir, path)
        except OSError as exc:
            self._unlistable(rel_dir, exc)
            return
        pushed = len(stack)
        try:
            self._entries(fd, path, rel_dir, tail, session, stack, deep)
        finally:
            # Kept open while its subfolders wait on the stack, listed next by this thread.
            if rel_dir and len(stack) > pushed and len(self._ancestors) < _OPEN_ANCESTORS:
                self._ancestors.append((rel_dir, fd))
            else:
                os.close(fd)

    def _unlistable(self, rel_dir: str, exc: OSError) -> None:
        """Report a folder that could not be opened or listed."""
        if isinstance(exc, PermissionError):
            self.skip(rel_dir, Reason.PERMISSION_DENIED, f"cannot list folder: {exc.strerror}")
        elif isinstance(exc, FileNotFoundError):
            self.skip(rel_dir, Reason.VANISHED, "folder disappeared during the scan")
        else:
            self.skip(rel_dir, Reason.UNREADABLE, f"cannot list folder: {exc.strerror or exc}")

    def _entries(
        self,
        fd: int,
        path: str,
        rel_dir: str,
        tail: tuple[str, ...],
        session: _Session,
        stack: Stack,
        deep: bool,
    ) -> None:
        try:
            entries = list(os.scandir(fd))
        except OSError as exc:
            self._unlistable(rel_dir, exc)
            return
        self.listed += 1
        in_session = session is not _NO_SESSION
        add_file = self._add_file
        for entry in entries:
            name = entry.name
            if not name.isascii() and not _is_utf8(name):
                self.skip(
                    _join(rel_dir, name.encode(errors="surrogateescape").decode(errors="replace")),
                    Reason.NOT_UTF8,
                    "name is not valid UTF-8; rename it to index it",
                )
                continue
            if entry.is_dir(follow_symlinks=False):
                if deep:
                    self._push_dir(rel_dir, tail, session, stack, name)
            elif entry.is_file(follow_symlinks=False):
                if in_session:
                    if _is_dataset_name(name):
                        add_file(entry, session, rel_dir)
                    else:
                        self.ignored += 1
                elif _is_dataset_name(name):
                    self.skip(
                        _join(rel_dir, name),
                        Reason.NEAR_MISS,
                        "named like a dataset but not inside a session folder; not indexed",
                    )
            elif entry.is_symlink():
                self._symlink(entry, path, rel_dir, session)
            elif in_session and _is_dataset_name(name):
                self.skip(
                    _join(rel_dir, name),
                    Reason.NOT_REGULAR_FILE,
                    "FIFO, socket or device node named like a dataset; never opened",
                )

    def _push_dir(
        self,
        rel_dir: str,
        tail: tuple[str, ...],
        session: _Session,
        stack: Stack,
        name: str,
    ) -> None:
        child = _join(rel_dir, name)
        names = (*tail, name)
        inner = self.enter_session(child, names, session)
        if inner is _OTHER_SHARD:
            return
        if inner is None:
            inner = (
                session
                if session is _NO_SESSION
                else _Session(session.rel_dir, f"{session.prefix}{name}/")
            )
        stack.append((child, names[-4:], inner))

    def _add_file(self, entry: os.DirEntry[str], session: _Session, rel_dir: str) -> None:
        try:
            st = entry.stat()
        except FileNotFoundError:
            self.skip(_join(rel_dir, entry.name), Reason.VANISHED, "file disappeared before stat")
            return
        except OSError as exc:
            self.skip(
                _join(rel_dir, entry.name), Reason.UNREADABLE, f"cannot stat: {exc.strerror}"
            )
            return
        size = st.st_size
        if not size:
            # Indexed like any file (ONE-api does), but a zero-byte .npy is usually a copy
            # that was cut short, so it is worth a look.
            self.skip(_join(rel_dir, entry.name), Reason.EMPTY_FILE, "indexed; the file is empty")
        self.ds_session.append(session.rel_dir)
        self.ds_rel_path.append(session.prefix + entry.name)
        self.ds_size.append(size)
        self.ds_mtime.append(st.st_mtime_ns)

    def _symlink(
        self, entry: os.DirEntry[str], path: str, rel_dir: str, session: _Session
    ) -> None:
        rel = _join(rel_dir, entry.name)
        try:
            st = entry.stat()  # follows the link
        except OSError as exc:
            self._bad_link(rel, f"{path}/{entry.name}", exc)
            return
        if stat.S_ISREG(st.st_mode):
            if session is not _NO_SESSION:
                if _is_dataset_name(entry.name):
                    self._add_file(entry, session, rel_dir)
                else:
                    self.ignored += 1
        elif stat.S_ISDIR(st.st_mode):
            if self.rules.follow_symlinks:
                self.links.append(rel)  # followed or not by plan_links, in the main process
            else:
                self.skip(
                    rel, Reason.SYMLINK_NOT_FOLLOWED, "link to a folder; use --follow-symlinks"
                )
        elif session is not _NO_SESSION and _is_dataset_name(entry.name):
            self.skip(
                rel, Reason.NOT_REGULAR_FILE, "link to a FIFO, socket or device; never opened"
            )

    def _bad_link(self, rel: str, link: str, exc: OSError) -> None:
        """Report a link whose target cannot be reached."""
        if exc.errno == errno.ELOOP:
            self.skip(rel, Reason.SYMLINK_LOOP, "link resolves to itself through other links")
            return
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            self.skip(rel, Reason.UNREADABLE, f"cannot resolve link: {exc.strerror or exc}")
            return
        try:
            target = os.readlink(link)
        except OSError:  # the link itself went away meanwhile
            self.skip(rel, Reason.VANISHED, "link disappeared during the scan")
            return
        self.skip(rel, Reason.BROKEN_SYMLINK, f"link target {target!r} is missing")

    @property
    def rows(self) -> int:
        return len(self.ds_session) + len(self.ses_num)

    @property
    def found(self) -> tuple[int, int]:
        """Sessions and files found since the last flush."""
        return len(self.ses_num), len(self.ds_session)

    def flush(self) -> ScanResult:
        """What was found since the last flush, as one ScanResult; the walk starts afresh."""
        result = self.result()
        self._reset()
        return result

    def _alf_path(self, rel_dir: str) -> str:
        known = self.alf_paths.get(rel_dir)
        if known is None:
            known = self.alf_paths[rel_dir] = session_id_name(self.root_names, rel_dir)
        return known

    def result(self) -> ScanResult:
        """What was found since the last reset; ids as ``rules.hash_ids`` says."""
        alf_path = self._alf_path
        if self.rules.hash_ids:
            session_ids = _large(uuid3_strings([alf_path(s) for s in self.ses["session"]]))
            dataset_ids = _large(uuid3_joined(self.ds_session, self.ds_rel_path, alf_path))
        else:
            # Path ids are made by the assembler from the other columns, a column at a time:
            # UUIDs made here would be thrown away (0.8 s of MD5 per million rows).
            session_ids = pa.nulls(len(self.ses_num), pa.large_string())
            dataset_ids = pa.nulls(len(self.ds_session), pa.large_string())
        sessions = pa.RecordBatch.from_arrays(
            [
                *(string_array(column) for column in self.ses.values()),
                numeric_array(self.ses_num, pa.uint16()),
                session_ids,
            ],
            schema=SESSION_BATCH_SCHEMA,
        )
        datasets = pa.RecordBatch.from_arrays(
            [
                string_array(self.ds_session),
                string_array(self.ds_rel_path),
                numeric_array(self.ds_size, pa.uint64()),
                numeric_array(self.ds_mtime, pa.int64()),
                dataset_ids,
            ],
            schema=DATASET_BATCH_SCHEMA,
        )
        return ScanResult(sessions, datasets, self.skipped, self.ignored, self.links, self.listed)


def _large(ids: pa.StringArray) -> pa.Array:
    """Ids as ``large_string``, the walk's one text type: Polars converts any other with
    ``pyarrow.compute``, whose import a small run cannot afford."""
    return with_offsets(ids, pa.large_string())


def scan_folders(rules: Rules, starts: Iterable[Start]) -> ScanResult:
    """Walk ``starts`` of the tree at ``rules.root`` and return their rows (runs inside a worker).

    Parameters
    ----------
    rules : Rules
        The folder to walk and how.
    starts : iterable of Start
        The folders to walk, relative to ``rules.root``.

    Returns
    -------
    ScanResult
    """
    walk = Walk(rules)
    for start in starts:
        walk.walk(start)
    return walk.result()
