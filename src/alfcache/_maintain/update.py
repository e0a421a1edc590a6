"""Incremental updates: the rows of a fresh walk, matched with the tables of the previous run.

An update walks the whole tree (only the walk finds new, changed and vanished files) but reads
only the files that are new, whose size or modification time differ from the previous datasets
table, or that have no digest there yet; every other row keeps its digests. Rows are matched as
ONE-api identifies them: a session by (lab, subject, date, number), a dataset by its session and
``rel_path``. A matched row keeps its ids and QC (a session its task protocol and projects), so
tables made by another tool keep what they know; alfcache's own ids are deterministic, so an
update gives the same tables as a full re-index of the same tree.

The files are read, and the tables finished, as for a hashed index
(:mod:`alfcache._digest.tables`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa

from alfcache._alf.grammar import is_dataset_name, left_out_prefixes
from alfcache._alf.paths import session_folder
from alfcache._digest.read import COLUMNS
from alfcache._digest.tables import Plan
from alfcache._exceptions import BadArgument
from alfcache._paths import shown
from alfcache._records import Reason, Skip
from alfcache._tables.build import Tables, sessions_table
from alfcache._tables.checks import ANY_ORIGIN, origin_of, pair_mismatch
from alfcache._tables.checks import check_origin as check_tables_origin
from alfcache._tables.keys import pair_key, shared_codes
from alfcache._tables.schema import MTIME_COLUMN, SESSION_KEY
from alfcache._tables.store import (
    DATASETS_FILE,
    SESSIONS_FILE,
    bad_text,
    read_parquet,
    read_provenance,
)

_DIGESTS = [f"old_{a}" for a in COLUMNS]


@dataclass
class Previous:
    """The tables found in the output folder, reduced to what an update uses."""

    sessions: pl.DataFrame
    """``id``, ``lab`` ('' for none), ``subject``, ``date``, ``number``, ``task_protocol``,
    ``projects``."""
    datasets: pl.DataFrame
    """``eid``, ``id``, ``rel_path``, ``file_size``, ``exists``, ``qc`` (text), ``mtime_ns`` and a
    column per digest; a column the table lacks is null."""
    algorithms: tuple[str, ...]
    """The digests the previous run computed."""
    origin: str | None = None
    """The folder the previous tables were made from (``one_metadata``), if recorded."""


@dataclass
class Changes:
    """How the tree compares with the previous tables (dataset files)."""

    new: int
    changed: int
    """Size or recorded modification time differ."""
    unchanged: int
    vanished: int
    """In the previous table, no longer in the tree."""
    carried_over: int = 0
    """In the previous table, not seen because they lie below an entry the walk left out (a
    folder it could not list, a link it did not follow): kept unchanged."""
    unknown: int = 0
    """Same size, but the previous table records no modification time (tables of ONE-api or
    unhashed ones) while digests are to be kept: read again, changed or not."""
    untouched: int = 0
    """In the previous table, outside the paths an update by path walked (``--only``): kept
    unchanged, unread."""


def _bad_table(path: Path, why: object) -> BadArgument:
    return BadArgument(
        f"cannot update {shown(path)}: {why}. Move the old tables away or index without --update."
    )


def _read(path: Path, required: tuple[str, ...]) -> pa.Table:
    try:
        table = read_parquet(path)
    except (OSError, pa.ArrowException) as exc:
        raise _bad_table(path, exc) from exc
    if why := bad_text(table):  # it would be carried forward into the new tables
        raise _bad_table(path, why)
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise _bad_table(path, f"it has no column {', '.join(missing)}")
    return table


def _column(table: pa.Table, name: str, dtype: pl.DataType | type[pl.DataType]) -> pl.Series:
    """Column ``name`` of ``table`` as ``dtype``; all null when the table has none."""
    if name not in table.column_names:
        return pl.Series(name, [None] * table.num_rows, dtype=dtype)
    column: pl.Series = pl.Series(name, table[name]).cast(dtype)  # typed Any by Polars
    return column


def check_origin(previous: Previous, root: Path, out_dir: Path) -> None:
    """Refuse to update tables made from another folder than ``root`` (see
    :func:`alfcache._tables.checks.check_origin`).

    Raises
    ------
    BadArgument
        The tables record an absolute origin that is not ``root``.
    """
    check_tables_origin(
        previous.origin,
        root,
        out_dir,
        harm="an update would drop that tree's rows and carry their QC over to this one",
        fix=f"Choose another output folder, or pass {ANY_ORIGIN} if the tree was moved",
    )


def _recorded_algorithms(table: pa.Table, hashes: pl.Series) -> tuple[str, ...]:
    """The digests alfcache recorded (see ``read_provenance``); for other tools' tables, MD5 if
    any hash."""
    recorded = read_provenance(table.schema.metadata).get("digests")
    if not isinstance(recorded, list):
        return ("md5",) if hashes.null_count() < len(hashes) else ()
    return tuple(a for a in COLUMNS if a in recorded)


def _sessions_frame(table: pa.Table) -> pl.DataFrame:
    return pl.DataFrame(
        [
            _column(table, "id", pl.String),
            _column(table, "lab", pl.String).fill_null(""),
            _column(table, "subject", pl.String),
            _column(table, "date", pl.Date),
            _column(table, "number", pl.Int64),
            _column(table, "task_protocol", pl.String),
            _column(table, "projects", pl.String),
        ]
    )


def _datasets_frame(table: pa.Table) -> pl.DataFrame:
    return pl.DataFrame(
        [
            _column(table, "eid", pl.String),
            _column(table, "id", pl.String),
            _column(table, "rel_path", pl.String),
            _column(table, "file_size", pl.UInt64),
            _column(table, "exists", pl.Boolean).fill_null(True),
            _column(table, "qc", pl.String),
            _column(table, MTIME_COLUMN, pl.Int64),
            # ONE-api 3.0.0 writes '' for "not hashed".
            *(
                _column(table, c, pl.String).replace("", None).alias(f"old_{a}")
                for a, c in COLUMNS.items()
            ),
        ]
    )


def read_previous(out_dir: Path) -> Previous | None:
    """Read the cache tables in ``out_dir``; None when there are none.

    Raises
    ------
    BadArgument
        A table cannot be read or lacks a column an update needs, or the two are of two runs.
    """
    ses_path, ds_path = out_dir / SESSIONS_FILE, out_dir / DATASETS_FILE
    if not (ses_path.exists() or ds_path.exists()):
        return None
    ses = _read(ses_path, ("id", *SESSION_KEY))
    ds = _read(ds_path, ("eid", "id", "rel_path", "file_size"))
    if why := pair_mismatch(ses.schema.metadata, ds.schema.metadata):
        raise _bad_table(out_dir, why)
    try:
        sessions = _sessions_frame(ses)
    except pl.exceptions.PolarsError as exc:  # a column of a type that cannot be cast
        raise _bad_table(ses_path, exc) from exc
    try:
        datasets = _datasets_frame(ds)
    except pl.exceptions.PolarsError as exc:
        raise _bad_table(ds_path, exc) from exc
    algorithms = _recorded_algorithms(ds, datasets["old_md5"])
    return Previous(sessions, datasets, algorithms, origin_of(ses.schema.metadata))


def _no_previous() -> Previous:
    """What an index without previous tables matches against: nothing, with the columns."""
    empty = pa.table({})
    return Previous(_sessions_frame(empty), _datasets_frame(empty), ())


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except (TypeError, ValueError):  # TypeError: a null id
        return False


def _check_ids(previous: Previous, hash_ids: bool, out_dir: Path) -> None:
    """Refuse to mix UUID ids with path ids: ONE-api cannot load such a table."""
    if not previous.sessions.height:
        return
    old_uuids = _is_uuid(previous.sessions["id"][0])
    if old_uuids != hash_ids:
        have, want = ("UUID", "path") if old_uuids else ("path", "UUID")
        fix = "without --no-hash-ids" if old_uuids else "with --no-hash-ids"
        raise BadArgument(
            f"the tables in {shown(out_dir)} have {have} ids and this run asks for {want} ids; "
            f"update {fix}, or move the old tables away"
        )


def _match_sessions(
    table: pa.Table, previous: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Match the walk's sessions with the previous ones by (lab, subject, date, number).

    Returns
    -------
    polars.DataFrame
        The walk's sessions.
    polars.DataFrame
        The new sessions table: previous ids, task protocols and projects where matched.
    polars.DataFrame
        ``eid`` (the walk's) to ``new`` (the id in the new table).
    """
    fresh = pl.DataFrame(table).with_columns(
        pl.col("lab").fill_null(""), pl.col("number").cast(pl.Int64)
    )
    matched = fresh.join(
        previous.unique(SESSION_KEY, keep="first", maintain_order=True).select(
            *SESSION_KEY,
            pl.col("id").alias("old_id"),
            pl.col("task_protocol").alias("old_task_protocol"),
            pl.col("projects").alias("old_projects"),
        ),
        on=SESSION_KEY,
        how="left",
    )
    sessions = matched.select(
        pl.coalesce("old_id", "id").alias("id"),
        *SESSION_KEY,
        pl.coalesce("old_task_protocol", "task_protocol").alias("task_protocol"),
        pl.coalesce("old_projects", "projects").alias("projects"),
    )
    eids = matched.select(pl.col("id").alias("eid"), pl.coalesce("old_id", "id").alias("new"))
    return fresh, sessions, eids


def _dataset_keys(fresh: pl.DataFrame, previous: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """A key per row of each frame, equal where (``eid``, ``rel_path``) are equal (see
    :mod:`alfcache._tables.keys`)."""
    eid, previous_eid = shared_codes(fresh, previous, ["eid"])
    rel_path, previous_rel_path = shared_codes(fresh, previous, ["rel_path"])
    return pair_key(eid, rel_path), pair_key(previous_eid, previous_rel_path)


def _match_datasets(
    tables: Tables, eids: pl.DataFrame, previous: pl.DataFrame, algorithms: tuple[str, ...]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Match the walk's datasets with the previous ones by session and ``rel_path``.

    A file keeps a previous digest when its size and ``mtime_ns`` are unchanged; it is to be
    ``read`` when it lacks one of ``algorithms``.

    Returns
    -------
    polars.DataFrame
        The walk's datasets, with what the previous table knows of each.
    polars.DataFrame
        The previous datasets the walk did not find.
    """
    datasets = (
        pl.DataFrame(tables.datasets.select(["eid", "id", "rel_path", "file_size"]))
        .hstack(tables.files)
        .join(eids, on="eid", how="left")
        .with_columns(pl.col("new").alias("eid"))
    )
    key, previous_key = _dataset_keys(datasets, previous)
    datasets = datasets.with_columns(key.alias("key")).join(
        previous.select(
            previous_key.alias("key"),
            pl.col("id").alias("old_id"),
            pl.col("file_size").alias("old_size"),
            pl.col(MTIME_COLUMN).alias("old_mtime"),
            pl.col("qc").alias("old_qc"),
            *_DIGESTS,
            matched=pl.lit(True),
        ).unique("key", keep="first"),
        on="key",
        how="left",
    )
    gone = previous.filter(~previous_key.is_in(key.implode()).fill_null(False))
    unchanged = (
        (pl.col("old_size") == pl.col("file_size")) & (pl.col("old_mtime") == pl.col(MTIME_COLUMN))
    ).fill_null(False)
    datasets = datasets.with_columns(
        pl.coalesce("old_id", "id").alias("id"),
        pl.lit(True).alias("exists"),
        pl.coalesce("old_qc", pl.lit("NOT_SET")).alias("qc"),
        *(pl.when(unchanged).then(f"old_{a}").alias(COLUMNS[a]) for a in algorithms),
        pl.col("matched").fill_null(False),
        unchanged.alias("unchanged"),
    ).with_columns(
        pl.any_horizontal(pl.col(COLUMNS[a]).is_null() for a in algorithms).alias("read")
        if algorithms
        else pl.lit(False).alias("read")
    )
    if "md5" not in algorithms:
        datasets = datasets.with_columns(pl.lit(None, pl.String).alias("hash"))
    return datasets, gone


def _alf_paths(rows: pl.DataFrame, with_rel_path: bool) -> list[tuple[str, ...]]:
    """Each row's ALF path, with and without ``lab/Subjects``; none for a row without session."""
    paths: list[tuple[str, ...]] = []
    columns = [rows[c].to_list() for c in SESSION_KEY]
    rel_paths = rows["rel_path"].to_list() if with_rel_path else [None] * rows.height
    for lab, subject, date, number, rel_path in zip(*columns, rel_paths, strict=True):
        if subject is None or number is None:  # a dataset whose session is not in the table
            paths.append(())
            continue
        rest = f"/{rel_path}" if rel_path else ""
        tail = session_folder(None, subject, date, number) + rest
        paths.append((session_folder(lab, subject, date, number) + rest, tail) if lab else (tail,))
    return paths


_WALKED = frozenset(
    {Reason.NEAR_MISS, Reason.INVALID_NUMBER, Reason.INVALID_DATE, Reason.SESSION_CLASH}
)
"""Reasons of folders the walk went through (seen, just not a session of their own): nothing
below them can have been missed, so they carry no row over. An empty ``subject/date/1000``
must not stop an update dropping what vanished elsewhere, nor a ``1`` that loses to ``001``
(walked whole, only left out of the tables)."""


def _below_left_out(
    rows: pl.DataFrame, root: str, left_out: Sequence[Skip], with_rel_path: bool
) -> pl.Series:
    """Which previous rows may lie below an entry the walk left out (see left_out_prefixes)."""
    root_names = [n for n in root.split("/") if n]
    prefixes: set[str] = set()
    for skip in (s for s in left_out if s.reason not in _WALKED):
        found = left_out_prefixes([*root_names, *Path(skip.path).parts])
        if found is None:  # a plain folder: it may hold any session
            return pl.Series([True] * rows.height, dtype=pl.Boolean)
        prefixes |= found

    def covered(path: str) -> bool:
        names = path.split("/")
        return any("/".join(names[:end]) in prefixes for end in range(1, len(names) + 1))

    paths = _alf_paths(rows, with_rel_path) if prefixes else [()] * rows.height
    return pl.Series([any(map(covered, p)) for p in paths], dtype=pl.Boolean)


def _may_hold_sessions(left_out: Sequence[Skip]) -> bool:
    """Whether the walk left out a folder (not a file), which may hold any session.

    A session nested in another's collection (``S1/2024-01-08/001/raw/S9/2024-01-08/002``) has
    an ALF path that says nothing of where it lies, so no placement by path rules it out: while
    a folder cannot be listed, a session the walk did not find at all is carried over.
    """
    return any(
        s.reason not in _WALKED and not is_dataset_name(Path(s.path).name) for s in left_out
    )


def _count(datasets: pl.DataFrame, hashed: bool, *, vanished: int, carried: int) -> Changes:
    """What changed, as far as the previous tables can tell.

    A file with the same size is unchanged when its modification time is the recorded one, or
    when none is recorded and nothing else is stored about it (no digest). With digests to keep,
    a file without a recorded time cannot be proven unchanged: it is read, and counted
    ``unknown``, not ``changed``.
    """
    same_size = pl.col("old_size") == pl.col("file_size")
    known = pl.col("old_mtime").is_not_null()
    same_time = pl.col("old_mtime") == pl.col(MTIME_COLUMN)
    counts = datasets.filter("matched").select(
        changed=(~same_size | (known & ~same_time)).sum(),
        unchanged=(same_size & ((known & same_time) | (~known & (not hashed)))).sum(),
        unknown=(same_size & ~known & hashed).sum(),
    )
    return Changes(
        new=int((~datasets["matched"]).sum()),
        changed=int(counts["changed"][0]),
        unchanged=int(counts["unchanged"][0]),
        vanished=vanished,
        carried_over=carried,
        unknown=int(counts["unknown"][0]),
    )


def reconcile(
    tables: Tables,
    previous: Previous | None,
    algorithms: tuple[str, ...],
    *,
    hash_ids: bool,
    keep_missing: bool,
    out_dir: Path,
    root: str = "",
    left_out: Sequence[Skip] = (),
    outside: Previous | None = None,
) -> tuple[Plan, Changes]:
    """Match the assembled tables with ``previous`` and plan which files to read.

    Parameters
    ----------
    tables : Tables
        The assembled tables of this walk (ids, no digests).
    previous : Previous, optional
        The tables of the previous run; None for a plain (hashed) index.
    algorithms : tuple of str
        Digests to compute, besides the ones the previous run computed (always kept).
    hash_ids : bool
        Whether this run uses UUID ids (they must agree with the previous tables').
    keep_missing : bool
        Keep datasets that vanished, with ``exists=False``, and their sessions.
    out_dir : pathlib.Path
        Where the previous tables are, for messages.
    root : str
        The indexed folder (absolute).
    left_out : sequence of Skip
        Entries the walk did not index (folders not listed, links not followed, ...): the
        previous rows that may lie below them are carried over unchanged.
    outside : Previous, optional
        Rows of the previous tables the walk did not look at (an update by path,
        :mod:`alfcache._maintain.only`): carried over unchanged; ``previous`` holds the others.

    Returns
    -------
    Plan
    Changes
        How the tree compares with ``previous``.

    Raises
    ------
    BadArgument
        The previous tables use the other kind of id.
    """
    if previous is None:
        previous = _no_previous()
    _check_ids(previous, hash_ids, out_dir)
    if outside is not None:
        _check_ids(outside, hash_ids, out_dir)
    # Every digest the previous tables hold is kept (and computed for new and changed files):
    # an update asking for XXH3 over MD5 tables must not leave ONE-api without MD5s.
    wanted = {*algorithms, *previous.algorithms}
    algorithms = tuple(a for a in COLUMNS if a in wanted)
    fresh, sessions, eids = _match_sessions(tables.sessions, previous.sessions)
    datasets, gone = _match_datasets(tables, eids, previous.datasets, algorithms)
    vanished_sessions = previous.sessions.join(fresh, on=SESSION_KEY, how="anti")
    # Rows the walk could not see (below a folder it could not list, a link it did not follow)
    # are kept as they were: a transient permission or NFS error must not wipe a lab.
    gone_sessions = gone.join(
        previous.sessions.select(pl.col("id").alias("eid"), *SESSION_KEY), on="eid", how="left"
    )
    carry = _below_left_out(gone_sessions, root, left_out, with_rel_path=True)
    nested = _may_hold_sessions(left_out)
    if nested:  # a session not found at all may be nested below the folder not listed
        carry = carry | gone["eid"].is_in(vanished_sessions["id"].implode())
    carried, gone = gone.filter(carry), gone.filter(~carry)
    carried_sessions = vanished_sessions.filter(
        _below_left_out(vanished_sessions, root, left_out, with_rel_path=False)
        | pl.col("id").is_in(carried["eid"].implode())
        | nested
    )
    changes = _count(datasets, bool(algorithms), vanished=gone.height, carried=carried.height)
    untouched = outside.datasets if outside is not None else gone.clear()
    changes.untouched = untouched.height
    columns = [
        "eid",
        "id",
        "rel_path",
        "file_size",
        "exists",
        "qc",
        MTIME_COLUMN,
        "session",
        "read",
        *dict.fromkeys(COLUMNS[a] for a in ("md5", *algorithms)),
    ]
    datasets = datasets.select(columns)
    kept, kept_sessions = (gone, vanished_sessions) if keep_missing else (gone.clear(), None)
    kept = kept.with_columns(pl.lit(False).alias("exists"))
    old_rows = pl.concat([carried, kept, untouched]).with_columns(
        pl.lit(None, pl.String).alias("session"),
        pl.lit(False).alias("read"),
        *(pl.col(f"old_{a}").alias(COLUMNS[a]) for a in COLUMNS),
    )
    datasets = pl.concat([datasets, old_rows.select(columns)])
    old_sessions = kept_sessions if kept_sessions is not None else carried_sessions
    untouched_sessions = outside.sessions if outside is not None else old_sessions.clear()
    sessions = pl.concat(
        [sessions, *(s.select(sessions.columns) for s in (old_sessions, untouched_sessions))]
    )
    plan = Plan(
        sessions=sessions_table(sessions.sort("id")),
        datasets=datasets.with_row_index("row"),
        algorithms=algorithms,
        skipped=list(tables.skipped),
        notices=list(tables.notices),
        loadability=tables.loadability,
    )
    return plan, changes
