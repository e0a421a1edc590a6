"""One indexing run: check the arguments, scan in parallel, assemble, write.

This module wires the pipeline together; each step lives in its own module:
``_scan`` (rows are born), ``_assemble`` (rows are merged), ``_store`` (tables are written).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alfcache._alf.sharding import METADATA_KEY as SHARD_KEY
from alfcache._alf.sharding import ArrayShard, check_shard
from alfcache._digest.read import resolve_algorithms
from alfcache._digest.schedule import Hashing
from alfcache._exceptions import BadArgument
from alfcache._options import resolve_n_jobs, resolve_root
from alfcache._paths import shown
from alfcache._records import Skip
from alfcache._tables.lock import DEFAULT_TIMEOUT, check_timeout, out_dir_lock
from alfcache._tables.store import (
    check_space,
    one_metadata,
    prepare_out_dir,
    provenance,
    write_tables,
)
from alfcache._walk.dask import DaskWalk, check_backend
from alfcache._walk.engine import DepthChoice
from alfcache._walk.local import RunningWalk, start_walk
from alfcache._walk.scan import Rules

if TYPE_CHECKING:
    from alfcache._maintain.update import Changes


@dataclass
class IndexReport:
    """What an indexing run did, for the command line's summary and ``--json``."""

    root: Path
    sessions_table: Path
    datasets_table: Path
    sessions: int
    datasets: int
    bytes: int
    n_jobs: int
    tasks: int
    """Folder tasks the walk handed out: the root, folders shared between processes, links
    followed (with ``backend='dask'``, its Dask tasks). Not the array shard: ``shard``."""
    seconds: float
    ignored: int
    skipped: list[Skip] = field(default_factory=list)
    """Entries not indexed (a folder that cannot be listed, a clash, a link not followed)."""
    notices: list[Skip] = field(default_factory=list)
    """Entries indexed but worth a look (an empty file, a nested session, a session ONE-api
    will look for in another folder: ``not_loadable``)."""
    loadability: str = ""
    """How many sessions ONE-api cannot load and what to do; '' when it can load them all."""
    listed: dict[str, int] = field(default_factory=dict)
    """Folders the walk listed, by where: ``"main"`` (this process) and ``"workers"``."""
    threads: int = 0
    """Listing threads that listed at least one folder, summed over the walk's processes."""
    io_depth: list[DepthChoice] = field(default_factory=list)
    """Per process of the walk (the main process first): the most listings it allowed in
    flight and why its depth ended where it did; empty for a Dask walk."""
    hashing: Hashing | None = None
    """What reading the files did; None when nothing was hashed or updated."""
    changes: Changes | None = None
    """New, changed, unchanged and vanished files; None when not an update."""
    shard: ArrayShard | None = None
    """The array shard indexed (``--shard K/N``); None for the whole tree."""

    def as_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "sessions_table": str(self.sessions_table),
            "datasets_table": str(self.datasets_table),
            "sessions": self.sessions,
            "datasets": self.datasets,
            "bytes": self.bytes,
            "n_jobs": self.n_jobs,
            "tasks": self.tasks,
            "seconds": round(self.seconds, 3),
            "ignored_non_alf_files": self.ignored,
            "listed": dict(self.listed),
            "threads": self.threads,
            "io_depth": {
                "reached": sum(d.reached for d in self.io_depth),
                "processes": [asdict(d) for d in self.io_depth],
            },
            "skipped": [s._asdict() for s in self.skipped],
            "notices": [s._asdict() for s in self.notices],
            "loadability": self.loadability,
            "hashing": asdict(self.hashing) if self.hashing else None,
            "update": asdict(self.changes) if self.changes else None,
            "shard": str(self.shard) if self.shard else None,
        }


def index(
    root_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    hash_ids: bool = True,
    hash_files: bool = False,
    hash_algorithm: str | None = None,
    lab: str | None = None,
    n_jobs: int | None = None,
    io_depth: int | None = None,
    follow_symlinks: bool = False,
    progress: bool = False,
    update: bool = False,
    keep_missing: bool = False,
    lock_timeout: float = DEFAULT_TIMEOUT,
    shard: tuple[int, int] | None = None,
    backend: str = "processes",
    scheduler: object = None,
    only: Iterable[str | os.PathLike[str]] | None = None,
    any_origin: bool = False,
) -> IndexReport:
    """Index ``root_dir`` and write the cache tables; see :func:`alfcache.make_parquet_db`.

    ``only`` (with ``update``): walk only these folders or files, absolute or relative to
    ``root_dir``, and carry every other row of the previous tables over untouched (see
    :mod:`alfcache._maintain.only`).

    ``any_origin`` (with ``update``): update tables recorded as made from another folder than
    ``root_dir`` (the tree was moved); otherwise they are refused.

    Returns
    -------
    IndexReport
        Counts, timings, the written paths and the skipped entries.
    """
    start = time.perf_counter()
    root = resolve_root(root_dir)
    jobs = resolve_n_jobs(n_jobs)
    if io_depth is not None and (
        isinstance(io_depth, bool) or not isinstance(io_depth, int) or io_depth < 1
    ):
        raise BadArgument(
            f"io_depth={io_depth!r} is not a number of listings; use a positive integer, or "
            "None to adapt it to the storage"
        )
    if lab is not None and not isinstance(lab, str):
        raise BadArgument(f"lab={lab!r} is not a lab name; pass a string")
    if hash_files and hash_algorithm == "xxh3":
        raise BadArgument(
            "hash_files=True asks for the MD5 that ONE-api checks, but hash_algorithm='xxh3' "
            "computes none; pass hash_algorithm='both', or leave hash_files False"
        )
    algorithms = resolve_algorithms(hash_files, hash_algorithm)
    if keep_missing and not update:
        raise BadArgument("keep_missing=True needs update=True: only an update sees what vanished")
    if any_origin and not update:
        raise BadArgument(
            "any_origin=True needs update=True: only an update reads the tables of a previous run"
        )
    if only is not None and not update:
        raise BadArgument("only=[...] needs update=True: it updates the tables of a previous run")
    if only is not None and backend == "dask":
        raise BadArgument("only=[...] walks in this process; leave backend='processes'")
    check_timeout(lock_timeout)
    array_shard = check_shard(shard)
    check_backend(backend, scheduler)
    rules = Rules(
        str(root), follow_symlinks=follow_symlinks, array_shard=array_shard, hash_ids=hash_ids
    )
    out = prepare_out_dir(Path(out_dir).expanduser() if out_dir is not None else root)
    if update and array_shard:
        from alfcache._maintain.merge import check_update_shard

        check_update_shard(out, array_shard, None if any_origin else str(root))
    targets = None
    if only is not None:
        from alfcache._maintain.only import OnlyWalk, plan_only

        paths = [only] if isinstance(only, (str, os.PathLike)) else only
        targets = plan_only(rules, paths, lab)
        if targets.everything:  # the root itself was given: a full update, on every worker
            targets = None

    walk: RunningWalk | DaskWalk | OnlyWalk
    if targets is not None:
        walk = OnlyWalk(rules, targets)
    elif backend == "dask":
        walk = DaskWalk(rules, jobs, io_depth, scheduler)
    else:
        walk = start_walk(rules, jobs, io_depth)
    previous = None
    try:
        # Imported while the walk runs, as Polars is.
        if update or algorithms:
            from alfcache._digest.tables import fresh_plan, read_digests
        if update:
            from alfcache._maintain.update import check_origin, read_previous, reconcile

            with out_dir_lock(out, lock_timeout):  # not a pair half-renamed by another run
                previous = read_previous(out)
            if previous is not None:
                if not any_origin:
                    check_origin(previous, root, out)
            elif only is not None:
                raise BadArgument(
                    f"no tables in {shown(out)} to update by path: --only carries the other "
                    "rows over from them; index without --only first"
                )
            else:
                message = f"no tables in {shown(out)} to update; indexing every file"
                warnings.warn(message, RuntimeWarning, stacklevel=3)
    except BaseException:
        walk.abort()  # bad previous tables, another folder's, or Ctrl-C: stop the walk
        raise
    # ONE-api is given the output folder as cache_dir when it holds the data (it is the root or
    # above it); tables written elsewhere are judged as if ONE-api were given the root.
    cache_dir = out.resolve() if out.resolve() in (root, *root.parents) else root
    hashing = changes = None
    try:
        tables, walked = walk.finish(lab=lab, progress=progress, cache_dir=cache_dir)
        rows = tables.sessions.num_rows + tables.datasets.num_rows
        check_space(out, rows, len(algorithms) * tables.datasets.num_rows)
        outside = None
        if targets is not None and previous is not None:
            from alfcache._maintain.only import split_previous

            previous, outside = split_previous(previous, tables, targets, root, lab)
        if update or algorithms:
            # The cluster that walked reads the files too: its nodes, not this one, are the
            # ones near the storage.
            readers = walk.readers() if isinstance(walk, DaskWalk) else None
            if update:
                plan, changes = reconcile(
                    tables,
                    previous,
                    algorithms,
                    hash_ids=hash_ids,
                    keep_missing=keep_missing,
                    out_dir=out,
                    root=str(root),
                    left_out=[*tables.skipped, *walked.skipped],
                    outside=outside,
                )
                changes = changes if previous is not None else None
            else:
                plan = fresh_plan(tables, algorithms)
            # Every row is in the plan now. At a million files the walk's tables and the
            # previous ones hold 200 MiB that reading the files and finishing the tables do
            # not need: let them go (the plan is the only reference left).
            del tables, previous, outside
            tables, hashing = read_digests(
                str(root),
                plan,
                out_dir=out,
                n_jobs=jobs,
                progress=progress,
                readers=readers,
                follow_symlinks=follow_symlinks,
            )
    finally:
        walk.abort()  # a Dask cluster started for the run, kept for reading, closes here
    if tables.sessions.num_rows == 0:
        warnings.warn("No sessions found", RuntimeWarning, stacklevel=3)
    elif tables.datasets.num_rows == 0:
        warnings.warn("No datasets found", RuntimeWarning, stacklevel=3)
    record = provenance(
        "uuid3" if hash_ids else "path",
        hashing.algorithms if hashing else (),
        {
            "hash_ids": hash_ids,
            "hash_algorithm": hash_algorithm,
            "hash_files": hash_files,
            "lab": lab,
            "follow_symlinks": follow_symlinks,
            "update": update,
            "keep_missing": keep_missing,
        },
    )
    extra: dict[str, object] = {}
    if array_shard:
        from alfcache._maintain.merge import shard_metadata

        # Every option that shapes the rows: merge accepts only parts that agree on them.
        options = {
            "hash_ids": record["id_kind"],
            "lab": lab,
            "hash": record["digests"],
            "follow_symlinks": follow_symlinks,
            "keep_missing": keep_missing,
        }
        extra[SHARD_KEY] = shard_metadata(array_shard, str(root), options)
    meta = one_metadata(str(root))
    with out_dir_lock(out, lock_timeout):  # two runs' renames must not interleave
        fn_ses, fn_dsets = write_tables(
            tables.sessions, tables.datasets, out, meta, record, extra=extra
        )
    if hashing:
        from alfcache._digest.checkpoint import remove_checkpoint

        remove_checkpoint(out)  # its digests are in the tables now
    return IndexReport(
        root=root,
        sessions_table=fn_ses,
        datasets_table=fn_dsets,
        sessions=tables.sessions.num_rows,
        datasets=tables.datasets.num_rows,
        bytes=tables.bytes,
        n_jobs=jobs,
        tasks=walked.tasks,
        seconds=time.perf_counter() - start,
        ignored=walked.ignored,
        # sorted, so that the report does not depend on which worker finished first
        skipped=sorted([*tables.skipped, *walked.skipped]),
        listed=walked.listed,
        threads=walked.threads,
        io_depth=walked.depths,
        notices=sorted(tables.notices),
        loadability=tables.loadability,
        hashing=hashing,
        changes=changes,
        shard=array_shard,
    )


def make_parquet_db(
    root_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    hash_ids: bool = True,
    hash_files: bool = False,
    lab: str | None = None,
    *,
    hash_algorithm: str | None = None,
    n_jobs: int | None = None,
    io_depth: int | None = None,
    follow_symlinks: bool = False,
    progress: bool = False,
    update: bool = False,
    keep_missing: bool = False,
    lock_timeout: float = DEFAULT_TIMEOUT,
    shard: tuple[int, int] | None = None,
    backend: str = "processes",
    scheduler: object = None,
    only: Iterable[str | os.PathLike[str]] | None = None,
    any_origin: bool = False,
) -> tuple[Path, Path]:
    """Given a data directory, index the ALF datasets and save the generated cache tables.

    A parallel, drop-in replacement for ``one.alf.cache.make_parquet_db``.

    Parameters
    ----------
    root_dir : str, pathlib.Path
        The file directory to index.
    out_dir : str, pathlib.Path
        Optional output directory to save cache tables. If None, the files are saved into the
        root directory. Created when missing.
    hash_ids : bool
        If True, experiment and dataset ids are UUID version 3 strings derived from the session
        and dataset ALF paths under a fixed namespace (the same tree always gives the same ids).
        If False, ids are the ALF paths themselves.
    hash_files : bool
        If True, an MD5 hash is computed for each dataset and stored in the datasets table
        (``hash``, lower-case hex, as ``md5sum`` prints it).
    lab : str
        An optional lab name to associate with the data. If the folder structure contains
        'lab/Subjects', the lab name is taken from the folder name; a different lab there is an
        error.
    hash_algorithm : {'md5', 'xxh3', 'both'}, optional
        Digests to compute; giving one turns hashing on. MD5 goes into ``hash`` (ONE-api checks
        it on every load), XXH3-128 into ``xxh3_128``. Hashed tables also hold ``mtime_ns``.
    n_jobs : int, optional
        Processes that walk (the main process is one of them); None or -1 for all cores, 1 to
        walk in this process only.
    io_depth : int, optional
        The most folder listings in flight at once, over all processes (threads list folders,
        so this is independent of ``n_jobs``). None adapts it to the storage: up to 64 while
        listings wait and each doubling raises the rate (network storage), one per process
        while they keep a core busy (a warm local disk); ``IndexReport.io_depth`` says why.
    follow_symlinks : bool
        Follow symbolic links to folders (never twice into the same folder).
    progress : bool
        Show progress on stderr.
    update : bool
        Update the tables already in ``out_dir``: read only files that are new or whose size or
        modification time changed; the others keep their digests and ids. Without
        ``hash_files`` or ``hash_algorithm``, the digests of the previous tables are computed.
    keep_missing : bool
        With ``update``: keep datasets whose files vanished, with ``exists=False``, instead of
        dropping them.
    lock_timeout : float
        Seconds to wait for another run that is writing into ``out_dir`` (see
        :mod:`alfcache._tables.lock`); then ``OutDirLocked`` is raised.
    shard : (int, int), optional
        ``(k, n)``: index only shard ``k`` of ``n`` (``0 <= k < n``), for one task of an array
        job; the partial tables record it, and ``alfcache merge`` joins all ``n`` of them into
        the tables of one full run (see :mod:`alfcache._alf.sharding`).
    backend : {'processes', 'dask'}
        Who walks: this machine's processes (``n_jobs`` of them), or a Dask cluster (needs the
        ``dask`` extra; see :mod:`alfcache._walk.dask`). The same backend reads the files.
    scheduler : str or distributed.Client, optional
        With ``backend='dask'``: the scheduler's address (``'tcp://host:8786'``), ``'local'``
        for a ``LocalCluster`` of ``n_jobs`` workers (closed at the end), or a client; None
        takes the default client.
    only : iterable of str or pathlib.Path, optional
        With ``update``: walk only these folders or files (absolute, or relative to
        ``root_dir``; a session is walked whole) and carry every other row of the previous
        tables over untouched: what changed since the last run, e.g. the output of ``find
        ROOT -newer STAMP``.
    any_origin : bool
        With ``update``: update tables recorded as made from another folder than ``root_dir``
        (the tree was moved); without it they are refused.

    Returns
    -------
    pathlib.Path
        The full path of the saved sessions parquet table.
    pathlib.Path
        The full path of the saved datasets parquet table.

    Raises
    ------
    BadRoot
        ``root_dir`` does not exist or is not a folder.
    RootNotReadable
        ``root_dir`` cannot be listed by this user.
    BadOutDir, OutDirNotWritable
        ``out_dir`` is a file or cannot be written, or a link (or another file that is not a
        lock file) sits at its lock's name.
    BadArgument
        ``n_jobs``, ``lab`` or ``hash_algorithm`` is not usable, ``keep_missing`` or ``only``
        without ``update``, or the tables to update cannot be read, use the other kind of id, or
        (unless ``any_origin``) were made from another folder.
    LabConflict
        ``lab`` differs from the lab folders on disk.
    ScanFailed, WriteFailed
        The run failed; the previous tables are untouched.
    OutDirLocked
        Another run kept writing into ``out_dir`` for ``lock_timeout`` seconds.
    SchedulerUnreachable
        ``scheduler`` is an address where no Dask scheduler answers (a ``ScanFailed``).
    """
    report = index(
        root_dir,
        out_dir,
        hash_ids=hash_ids,
        hash_files=hash_files,
        hash_algorithm=hash_algorithm,
        lab=lab,
        n_jobs=n_jobs,
        io_depth=io_depth,
        follow_symlinks=follow_symlinks,
        progress=progress,
        update=update,
        keep_missing=keep_missing,
        lock_timeout=lock_timeout,
        shard=shard,
        backend=backend,
        scheduler=scheduler,
        only=only,
        any_origin=any_origin,
    )
    if message := _report_warning(report):
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return report.sessions_table, report.datasets_table


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _report_warning(report: IndexReport, shown: int = 5) -> str:
    """One line on what was skipped and what is worth a look, and where the full lists are."""
    parts, lists = [], []
    for records, what, name in (
        (report.skipped, "skipped (not indexed)", "skipped"),
        (report.notices, "indexed but worth a look", "notices"),
    ):
        if records:
            first = "; ".join(f"{s.path}: {s.reason}" for s in records[:shown])
            more = f" (and {len(records) - shown} more)" if len(records) > shown else ""
            parts.append(f"{_entries(len(records))} {what}: {first}{more}")
            lists.append(f"alfcache.index(...).{name}")
    if not parts:
        return ""
    where = " and ".join(lists)
    loadability = f" {report.loadability}." if report.loadability else ""
    return (
        f"{'; '.join(parts)}.{loadability} All are listed in {where}, or by alfcache index --json"
    )
