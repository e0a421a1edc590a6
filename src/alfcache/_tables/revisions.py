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

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from alfcache._tables.arrow import mask_array

if TYPE_CHECKING:
    import polars as pl

__all__ = ["COLUMN", "default_revisions", "groups_without_one_default", "with_default_revision"]

COLUMN = "default_revision"

_REVISION = r"#(.*)#/"
"""one-api's own patterns: it groups by ``rel_path`` with ``#.*#/`` removed."""


def default_revisions(datasets: pa.Table) -> np.ndarray:
    """The ``default_revision`` flag of every row of ``datasets`` (columns ``eid``,
    ``rel_path``, ``exists``), by the rule of the module docstring.

    Each text column becomes integer codes one at a time (in Polars: Arrow's kernels would
    import ``pyarrow.compute``, a tenth of a small run's start-up), revision folders are
    parsed once per distinct ``rel_path``, and a stable NumPy sort of the rows that share a
    group picks among them (at 900k rows of which a tenth are revisions: 0.11 s, where parsing
    every row that names a revision took 0.26 s, and sorting every row more). A Polars sort
    and group-by of the text itself held every column twice over: at a million rows it was the
    largest memory of a run.
    """
    import polars as pl

    def column(name: str) -> pl.Series:
        # A table, not a column: Polars converts a lone Arrow string column with
        # pyarrow.compute.
        frame = pl.from_arrow(datasets.select([name]))
        assert isinstance(frame, pl.DataFrame)
        return frame.to_series()

    # The same few names recur in every session: each distinct one is parsed once.
    rel_path = column("rel_path")
    one_row, row_name = _distinct(_codes(rel_path))
    names = rel_path.gather(one_row.tolist())  # a list: a NumPy index may import numpy.ma
    del rel_path
    # Only names with a '#' can name a revision: the others are revision '', the lowest, and
    # are their own dataset.
    revised = names.str.contains("#", literal=True).fill_null(False)
    revisions = names.str.extract(_REVISION, 1).fill_null("")
    # Ranks from 1 (dense, by bytes), and '' (no revision after all) as the names without.
    named = (revised & (revisions.str.len_bytes() > 0)).to_numpy()
    revision = np.where(named, _ranks(revisions), 0)[row_name]
    dataset = _codes(names.zip_with(~revised, names.str.replace(_REVISION, "")))[row_name]
    del row_name
    session = _codes(column("eid"), sorted_runs=True)
    exists = column("exists").fill_null(False).to_numpy()
    # One integer per group (codes start at -1 for null).
    group = (session + 1) * (int(dataset.max(initial=-1)) + 2) + dataset + 1
    # Most rows are alone in their group (a file without revisions) and are its default; only
    # the rows that share a group are sorted: in a group, existing files after missing ones,
    # then by revision name, then in table order (stable), and the last row is its default.
    flags = np.ones(datasets.num_rows, dtype=bool)
    shared = np.flatnonzero(_repeated(group))
    if len(shared):
        order = shared[np.lexsort((revision[shared], exists[shared], group[shared]))]
        ranked = group[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = ranked[1:] != ranked[:-1]
        flags[shared] = False
        flags[order[last]] = True
    return flags


def _codes(values: pl.Series, *, sorted_runs: bool = False) -> np.ndarray:
    """An integer per value, equal for equal values (-1 for null).

    A hash, not a sort; with ``sorted_runs``, when the values are sorted (the ``eid`` of the
    tables alfcache writes), the number of each run of equal values instead, which is cheaper.
    """
    import polars as pl

    if sorted_runs and not values.null_count() and values.is_sorted():
        return np.asarray(values.rle_id().to_numpy(), dtype=np.int64)
    codes = values.cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1)
    return np.asarray(codes.to_numpy(), dtype=np.int64)


def _countable(values: np.ndarray) -> bool:
    """Whether integer ``values`` (from -1 up) are few enough to count in an array of their
    range: at most 4 slots a value."""
    return bool(len(values)) and int(values.max()) < 4 * len(values)


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A row of each distinct value of ``values`` (from -1 up), and each row's value's number.

    Counted when the values are few, as codes of a session's files are (15 ms at 900k rows),
    else by ``np.unique``, whose stable sort took 125 ms.
    """
    if not _countable(values):
        _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        return first, inverse.reshape(-1)
    shifted = values + 1
    present = np.flatnonzero(np.bincount(shifted))
    number = np.zeros(int(present[-1]) + 1, dtype=np.int64)
    number[present] = np.arange(len(present))
    row = np.zeros_like(number)
    row[shifted] = np.arange(len(values))  # any row of a value will do: they hold one name
    return row[present], number[shifted]


def _repeated(values: np.ndarray) -> np.ndarray:
    """Whether each value occurs more than once (``values`` from -1 up).

    Counted when the values are few (a session's datasets are: 3 ms at 900k rows), else by a
    NumPy sort, twice as fast as Polars' ``is_duplicated`` at a million integers (36 ms).
    """
    if _countable(values):
        return np.asarray(np.bincount(values + 1)[values + 1] > 1)
    ordered = np.sort(values)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    return np.isin(values, twice)


def _ranks(values: pl.Series) -> np.ndarray:
    """The dense rank of each value (from 1, by bytes; 0 for null), as a sort of the text."""
    return np.asarray(values.rank("dense").fill_null(0).to_numpy(), dtype=np.int64)


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
