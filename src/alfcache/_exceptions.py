"""Exceptions raised by alfcache.

Every exception is an :class:`AlfcacheError` and also the builtin it refines, so callers can
catch either::

    AlfcacheError (Exception)
    ├── BadRoot (NotADirectoryError)      root_dir missing or not a folder
    │   └── MissingRoot (FileNotFoundError) root_dir does not exist
    ├── RootNotReadable (PermissionError) root_dir cannot be listed
    ├── BadOutDir (NotADirectoryError)    out_dir is a file or cannot be created
    ├── OutDirNotWritable (PermissionError)
    ├── BadArgument (ValueError)          n_jobs=0, unknown hash algorithm, ...
    ├── LabConflict (ValueError)          lab= disagrees with the lab folders on disk
    ├── ScanFailed (RuntimeError)         a worker died or the scan was interrupted
    │   ├── Terminated                    SIGTERM (a job's time limit) on the command line
    │   └── SchedulerUnreachable (ConnectionError)  no Dask scheduler at the address given
    ├── WriteFailed (OSError)             the tables could not be written (disk full, ...)
    ├── OutDirLocked (TimeoutError)       another run kept the output folder locked too long
    └── MergeFailed (ValueError)          the parts to merge are missing, doubled or mismatched

Messages name the bad input and say what to do next.
"""

from __future__ import annotations

import re


class AlfcacheError(Exception):
    """Base class of every alfcache error."""


class BadRoot(AlfcacheError, NotADirectoryError):
    """The folder to index does not exist or is not a folder."""


class MissingRoot(BadRoot, FileNotFoundError):
    """The folder to index does not exist (also what ``open`` raises for a missing path)."""


class RootNotReadable(AlfcacheError, PermissionError):
    """The folder to index exists but this user may not list it."""


class BadOutDir(AlfcacheError, NotADirectoryError):
    """The output folder is a file or cannot be created."""


class OutDirNotWritable(AlfcacheError, PermissionError):
    """The output folder exists but files cannot be created in it."""


class BadArgument(AlfcacheError, ValueError):
    """An argument has a value alfcache cannot use."""


class LabConflict(AlfcacheError, ValueError, AssertionError):
    """``lab=`` was given but some session folders already sit below another lab.

    Also an AssertionError: one-api's ``make_parquet_db`` asserts here, and code (its own
    tests) catches that.
    """


class ScanFailed(AlfcacheError, RuntimeError):
    """The scan did not finish: a worker died or the run was interrupted."""


class Terminated(ScanFailed):
    """The command line got SIGTERM (a batch job's time limit); digests read are checkpointed."""


class SchedulerUnreachable(ScanFailed, ConnectionError):
    """``backend="dask"``: the scheduler could not be reached; nothing was walked."""


class WriteFailed(AlfcacheError, OSError):
    """The cache tables could not be written; the previous tables are untouched."""


class OutDirLocked(AlfcacheError, TimeoutError):
    """Another run held the output folder's lock (it was writing there) past the timeout."""


class MergeFailed(AlfcacheError, ValueError):
    """The partial tables given to ``merge`` are not all shards of one run, once each."""


# Shown as alfcache.BadRoot in tracebacks and reprs: the name a caller imports and catches, not
# this private module. Pickling (errors cross from workers) finds them there too.
for _error in [v for v in list(vars().values()) if isinstance(v, type)]:
    if issubclass(_error, AlfcacheError):
        _error.__module__ = "alfcache"
del _error


def worker_died(exc: BaseException, work: str, culprit: str) -> ScanFailed:
    """The error for a worker process that died (loky's ``TerminatedWorkerError``).

    ``work`` names what the worker did (``scan``, ``hashing``), ``culprit`` what to look for
    with ``--jobs 1`` (``folder``, ``file``).
    """
    # loky's message spans lines; keep its exit codes (e.g. {SIGKILL(-9)}) on one line.
    codes = re.search(r"exit codes of the workers are (\{.*?\})", str(exc))
    return workers_died(codes.group(1) if codes else None, work, culprit)


def workers_died(codes: str | None, work: str, culprit: str) -> ScanFailed:
    """The error for worker processes that died with exit ``codes`` (e.g. ``{SIGKILL(-9)}``)."""
    how = f" (exit codes {codes})" if codes else ""
    return ScanFailed(
        f"a {work} worker died{how}: killed by a signal or out of memory; no table was written, "
        f"the previous tables are unchanged. Run again, or with --jobs 1 to find the {culprit} "
        "that kills it."
    )
