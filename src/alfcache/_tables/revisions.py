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

from alfcache._tables.arrow import mask_array, numeric_array

__all__ = ["COLUMN", "default_revisions", "groups_without_one_default", "with_default_revision"]

COLUMN = "default_revision"

_REVISION = r"#(.*)#/"
"""one-api's own patterns: it groups by ``rel_path`` with ``#.*#/`` removed."""
_NAMED_REVISION = r"#(?P<revision>.*)#/"
"""The same, for Arrow's ``extract_regex``, which names its groups."""


def default_revisions(datasets: pa.Table) -> np.ndarray:
    """The ``default_revision`` flag of every row of ``datasets`` (columns ``eid``,
    ``rel_path``, ``exists``), by the rule of the module docstring.

    Computed with Arrow kernels and NumPy on integer codes rather than in a Polars frame of the
    text: at a million rows that frame, sorted and grouped, was the largest memory of a run
    (about 200 MiB) and most of the time of the write.
    """
    import pyarrow.compute as pc

    rel_path = datasets["rel_path"]
    texts = pc.unique(rel_path)
    dataset = _codes(rel_path, texts)
    # Only the rows with a '#' can name a revision: the others are revision '', the lowest, and
    # their rel_path is their dataset. Only those rows are copied and parsed.
    revised = np.flatnonzero(_ints(pc.match_substring(rel_path, "#")) == 1)
    revision = np.zeros(datasets.num_rows, dtype=np.int64)
    if len(revised):
        some = rel_path.take(numeric_array(revised, pa.int64()))
        stripped = pc.replace_substring_regex(some, _REVISION, "", max_replacements=1)
        # The code of the same text among the rel_paths, else a code after all of theirs.
        known = _codes(stripped, texts)
        new = known < 0
        known[new] = len(texts) + _codes(stripped)[new]
        dataset[revised] = known
        names = pc.struct_field(pc.extract_regex(some, _NAMED_REVISION), [0])
        # Ranks from 1, and '' or none (no revision after all) as the rows without a '#'.
        named = _ints(pc.utf8_length(names)) > 0
        revision[revised] = np.where(named, _codes(names, ordered=True) + 1, 0)
    exists = _ints(datasets["exists"]) == 1  # unknown (null) as missing
    group = (_codes(datasets["eid"]), dataset)
    # Stable: in a group, existing files after missing ones, then by revision name, then in
    # table order; the last row of each group is its default.
    order = np.lexsort((revision, exists, *reversed(group)))
    grouped_with_next = np.zeros(len(order), dtype=bool)
    grouped_with_next[:-1] = True
    for codes in group:
        ranked = codes[order]
        grouped_with_next[:-1] &= ranked[1:] == ranked[:-1]
    flags = np.zeros(datasets.num_rows, dtype=bool)
    flags[order[~grouped_with_next]] = True
    return flags


def _codes(
    values: pa.ChunkedArray | pa.Array,
    distinct: pa.Array | None = None,
    *,
    ordered: bool = False,
) -> np.ndarray:
    """An integer per value: its position in ``distinct`` (-1 when not there), by default the
    values' own distinct values, so that equal values (null included) share a code; with
    ``ordered``, the codes rank the values as a sort of the text (by bytes) does."""
    import pyarrow.compute as pc

    if distinct is None:
        distinct = pc.unique(values)
        if ordered:
            distinct = distinct.take(pc.sort_indices(distinct))
    return _ints(pc.index_in(values, value_set=distinct))


def _ints(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Integers (or booleans, as 0 and 1) as int64 NumPy values, null as -1.

    Read from the buffers: pyarrow's ``to_numpy`` and scalars import pandas (half a second),
    which hashing and updating never load.
    """
    array = values.cast(pa.int64())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    validity, data = array.buffers()
    n, start = len(array), array.offset
    out: np.ndarray = np.frombuffer(data, dtype=np.int64, count=start + n)[start:].copy()
    if array.null_count:
        bits = np.frombuffer(validity, dtype=np.uint8)
        valid = np.unpackbits(bits, count=start + n, bitorder="little")[start:]
        out[valid == 0] = -1
    return out


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
