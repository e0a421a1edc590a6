"""Prune: delete the files the tables do not list (``remove_missing_datasets``).

``one.alf.cache`` ships it next to ``make_parquet_db`` (with ``patch_cache`` and
``remove_cache_table_files``, which live in :mod:`alfcache._tables.one_api`); a drop-in
replacement must ship it too. It is pandas-facing (ONE-api hands it pandas frames), so this
module is only imported on first use (see ``alfcache.__getattr__``).

Differences from ONE-api 3.0.0, all on the side of deleting less or being correct:

* :func:`remove_missing_datasets` finds datasets at any depth below a session (the reference only
  looks at the session folder's own files), checks a file against the ``rel_path`` *values* of
  its session's rows (the reference tests the frame's index, so with UUID ids it flags every
  file), treats a null lab as no lab, refuses to run when a table file is missing (the
  reference would take the missing table as empty and flag the whole tree) and never removes
  the cache folder itself. It deletes through folders opened without following links, and
  only files still as the walk found them (see :func:`_delete`).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from alfcache._alf.paths import session_folder
from alfcache._paths import plural, shown
from alfcache._records import Reason
from alfcache._tables.build import resolve_clashes
from alfcache._tables.checks import check_tables_for
from alfcache._tables.lock import DEFAULT_TIMEOUT, check_timeout, out_dir_lock
from alfcache._tables.one_api import read_cache_tables
from alfcache._tables.store import (
    DATASETS_FILE,
    SESSIONS_FILE,
    read_metadata,
)
from alfcache._walk.scan import Rules, Start, scan_folders

__all__ = ["remove_missing_datasets"]

_logger = logging.getLogger("alfcache")

# -------------------------------------------------------------------------------------------------
# remove_missing_datasets
# -------------------------------------------------------------------------------------------------


def check_prune_tables(tables_dir: Path, root: Path, any_origin: bool) -> None:
    """Refuse to delete by partial tables, a pair of two runs, or (unless ``any_origin``)
    another tree's.

    Raises
    ------
    BadArgument
        See :func:`alfcache._tables.checks.check_tables_for`.
    """
    check_tables_for(
        "pruning",
        "pruning would delete every file of this tree that those tables lack",
        read_metadata(tables_dir / SESSIONS_FILE),
        read_metadata(tables_dir / DATASETS_FILE),
        root.resolve(),
        tables_dir,
        any_origin=any_origin,
    )


def _is_null(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _session_folder(lab: object, subject: object, date: object, number: object) -> str:
    """A sessions-table record's folder relative to the cache folder, as ONE-api builds it.

    ``lab/Subjects/subject/yyyy-mm-dd/NNN``, without ``lab/Subjects`` when the lab is empty
    or null; the number is zero-padded to three digits.
    """
    if isinstance(date, datetime.datetime):
        date = date.date()
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if not isinstance(number, Integral):
        number = str(number).zfill(3)
    return session_folder("" if _is_null(lab) or not lab else str(lab), str(subject), date, number)


def _table_datasets(tables: Mapping[str, pd.DataFrame]) -> dict[str, set[str]]:
    """Map each session folder in the tables to the ``rel_path`` values recorded for it.

    Ids are compared as strings, so ``uuid.UUID`` and ``str`` indices match. When two
    sessions records name the same folder their datasets are pooled (nothing of either is
    deleted).
    """
    sessions = tables["sessions"]
    folders: dict[str, list[str]] = {}
    labs = sessions["lab"].tolist() if "lab" in sessions.columns else [""] * len(sessions)
    columns = (sessions[c].tolist() for c in ("subject", "date", "number"))
    for eid, *record in zip(sessions.index.tolist(), labs, *columns, strict=True):
        folders.setdefault(_session_folder(*record), []).append(str(eid))

    datasets = tables["datasets"]
    if "eid" in datasets.index.names:
        eids = datasets.index.get_level_values("eid")
    elif "eid" in datasets.columns:
        eids = datasets["eid"]
    else:
        eids = datasets.index.get_level_values(0)
    rel_paths: dict[str, set[str]] = {}
    for eid, rel_path in zip(map(str, eids), datasets["rel_path"].tolist(), strict=True):
        rel_paths.setdefault(eid, set()).add(rel_path)
    return {
        folder: set().union(*(rel_paths.get(eid, set()) for eid in ids))
        for folder, ids in folders.items()
    }


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""A folder below the cache folder is opened from its parent, never through a link."""


class _OpenFolders:
    """The open folders from the cache folder down to the one last asked for.

    Deleting by full path after the walk would follow a folder swapped for a link meanwhile,
    out of the root. Each folder here is opened relative to its open parent without following a
    link, so such a swap fails to open (``ELOOP``, ``ENOTDIR``) instead; only the chain to the
    current folder is kept open, so paths asked for in sorted order need few descriptors.
    """

    def __init__(self, root: Path) -> None:
        self.names: list[str] = []
        self.fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]

    def at(self, parts: Sequence[str]) -> int:
        """The descriptor of the folder ``parts`` below the root (``OSError`` if not a folder)."""
        keep = 0
        while keep < min(len(parts), len(self.names)) and self.names[keep] == parts[keep]:
            keep += 1
        while len(self.names) > keep:
            self.names.pop()
            os.close(self.fds.pop())
        for name in parts[keep:]:
            self.fds.append(os.open(name, _DIR_FLAGS, dir_fd=self.fds[-1]))
            self.names.append(name)
        return self.fds[-1]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def _only_folders_below(dir_fd: int, name: str) -> bool:
    """True when no file (nor link, which may be content) lies anywhere below ``name``."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            listed = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
        return all(is_dir for _, is_dir in listed) and all(
            _only_folders_below(fd, sub) for sub, _ in listed
        )
    finally:
        os.close(fd)


def _remove_folders_below(dir_fd: int, name: str) -> None:
    """Remove the empty folders ``name`` holds, deepest first, then ``name``."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            subfolders = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        for sub in subfolders:
            _remove_folders_below(fd, sub)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)  # fails, harmlessly, if a file appeared meanwhile


def _remove_session_folder(parts: Sequence[str], folders: _OpenFolders) -> bool:
    """Remove an emptied session folder (``parts`` below the cache folder), then its parents
    while they are empty.

    Nothing at or directly below the cache folder is removed. Returns True if the session
    folder was removed (False: it held a file, a README say, and was kept).
    """
    if len(parts) < 2:
        return False
    try:
        parent = folders.at(parts[:-1])
        if not _only_folders_below(parent, parts[-1]):
            return False
        _remove_folders_below(parent, parts[-1])
    except OSError as exc:
        _logger.debug("Keeping %s: %s", "/".join(parts), exc)
        return False
    _logger.debug("Removed %s", "/".join(parts))
    for depth in range(len(parts) - 1, 1, -1):
        try:
            os.rmdir(parts[depth - 1], dir_fd=folders.at(parts[: depth - 1]))
        except OSError:  # not empty (or already gone): stop climbing
            break
        _logger.debug("Removed %s", "/".join(parts[:depth]))
    return True


def _delete(
    cache_dir: Path, to_delete: set[str], walked: Mapping[str, tuple[int, int]]
) -> list[str]:
    """Delete the files and emptied session folders ``to_delete`` (relative to ``cache_dir``);
    return those removed.

    A file is deleted only when it is still what the walk found (a regular file of the size
    and modification time in ``walked``; or a link, whose removal leaves its target alone),
    through folders opened without following links (see :class:`_OpenFolders`). What changed
    since the walk is kept, with a warning.
    """
    kept: list[tuple[str, str]] = []
    removed: list[str] = []
    session_folders = []
    folders = _OpenFolders(cache_dir)
    try:
        for rel in sorted(to_delete):
            *parents, name = rel.split("/")
            try:
                fd = folders.at(parents)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    session_folders.append(rel.split("/"))
                    continue
                if not stat.S_ISLNK(st.st_mode) and (
                    not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != walked.get(rel)
                ):
                    kept.append((rel, "changed since the walk"))
                    continue
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                _logger.debug("Already gone: %s", rel)
            except OSError as exc:
                # ELOOP, ENOTDIR: a folder on the way is now a link (or a file).
                kept.append((rel, f"a folder on its path changed since the walk: {exc.strerror}"))
            else:
                _logger.debug("Removed %s", rel)
                removed.append(rel)
        # Deepest first, so a session nested in another is gone before its parent is looked at.
        for parts in sorted(session_folders, key=len, reverse=True):
            if _remove_session_folder(parts, folders):
                removed.append("/".join(parts))
    finally:
        folders.close()
    if kept:
        # The folder resolved, not the path: it may now lead through a link.
        _logger.warning(
            "kept %s it was to remove, e.g. %s/%s: %s",
            plural(len(kept), "path"),
            shown(cache_dir),
            kept[0][0],
            kept[0][1],
        )
    return removed


def _left_alone(path: str, left_out: set[str]) -> bool:
    """True when ``path`` is, lies below or holds an entry the indexer left out."""
    if "." in left_out:
        return True
    return any(
        path == out or path.startswith(f"{out}/") or out.startswith(f"{path}/") for out in left_out
    )


def remove_missing_datasets(
    cache_dir: str | os.PathLike[str],
    tables: Mapping[str, pd.DataFrame] | None = None,
    remove_empty_sessions: bool = True,
    dry: bool = True,
    *,
    lock_timeout: float = DEFAULT_TIMEOUT,
    any_origin: bool = False,
) -> list[Path]:
    """Remove dataset files and session folders that are not in the provided cache.

    NB: This *does not* remove entries from the cache tables that are missing on disk.
    Non-ALF files are not removed. Empty sessions that exist in the sessions table are not
    removed.

    A session folder on disk is the table session with the same lab, subject, date and number
    (as an integer), wherever it sits and however its number is padded: the tables alfcache
    writes index a folder named ``1``, and its datasets must not be deleted. A dataset is any
    ALF-named file at any depth below a session folder; it is in the cache when its path
    relative to the session is a ``rel_path`` of that session's rows.

    Parameters
    ----------
    cache_dir : str, pathlib.Path
        The cache folder: the root of the data tree.
    tables : dict[str, pandas.DataFrame], optional
        A dict with keys ('sessions', 'datasets'), containing the cache tables as DataFrames.
        When None, ``sessions.pqt`` and ``datasets.pqt`` are read from ``cache_dir``.
    remove_empty_sessions : bool
        Attempt to remove session folders that are empty and not in the sessions table.
    dry : bool
        If true, do not remove anything; print what would be removed.
    lock_timeout : float
        Unless ``dry``: seconds to wait for an index run writing into ``cache_dir``, whose lock
        (:mod:`alfcache._tables.lock`) is held from reading the tables to the last deletion.
    any_origin : bool
        Unless ``dry``, tables read from ``cache_dir`` whose recorded origin is another folder
        are refused (they would delete this tree's files that they lack) unless this is True
        (tables moved on purpose); partial tables of one array shard are refused all the same.
        Tables passed as ``tables``, and tables that record no absolute origin (Alyx's), are
        not checked.

    Returns
    -------
    list of pathlib.Path
        A sorted list of paths to be removed.

    Raises
    ------
    FileNotFoundError
        ``tables`` is None and a table file is missing from ``cache_dir``.
    BadArgument
        Not ``dry``, ``tables`` is None, and the tables in ``cache_dir`` are partial or
        (unless ``any_origin``) of another origin.
    OutDirLocked
        Not ``dry``, and another run kept writing into ``cache_dir`` for ``lock_timeout``
        seconds.
    """
    cache_dir = Path(cache_dir)
    paths = prune_locked(
        cache_dir,
        cache_dir,
        tables,
        remove_empty_sessions=remove_empty_sessions,
        dry=dry,
        lock_timeout=lock_timeout,
        any_origin=any_origin,
    )
    if dry:
        # What one-api's remove_missing_datasets prints on a dry run, kept for parity: its
        # callers read the listing there. alfcache's command line prints its own.
        print("The following session and datasets would be removed:", end="\n\t")
        print("\n\t".join(sorted(map(str, paths))))
    return paths


def prune_locked(
    root: Path,
    tables_dir: Path,
    tables: Mapping[str, pd.DataFrame] | None,
    *,
    remove_empty_sessions: bool,
    dry: bool,
    lock_timeout: float,
    any_origin: bool,
) -> list[Path]:
    """:func:`prune` under the lock of ``tables_dir`` (unless ``dry``), reading the tables there.

    The lock an index run takes to write the tables is held from their reading to the last
    deletion: deleting by tables that a run is replacing would go by a pair of two runs.

    Parameters
    ----------
    root : pathlib.Path
        The data folder to prune.
    tables_dir : pathlib.Path
        The folder of ``sessions.pqt`` and ``datasets.pqt``.
    tables : dict[str, pandas.DataFrame], optional
        The tables, as :func:`read_cache_tables` returns them; None reads them from
        ``tables_dir`` and (unless ``dry``) checks them with :func:`check_prune_tables`.
    remove_empty_sessions, dry, lock_timeout, any_origin
        As for :func:`remove_missing_datasets`.

    Returns
    -------
    list of pathlib.Path
        The paths removed (or, when ``dry``, to be removed), sorted.
    """
    if not dry:
        check_timeout(lock_timeout)
    # A dry run deletes nothing, and a missing folder holds no tables to guard (reading them
    # reports it).
    locked = not dry and tables_dir.is_dir()
    with out_dir_lock(tables_dir, lock_timeout) if locked else contextlib.nullcontext():
        if tables is None:
            tables = read_cache_tables(tables_dir)
            if not dry:
                check_prune_tables(tables_dir, root, any_origin)
        return prune(root, tables, remove_empty_sessions, dry)


def prune(
    cache_dir: Path,
    tables: Mapping[str, pd.DataFrame],
    remove_empty_sessions: bool,
    dry: bool,
) -> list[Path]:
    """:func:`remove_missing_datasets` without the lock: the caller holds it when not ``dry``.

    Returns the paths removed, or when ``dry`` the paths to be removed, sorted; prints nothing.
    """
    in_cache = _table_datasets(tables)

    # Matched to the tables by folder names, never by id: no ids to hash.
    scan = scan_folders(Rules(os.path.abspath(cache_dir), hash_ids=False), [Start("", True)])
    if scan.skipped:
        _logger.warning(
            "%d entries were not scanned and anything below them is left alone, e.g. %s: %s",
            len(scan.skipped),
            scan.skipped[0].path,
            scan.skipped[0].message,
        )
    # A folder on disk is matched to the table by its parsed parts, not its spelling: a folder
    # named ``1`` (or below extra folders) is the table's ``001`` session, and its indexed
    # datasets must not be deleted just because ONE-api would look for them elsewhere.
    on_disk = scan.sessions.to_pydict()
    folder_of = {
        session: _session_folder(lab, subject, date, num)
        for session, lab, subject, date, num in zip(
            on_disk["session"],
            on_disk["lab"],
            on_disk["subject"],
            on_disk["date"],
            on_disk["num"],
            strict=True,
        )
    }
    # Nothing below a folder the indexer leaves out is touched (a clash folder, a folder it
    # could not list, a link it does not follow, a nested session): the tables say nothing
    # about what lies there, so "not in the tables" does not mean "not wanted".
    left_out = {s.path for s in scan.skipped if s.reason != Reason.EMPTY_FILE}
    left_out |= {s.path for s in resolve_clashes(pl.DataFrame(scan.sessions))[1]}
    candidates: set[str] = set()
    if remove_empty_sessions:
        candidates.update(s for s, folder in folder_of.items() if s and folder not in in_cache)
    no_datasets: set[str] = set()
    session_column = scan.datasets["session"].to_pylist()
    rel_path_column = scan.datasets["rel_path"].to_pylist()
    for session, rel_path in zip(session_column, rel_path_column, strict=True):
        if rel_path not in in_cache.get(folder_of[session], no_datasets):
            candidates.add(f"{session}/{rel_path}" if session else rel_path)
    chosen = {p for p in candidates if not _left_alone(p, left_out)}
    to_delete = {cache_dir / p for p in chosen}

    if dry:
        return sorted(to_delete)

    walked = {
        f"{session}/{rel_path}" if session else rel_path: (size, mtime)
        for session, rel_path, size, mtime in zip(
            session_column,
            rel_path_column,
            scan.datasets["file_size"].to_pylist(),
            scan.datasets["mtime_ns"].to_pylist(),
            strict=True,
        )
    }
    # Only what was removed is returned: a session folder kept for a file in it (a README)
    # reported as removed would tell the user it is gone.
    return sorted(cache_dir / p for p in _delete(cache_dir, chosen, walked))
