"""The merge: where rows from every worker become two tables.

Polars concatenates the workers' Arrow batches, removes duplicates, resolves session clashes,
fills the lab, assigns ids and sorts; the result is handed back as Arrow tables with exactly the
schemas of :mod:`alfcache._schema`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from alfcache._arrow import bool_array, numeric_array, string_array
from alfcache._exceptions import LabConflict
from alfcache._ids import uuid3_strings
from alfcache._scan import (
    DATASET_BATCH_SCHEMA,
    NOTICE_REASONS,
    SESSION_BATCH_SCHEMA,
    ScanResult,
    Skip,
)
from alfcache._schema import DATASETS_SCHEMA, QC_LEVELS, SESSIONS_SCHEMA

_SHOWN = 5  # sessions named in a LabConflict message


@dataclass
class Tables:
    """The assembled cache tables and what was left out of them."""

    sessions: pa.Table
    datasets: pa.Table
    skipped: list[Skip]
    """Entries left out of the tables."""
    bytes: int
    """Total size of the indexed datasets."""
    files: pl.DataFrame
    """Row by row with ``datasets``: the session folder (relative to the root) and ``mtime_ns``
    of each dataset's file, for hashing and updates."""
    notices: list[Skip] = field(default_factory=list)
    """Entries in the tables that are worth a look (an empty file, a nested session)."""


def _alf_path() -> pl.Expr:
    """The session folder's ALF path: ``lab/Subjects/subject/date/number`` or without lab."""
    lab = pl.when(pl.col("lab") != "").then(pl.col("lab") + "/Subjects/").otherwise(pl.lit(""))
    return pl.concat_str(
        [lab, pl.col("subject"), pl.lit("/"), pl.col("date"), pl.lit("/"), pl.col("number")]
    )


def _path_id() -> pl.Expr:
    """The reference's path id of a session: ``lab/subject/date/number`` (no ``Subjects``)."""
    lab = pl.when(pl.col("lab") != "").then(pl.col("lab") + "/").otherwise(pl.lit(""))
    return pl.concat_str(
        [lab, pl.col("subject"), pl.lit("/"), pl.col("date"), pl.lit("/"), pl.col("number")]
    )


def _check_lab(sessions: pl.DataFrame, lab: str) -> None:
    other = sessions.filter((pl.col("lab") != "") & (pl.col("lab") != lab))
    if other.height:
        labs = sorted(set(other["lab"].to_list()))
        shown = other["session"].head(_SHOWN).to_list()
        more = f" and {other.height - _SHOWN} more" if other.height > _SHOWN else ""
        raise LabConflict(
            f"lab={lab!r} was given, but {other.height} session folder(s) sit below lab "
            f"folder(s) {', '.join(map(repr, labs))}: {', '.join(shown)}{more}. "
            "Index those labs separately or leave lab unset."
        )


def _resolve_clashes(sessions: pl.DataFrame) -> tuple[pl.DataFrame, list[Skip]]:
    """Keep one folder per (lab, subject, date, number) and report the others.

    ``1`` and ``001`` of the same day, or the same ALF path below two different parent folders,
    are one session for ONE-api. The zero-padded folder is kept, because it is the one ONE-api
    rebuilds from the table; ties go to the first path in sort order.
    """
    key = ["lab", "subject", "date", "num"]
    ranked = sessions.sort([*key, "unpadded", "session"])
    clash = pl.int_range(pl.len()).over(key) > 0
    kept = ranked.filter(~clash)
    lost = ranked.filter(clash).join(
        kept.select([*key, pl.col("session").alias("kept")]), on=key, how="left"
    )
    skipped = [
        Skip(
            row["session"],
            "session_clash",
            f"same session as {row['kept']!r} (lab, subject, date and number); not indexed",
        )
        for row in lost.iter_rows(named=True)
    ]
    return kept, skipped


def assemble(
    results: Sequence[ScanResult], *, hash_ids: bool = True, lab: str | None = None
) -> Tables:
    """Merge the workers' batches into the sessions and datasets tables.

    Parameters
    ----------
    results : sequence of ScanResult
        What the workers returned.
    hash_ids : bool
        UUID v3 ids (see :mod:`alfcache._ids`) when True, path ids otherwise.
    lab : str, optional
        Lab name for sessions whose folders carry none.

    Returns
    -------
    Tables

    Raises
    ------
    LabConflict
        ``lab`` was given and some session folders sit below a different lab folder.
    """
    records = [s for r in results for s in r.skipped]
    skipped = [s for s in records if s.reason not in NOTICE_REASONS]
    notices = [s for s in records if s.reason in NOTICE_REASONS]
    sessions = pl.DataFrame(
        pa.Table.from_batches([r.sessions for r in results], SESSION_BATCH_SCHEMA)
    )
    datasets = pl.DataFrame(
        pa.Table.from_batches([r.datasets for r in results], DATASET_BATCH_SCHEMA)
    )
    if lab:
        _check_lab(sessions, lab)
    sessions = sessions.unique("session", keep="first").with_columns(
        alf_path=_alf_path(),
        path_id=_path_id(),
        unpadded=pl.col("number").str.len_chars() != 3,
        lab=pl.lit(lab) if lab else pl.col("lab"),
    )
    sessions, clashes = _resolve_clashes(sessions)
    skipped += clashes

    datasets = (
        datasets.unique(["session", "rel_path"], keep="first")
        .join(sessions.select("session", "alf_path", "path_id"), on="session", how="inner")
        .with_columns(ds_path=pl.col("alf_path") + "/" + pl.col("rel_path"))
    )
    if hash_ids:
        eid = pl.Series("id", uuid3_strings(sessions["alf_path"].to_list()))
        sessions = sessions.with_columns(id=eid)
        datasets = datasets.join(
            sessions.select("session", pl.col("id").alias("eid")), on="session", how="left"
        )
        datasets = datasets.with_columns(
            id=pl.Series(uuid3_strings(datasets["ds_path"].to_list()))
        )
    else:
        sessions = sessions.with_columns(id=pl.col("path_id"))
        datasets = datasets.with_columns(eid=pl.col("path_id"), id=pl.col("ds_path"))

    sessions = sessions.sort("id")
    datasets = datasets.sort(["eid", "id"])
    total = int(datasets["file_size"].sum())
    files = datasets.select("session", "mtime_ns")
    return Tables(
        _sessions_table(sessions), _datasets_table(datasets), skipped, total, files, notices
    )


def _sessions_table(df: pl.DataFrame) -> pa.Table:
    empty = string_array([""] * df.height).cast(pa.string())
    return pa.Table.from_arrays(
        [
            df["id"].to_arrow().cast(pa.string()),
            df["lab"].to_arrow().cast(pa.string()),
            df["subject"].to_arrow().cast(pa.string()),
            df["date"].str.to_date("%Y-%m-%d").to_arrow(),
            df["num"].to_arrow(),
            empty,
            empty,
        ],
        schema=SESSIONS_SCHEMA,
    )


def _datasets_table(df: pl.DataFrame) -> pa.Table:
    n = df.height
    qc = pa.DictionaryArray.from_arrays(
        numeric_array(np.zeros(n, dtype=np.int8), pa.int8()),
        string_array(QC_LEVELS).cast(pa.string()),
        ordered=True,
    )
    # No file is hashed yet (alfcache._update fills the hashes in): a column of Arrow's null
    # type. pandas 3 reads a null *string* as NaN, which ONE-api (``hash is not None``) takes
    # for a digest and re-hashes every file it loads; a null-typed column reads back as None
    # under pandas 2 and 3 alike.
    schema = DATASETS_SCHEMA.set(
        DATASETS_SCHEMA.get_field_index("hash"), pa.field("hash", pa.null())
    )
    return pa.Table.from_arrays(
        [
            df["eid"].to_arrow().cast(pa.string()),
            df["id"].to_arrow().cast(pa.string()),
            df["rel_path"].to_arrow().cast(pa.string()),
            df["file_size"].to_arrow(),
            pa.nulls(n),
            bool_array(True, n),
            qc,
        ],
        schema=schema,
    )
