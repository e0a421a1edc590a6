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

from alfcache._exceptions import (
    BadArgument,
    BadRoot,
    MissingRoot,
    RootNotReadable,
    worker_died,
)
from alfcache._hash import Hashing, resolve_algorithms
from alfcache._progress import Progress
from alfcache._scan import (
    ScanResult,
    Shard,
    Skip,
    ignore_interrupts,
    plan_links,
    plan_shards,
    scan_shards,
)
from alfcache._store import one_metadata, prepare_out_dir, provenance, write_tables

if TYPE_CHECKING:
    from joblib.externals.loky import ProcessPoolExecutor

    from alfcache._assemble import Tables
    from alfcache._update import Changes

SHARDS_PER_JOB = 8
"""Deep shards planned per worker: enough that one large subtree does not idle the others."""

MAX_JOBS_PER_CORE = 4
"""More workers than this per core only add start-up time and memory: refused."""

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
    """Entries not indexed (a folder that cannot be listed, a clash, a link not followed)."""
    notices: list[Skip] = field(default_factory=list)
    """Entries indexed but worth a look (an empty file, a nested session, a session ONE-api
    will look for in another folder: ``not_loadable``)."""
    loadability: str = ""
    """How many sessions ONE-api cannot load and what to do; '' when it can load them all."""
    hashing: Hashing | None = None
    """What reading the files did; None when nothing was hashed or updated."""
    changes: Changes | None = None
    """New, changed, unchanged and vanished files; None when not an update."""

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
            "skipped": [s._asdict() for s in self.skipped],
            "notices": [s._asdict() for s in self.notices],
            "loadability": self.loadability,
            "hashing": asdict(self.hashing) if self.hashing else None,
            "update": asdict(self.changes) if self.changes else None,
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
    cap = MAX_JOBS_PER_CORE * available_cores()
    if n_jobs > cap:
        raise BadArgument(
            f"n_jobs={n_jobs} workers on {available_cores()} cores: use at most {cap} "
            f"({MAX_JOBS_PER_CORE} per core), or -1 for all cores"
        )
    return n_jobs


def resolve_root(root_dir: str | os.PathLike[str]) -> Path:
    root = Path(root_dir).expanduser()
    if not root.exists():
        raise MissingRoot(
            f"root folder {root} does not exist; pass the folder that holds the data"
        )
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
    ) -> None:
        self.root = root
        self.n_jobs = n_jobs
        self.follow_symlinks = follow_symlinks
        self.skipped: list[Skip] = []
        """Links to folders not followed (``symlink_revisit``)."""
        self._indexed = {root: "the indexed folder"}
        self._executor: ProcessPoolExecutor | None = None
        self._pending = self._submit(_tasks(shards))

    def _submit(self, tasks: list[list[Shard]]) -> Iterable[ScanResult]:
        """Start ``tasks``: in this process, lazily, with one worker; else in the loky pool."""
        n_jobs = min(self.n_jobs, len(tasks))
        if n_jobs <= 1:
            return (scan_shards(self.root, task, self.follow_symlinks) for task in tasks)
        # Imported here: a one-worker run does without joblib and its start-up cost.
        from joblib.externals.loky import get_reusable_executor

        executor = get_reusable_executor(max_workers=n_jobs, initializer=ignore_interrupts)
        self._executor = executor
        submit = functools.partial(
            executor.submit, scan_shards, self.root, follow_symlinks=self.follow_symlinks
        )
        walk_here = functools.partial(scan_shards, self.root, follow_symlinks=self.follow_symlinks)
        return _Window(submit, executor.queue_size, tasks, walk_here)

    def __iter__(self) -> Iterator[ScanResult]:
        while True:
            links: list[str] = []
            for result in self._pending:
                links += result.links
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

    def __iter__(self) -> Iterator[ScanResult]:
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
                    yield future.result()
                if not done and (task := next(self._todo, None)) is not None:
                    yield self._walk_here(task)
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


class RunningWalk:
    """A walk that has started: workers walk while the caller does other work.

    :func:`start_walk` creates it; :meth:`finish` waits for the rows, shows progress and
    assembles them. This is the one entry point to the walk for every verb that needs the
    tree (``index``, ``verify``), so they share its speed and its fault handling.
    """

    def __init__(self, root: Path, n_jobs: int, follow_symlinks: bool) -> None:
        self._root = root
        self._shards = plan_shards(str(root), n_jobs, per_job=SHARDS_PER_JOB)
        self._scan = _Scan(str(root), self._shards, n_jobs, follow_symlinks)

    def finish(
        self, *, hash_ids: bool, lab: str | None, progress: bool, cache_dir: Path | None = None
    ) -> Walked:
        """Wait for the walk and assemble the tables.

        ``cache_dir`` is the folder ONE-api will be given: sessions it would look for in other
        folders than where they were found are reported (``not_loadable``).
        """
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
        tables = assemble(
            results,
            hash_ids=hash_ids,
            lab=lab,
            root=str(self._root),
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )
        return Walked(
            tables=tables,
            shards=len(self._shards),
            ignored=sum(r.ignored for r in results),
            skipped=self._scan.skipped,
        )


def start_walk(root: Path, n_jobs: int, follow_symlinks: bool) -> RunningWalk:
    """Start walking ``root`` (resolved, readable) with ``n_jobs`` workers; see RunningWalk."""
    walk = RunningWalk(root, n_jobs, follow_symlinks)
    import alfcache._assemble  # noqa: F401  Polars loads while the workers walk

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
    if hash_files and hash_algorithm == "xxh3":
        raise BadArgument(
            "hash_files=True asks for the MD5 that ONE-api checks, but hash_algorithm='xxh3' "
            "computes none; pass hash_algorithm='both', or leave hash_files False"
        )
    algorithms = resolve_algorithms(hash_files, hash_algorithm)
    if keep_missing and not update:
        raise BadArgument("keep_missing=True needs update=True: only an update sees what vanished")
    out = prepare_out_dir(Path(out_dir).expanduser() if out_dir is not None else root)

    walk = start_walk(root, jobs, follow_symlinks)
    previous = None
    if update or algorithms:
        from alfcache._update import check_origin, read_previous, refresh

        previous = read_previous(out) if update else None  # the old tables too
        if previous is not None:
            check_origin(previous, root, out)
        if update and previous is None:
            message = f"no tables in {out} to update; indexing every file"
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # ONE-api is given the output folder as cache_dir when it holds the data (it is the root or
    # above it); tables written elsewhere are judged as if ONE-api were given the root.
    cache_dir = out.resolve() if out.resolve() in (root, *root.parents) else root
    walked = walk.finish(hash_ids=hash_ids, lab=lab, progress=progress, cache_dir=cache_dir)
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
            left_out=[*tables.skipped, *walked.skipped],
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
    fn_ses, fn_dsets = write_tables(
        tables.sessions, tables.datasets, out, one_metadata(str(root)), record
    )
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
        notices=sorted(tables.notices),
        loadability=walked.tables.loadability,
        hashing=hashing,
        changes=changes,
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
        f"{'; '.join(parts)}.{loadability} All are listed in {where}, "
        "or by alfcache index --json"
    )
