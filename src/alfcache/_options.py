"""The arguments every verb shares, checked and resolved: the root folder, the worker count.

A leaf of the package (it imports only :mod:`alfcache._exceptions` and :mod:`alfcache._paths`),
so that the library's verbs and the command line check them the same way without importing
the run (:mod:`alfcache._index`).
"""

from __future__ import annotations

import os
from pathlib import Path

from alfcache._exceptions import BadArgument, BadRoot, MissingRoot, RootNotReadable
from alfcache._paths import shown

MAX_JOBS_PER_CORE = 4
"""More workers than this per core only add start-up time and memory: refused."""


def available_cores() -> int:
    """Cores this process may run on (respects SLURM and taskset CPU masks)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def max_jobs() -> int:
    """The most workers a run may ask for here (``MAX_JOBS_PER_CORE`` per core)."""
    return MAX_JOBS_PER_CORE * available_cores()


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Turn ``n_jobs`` (None or -1: all cores; a positive count) into a worker count."""
    if n_jobs is None or n_jobs == -1:
        return available_cores()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise BadArgument(
            f"n_jobs={n_jobs!r} is not a worker count; use a positive integer, or -1 for all cores"
        )
    cap = max_jobs()
    if n_jobs > cap:
        raise BadArgument(
            f"n_jobs={n_jobs} workers on {available_cores()} cores: use at most {cap} "
            f"({MAX_JOBS_PER_CORE} per core), or -1 for all cores"
        )
    return n_jobs


def resolve_root(root_dir: str | os.PathLike[str]) -> Path:
    """``root_dir`` resolved: an existing folder this user can list."""
    root = Path(root_dir).expanduser()
    if not root.exists():
        raise MissingRoot(
            f"root folder {shown(root)} does not exist; pass the folder that holds the data"
        )
    if not root.is_dir():
        raise BadRoot(
            f"root {shown(root)} is a file, not a folder; pass the folder that holds the data"
        )
    # Checked up front: a root the workers cannot list would be written as empty tables over
    # the previous ones.
    if not os.access(root, os.R_OK | os.X_OK):
        raise RootNotReadable(
            f"cannot read root folder {shown(root)}: permission denied; run as a user who can "
            "read it"
        )
    return root.resolve()
