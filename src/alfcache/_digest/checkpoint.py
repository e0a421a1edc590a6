"""Checkpoints of digests: a hashing run cut short by a time limit keeps what it read.

At a job's time limit SLURM sends SIGTERM (then SIGKILL after ``KillWait``), and MD5 at disk
speed reads about 1 TB an hour, so a hashing run of a large tree may never finish within one
job. While files are read, the digests of every finished reading task are kept in memory and
written every :data:`SAVE_EVERY` seconds, and when the run fails or is terminated, to
``.alfcache-digests.checkpoint`` beside the tables (a parquet file whose name does not end in
``.pqt``, so ONE-api never loads it). The next run of the same origin, digests and
``follow_symlinks`` takes a file's digests from it when the file's path, size and modification
time are unchanged, and reads only the others (a run that does not follow links must not take
the digest of a file outside the root from one that did). The checkpoint is removed once the
tables are written; the previous tables are never touched by a run that did not complete.

The output folder may be writable by others, so nothing at these names is trusted: a
checkpoint is written under a new, unpredictable name (``mkstemp``: never through a link
planted at a fixed name) and renamed over the last one, and a checkpoint is used only when it
is a regular file of the running user that no one else may write (a planted one would give
its digests to files never read); any other is ignored with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alfcache._digest.read import ReadResult
from alfcache._digest.schedule import Digests, Hashing, Readers, digest_files
from alfcache._exceptions import Terminated
from alfcache._paths import plural, shown
from alfcache._tables.arrow import numeric_array, string_array
from alfcache._tables.store import _TMP_SUFFIX, _tmp_prefix, read_parquet

CHECKPOINT_FILE = ".alfcache-digests.checkpoint"
SAVE_EVERY = 300.0
"""Seconds between two checkpoints while files are read: a SIGKILL loses at most this much."""

_META = b"alfcache_checkpoint"


class _Saver:
    """Digests of finished tasks, written to the checkpoint from time to time."""

    def __init__(
        self, path: Path, meta: bytes, algorithms: tuple[str, ...], paths: Sequence[str]
    ) -> None:
        self.path = path
        self.meta = meta
        self.paths = paths
        """The files being read, in the order the reading's task rows refer to."""
        # The checkpoint's columns in table order: path (str), size and mtime (int), then one
        # of digests (str or None) per algorithm.
        self.columns: dict[str, list[Any]] = {
            "path": [],
            "size": [],
            "mtime": [],
            **{a: [] for a in algorithms},
        }
        self.saved_at = time.monotonic()

    def on_task(self, rows: np.ndarray, result: ReadResult) -> None:
        """The reading's callback: keep a finished task's digests, save now and then."""
        for i, row in enumerate(rows.tolist()):
            if result.sizes[i] >= 0:  # files that could not be hashed are read again
                values: tuple[object, ...] = (self.paths[row], result.sizes[i], result.mtimes[i])
                values += tuple(found[i] for found in result.digests)
                for column, value in zip(self.columns.values(), values, strict=True):
                    column.append(value)
        if time.monotonic() - self.saved_at >= SAVE_EVERY:
            self.save()

    @property
    def files(self) -> int:
        return len(self.columns["path"])

    def save(self) -> None:
        """Write the checkpoint under a temporary name, then rename it over the last one."""
        # Built from buffers: pa.array on lists imports pandas (see alfcache._tables.arrow).
        arrays = [
            numeric_array(v, pa.int64()) if k in ("size", "mtime") else string_array(v)
            for k, v in self.columns.items()
        ]
        table = pa.Table.from_arrays(arrays, names=list(self.columns))
        table = table.replace_schema_metadata({_META: self.meta})
        # A new name each time (O_EXCL): a link planted at a fixed temporary name would be
        # written through. The rename replaces whatever is at the checkpoint's name itself.
        # Named as the tables' temporary files, so the next run removes a killed run's.
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=_tmp_prefix(self.path.name[1:]), suffix=_TMP_SUFFIX
        )
        try:
            with os.fdopen(fd, "wb") as f:
                pq.write_table(table, f)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self.saved_at = time.monotonic()


def _untrusted(st: os.stat_result) -> str | None:
    """Why a checkpoint with this ``fstat`` may not be this user's own, or None if it is."""
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return "not a regular file of its own"
    if st.st_uid != os.geteuid():
        return "owned by another user"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "writable by others"
    return None


def _load(path: Path, meta: bytes) -> pa.Table | None:
    """The checkpoint's rows, or None when there is none of this origin, these digests and
    this ``follow_symlinks``.

    One that the running user does not own alone (see the module docstring) is ignored with a
    ``RuntimeWarning``.
    """
    untrusted: str | None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:  # asked first: pq.read_table of a missing file imports pandas
        return None
    except OSError as exc:
        # ELOOP: a link at the name; anything else, unreadable: read everything again.
        fd = -1
        untrusted = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
    else:
        untrusted = _untrusted(os.fstat(fd))
    if untrusted is not None:
        if fd >= 0:
            os.close(fd)
        warnings.warn(
            f"ignored the checkpoint {shown(path.parent)}/{path.name}: {untrusted} (another "
            "user may have put it there); every file is read again",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    # What was checked is what is read: the open file, not the name, which may change.
    try:
        with os.fdopen(fd, "rb") as f:
            table = read_parquet(f)
    except (OSError, pa.ArrowInvalid):
        return None  # cut short by a SIGKILL mid-write: read everything again
    return table if (table.schema.metadata or {}).get(_META) == meta else None


def _reuse(
    table: pa.Table | None, paths: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``paths`` of files the checkpoint holds unchanged, and their rows in it."""
    if table is None or not table.num_rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    saved = {p: i for i, p in enumerate(table.column("path").to_pylist())}
    at = np.array([saved.get(p, -1) for p in paths], dtype=np.int64)
    hit = at >= 0
    size, mtime = table.column("size").to_numpy(), table.column("mtime").to_numpy()
    hit[hit] = (size[at[hit]] == sizes[hit]) & (mtime[at[hit]] == mtimes[hit])
    return np.flatnonzero(hit), at[hit]


def digest_with_checkpoint(
    root: str,
    paths: Sequence[str],
    sizes: np.ndarray,
    mtimes: np.ndarray,
    algorithms: tuple[str, ...],
    *,
    out_dir: Path,
    n_jobs: int,
    progress: bool,
    readers: Readers | None = None,
    follow_symlinks: bool = False,
) -> tuple[Digests, Hashing]:
    """:func:`alfcache._digest.schedule.digest_files`, resuming from and saving to a checkpoint.

    ``mtimes`` are the modification times the walk found, aligned with ``paths``; ``readers``
    are where the files are read (a Dask cluster), None for this machine; ``follow_symlinks``
    reads links to files outside ``root`` too.

    Returns
    -------
    Digests
        What an uninterrupted :func:`digest_files` of ``paths`` returns.
    Hashing
        What this run read (not the files taken from the checkpoint).

    Raises
    ------
    Terminated
        SIGTERM while reading; the message says how many digests were saved and how to resume.
    """
    path = out_dir / CHECKPOINT_FILE
    run = {"origin": root, "algorithms": list(algorithms), "follow_symlinks": follow_symlinks}
    meta = json.dumps(run).encode()
    table = _load(path, meta) if algorithms else None
    reused, at = _reuse(table, paths, sizes, mtimes)
    rest = np.setdiff1d(np.arange(len(paths)), reused)
    rest_paths = [paths[i] for i in rest]
    saver = _Saver(path, meta, algorithms, rest_paths)
    found = Digests.empty(len(paths), algorithms)
    if table is not None and len(reused):
        kept = table.take(numeric_array(at, pa.int64()))
        found.sizes[reused] = kept.column("size").to_numpy()
        found.mtimes[reused] = kept.column("mtime").to_numpy()
        for key in saver.columns:
            saver.columns[key] += kept.column(key).to_pylist()
        for a in algorithms:
            for row, digest in zip(reused.tolist(), kept.column(a).to_pylist(), strict=True):
                found.columns[a][row] = digest
    try:
        digests = digest_files(
            root,
            rest_paths,
            sizes[rest],
            algorithms,
            n_jobs,
            progress,
            on_task=saver.on_task,
            readers=readers,
            follow_symlinks=follow_symlinks,
        )
    except BaseException as exc:
        if not saver.files:
            raise
        try:
            saver.save()  # Ctrl-C, a dead worker or SIGTERM: the next run reads only the rest
        except OSError as failed:
            # A full disk must not hide why the run stopped behind a bare "[Errno 28]".
            saved = (
                f"could not save a checkpoint of {plural(saver.files, 'digest')} at "
                f"{shown(path)}: {failed.strerror or failed}"
            )
        else:
            saved = (
                f"saved a checkpoint of {plural(saver.files, 'digest')} (of {len(paths)} "
                f"files) at {shown(path)}: run the same command again to read only the others"
            )
        if isinstance(exc, Terminated):
            raise Terminated(f"{exc}; {saved}") from exc
        # Ctrl-C or a failure: the command line prints the note under its one line. Set as
        # BaseException.add_note does, which Python 3.10 (still supported) lacks; so its type
        # lacks __notes__ too, and mypy checks for 3.10.
        exc.__notes__ = [*getattr(exc, "__notes__", ()), saved]  # type: ignore[attr-defined]
        raise
    found.sizes[rest], found.mtimes[rest] = digests.sizes, digests.mtimes
    found.vanished[rest] = digests.vanished
    for a in algorithms:
        for row, digest in zip(rest.tolist(), digests.columns[a], strict=True):
            found.columns[a][row] = digest
    found.skipped, found.bytes, found.seconds = digests.skipped, digests.bytes, digests.seconds
    return found, Hashing(
        algorithms,
        digests.summary().files,
        digests.bytes,
        digests.seconds,
        resumed=len(reused),
        checkpoint=shown(path) if len(reused) else None,
    )


def remove_checkpoint(out_dir: Path) -> None:
    """Drop the checkpoint once the tables it was for are written."""
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
