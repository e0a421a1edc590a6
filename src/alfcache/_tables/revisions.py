"""The ``default_revision`` column: which revision of a dataset ONE-api loads by default.

Alyx's tables carry it (true for the most recently registered revision); without it one-api
warns ``No default revision for dataset ...; using most recent`` on every load and
``list_datasets(..., default_revisions_only=True)`` raises. A filesystem has no registration
order, so alfcache marks the row one-api picks when the column is absent
(``one.util.filter_revision_last_before``): in each group of rows with the same ``eid`` and the
same ``rel_path`` without its ``#revision#/`` folder, the lexicographically greatest revision
name ('' for an unrevisioned file, the lowest) among the rows whose file exists, or among all
rows when none does. Nothing a user loads changes; the warnings go.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from alfcache._tables.arrow import mask_array

__all__ = ["COLUMN", "default_revisions", "groups_without_one_default", "with_default_revision"]

COLUMN = "default_revision"

_REVISION = r"#(.*)#/"
"""one-api's own patterns: it groups by ``rel_path`` with ``#.*#/`` removed."""


def default_revisions(datasets: pa.Table) -> np.ndarray:
    """The ``default_revision`` flag of every row of ``datasets`` (columns ``eid``,
    ``rel_path``, ``exists``), by the rule of the module docstring."""
    import polars as pl

    frame = pl.from_arrow(datasets.select(["eid", "rel_path", "exists"]))
    assert isinstance(frame, pl.DataFrame)
    rel_path = pl.col("rel_path")
    chosen = (
        frame.with_row_index("row")
        .with_columns(
            rel_path.str.replace(_REVISION, "").alias("dataset"),
            rel_path.str.extract(_REVISION, 1).fill_null("").alias("revision"),
            pl.col("exists").fill_null(False),
        )
        # Existing files after missing ones, then by revision name: the last row of a group.
        .sort(["exists", "revision"])
        .group_by(["eid", "dataset"])
        .agg(pl.col("row").last())
    )
    flags = np.zeros(datasets.num_rows, dtype=bool)
    flags[chosen["row"].to_numpy()] = True
    return flags


def with_default_revision(datasets: pa.Table) -> pa.Table:
    """``datasets`` with its ``default_revision`` column (re)computed, last of its columns."""
    if COLUMN in datasets.column_names:
        datasets = datasets.drop_columns([COLUMN])
    return datasets.append_column(
        pa.field(COLUMN, pa.bool_()), mask_array(default_revisions(datasets))
    )


def groups_without_one_default(datasets: pa.Table) -> int:
    """How many datasets (groups of the rule) have no row or several rows marked default."""
    import polars as pl

    frame = pl.from_arrow(datasets.select(["eid", "rel_path", COLUMN]))
    assert isinstance(frame, pl.DataFrame)
    counts = frame.group_by(["eid", pl.col("rel_path").str.replace(_REVISION, "")]).agg(
        pl.col(COLUMN).fill_null(False).sum()
    )
    return counts.filter(pl.col(COLUMN) != 1).height
