"""Array shards: which sessions one task of an array job indexes (``--shard K/N``).

A session belongs to shard ``crc32("subject/date/number") % N``, the number as its value
(``1`` and ``001`` alike). The split needs no global listing: a task decides each session
folder by its own name, and does not descend into the others. The key is the part of ONE-api's
identity of a session that its folders always spell out, so that folders which are one session
for ONE-api (``1`` and ``001``, the same ALF path below two parent folders, a folder without a
lab given ``lab=``) fall in one shard, where the walk resolves their clash as a full run does.
Leaving the lab out costs nothing in balance: subjects, days and numbers vary far more.

Shards are numbered from 0, as ``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` numbers them.
This module is pure (no I/O): the scanner imports it in every worker.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import NamedTuple

from alfcache._exceptions import BadArgument

METADATA_KEY = "alfcache_shard"
"""Schema metadata key of a partial table: its shard, the origin, the options and the run."""

_ENV = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN")


class ArrayShard(NamedTuple):
    """Shard ``k`` of ``n`` (``0 <= k < n``); a plain tuple, so workers get it as an argument."""

    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"

    def owns(self, subject: str, date: str, number: str) -> bool:
        """Whether the session ``subject/date/number`` (folder names) is in this shard."""
        return session_shard(subject, date, number, self.n) == self.k


def session_shard(subject: str, date: str, number: str, n: int) -> int:
    """The shard (0 to n-1) of the session ``subject/date/number``; see the module docstring."""
    return zlib.crc32(f"{subject}/{date}/{int(number)}".encode()) % n


def _in_range(k: int, n: int) -> bool:
    return n >= 1 and 0 <= k < n


def check_shard(shard: object) -> ArrayShard | None:
    """Validate ``shard=(k, n)`` as given to :func:`alfcache.index`.

    Raises
    ------
    BadArgument
        Not a pair of integers with ``0 <= k < n``.
    """
    if shard is None:
        return None
    if (
        isinstance(shard, tuple)
        and len(shard) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
        and _in_range(*shard)
    ):
        return ArrayShard(*shard)
    raise BadArgument(
        f"shard={shard!r} is not a shard; pass (k, n) with 0 <= k < n (shards count from 0)"
    )


def parse_shard(text: str) -> ArrayShard:
    """``K/N`` from the command line, as an :class:`ArrayShard`.

    Raises
    ------
    BadArgument
        Not two numbers with ``0 <= K < N``.
    """
    k, sep, n = text.partition("/")
    if not (sep and k.isdecimal() and n.isdecimal()):
        raise BadArgument(f"{text!r} is not K/N; write e.g. --shard 0/8")
    if not _in_range(int(k), int(n)):
        raise BadArgument(
            f"shard {text}: K must be 0 to N-1 (shards count from 0, as "
            "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN does)"
        )
    return ArrayShard(int(k), int(n))


def shard_from_env(environ: Mapping[str, str]) -> ArrayShard | None:
    """The shard of a SLURM array task, or None outside an array job.

    ``K = SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` and ``N = SLURM_ARRAY_TASK_COUNT``,
    which holds for a contiguous array (``--array=0-7``, ``--array=1-8%2``).

    Raises
    ------
    BadArgument
        Some of the variables are missing or not numbers, or the array is not contiguous.
    """
    present = [name for name in _ENV if name in environ]
    if not present:
        return None
    values = {}
    for name in _ENV:
        try:
            values[name] = int(environ[name])
        except (KeyError, ValueError):
            raise BadArgument(
                f"{name}={environ.get(name)!r} in an array job: need SLURM_ARRAY_TASK_ID, "
                "SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MIN as numbers; or pass --shard K/N"
            ) from None
    k = values["SLURM_ARRAY_TASK_ID"] - values["SLURM_ARRAY_TASK_MIN"]
    n = values["SLURM_ARRAY_TASK_COUNT"]
    if not _in_range(k, n):
        raise BadArgument(
            f"array task {values['SLURM_ARRAY_TASK_ID']} of {n} tasks from "
            f"{values['SLURM_ARRAY_TASK_MIN']} is not shard K/N with 0 <= K < N: submit a "
            "contiguous array (--array=0-N-1, no step), or pass --shard K/N"
        )
    return ArrayShard(k, n)
