"""The tables' digests: which files to read, reading them, and the tables once read.

A hashed index reads every file it found (:func:`fresh_plan`); an update reads only the new and
changed ones (:func:`alfcache._maintain.update.reconcile` plans it). Both read through
:func:`read_digests` (with checkpoints, :mod:`alfcache._digest.checkpoint`) and finish the
tables with :meth:`Plan.finish`.

Hashed tables carry each file's modification time as ``mtime_ns`` (int64 nanoseconds): ONE-api
carries extra columns along as long as their names do not contain ``id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from alfcache._digest.checkpoint import digest_with_checkpoint
from alfcache._digest.read import COLUMNS
from alfcache._digest.schedule import Digests, Hashing, Readers
from alfcache._records import Reason, Skip
from alfcache._tables.build import Tables, datasets_table
from alfcache._tables.schema import MTIME_COLUMN


def _file_path() -> pl.Expr:
    """A dataset's file relative to the root, from its session folder and ``rel_path``."""
    session = pl.col("session")
    return (
        pl.when(session == "")
        .then(pl.col("rel_path"))
        .otherwise(session + "/" + pl.col("rel_path"))
        .alias("path")
    )


@dataclass
class Plan:
    """The rows of the new tables: which files to read, and how to finish the tables.

    :func:`fresh_plan` reads every file; an update's (:func:`alfcache._maintain.update.reconcile`)
    matches the rows with the previous tables and reads only the files it must.
    """

    sessions: pa.Table
    datasets: pl.DataFrame
    """One row per dataset of the new table; ``read`` marks the files to read, ``session`` is
    the folder of a file found by the walk (null for a row carried over)."""
    algorithms: tuple[str, ...]
    skipped: list[Skip]
    notices: list[Skip]
    loadability: str
    """The walk's verdict on the sessions (:attr:`alfcache._tables.build.Tables.loadability`)."""

    def to_read(self) -> tuple[list[str], np.ndarray]:
        """The files to read, relative to the root, and their sizes as the walk found them."""
        # Paths only for these: an update that reads a few files must not spell out a million.
        files = self.datasets.filter(pl.col("read")).select(_file_path(), "file_size")
        return files["path"].to_list(), files["file_size"].to_numpy()

    def finish(self, digests: Digests) -> Tables:
        """The final tables, given what reading the files of :meth:`to_read` found."""
        rows = self.datasets.filter(pl.col("read"))["row"]
        found = pl.DataFrame(
            [
                rows,
                pl.Series("r_size", digests.sizes),
                pl.Series("r_mtime", digests.mtimes),
                pl.Series("gone", digests.vanished),
                *(pl.Series(f"r_{a}", d, dtype=pl.String) for a, d in digests.columns.items()),
            ]
        )
        read_ok = pl.col("r_size") >= 0
        datasets = (
            self.datasets.join(found, on="row", how="left")
            .filter(~pl.col("gone").fill_null(False))
            .with_columns(
                pl.when(read_ok)
                .then(pl.col("r_size").cast(pl.UInt64))
                .otherwise("file_size")
                .alias("file_size"),
                pl.when(read_ok).then("r_mtime").otherwise(MTIME_COLUMN).alias(MTIME_COLUMN),
                # A file that could not be read keeps a digest only if it was carried over.
                *(pl.coalesce(f"r_{a}", COLUMNS[a]).alias(COLUMNS[a]) for a in digests.columns),
            )
            .sort(["eid", "id"])
        )
        total = datasets.filter(pl.col("exists"))["file_size"].sum()
        # A file gone before it was read is not indexed; one that could not be read or kept
        # changing is, without a digest.
        gone = [s for s in digests.skipped if s.reason == Reason.VANISHED]
        return Tables(
            sessions=self.sessions,
            datasets=datasets_table(datasets, self.algorithms),
            skipped=self.skipped + gone,
            bytes=int(total or 0),
            files=datasets.select("session", MTIME_COLUMN),
            notices=self.notices + [s for s in digests.skipped if s.reason != Reason.VANISHED],
            loadability=self.loadability,
        )


def fresh_plan(tables: Tables, algorithms: tuple[str, ...]) -> Plan:
    """Read every file of a fresh index (no previous tables) for ``algorithms``."""
    algorithms = tuple(a for a in COLUMNS if a in algorithms)
    digests = dict.fromkeys(COLUMNS[a] for a in ("md5", *algorithms))
    datasets = (
        pl.DataFrame(tables.datasets.select(["eid", "id", "rel_path", "file_size"]))
        .hstack(tables.files)
        .with_columns(
            pl.lit(True).alias("exists"),
            pl.lit("NOT_SET").alias("qc"),
            pl.lit(True).alias("read"),
            # ``hash`` always: without MD5 it is written as a column of nulls.
            *(pl.lit(None, pl.String).alias(column) for column in digests),
        )
    )
    return Plan(
        sessions=tables.sessions,
        datasets=datasets.with_row_index("row"),
        algorithms=algorithms,
        skipped=list(tables.skipped),
        notices=list(tables.notices),
        loadability=tables.loadability,
    )


def read_digests(
    root: str,
    plan: Plan,
    *,
    out_dir: Path,
    n_jobs: int,
    progress: bool,
    readers: Readers | None = None,
    follow_symlinks: bool = False,
) -> tuple[Tables, Hashing]:
    """Read the files ``plan`` marks (resuming from a checkpoint in ``out_dir``); the tables.

    ``readers`` is where to read them (a Dask cluster; None for this machine), and
    ``follow_symlinks`` whether to read links to files outside ``root``.

    Returns
    -------
    Tables
        The final tables.
    Hashing
        What the reading phase did.
    """
    paths, sizes = plan.to_read()
    mtimes = plan.datasets.filter(pl.col("read"))[MTIME_COLUMN].to_numpy()
    digests, hashing = digest_with_checkpoint(
        root,
        paths,
        sizes,
        mtimes,
        plan.algorithms,
        out_dir=out_dir,
        n_jobs=n_jobs,
        progress=progress,
        readers=readers,
        follow_symlinks=follow_symlinks,
    )
    return plan.finish(digests), hashing
