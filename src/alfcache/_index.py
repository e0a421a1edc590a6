"""One indexing run: check the arguments, scan in parallel, assemble, write.

This module wires the pipeline together; each step lives in its own module:
``_scan`` (rows are born), ``_assemble`` (rows are merged), ``_store`` (tables are written).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TYPE_CHECKING

from alfcache import _processes as executor
from alfcache._alf.sharding import METADATA_KEY as SHARD_KEY
from alfcache._alf.sharding import ArrayShard, check_shard
from alfcache._digest.read import Hashing, resolve_algorithms
from alfcache._exceptions import (
    BadArgument,
    BadRoot,
    MissingRoot,
    RootNotReadable,
    ScanFailed,
    workers_died,
)
from alfcache._paths import shown
from alfcache._progress import Progress
from alfcache._tables.lock import DEFAULT_TIMEOUT, check_timeout, out_dir_lock
from alfcache._tables.store import (
    check_space,
    one_metadata,
    prepare_out_dir,
    provenance,
    write_tables,
)
from alfcache._walk.dask import DaskWalk, check_backend
from alfcache._walk.engine import (
    DEFAULT_IO_DEPTH,
    POLL_SECONDS,
    Counter,
    Lister,
    Sharer,
    Tally,
    Walked,
    add,
    serve,
    tally,
    work,
)
from alfcache._walk.scan import ScanResult, Shard, Skip, Task, _Walk, plan_links

if TYPE_CHECKING:
    from alfcache._maintain.update import Changes

MAX_JOBS_PER_CORE = 4
"""More workers than this per core only add start-up time and memory: refused."""


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
    listed: dict[str, int] = field(default_factory=dict)
    """Folders the walk listed, by where: ``"main"`` (this process) and ``"workers"``."""
    threads: int = 0
    """Listing threads that listed at least one folder, summed over the walk's processes."""
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
            "threads": self.threads,
            "skipped": [s._asdict() for s in self.skipped],
            "notices": [s._asdict() for s in self.notices],
            "loadability": self.loadability,
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
            f"root folder {shown(root)} does not exist; pass the folder that holds the data"
        )
    if not root.is_dir():
        raise BadRoot(
            f"root {shown(root)} is a file, not a folder; pass the folder that holds the data"
        )
    # Checked up front: a root the workers cannot list would be written as empty tables over
    # the previous ones.
    if not os.access(root, os.R_OK | os.X_OK):
        raise RootNotReadable(
            f"cannot read root folder {shown(root)}: permission denied; run as a user who can "
            "read it"
        )
    return root.resolve()


LATE_START_SECONDS = 0.2
"""Without fork, workers cost a fresh interpreter: start them only for walks that last longer."""


class _Worker:
    """A worker process as the main process sees it: its pipe and whether it said goodbye."""

    def __init__(self, proc: BaseProcess, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.threads = 0
        self.ended = False


class RunningWalk:
    """A walk that has started: it lists folders while the caller does other work.

    :func:`start_walk` creates it; :meth:`finish` collects the rows, shows progress, follows
    links round after round and assembles. This is the one entry point to the walk for every
    verb that needs the tree (``index``, ``verify``), so they share its speed and its fault
    handling. The main process starts walking at once on its own listing threads; ``n_jobs - 1``
    worker processes take subtrees from the shared queue (see :mod:`alfcache._walk.engine`).
    They are forked at once when that is safe, else started from a fork server once the walk has
    lasted ``LATE_START_SECONDS``. :meth:`abort` kills them.
    """

    def __init__(
        self,
        root: Path,
        n_jobs: int,
        follow_symlinks: bool,
        io_depth: int | None = None,
        array_shard: ArrayShard | None = None,
    ) -> None:
        self._root = str(root)
        self._follow_symlinks = follow_symlinks
        self._array_shard = array_shard
        self._start = time.perf_counter()
        self._n_workers = n_jobs - 1
        self._cap = -(-(io_depth or DEFAULT_IO_DEPTH) // n_jobs)  # this process's share
        self._ctx = executor.context() if self._n_workers else multiprocessing.get_context()
        self._procs = executor.Processes()
        self._workers: list[_Worker] = []
        self._tasks: Queue[Task | None] = self._ctx.Queue()
        self._tasks.cancel_join_thread()  # at exit after an abort, tasks left do not matter
        self._queued: Counter = self._ctx.Value("q", 0)
        self._waiting: Counter = self._ctx.Value("q", 0)
        self._outstanding: Counter = self._ctx.Value("q", 0)
        self._found: Tally = self._ctx.Array("q", 2)
        self._sharer = Sharer(self._tasks, self._queued, self._waiting, self._outstanding)
        self._sharer.enabled = False
        self._main_results: deque[ScanResult] = deque()
        if self._n_workers and (self._ctx.get_start_method() == "fork" or LATE_START_SECONDS <= 0):
            self._start_workers()  # now: before any thread starts, before Polars loads
        self._lister = Lister(
            self._root,
            follow_symlinks,
            self._cap,
            array_shard=array_shard,
            emit=self._main_results.append,
            on_idle=lambda n: add(self._outstanding, -n),
            share=self._sharer if self._n_workers else None,
            found=self._found,
        )
        self._shards = 0
        self._walk_shards([Shard("", True)])
        self._serve: threading.Thread | None = None
        if self._n_workers:
            self._serve = threading.Thread(
                target=serve,
                args=(self._lister, self._tasks, self._queued, self._waiting),
                name="alfcache-serve",
                daemon=True,
            )
            self._serve.start()

    def _start_workers(self) -> None:
        for _ in range(self._n_workers):
            receive, send = self._ctx.Pipe(duplex=False)
            args = (
                self._root,
                self._follow_symlinks,
                self._array_shard,
                self._cap,
                self._tasks,
                self._queued,
                self._waiting,
                self._outstanding,
                send,
                self._found,
            )
            proc = self._procs.start(self._ctx, work, args)
            send.close()  # the worker holds the only write end: its death is an EOF here
            self._workers.append(_Worker(proc, receive))
        self._sharer.enabled = True

    def _walk_shards(self, shards: list[Shard]) -> None:
        """Start walking ``shards`` in this process (their own session rows are emitted here)."""
        walk = _Walk(self._root, self._follow_symlinks, self._array_shard)
        tasks = [walk.start(shard) for shard in shards]
        tally(self._found, *walk.found)
        self._main_results.append(walk.flush())
        self._shards += len(tasks)
        add(self._outstanding, len(tasks))
        self._lister.add(tasks, taken=len(tasks))

    def finish(
        self, *, hash_ids: bool, lab: str | None, progress: bool, cache_dir: Path | None = None
    ) -> Walked:
        """Wait for the walk and assemble the tables.

        ``cache_dir`` is the folder ONE-api will be given: sessions it would look for in other
        folders than where they were found are reported (``not_loadable``).
        """
        from alfcache._tables.build import assemble

        bar = Progress(enabled=progress, start=self._start)
        results: list[ScanResult] = []
        listed = {"main": 0, "workers": 0}
        links: list[str] = []
        indexed = {self._root: "the indexed folder"}
        skipped: list[Skip] = []

        def take(where: str, result: ScanResult) -> None:
            results.append(result)
            listed[where] += result.listed
            links.extend(result.links)

        try:
            while True:
                self._collect(take)
                bar.show(self._found[0], self._found[1])  # each poll: a line is due every 5 s
                if self._outstanding.value:
                    continue
                # Every folder of this round is listed and every row has arrived.
                while self._main_results:
                    take("main", self._main_results.popleft())
                shards, revisits = plan_links(self._root, links, indexed)
                links.clear()
                skipped += revisits
                if not shards:
                    break
                self._walk_shards(shards)
            self._close(take)
        except BaseException:
            self.abort()  # Ctrl-C or a failure: no worker may walk on, or outlive us
            raise
        finally:
            bar.close()
        ignored = sum(r.ignored for r in results)
        tables = assemble(
            results,
            hash_ids=hash_ids,
            lab=lab,
            root=str(self._root),
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )
        return Walked(
            tables=tables,
            shards=self._shards + self._sharer.shared,
            ignored=ignored,
            skipped=skipped,
            listed=listed,
            threads=self._lister.used + sum(w.threads for w in self._workers),
        )

    def _collect(self, take: Callable[[str, ScanResult], None]) -> None:
        """Take what arrived within ``POLL_SECONDS``; raise if a process of the walk failed."""
        while self._main_results:
            take("main", self._main_results.popleft())
        if self._lister.error is not None:
            raise self._lister.error
        if not self._workers:
            if self._n_workers and time.perf_counter() - self._start > LATE_START_SECONDS:
                self._start_workers()  # the walk proved long enough to pay for them
            self._lister.wait_idle(POLL_SECONDS)
            return
        conns = [w.conn for w in self._workers if not w.ended]
        for conn in wait(conns, timeout=POLL_SECONDS) if conns else ():
            worker = next(w for w in self._workers if w.conn is conn)
            self._receive(worker, take)
        if codes := self._procs.dead():
            raise workers_died(executor.describe_exit_codes(codes), "scan", "folder")

    def _receive(self, worker: _Worker, take: Callable[[str, ScanResult], None]) -> None:
        try:
            kind, value = worker.conn.recv()
        except (EOFError, OSError):
            # Its pipe closed before it said goodbye: it died. Reap it to learn how.
            worker.proc.join(timeout=5.0)
            code = worker.proc.exitcode
            codes = executor.describe_exit_codes([code]) if code is not None else None
            raise workers_died(codes, "scan", "folder") from None
        if kind == "rows":
            take("workers", value)
        elif kind == "idle":
            add(self._outstanding, -value)
        elif kind == "end":
            worker.threads = value
            worker.ended = True
        else:
            raise ScanFailed(
                f"a scan worker failed: {value}; no table was written. Run with --jobs 1 "
                "--debug to see where"
            )

    def _close(self, take: Callable[[str, ScanResult], None]) -> None:
        """End the workers and the main process's threads once the walk is complete."""
        for _ in range(self._n_workers + 1):
            self._tasks.put(None)
        while not all(w.ended for w in self._workers):
            self._collect(take)
        self._procs.join()
        self._lister.stop()
        if self._serve is not None:
            self._serve.join()

    def abort(self) -> None:
        """Kill the workers and stop the listing threads (after an error or Ctrl-C)."""
        self._procs.kill()
        self._lister.stop()


def start_walk(
    root: Path,
    n_jobs: int,
    follow_symlinks: bool,
    io_depth: int | None = None,
    *,
    array_shard: ArrayShard | None = None,
) -> RunningWalk:
    """Start walking ``root`` (resolved, readable) with ``n_jobs`` processes; see RunningWalk.

    ``io_depth`` is the most folder listings in flight over all processes; None adapts it to
    the storage (up to ``DEFAULT_IO_DEPTH``). With ``array_shard``, only the sessions of that
    shard are walked (``--shard K/N``).
    """
    walk = RunningWalk(root, n_jobs, follow_symlinks, io_depth, array_shard)
    try:
        import alfcache._tables.build  # noqa: F401  Polars loads while the walk runs
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
) -> IndexReport:
    """Index ``root_dir`` and write the cache tables; see :func:`alfcache.make_parquet_db`.

    ``only`` (with ``update``): walk only these folders or files, absolute or relative to
    ``root_dir``, and carry every other row of the previous tables over untouched (see
    :mod:`alfcache._maintain.only`).

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
    if only is not None and not update:
        raise BadArgument("only=[...] needs update=True: it updates the tables of a previous run")
    if only is not None and backend == "dask":
        raise BadArgument("only=[...] walks in this process; leave backend='processes'")
    check_timeout(lock_timeout)
    array_shard = check_shard(shard)
    check_backend(backend, scheduler)
    out = prepare_out_dir(Path(out_dir).expanduser() if out_dir is not None else root)
    if update and array_shard:
        from alfcache._maintain.merge import check_update_shard

        check_update_shard(out, array_shard, str(root))
    targets = None
    if only is not None:
        from alfcache._maintain.only import OnlyWalk, plan_only

        paths = [only] if isinstance(only, (str, os.PathLike)) else only
        targets = plan_only(root, paths, lab, array_shard)
        if targets.everything:  # the root itself was given: a full update, on every worker
            targets = None

    walk: RunningWalk | DaskWalk | OnlyWalk
    if targets is not None:
        walk = OnlyWalk(root, targets, follow_symlinks, array_shard)
    elif backend == "dask":
        walk = DaskWalk(root, jobs, follow_symlinks, io_depth, array_shard, scheduler)
    else:
        walk = start_walk(root, jobs, follow_symlinks, io_depth, array_shard=array_shard)
    previous = None
    try:
        if update or algorithms:
            from alfcache._maintain.update import check_origin, read_previous, refresh

            if update:
                with out_dir_lock(out, lock_timeout):  # not a pair half-renamed by another run
                    previous = read_previous(out)
            if previous is not None:
                check_origin(previous, root, out)
            if only is not None and previous is None:
                raise BadArgument(
                    f"no tables in {shown(out)} to update by path: --only carries the other "
                    "rows over from them; index without --only first"
                )
            if update and previous is None:
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
        walked = walk.finish(hash_ids=hash_ids, lab=lab, progress=progress, cache_dir=cache_dir)
        tables = walked.tables
        rows = tables.sessions.num_rows + tables.datasets.num_rows
        check_space(out, rows, len(algorithms) * tables.datasets.num_rows)
        outside = None
        if targets is not None and previous is not None:
            from alfcache._maintain.only import split_previous

            previous, outside = split_previous(previous, tables, targets, root, lab)
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
                # The cluster that walked reads the files too: its nodes, not this one, are
                # the ones near the storage.
                readers=walk.readers() if isinstance(walk, DaskWalk) else None,
                follow_symlinks=follow_symlinks,
                outside=outside,
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
        shards=walked.shards,
        seconds=time.perf_counter() - start,
        ignored=walked.ignored,
        # sorted, so that the report does not depend on which worker finished first
        skipped=sorted([*tables.skipped, *walked.skipped]),
        listed=walked.listed,
        threads=walked.threads,
        notices=sorted(tables.notices),
        loadability=walked.tables.loadability,
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
        listings mostly wait (network storage), one or two per process while they are
        CPU-bound (a warm local disk).
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
        ``n_jobs``, ``lab`` or ``hash_algorithm`` is not usable, ``keep_missing`` without
        ``update``, or the tables to update cannot be read or use the other kind of id.
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
