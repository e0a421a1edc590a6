"""The output folder: made and proved writable before a run walks, its temporary files named
so a later run can tell a dead run's leftovers, its free space checked before files are read.

Apart from :mod:`alfcache._tables.store` (which reads and writes the parquet files in it) so
that a run can check its output folder before it imports pyarrow: the walk starts first, and
pyarrow loads while it runs (start-up, issue 21).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from alfcache._exceptions import BadOutDir, OutDirNotWritable, WriteFailed
from alfcache._paths import shown

TMP_SUFFIX = ".alfcache-tmp"
HOST = socket.gethostname().replace(".", "-") or "localhost"
"""This machine in temporary names (dots would blur the name's fields)."""
_TMP_NAME = re.compile(
    r"^\.(?:sessions\.pqt|datasets\.pqt|probe|alfcache-digests\.checkpoint)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.\w+"
    + re.escape(TMP_SUFFIX)
    + "$"
)
_OLD_TMP_NAME = re.compile(r"^\.(?:sessions|datasets)\.pqt\.\w+" + re.escape(TMP_SUFFIX) + "$")
"""Temporary names of alfcache 0.1, without host and PID."""
_OLD_TMP_AGE_S = 3600
"""A 0.1 run held its temporary files for the seconds of a write; an hour means dead."""


def tmp_prefix(name: str) -> str:
    """Temporary names say who writes them, so a later run can tell a dead run's leftovers."""
    return f".{name}.{HOST}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _is_stale(entry: os.DirEntry[str], now: float) -> bool:
    if match := _TMP_NAME.match(entry.name):
        # Another machine's PIDs mean nothing here (an output folder on NFS): left alone.
        return match["host"] == HOST and not _alive(int(match["pid"]))
    if _OLD_TMP_NAME.match(entry.name):
        try:
            return now - entry.stat(follow_symlinks=False).st_mtime > _OLD_TMP_AGE_S
        except OSError:
            return False
    return False


def remove_stale_tmp(out_dir: Path) -> list[Path]:
    """Remove the temporary files that runs killed mid-write (SIGTERM, SIGKILL) left behind.

    Only files of runs on this machine whose process is gone are removed; a live run's are
    kept. Returns the removed files.
    """
    now = time.time()
    removed = []
    with os.scandir(out_dir) as entries:
        stale = [
            Path(e.path) for e in entries if e.name.endswith(TMP_SUFFIX) and _is_stale(e, now)
        ]
    for path in stale:
        try:
            path.unlink()
        except FileNotFoundError:
            continue  # another run removed it first
        removed.append(path)
    return removed


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` when missing and prove that files can be written in it.

    Runs before the scan, so a bad output folder fails in a second, not after hours.

    Raises
    ------
    BadOutDir
        ``out_dir`` (or a parent) is a file, or the folder cannot be created.
    OutDirNotWritable
        The folder exists but a file cannot be created in it.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise BadOutDir(
            f"output folder {shown(out_dir)} is a file; pass a folder as out_dir (--out-dir)"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadOutDir(
            f"cannot create output folder {shown(out_dir)}: {exc.strerror or exc}; "
            "pass a folder that can be created"
        ) from exc
    try:
        with tempfile.NamedTemporaryFile(
            dir=out_dir, prefix=tmp_prefix("probe"), suffix=TMP_SUFFIX
        ):
            pass
    except OSError as exc:
        raise OutDirNotWritable(
            f"cannot write in output folder {shown(out_dir)}: {exc.strerror or exc}; "
            "choose another --out-dir or fix its permissions"
        ) from exc
    remove_stale_tmp(out_dir)
    return out_dir


MIN_ROW_BYTES = 10
"""The fewest bytes a table row takes on disk: measured 13 a dataset with path ids and no
digest (300 synthetic sessions, 8,640 datasets), 43 with UUIDs, 119 with both digests."""
MIN_DIGEST_BYTES = 16
"""The fewest bytes a file's digest takes in the tables or a checkpoint: 128 random bits."""
MIN_TABLE_BYTES = 4096
"""Parquet's schema and metadata in each table, however few its rows."""


def check_space(out_dir: Path, rows: int, digests: int) -> None:
    """Fail now when ``out_dir``'s file system cannot hold the tables of ``rows`` rows.

    Called after the walk, before any file is read: a full output disk found only by the
    final write would throw hours of hashing away. The estimate errs low (the smallest tables
    measured, ``digests`` digests of 16 bytes each), so that a run refused is one that could
    not fit; a disk that fills up later still fails the write (:func:`write_tables`).

    Raises
    ------
    WriteFailed
        The estimate exceeds the free space (what this user may take: root may also use the
        blocks reserved for it).
    """
    st = os.statvfs(out_dir)
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    need = 2 * MIN_TABLE_BYTES + rows * MIN_ROW_BYTES + digests * MIN_DIGEST_BYTES
    if need > free:
        raise WriteFailed(
            f"cannot write the cache tables in {shown(out_dir)}: {os.strerror(errno.ENOSPC)} "
            f"(they take at least {need / 1e6:,.2f} MB, {free / 1e6:,.2f} MB free; found "
            "before reading any file); the previous tables are unchanged. Free space or "
            "choose another --out-dir."
        )
