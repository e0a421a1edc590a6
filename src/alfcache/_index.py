"""One indexing run: check the arguments, scan in parallel, assemble, write.

This module wires the pipeline together; each step lives in its own module:
``_scan`` (rows are born), ``_assemble`` (rows are merged), ``_store`` (tables are written).
"""

from __future__ import annotations

import functools
import itertools
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alfcache._exceptions import BadArgument, BadRoot, RootNotReadable, worker_died
from alfcache._hash import Hashing, resolve_algorithms
from alfcache._lock import DEFAULT_TIMEOUT, check_timeout, out_dir_lock
from alfcache._progress import Progress
from alfcache._scan import (
    ScanResult,
    Shard,
    Skip,
    ignore_interrupts,
    plan_links,
    plan_shards,
    scan_shards,
    sigint_deferred,
)
from alfcache._sharding import METADATA_KEY as SHARD_KEY
from alfcache._sharding import ArrayShard, check_shard
from alfcache._store import one_metadata, prepare_out_dir, provenance, write_tables

if TYPE_CHECKING:
    from joblib.externals.loky import ProcessPoolExecutor

    from alfcache._assemble import Tables
    from alfcache._update import Changes

SHARDS_PER_JOB = 8
"""Deep shards planned per worker: enough that one large subtree does not idle the others."""

POLL_SECONDS = 0.25
"""How long the main process waits for a worker before it looks at signals (Ctrl-C) again."""


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
    shards: int
    seconds: float
    ignored: int
    skipped: list[Skip] = field(default_factory=list)
    listed: dict[str, int] = field(default_factory=dict)
    """Folders the walk listed, by where: ``"main"`` (this process) and ``"workers"``."""
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
            "shards": self.shards,
            "seconds": round(self.seconds, 3),
            "ignored_non_alf_files": self.ignored,
            "listed": dict(self.listed),
            "skipped": [s._asdict() for s in self.skipped],
            "hashing": asdict(self.hashing) if self.hashing else None,
            "update": asdict(self.changes) if self.changes else None,
            "shard": str(self.shard) if self.shard else None,
        }


def available_cores() -> int:
    """Cores this process may run on (respects SLURM and taskset CPU masks)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Turn ``n_jobs`` (None or -1: all cores; a positive count) into a worker count."""
    if n_jobs is None or n_jobs == -1:
        return available_cores()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise BadArgument(
            f"n_jobs={n_jobs!r} is not a worker count; use a positive integer, or -1 for all cores"
        )
    return n_jobs


def resolve_root(root_dir: str | os.PathLike[str]) -> Path:
    root = Path(root_dir).expanduser()
    if not root.exists():
        raise BadRoot(f"root folder {root} does not exist; pass the folder that holds the data")
    if not root.is_dir():
        raise BadRoot(f"root {root} is a file, not a folder; pass the folder that holds the data")
    # Checked up front: a root the workers cannot list would be written as empty tables over
    # the previous ones.
    if not os.access(root, os.R_OK | os.X_OK):
        raise RootNotReadable(
            f"cannot read root folder {root}: permission denied; run as a user who can read it"
        )
    return root.resolve()


def _tasks(shards: Sequence[Shard]) -> list[list[Shard]]:
    """One task per deep shard; the planner's flat shards are cheap and travel together."""
    deep = [[s] for s in shards if s.deep]
    flat = [s for s in shards if not s.deep]
    return [*deep, flat] if flat else deep


class _Scan:
    """The walk of one run: the planned shards, then rounds of links to folders to follow.

    Creating it hands the first tasks to the workers, so they walk while the caller goes on
    (it imports Polars meanwhile); iterating yields results as they finish. After each round
    the links the workers met go through :func:`plan_links`, and the chosen ones are walked in
    the next round. :meth:`abort` must be called when the caller gives up (an error, Ctrl-C):
    the workers are killed instead of walking on after the process has decided to exit.
    """

    def __init__(
        self,
        root: str,
        shards: Sequence[Shard],
        n_jobs: int,
        follow_symlinks: bool,
        array_shard: ArrayShard | None,
    ) -> None:
        self.root = root
        self.n_jobs = n_jobs
        self.follow_symlinks = follow_symlinks
        self.array_shard = array_shard
        self.skipped: list[Skip] = []
        """Links to folders not followed (``symlink_revisit``)."""
        self.listed = {"main": 0, "workers": 0}
        """Folders listed so far, by where they were listed (see IndexReport.listed)."""
        self._indexed = {root: "the indexed folder"}
        self._executor: ProcessPoolExecutor | None = None
        try:
            self._pending = self._submit(_tasks(shards))
        except BaseException:
            self.abort()  # a Ctrl-C held back while the pool started comes here
            raise

    def _submit(self, tasks: list[list[Shard]]) -> Iterable[tuple[str, ScanResult]]:
        """Start ``tasks``: in this process, lazily, with one worker; else in the loky pool.

        Each result comes with where it was walked: ``"main"`` or ``"workers"``.
        """
        n_jobs = min(self.n_jobs, len(tasks))
        # Plain arguments, as workers get them; the array shard prunes the walk itself.
        options = {"follow_symlinks": self.follow_symlinks, "array_shard": self.array_shard}
        if n_jobs <= 1:
            return (("main", scan_shards(self.root, task, **options)) for task in tasks)
        # Imported here: a one-worker run does without joblib and its start-up cost.
        from joblib.externals.loky import get_reusable_executor

        walk_here = functools.partial(scan_shards, self.root, **options)
        with sigint_deferred():  # the workers start with the first tasks
            executor = get_reusable_executor(max_workers=n_jobs, initializer=ignore_interrupts)
            self._executor = executor
            submit = functools.partial(_submit_whole, executor, scan_shards, self.root, **options)
            return _Window(submit, executor.queue_size, tasks, walk_here)

    def __iter__(self) -> Iterator[ScanResult]:
        while True:
            links: list[str] = []
            for where, result in self._pending:
                links += result.links
                self.listed[where] += result.listed
                yield result
            shards, skipped = plan_links(self.root, links, self._indexed)
            self.skipped += skipped
            if not shards:
                return
            self._pending = self._submit(_tasks(shards))

    def abort(self) -> None:
        """Kill the workers and drop the tasks not started (nothing to do with one worker)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, kill_workers=True)


def _submit_whole(
    executor: ProcessPoolExecutor, fn: Callable[..., ScanResult], *args: object, **kwargs: object
) -> Future[ScanResult]:
    """``executor.submit``, never cut short by a Ctrl-C (see :func:`sigint_deferred`)."""
    with sigint_deferred():
        return executor.submit(fn, *args, **kwargs)


class _Window:
    """Tasks in the loky pool: the first ``size`` submitted now, the others as these finish.

    ``size`` is loky's call-queue size, so a submitted task is always running or in that queue
    and never waits in loky's queue of work ids, which its ``shutdown(kill_workers=True)`` does
    not drain: its manager thread would die with a KeyError traceback on Ctrl-C.

    While no worker has a result (they take a second or more to start here), the main process
    walks the next task itself with ``walk_here`` instead of waiting.
    """

    def __init__(
        self,
        submit: Callable[[list[Shard]], Future[ScanResult]],
        size: int,
        tasks: list[list[Shard]],
        walk_here: Callable[[list[Shard]], ScanResult],
    ) -> None:
        self._submit = submit
        self._walk_here = walk_here
        self._todo = iter(tasks)
        self._running: set[Future[ScanResult]] = {
            self._submit(task) for task in itertools.islice(self._todo, size)
        }

    def __iter__(self) -> Iterator[tuple[str, ScanResult]]:
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        try:
            while self._running:
                # Timed: an untimed wait blocks the main thread in a lock that a Ctrl-C handled
                # by one of loky's threads never releases, so KeyboardInterrupt never comes.
                done, self._running = wait(
                    self._running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED
                )
                self._running.update(map(self._submit, itertools.islice(self._todo, len(done))))
                for future in done:
                    yield "workers", future.result()
                if not done and (task := next(self._todo, None)) is not None:
                    yield "main", self._walk_here(task)
        except TerminatedWorkerError as exc:
            raise worker_died(exc, "scan", "folder") from exc


@dataclass
class Walked:
    """The assembled tables of one walk, and what the walk left out of them."""

    tables: Tables
    shards: int
    ignored: int
    skipped: list[Skip]
    """Entries left out that ``tables.skipped`` does not hold (links to folders not followed)."""
    listed: dict[str, int]
    """Folders listed, by where: ``"main"`` and ``"workers"`` (see IndexReport.listed)."""


class RunningWalk:
    """A walk that has started: workers walk while the caller does other work.

    :func:`start_walk` creates it; :meth:`finish` waits for the rows, shows progress and
    assembles them. This is the one entry point to the walk for every verb that needs the
    tree (``index``, ``verify``), so they share its speed and its fault handling.
    """

    def __init__(
        self,
        root: Path,
        n_jobs: int,
        follow_symlinks: bool,
        array_shard: ArrayShard | None = None,
    ) -> None:
        self._shards = plan_shards(str(root), n_jobs, per_job=SHARDS_PER_JOB)
        self._scan = _Scan(str(root), self._shards, n_jobs, follow_symlinks, array_shard)

    def abort(self) -> None:
        """Kill the workers; for a caller that gives up (Ctrl-C) before :meth:`finish`."""
        self._scan.abort()

    def finish(self, *, hash_ids: bool, lab: str | None, progress: bool) -> Walked:
        from alfcache._assemble import assemble

        bar = Progress(enabled=progress)
        results = []
        try:
            for result in self._scan:
                results.append(result)
                bar.update(result.sessions.num_rows, result.datasets.num_rows)
        except BaseException:
            self._scan.abort()  # Ctrl-C or a failure: no worker may walk on, or outlive us
            raise
        finally:
            bar.close()
        tables = assemble(results, hash_ids=hash_ids, lab=lab)
        return Walked(
            tables=tables,
            shards=len(self._shards),
            ignored=sum(r.ignored for r in results),
            skipped=self._scan.skipped,
            listed=dict(self._scan.listed),
        )


def start_walk(
    root: Path, n_jobs: int, follow_symlinks: bool, *, array_shard: ArrayShard | None = None
) -> RunningWalk:
    """Start walking ``root`` (resolved, readable) with ``n_jobs`` workers; see RunningWalk.

    With ``array_shard``, only the sessions of that shard are walked (``--shard K/N``).
    """
    walk = RunningWalk(root, n_jobs, follow_symlinks, array_shard)
    try:
        import alfcache._assemble  # noqa: F401  Polars loads while the workers walk
    except BaseException:
        walk.abort()  # Ctrl-C while Polars loads: the workers must not outlive us
        raise
    return walk


def index(
    root_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    hash_ids: bool = True,
    hash_files: bool = False,
    hash_algorithm: str | None = None,
    lab: str | None = None,
    n_jobs: int | None = None,
    follow_symlinks: bool = False,
    progress: bool = False,
    update: bool = False,
    keep_missing: bool = False,
    lock_timeout: float = DEFAULT_TIMEOUT,
    shard: tuple[int, int] | None = None,
) -> IndexReport:
    """Index ``root_dir`` and write the cache tables; see :func:`alfcache.make_parquet_db`.

    Returns
    -------
    IndexReport
        Counts, timings, the written paths and the skipped entries.
    """
    start = time.perf_counter()
    root = resolve_root(root_dir)
    jobs = resolve_n_jobs(n_jobs)
    if lab is not None and not isinstance(lab, str):
        raise BadArgument(f"lab={lab!r} is not a lab name; pass a string")
    algorithms = resolve_algorithms(hash_files, hash_algorithm)
    if keep_missing and not update:
        raise BadArgument("keep_missing=True needs update=True: only an update sees what vanished")
    check_timeout(lock_timeout)
    array_shard = check_shard(shard)
    out = prepare_out_dir(Path(out_dir).expanduser() if out_dir is not None else root)
    if update and array_shard:
        from alfcache._merge import check_update_shard

        check_update_shard(out, array_shard, str(root))

    walk = start_walk(root, jobs, follow_symlinks, array_shard=array_shard)
    previous = None
    try:
        if update or algorithms:
            from alfcache._update import read_previous, refresh

            if update:
                with out_dir_lock(out, lock_timeout):  # not a pair half-renamed by another run
                    previous = read_previous(out)
            if update and previous is None:
                message = f"no tables in {out} to update; indexing every file"
                warnings.warn(message, RuntimeWarning, stacklevel=3)
    except BaseException:
        walk.abort()  # an error or Ctrl-C here must not leave the workers walking
        raise

    walked = walk.finish(hash_ids=hash_ids, lab=lab, progress=progress)
    tables = walked.tables
    hashing = changes = None
    if update or algorithms:
        tables, hashing, changes = refresh(
            str(root),
            tables,
            previous,
            algorithms,
            hash_ids=hash_ids,
            keep_missing=keep_missing,
            out_dir=out,
            n_jobs=jobs,
            progress=progress,
        )
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
        from alfcache._merge import shard_metadata

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
        from alfcache._checkpoint import remove_checkpoint

        remove_checkpoint(out)  # its digests are in the tables now
    return IndexReport(
        root=root,
        sessions_table=fn_ses,
        datasets_table=fn_dsets,
        sessions=tables.sessions.num_rows,
        datasets=tables.datasets.num_rows,
        bytes=tables.bytes,
        n_jobs=jobs,
        shards=walked.shards,
        seconds=time.perf_counter() - start,
        ignored=walked.ignored,
        # sorted, so that the report does not depend on which worker finished first
        skipped=sorted([*tables.skipped, *walked.skipped]),
        listed=walked.listed,
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
    follow_symlinks: bool = False,
    progress: bool = False,
    update: bool = False,
    keep_missing: bool = False,
    lock_timeout: float = DEFAULT_TIMEOUT,
    shard: tuple[int, int] | None = None,
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
        Worker processes; None or -1 for all cores, 1 to scan in this process.
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
        :mod:`alfcache._lock`); then ``OutDirLocked`` is raised.
    shard : (int, int), optional
        ``(k, n)``: index only shard ``k`` of ``n`` (``0 <= k < n``), for one task of an array
        job; the partial tables record it, and ``alfcache merge`` joins all ``n`` of them into
        the tables of one full run (see :mod:`alfcache._sharding`).

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
        ``out_dir`` is a file or cannot be written.
    BadArgument
        ``n_jobs``, ``lab`` or ``hash_algorithm`` is not usable, ``keep_missing`` without
        ``update``, or the tables to update cannot be read or use the other kind of id.
    LabConflict
        ``lab`` differs from the lab folders on disk.
    ScanFailed, WriteFailed
        The run failed; the previous tables are untouched.
    OutDirLocked
        Another run kept writing into ``out_dir`` for ``lock_timeout`` seconds.
    """
    report = index(
        root_dir,
        out_dir,
        hash_ids=hash_ids,
        hash_files=hash_files,
        hash_algorithm=hash_algorithm,
        lab=lab,
        n_jobs=n_jobs,
        follow_symlinks=follow_symlinks,
        progress=progress,
        update=update,
        keep_missing=keep_missing,
        lock_timeout=lock_timeout,
        shard=shard,
    )
    if report.skipped:
        shown = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:5])
        more = f" (and {len(report.skipped) - 5} more)" if len(report.skipped) > 5 else ""
        warnings.warn(
            f"{len(report.skipped)} entries skipped: {shown}{more}", RuntimeWarning, stacklevel=2
        )
    return report.sessions_table, report.datasets_table
