"""An exclusive lock on an output folder, so two runs never interleave their tables.

Each run writes its two tables under temporary names and renames them into place one after
the other. Two runs writing into one folder at once (two array tasks given the same
``--out-dir`` by mistake, a cron run overlapping the last one) could otherwise leave the
``sessions.pqt`` of one beside the ``datasets.pqt`` of the other. The lock is
``fcntl.flock`` on ``.alfcache.lock`` in the folder (a name that does not end in ``.pqt``, so
ONE-api never loads it); it holds the holder's PID, host and start time, so that a run that
gives up can say whom it waited for.

The lock file is removed on release, while still locked. A run that waited on the removed file
then holds a lock on a name nobody else sees; it notices (the path's inode is no longer the
one it locked) and locks the new file instead.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from alfcache._exceptions import BadArgument, OutDirLocked, WriteFailed
from alfcache._paths import shown

LOCK_FILE = ".alfcache.lock"
DEFAULT_TIMEOUT = 60.0
"""Seconds a run waits for another run's write: a write takes seconds, so a minute means the
other run is stuck or also waiting to write a huge table."""

_POLL_SECONDS = 0.1


def check_timeout(timeout: object) -> float:
    """Validate ``lock_timeout=`` (seconds, 0 or more).

    Raises
    ------
    BadArgument
        Not a number of seconds, or negative (or NaN).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise BadArgument(f"lock_timeout={timeout!r}: pass the seconds to wait, 0 or more")
    return float(timeout)


def _holder(path: Path) -> str:
    """Who holds the lock, from the lock file, for the error message."""
    try:
        info = json.loads(path.read_text())
        return f"PID {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        # The holder has the file locked but not yet written it, or has just removed it.
        return "a process that has not written its name yet"


def _try_lock(path: Path) -> int | None:
    """Lock ``path`` (created if missing) without waiting; its descriptor, or None if busy."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:  # removed by the holder that released it
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def out_dir_lock(out_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Path]:
    """Hold the output folder's lock for the ``with`` block.

    Parameters
    ----------
    out_dir : pathlib.Path
        An existing, writable folder.
    timeout : float
        Seconds to wait for another run to release the lock; 0 tries once.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    OutDirLocked
        Another run held the lock for ``timeout`` seconds; the message names it.
    """
    path = out_dir / LOCK_FILE
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = _try_lock(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise WriteFailed(
                    f"cannot create the lock file {shown(path)}: {exc.strerror or exc}; the "
                    "previous tables are unchanged. Free space or choose another --out-dir."
                ) from exc
            # A file system without locks (Lustre mounted without -o flock, some NFS setups):
            # the lock cannot protect anything here, and refusing to write would make the
            # tool unusable on it. Said in the README's scale-out section.
            warnings.warn(
                f"cannot lock output folder {shown(out_dir)} ({exc.strerror or exc}): its file "
                "system has no locks; make sure no other alfcache run writes there at the same "
                "time",
                RuntimeWarning,
                stacklevel=3,
            )
            yield path
            return
        if fd is not None:
            break
        if time.monotonic() >= deadline:
            raise OutDirLocked(
                f"output folder {shown(out_dir)} is being written by another alfcache run "
                f"({_holder(path)}); waited {timeout:g} s. Wait for it to finish, give each "
                "run its own --out-dir, or raise --lock-timeout"
            )
        time.sleep(_POLL_SECONDS)
    try:
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        # Only for the message of a run that gives up: a full disk must not fail the write
        # that it may yet fit (the previous tables are replaced, not added to).
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # still locked: see the module docstring
        os.close(fd)
