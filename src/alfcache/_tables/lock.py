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

The output folder may be writable by others (a lab's group folder, a sticky scratch folder),
so what sits at the lock's name is not trusted: it is opened without following a link, and a
run refuses (:class:`~alfcache._exceptions.OutDirNotWritable`) anything but a regular file
with one name; it writes its name only into a file it owns, and removes on release only the
file it locked. A root run never truncates a file another user linked there.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import stat
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from alfcache._exceptions import BadArgument, OutDirLocked, OutDirNotWritable, WriteFailed
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


_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
"""Never through a link; O_NONBLOCK so that a FIFO planted at the name cannot hang the run."""


def _lock_path(path: Path) -> str:
    """The lock file as a message names it: its folder resolved, not the file (a link)."""
    return f"{shown(path.parent)}/{path.name}"


def _holder(path: Path) -> str:
    """Who holds the lock, from the lock file, for the error message."""
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
        with os.fdopen(fd, "rb") as f:
            info = json.loads(f.read(4096))
        return f"PID {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        # The holder has the file locked but not yet written it, or has just removed it.
        return "a process that has not written its name yet"


def _check_lock_file(fd: int, path: Path) -> None:
    """Refuse a lock file that could be someone else's file: see the module docstring.

    Raises
    ------
    OutDirNotWritable
        ``fd`` is not a regular file, or the file has another name too (a hard link).
    """
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        raise OutDirNotWritable(
            f"the lock file {_lock_path(path)} is not a regular file of its own (a device, "
            "folder or hard link another user may have put there); remove it or choose "
            "another --out-dir"
        )


def _try_lock(path: Path) -> int | None:
    """Lock ``path`` (created if missing) without waiting; its descriptor, or None if busy.

    Raises
    ------
    OutDirNotWritable
        A link, or a file that is not a lock file, sits at ``path``.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o644)
    except OSError as exc:
        # ELOOP; or EACCES, which some kernels give for O_CREAT on a link in a sticky folder.
        if exc.errno != errno.ELOOP and not path.is_symlink():
            raise
        raise OutDirNotWritable(
            f"the lock file {_lock_path(path)} is a symbolic link (another user may have put "
            "it there); remove it or choose another --out-dir"
        ) from exc
    try:
        _check_lock_file(fd, path)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    if not _same_file(path, fd):  # removed by the holder that released it
        os.close(fd)
        return None
    return fd


def _same_file(path: Path, fd: int) -> bool:
    """True when ``path`` itself (not what a link there points to) is the open file ``fd``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


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
    OutDirNotWritable
        A link or a file that is not a lock file sits at the lock's name (see the module
        docstring).
    WriteFailed
        The lock file cannot be created.
    """
    path = out_dir / LOCK_FILE
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = _try_lock(path)
        except OutDirNotWritable:
            raise
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise WriteFailed(
                    f"cannot create the lock file {_lock_path(path)}: {exc.strerror or exc}; the "
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
    # A lock file another user left (a run of theirs killed) is locked, not written or removed.
    ours = os.fstat(fd).st_uid == os.geteuid()
    try:
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        # Only for the message of a run that gives up: a full disk must not fail the write
        # that it may yet fit (the previous tables are replaced, not added to).
        with contextlib.suppress(OSError):
            if ours:
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps(info).encode())
        yield path
    finally:
        # Still locked (see the module docstring); only the file locked, not what replaced it.
        if ours and _same_file(path, fd):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(fd)
