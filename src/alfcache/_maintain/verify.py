"""Verify: the cache tables against the tree on disk.

The tree is walked exactly as ``index`` walks it (:func:`alfcache._walk.local.start_walk`), and the
assembled rows are compared with the tables by ONE-api's identity, never by id: a session is
(lab, subject, date, number), a dataset its session and ``rel_path``. So tables written by
one-api or Alyx, with ids alfcache would never compute, are verified as well as alfcache's own.

Each difference is one record ``{"path", "kind", "expected", "found"}``: ``path`` relative to the
root (for rows of the tables, the path ONE-api rebuilds from them), ``expected`` what the tables
say, ``found`` what the disk says. The kinds:

``missing_file``     a dataset in the tables (``exists`` true) whose file is not on disk
``size_mismatch``    the file's size differs from ``file_size``
``md5_mismatch``, ``xxh3_mismatch``  with ``hashes``: the file's digest differs from the table's
``unreadable``       with ``hashes``: the file could not be read to check its digest
``exists_mismatch``  a dataset marked ``exists=False`` whose file is on disk
``extra_file``       an ALF file on disk that the tables lack
``missing_session``  a session in the tables without a folder on disk
``extra_session``    a session folder on disk that the tables lack
``orphan_dataset``   a dataset whose ``eid`` is not in the sessions table
``default_revision_mismatch``  the row's ``default_revision`` differs from the rule of
                     :mod:`alfcache._tables.revisions` applied to the table's rows (tables
                     without the column are not checked; ``info`` warns about them)
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from alfcache._alf.paths import padded, session_folder_expr
from alfcache._digest.read import COLUMNS
from alfcache._digest.schedule import digest_files
from alfcache._exceptions import BadArgument
from alfcache._maintain.info import held_digests
from alfcache._options import resolve_n_jobs, resolve_root
from alfcache._paths import shown
from alfcache._records import Skip
from alfcache._tables.checks import check_tables_for
from alfcache._tables.keys import pair_key, shared_codes
from alfcache._tables.revisions import COLUMN as DEFAULT_COLUMN
from alfcache._tables.revisions import default_revisions
from alfcache._tables.schema import SESSION_KEY
from alfcache._tables.store import DATASETS_FILE, SESSIONS_FILE, read_provenance, read_table
from alfcache._walk.local import start_walk
from alfcache._walk.scan import Rules


@dataclass(frozen=True, order=True)
class Difference:
    """One way the tables and the disk disagree.

    Attributes
    ----------
    path : str
        Relative to the root; for rows of the tables, the path ONE-api rebuilds from them.
    kind : str
        What differs: ``missing_file``, ``size_mismatch``, ``md5_mismatch``, ``extra_file``, ...
        (the list is in :mod:`alfcache._maintain.verify`'s docstring).
    expected : object
        What the tables say; None where they have nothing (no row).
    found : object
        What the disk says; None where it has nothing (no file).
    """

    path: str
    kind: str
    expected: object
    found: object

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class VerifyReport:
    """What :func:`verify` compared and found; ``ok`` when the tables match the disk."""

    root: Path
    tables_dir: Path
    sessions: int
    """Sessions in the tables."""
    datasets: int
    """Datasets in the tables."""
    digests_checked: int
    """Files whose digests were read and compared (``hashes=True``)."""
    algorithms: tuple[str, ...]
    """The digests compared."""
    seconds: float
    differences: list[Difference] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    """Entries the walk could not index (they may show up as ``missing_file``)."""

    @property
    def ok(self) -> bool:
        """True when the tables match the disk."""
        return not self.differences

    def as_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "tables": str(self.tables_dir),
            "ok": self.ok,
            "sessions": self.sessions,
            "datasets": self.datasets,
            "digests_checked": self.digests_checked,
            "algorithms": list(self.algorithms),
            "seconds": round(self.seconds, 3),
            "differences": [d.as_dict() for d in self.differences],
            "skipped": [s._asdict() for s in self.skipped],
        }


def _column(
    table: pa.Table, name: str, dtype: pl.DataType | type[pl.DataType], path: Path
) -> pl.Series:
    """Column ``name`` of ``table`` cast to ``dtype`` (all null when absent)."""
    if name not in table.column_names:
        return pl.Series(name, [None] * table.num_rows, dtype=dtype)
    try:
        column: pl.Series = pl.Series(name, table[name]).cast(dtype)  # typed Any by Polars
        return column
    except pl.exceptions.PolarsError as exc:
        raise BadArgument(
            f"{shown(path)}: column {name!r} of type {table.schema.field(name).type} cannot be "
            f"compared as {dtype}; fix the table or index the folder again"
        ) from exc


def _require(table: pa.Table, path: Path, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise BadArgument(
            f"{shown(path)} has no column {', '.join(missing)}; it is not a cache table "
            "ONE-api reads"
        )


def _session_frame(table: pa.Table, path: Path) -> pl.DataFrame:
    _require(table, path, ("id", "subject", "date", "number"))
    return pl.DataFrame(
        [
            _column(table, "id", pl.String, path),
            _column(table, "lab", pl.String, path).fill_null(""),
            _column(table, "subject", pl.String, path),
            _column(table, "date", pl.Date, path),
            _column(table, "number", pl.Int64, path),
        ]
    )


def _dataset_frame(table: pa.Table, path: Path, algorithms: tuple[str, ...]) -> pl.DataFrame:
    _require(table, path, ("eid", "rel_path", "file_size"))
    return pl.DataFrame(
        [
            _column(table, "eid", pl.String, path),
            _column(table, "rel_path", pl.String, path),
            _column(table, "file_size", pl.Int64, path),
            _column(table, "exists", pl.Boolean, path).fill_null(True),
            # ONE-api 3.0.0 writes '' for "not hashed".
            *(
                _column(table, COLUMNS[a], pl.String, path).replace("", None).alias(a)
                for a in algorithms
            ),
        ]
    )


def _keyed_sessions(sessions: pl.DataFrame) -> pl.DataFrame:
    # The folder ONE-api rebuilds from the parts: number padded to three digits.
    folder = session_folder_expr(padded(pl.col("number"))).alias("folder")
    return sessions.with_columns(folder).unique(list(SESSION_KEY), keep="first")


def _keyed(
    want_ses: pl.DataFrame,
    want_ds: pl.DataFrame,
    have_ses: pl.DataFrame,
    have_ds: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Sessions and datasets of the tables (``want``) and the disk (``have``), with keys.

    A session's ``code`` is its identity (lab, subject, date, number), the same on both sides;
    a dataset's ``key`` its session's code and ``rel_path`` (:mod:`alfcache._tables.keys`).
    Matched on the five columns instead, verify of 864,000 datasets peaked at 1.2 GB. A dataset
    whose ``eid`` names no session is left out (an orphan); of repeats, the first is kept.
    """
    want_code, have_code = shared_codes(want_ses, have_ses, SESSION_KEY)
    want_ses, have_ses = want_ses.with_columns(want_code), have_ses.with_columns(have_code)

    def with_session(datasets: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
        eids = sessions.select(pl.col("id").alias("eid"), "code", "folder")
        return datasets.join(eids, on="eid", how="inner")

    want_ds, have_ds = with_session(want_ds, want_ses), with_session(have_ds, have_ses)
    want_rel, have_rel = shared_codes(want_ds, have_ds, ["rel_path"])
    want_ds, have_ds = (
        frame.with_columns(pair_key(frame["code"], rel).alias("key")).unique("key", keep="first")
        for frame, rel in ((want_ds, want_rel), (have_ds, have_rel))
    )
    return want_ses, want_ds, have_ses, have_ds


_WANT_PATH = pl.concat_str([pl.col("folder"), pl.lit("/"), "rel_path"]).alias("path")
"""A row of the tables: the path ONE-api rebuilds from them."""
_DISK_PATH = (
    # Relative to the root; a root that is itself a session folder is ''.
    pl.when(pl.col("session") == "")
    .then(pl.col("rel_path"))
    .otherwise(pl.concat_str([pl.col("session"), pl.lit("/"), "rel_path"]))
    .alias("disk")
)
"""A file found on disk: its path relative to the root."""


def _records(
    frame: pl.DataFrame, kind: str, expected: str | None, found: str | None
) -> list[Difference]:
    """One Difference per row: ``path`` and the named columns (None: a null)."""
    rows = frame.select(
        "path",
        pl.col(expected) if expected else pl.lit(None).alias("_e"),
        pl.col(found) if found else pl.lit(None).alias("_f"),
    ).rows()
    return [Difference(path, kind, e, f) for path, e, f in rows]


def verify(
    root_dir: str | os.PathLike[str],
    tables_dir: str | os.PathLike[str] | None = None,
    *,
    hashes: bool = False,
    lab: str | None = None,
    n_jobs: int | None = None,
    follow_symlinks: bool | None = None,
    progress: bool = False,
    any_origin: bool = False,
) -> VerifyReport:
    """Compare the cache tables in ``tables_dir`` with the ALF tree in ``root_dir``.

    Parameters
    ----------
    root_dir : str, pathlib.Path
        The data folder the tables describe.
    tables_dir : str, pathlib.Path, optional
        The folder holding ``sessions.pqt`` and ``datasets.pqt``; ``root_dir`` when None.
    hashes : bool
        Also read every file whose row holds a digest (MD5 in ``hash``, XXH3 in ``xxh3_128``) and
        compare it; files are read in parallel, with byte progress when ``progress``.
    lab : str, optional
        The lab of sessions whose folders carry none, as given to ``index``; by default the lab
        recorded in the tables by alfcache, if any.
    n_jobs : int, optional
        Worker processes for the walk and the reading; None or -1 for all cores.
    follow_symlinks : bool, optional
        Follow symbolic links to folders, as ``index`` does with the same option; by default
        as recorded in the tables by alfcache (else not).
    progress : bool
        Show progress on stderr.
    any_origin : bool
        Compare tables that record another origin than ``root_dir`` (moved on purpose); by
        default they are refused, as are the partial tables of one array shard.

    Returns
    -------
    VerifyReport
        Its ``differences`` are sorted by path, then kind.

    Raises
    ------
    BadRoot, RootNotReadable
        ``root_dir`` is missing, not a folder or cannot be listed.
    BadArgument
        A table is missing or cannot be read or compared, is of another origin (unless
        ``any_origin``) or partial, or ``n_jobs`` is not usable.
    """
    start = time.perf_counter()
    root = resolve_root(root_dir)
    jobs = resolve_n_jobs(n_jobs)
    tables = Path(tables_dir).expanduser() if tables_dir is not None else root
    # Read before the walk starts: a bad table fails at once, with no worker left walking.
    ses_path, ds_path = tables / SESSIONS_FILE, tables / DATASETS_FILE
    ses_table, ds_table = read_table(ses_path), read_table(ds_path)
    check_tables_for(
        "verify",
        "every file of this tree would differ from them",
        ses_table.schema.metadata,
        ds_table.schema.metadata,
        root,
        tables,
        any_origin=any_origin,
    )
    algorithms = tuple(held_digests(ds_table)) if hashes else ()
    # The tree is walked as it was indexed, or sessions and links would differ for nothing.
    options = read_provenance(ds_table.schema.metadata).get("options")
    options = options if isinstance(options, dict) else {}
    if lab is None and isinstance(options.get("lab"), str):
        lab = options["lab"]
    if follow_symlinks is None:
        follow_symlinks = options.get("follow_symlinks") is True
    want_ses = _keyed_sessions(_session_frame(ses_table, ses_path))
    want_all = _dataset_frame(ds_table, ds_path, algorithms)
    check_defaults = DEFAULT_COLUMN in ds_table.column_names
    if check_defaults:
        want_all = want_all.with_columns(
            _column(ds_table, DEFAULT_COLUMN, pl.Boolean(), ds_path),
            pl.Series("rule_default", default_revisions(ds_table)),
        )

    # Compared by identity, never by id: the walk's ids only join its datasets to its
    # sessions, which path ids do as well (one per kept session), without hashing any.
    rules = Rules(str(root), follow_symlinks=follow_symlinks, hash_ids=False)
    disk, walked = start_walk(rules, jobs).finish(lab=lab, progress=progress)
    have_ses = _keyed_sessions(
        pl.DataFrame(disk.sessions)
        .select("id", *SESSION_KEY)
        .with_columns(pl.col("lab").fill_null(""), pl.col("number").cast(pl.Int64))
    )
    have_all = (
        pl.DataFrame(disk.datasets)
        .select("eid", "rel_path", pl.col("file_size").cast(pl.Int64))
        .with_columns(disk.files["session"])
    )
    want_ses, want_ds, have_ses, have_ds = _keyed(want_ses, want_all, have_ses, have_all)
    orphans = want_all.join(want_ses.select(pl.col("id").alias("eid")), on="eid", how="anti")
    # Paths are spelled out for the rows reported (and read) only.
    both = want_ds.join(
        have_ds.select("key", "session", pl.col("file_size").alias("disk_size")),
        on="key",
        how="inner",
    )
    differences = [
        *_records(
            want_ds.join(have_ds, on="key", how="anti")
            .filter(pl.col("exists"))
            .with_columns(_WANT_PATH),
            "missing_file",
            "file_size",
            None,
        ),
        *_records(
            both.filter(
                pl.col("exists") & (pl.col("file_size") != pl.col("disk_size"))
            ).with_columns(_WANT_PATH),
            "size_mismatch",
            "file_size",
            "disk_size",
        ),
        *_records(
            both.filter(~pl.col("exists")).with_columns(_WANT_PATH),
            "exists_mismatch",
            "exists",
            "disk_size",
        ),
        *_records(
            have_ds.join(want_ds, on="key", how="anti").select(
                _DISK_PATH.alias("path"), "file_size"
            ),
            "extra_file",
            None,
            "file_size",
        ),
        *_records(
            want_ses.join(have_ses, on="code", how="anti").rename({"folder": "path"}),
            "missing_session",
            None,
            None,
        ),
        *_records(
            have_ses.join(want_ses, on="code", how="anti").rename({"folder": "path"}),
            "extra_session",
            None,
            None,
        ),
        *_records(
            orphans.with_columns(pl.concat_str(["eid", pl.lit("/"), "rel_path"]).alias("path")),
            "orphan_dataset",
            "eid",
            None,
        ),
    ]
    if check_defaults:
        differences += _records(
            want_ds.filter(pl.col(DEFAULT_COLUMN).ne_missing(pl.col("rule_default"))).with_columns(
                _WANT_PATH
            ),
            "default_revision_mismatch",
            DEFAULT_COLUMN,
            "rule_default",
        )
    checked = 0
    if algorithms:
        to_read = both.filter(
            pl.col("exists")
            & (pl.col("file_size") == pl.col("disk_size"))
            & pl.any_horizontal([pl.col(a).is_not_null() for a in algorithms])
        ).with_columns(_WANT_PATH, _DISK_PATH)
        checked = to_read.height
        differences += _check_digests(
            str(root), to_read, algorithms, jobs, progress, follow_symlinks
        )
    return VerifyReport(
        root=root,
        tables_dir=tables,
        sessions=ses_table.num_rows,
        datasets=ds_table.num_rows,
        digests_checked=checked,
        algorithms=algorithms,
        seconds=time.perf_counter() - start,
        differences=sorted(differences, key=lambda d: (d.path, d.kind)),
        skipped=sorted([*disk.skipped, *walked.skipped]),
    )


def _check_digests(
    root: str,
    files: pl.DataFrame,
    algorithms: tuple[str, ...],
    n_jobs: int,
    progress: bool,
    follow_symlinks: bool,
) -> list[Difference]:
    """Read ``files`` (``disk``, ``path``, ``disk_size``, a column per digest) and compare;
    links to files outside ``root`` only with ``follow_symlinks``, as ``index`` reads them."""
    digests = digest_files(
        root,
        files["disk"].to_list(),
        files["disk_size"].to_numpy(),
        algorithms,
        n_jobs,
        progress,
        follow_symlinks=follow_symlinks,
    )
    found: list[Difference] = []
    why = {s.path: s.message for s in digests.skipped}
    paths = files["path"].to_list()
    for i, disk_path in enumerate(files["disk"].to_list()):
        if digests.vanished[i]:
            found.append(Difference(paths[i], "missing_file", int(files["file_size"][i]), None))
            continue
        if any(digests.columns[a][i] is None for a in algorithms):
            reason = why.get(disk_path, "could not be read")
            found.append(Difference(paths[i], "unreadable", "a readable file", reason))
            continue
        for algorithm in algorithms:
            expected, got = files[algorithm][i], digests.columns[algorithm][i]
            if expected is not None and got != expected:
                found.append(Difference(paths[i], f"{algorithm}_mismatch", expected, got))
    return found
