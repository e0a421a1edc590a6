"""The one place the benchmarks import from alfcache: the generator of synthetic trees.

Every alfcache that is measured (the working tree, a ``--baseline`` release) runs through its
command line in fresh processes; only the trees are made in-process, by the working tree's
``make_tree`` (deterministic for a seed, so every version is measured on the same files). When
the package layout moves, this import is the one line to follow.
"""

from __future__ import annotations

import os

from alfcache.synth import make_tree

__all__ = ["available_cores", "make_tree"]


def available_cores() -> int:
    """Cores this process may run on (CPU masks of taskset and SLURM included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
