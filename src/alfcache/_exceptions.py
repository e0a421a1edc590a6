"""Exceptions raised by alfcache.

Every exception is an :class:`AlfcacheError` and also the builtin it refines, so callers can
catch either::

    AlfcacheError (Exception)
    ├── BadRoot (NotADirectoryError)      root_dir missing or not a folder
    ├── RootNotReadable (PermissionError) root_dir cannot be listed
    ├── BadOutDir (NotADirectoryError)    out_dir is a file or cannot be created
    ├── OutDirNotWritable (PermissionError)
    ├── BadArgument (ValueError)          n_jobs=0, unknown hash algorithm, ...
    ├── LabConflict (ValueError)          lab= disagrees with the lab folders on disk
    ├── ScanFailed (RuntimeError)         a worker died or the scan was interrupted
    └── WriteFailed (OSError)             the tables could not be written (disk full, ...)

Messages name the bad input and say what to do next.
"""

from __future__ import annotations


class AlfcacheError(Exception):
    """Base class of every alfcache error."""


class BadRoot(AlfcacheError, NotADirectoryError):
    """The folder to index does not exist or is not a folder."""


class RootNotReadable(AlfcacheError, PermissionError):
    """The folder to index exists but this user may not list it."""


class BadOutDir(AlfcacheError, NotADirectoryError):
    """The output folder is a file or cannot be created."""


class OutDirNotWritable(AlfcacheError, PermissionError):
    """The output folder exists but files cannot be created in it."""


class BadArgument(AlfcacheError, ValueError):
    """An argument has a value alfcache cannot use."""


class LabConflict(AlfcacheError, ValueError):
    """``lab=`` was given but some session folders already sit below another lab."""


class ScanFailed(AlfcacheError, RuntimeError):
    """The scan did not finish: a worker died or the run was interrupted."""


class WriteFailed(AlfcacheError, OSError):
    """The cache tables could not be written; the previous tables are untouched."""
