"""The merge: where rows from every worker become two tables.

Polars concatenates the workers' Arrow batches, removes duplicates, resolves session clashes,
fills the lab, assigns ids and sorts; the result is handed back as Arrow tables with exactly the
schemas of :mod:`alfcache._tables.schema`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from alfcache._alf.grammar import folder_to_index
from alfcache._alf.ids import uuid3_strings
from alfcache._alf.paths import padded, session_folder_expr
from alfcache._exceptions import LabConflict
from alfcache._records import (
    DATASET_BATCH_SCHEMA,
    NOTICE_REASONS,
    SESSION_BATCH_SCHEMA,
    Reason,
    ScanResult,
    Skip,
)
from alfcache._tables.arrow import cast_table, with_offsets
from alfcache._tables.schema import (
    DATASETS_SCHEMA,
    DIGEST_COLUMNS,
    MTIME_COLUMN,
    QC_LEVELS,
    SESSIONS_SCHEMA,
)

_SHOWN = 5  # sessions named in a LabConflict message
_QC = pl.Enum(QC_LEVELS)


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
    """Entries in the tables that are worth a look (an empty file, a nested session, a session
    ONE-api will look for in another folder)."""
    loadability: str = ""
    """How many sessions ONE-api cannot load, and what to do; '' when it can load them all."""


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


def resolve_clashes(sessions: pl.DataFrame) -> tuple[pl.DataFrame, list[Skip]]:
    """Keep one folder per (lab, subject, date, number) and report the others.

    ``1`` and ``001`` of the same day, or the same ALF path below two different parent folders,
    are one session for ONE-api. The zero-padded folder is kept, because it is the one ONE-api
    rebuilds from the table; ties go to the first path in sort order. ``sessions`` holds the
    walk's ``session`` (the folder), ``lab``, ``subject``, ``date``, ``num`` and ``number`` (as
    written); prune leaves the others alone as the index leaves them out.
    """
    key = ["lab", "subject", "date", "num"]
    unpadded = pl.col("number").str.len_chars() != 3
    ranked = sessions.sort([*key, unpadded, "session"])
    clash = pl.int_range(pl.len()).over(key) > 0
    kept = ranked.filter(~clash)
    lost = ranked.filter(clash).join(
        kept.select([*key, pl.col("session").alias("kept")]), on=key, how="left"
    )
    skipped = [
        Skip(
            row["session"],
            Reason.SESSION_CLASH,
            f"same session as {row['kept']!r} (lab, subject, date and number); not indexed",
        )
        for row in lost.iter_rows(named=True)
    ]
    return kept, skipped


def _without_echoes(skipped: list[Skip]) -> list[Skip]:
    """Drop the near misses below another skipped entry.

    The files of a ``2024-1-5`` folder are outside any session because of it, and it is
    reported already. Done here, not in the walk: the folder and its files may be walked by
    different workers.
    """
    folders = {s.path for s in skipped}

    def echoes(record: Skip) -> bool:
        if "." in folders:  # the root itself is left out
            return True
        parts = record.path.split("/")
        return any("/".join(parts[:end]) in folders for end in range(1, len(parts)))

    return [s for s in skipped if s.reason != Reason.NEAR_MISS or not echoes(s)]


def _not_loadable(sessions: pl.DataFrame, root: str, cache_dir: str) -> tuple[list[Skip], str]:
    """Sessions found in another folder than the one ONE-api rebuilds from their row.

    Returns
    -------
    list of Skip
        A ``not_loadable`` notice per such session: the folder found and the one ONE-api
        (``cache_dir``) looks in, and the folder to index instead when the root is the cause.
    str
        A summary line, '' when every session is loadable.
    """
    found = pl.when(pl.col("session") == "").then(pl.lit(root))
    checked = sessions.select(
        "session",
        "alf_path",
        found=found.otherwise(pl.lit(f"{root}/") + pl.col("session")),
        # what ONE-api rebuilds from the row: the number zero-padded
        expected=pl.lit(f"{cache_dir}/") + session_folder_expr(padded(pl.col("num"))),
    ).filter(pl.col("found") != pl.col("expected"))
    if checked.height == 0:
        return [], ""
    notices, fixes = [], set()
    for row in checked.sort("session").iter_rows(named=True):
        fix = folder_to_index(row["found"], row["alf_path"], root)
        fixes.add(fix)
        instead = f"; index {fix} instead" if fix else ""
        notices.append(
            Skip(
                row["session"] or ".",
                Reason.NOT_LOADABLE,
                f"indexed, but ONE-api looks for this session in {row['expected']}{instead}",
            )
        )
    n, total = checked.height, sessions.height
    first = checked.sort("session").row(0, named=True)
    if len(fixes) == 1 and (fix := next(iter(fixes))):
        advice = f"the root is inside the ALF layout: index {fix} instead"
    else:
        advice = "each is listed as a not_loadable notice"
    summary = (
        f"{n} of {total} session{'s' if total != 1 else ''} cannot be loaded by ONE-api, which "
        f"looks for them in other folders (e.g. {first['session'] or '.'} is looked for in "
        f"{first['expected']}); {advice}"
    )
    return notices, summary


def assemble(
    results: Sequence[ScanResult],
    *,
    hash_ids: bool = True,
    lab: str | None = None,
    root: str | None = None,
    cache_dir: str | None = None,
) -> Tables:
    """Merge the workers' batches into the sessions and datasets tables.

    Parameters
    ----------
    results : sequence of ScanResult
        What the workers returned.
    hash_ids : bool
        UUID v3 ids (see :mod:`alfcache._alf.ids`) when True, path ids otherwise.
    lab : str, optional
        Lab name for sessions whose folders carry none.
    root, cache_dir : str, optional
        The indexed folder and the folder ONE-api will be given as ``cache_dir``: with both,
        sessions ONE-api would look for elsewhere are reported (``not_loadable``).

    Returns
    -------
    Tables

    Raises
    ------
    LabConflict
        ``lab`` was given and some session folders sit below a different lab folder.
    """
    records = [s for r in results for s in r.skipped]
    skipped = _without_echoes([s for s in records if s.reason not in NOTICE_REASONS])
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
        alf_path=session_folder_expr(pl.col("number")),
        path_id=_path_id(),
        lab=pl.lit(lab) if lab else pl.col("lab"),
    )
    sessions, clashes = resolve_clashes(sessions)
    skipped += clashes
    loadability = ""
    if root is not None and cache_dir is not None:
        unloadable, loadability = _not_loadable(sessions, root, cache_dir)
        notices += unloadable

    datasets = (
        datasets.unique(["session", "rel_path"], keep="first")
        .join(sessions.select("session", "alf_path", "path_id"), on="session", how="inner")
        .with_columns(ds_path=pl.col("alf_path") + "/" + pl.col("rel_path"))
    )
    if hash_ids:
        eid = _series("id", [uuid3_strings(sessions["alf_path"].to_list())])
        sessions = sessions.with_columns(id=eid)
        datasets = datasets.join(
            sessions.select("session", pl.col("id").alias("eid")), on="session", how="left"
        )
        datasets = datasets.with_columns(id=_uuid3_column(datasets["ds_path"]))
    else:
        sessions = sessions.with_columns(id=pl.col("path_id"))
        datasets = datasets.with_columns(eid=pl.col("path_id"), id=pl.col("ds_path"))
    # The peak memory of a run is here: drop the path columns as soon as the ids are made.
    datasets = datasets.drop("alf_path", "path_id", "ds_path")

    sessions = sessions.sort("id")
    datasets = datasets.sort(["eid", "id"])
    total = int(datasets["file_size"].sum())
    files = datasets.select("session", "mtime_ns")
    return Tables(
        sessions_table(
            sessions.select(
                "id", "lab", "subject", pl.col("date").str.to_date("%Y-%m-%d"), number="num"
            )
        ),
        datasets_table(datasets),
        skipped,
        total,
        files,
        notices,
        loadability,
    )


_ID_CHUNK = 1 << 16


def _uuid3_column(names: pl.Series) -> pl.Series:
    """uuid3 ids of ``names``, a slice at a time: a list of a million Python strings costs
    about 100 MiB at once."""
    chunks = [
        uuid3_strings(names.slice(start, _ID_CHUNK).to_list())
        for start in range(0, len(names), _ID_CHUNK)
    ]
    return _series("id", chunks)


def _series(name: str, chunks: list[pa.Array]) -> pl.Series:
    """A Polars column of Arrow string chunks, made ``large_string`` first: Polars converts
    any other string type with ``pyarrow.compute``, whose import costs a small run dearly."""
    large = [with_offsets(chunk, pa.large_string()) for chunk in chunks]
    return pl.DataFrame(pa.table({name: pa.chunked_array(large, pa.large_string())})).to_series()


def sessions_table(df: pl.DataFrame) -> pa.Table:
    """The sessions table in ONE-api's schema, from a frame of its columns in any order.

    ``task_protocol`` and ``projects`` are '' when ``df`` lacks them (a new index knows none).
    """
    unknown = {c: pl.lit("") for c in ("task_protocol", "projects") if c not in df.columns}
    table = df.with_columns(**unknown).select(SESSIONS_SCHEMA.names)
    return cast_table(table.to_arrow(), SESSIONS_SCHEMA)


def datasets_table(df: pl.DataFrame, algorithms: tuple[str, ...] = ()) -> pa.Table:
    """The datasets table in ONE-api's schema, with ``mtime_ns`` and a column per digest other
    than MD5 when ``algorithms`` were computed.

    ``df`` holds ``eid``, ``id``, ``rel_path`` and ``file_size``, and ``exists``, ``qc`` (text)
    and the digest columns when known; a new index knows none: every file exists, QC is
    NOT_SET, no file is hashed.
    """
    fields = list(DATASETS_SCHEMA)
    if algorithms:
        fields.append(pa.field(MTIME_COLUMN, pa.int64()))
    fields += [
        pa.field(DIGEST_COLUMNS[a], pa.string()) for a in algorithms if DIGEST_COLUMNS[a] != "hash"
    ]
    schema = pa.schema(fields)
    unknown = {"exists": pl.lit(True), "qc": pl.lit("NOT_SET"), "hash": pl.lit(None, pl.String)}
    df = df.with_columns(**{c: v for c, v in unknown.items() if c not in df.columns})
    # Enum -> dictionary of all five levels, in order; then cast to QC_ARROW_TYPE by the schema.
    qc = pl.col("qc").cast(_QC, strict=False).fill_null("NOT_SET")
    table = cast_table(df.with_columns(qc).select(schema.names).to_arrow(), schema)
    if table["hash"].null_count == table.num_rows:
        # No MD5 at all (a new index: alfcache._maintain.update fills the hashes in) is a column
        # of Arrow's null type. pandas 3 reads a null *string* as NaN, which ONE-api (``hash is
        # not None``) takes for a digest and re-hashes every file it loads; a null-typed column
        # reads back as None under pandas 2 and 3 alike.
        index = schema.get_field_index("hash")
        table = table.set_column(index, pa.field("hash", pa.null()), pa.nulls(table.num_rows))
    return table
