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
from alfcache._tables.arrow import cast_table
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
    # Clashes are rare: a hash of the key finds there are none without sorting (60 ms of
    # 30,000 sessions did not find one).
    if not sessions.select(pl.struct(key).is_duplicated().any()).item():
        return sessions, []
    unpadded = pl.col("number").str.len_chars() != 3
    ranked = sessions.sort([*key, unpadded, "session"])
    first = pl.struct(key).is_first_distinct()
    kept = ranked.filter(first)
    lost = ranked.filter(~first).join(
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
        What the workers returned. Their rows are taken: each result's batches are left
        empty (see :func:`_frame`); its other fields stay.
    hash_ids : bool
        UUID v3 ids (see :mod:`alfcache._alf.ids`), those of the walk's rows, when True; path
        ids otherwise, made here: the rows' ``id`` columns are then never read, and a walk
        with ``hash_ids=False`` leaves them null.
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
    ValueError
        ``hash_ids`` is True but the rows carry no ids (a walk made with ``hash_ids=False``).
    """
    records = [s for r in results for s in r.skipped]
    skipped = _without_echoes([s for s in records if s.reason not in NOTICE_REASONS])
    notices = [s for s in records if s.reason in NOTICE_REASONS]
    sessions = _frame(results, "sessions", SESSION_BATCH_SCHEMA)
    datasets = _frame(results, "datasets", DATASET_BATCH_SCHEMA)
    if hash_ids and (sessions["id"].null_count() or datasets["id"].null_count()):
        raise ValueError("hash_ids=True, but the walk made no ids: build it with hash_ids=True")
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

    if not hash_ids:
        sessions = sessions.with_columns(id=pl.col("path_id"))
    # A dataset's session is a row number of the sessions sorted by id (``at``): the datasets
    # sort by it and their id, a number and one text instead of two texts, and take their
    # ``eid`` and folder from ``sessions`` after (gathered text shares its buffers).
    sessions = sessions.sort("id").with_row_index("at")
    # A lookup, not a join: the frame keeps its order (for the dedup below) and is not copied;
    # the rows of the sessions left out (clashes) find none and are dropped.
    at = datasets["session"].replace_strict(
        sessions["session"], sessions["at"], default=None, return_dtype=pl.UInt32
    )
    datasets = datasets.drop("session").with_columns(at=at)
    if at.null_count():
        datasets = datasets.filter(pl.col("at").is_not_null())
    if not hash_ids:
        folder = sessions["alf_path"].gather(datasets["at"])
        datasets = datasets.with_columns(id=folder + "/" + datasets["rel_path"])
    # Otherwise the walk made the UUIDs (DATASET_BATCH_SCHEMA): a kept session's ALF path is
    # its folder's, as the walk saw it.
    datasets = _first_of_each(datasets.sort(["at", "id"], maintain_order=True))
    total = int(datasets["file_size"].sum())
    files = pl.DataFrame([sessions["session"].gather(datasets["at"]), datasets["mtime_ns"]])
    datasets = datasets.with_columns(eid=sessions["id"].gather(datasets["at"]))
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


def _first_of_each(datasets: pl.DataFrame) -> pl.DataFrame:
    """``datasets`` (sorted by session and ``id``, stably) without the files found twice.

    A file is found twice when a task is walked again (a Dask worker lost and its task rerun);
    the row found first is kept. Its ``id`` (a function of the session's ALF path and
    ``rel_path``) names it, and the stable sort has put its repeats right after it: comparing
    neighbours replaces a hash of every ``(session, rel_path)``, the largest memory of a run.
    """
    repeat = (pl.col("id") == pl.col("id").shift(1)).fill_null(False)
    if not datasets.select(repeat.any()).item():
        return datasets
    return datasets.filter(~repeat)


_FRAME_ROWS = 1 << 17
"""Rows of the walk's batches converted to Polars at a time: few chunks, and a small copy."""


def _frame(results: Sequence[ScanResult], rows: str, schema: pa.Schema) -> pl.DataFrame:
    """The ``rows`` batches (``"sessions"`` or ``"datasets"``) of ``results`` as one frame.

    Polars copies Arrow text into its own layout, so each batch is released (the result keeps
    an empty one) as soon as its rows are in the frame: holding every batch until the whole
    frame exists kept a million rows twice, the largest part of a run's peak memory.
    """
    empty = pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
    frames: list[pl.DataFrame] = []
    group: list[pa.RecordBatch] = []
    pending = 0
    for result in results:
        batch = getattr(result, rows)
        setattr(result, rows, empty)
        group.append(batch)
        pending += batch.num_rows
        if pending >= _FRAME_ROWS:
            frames.append(pl.DataFrame(pa.Table.from_batches(group, schema)))
            group, pending = [], 0
    frames.append(pl.DataFrame(pa.Table.from_batches(group, schema)))
    return pl.concat(frames, rechunk=False)


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
