"""The Dask backend (``--backend dask``): the walk as array-shard tasks on a Dask cluster.

The default backend (:mod:`alfcache._processes`, :mod:`alfcache._walk.engine`) walks with the
processes of one machine. This one hands the walk to a Dask cluster through joblib's Dask
backend, which needs a live ``distributed.Client``: a scheduler's address, ``"local"`` (a
``LocalCluster`` started here and closed at the end, also on errors and Ctrl-C), or a client
the caller made (a ``dask_jobqueue.SLURMCluster``'s).

The units of work are array shards (:mod:`alfcache._alf.sharding`): ``TASKS_PER_THREAD`` times
as many as the cluster has threads, so that the scheduler balances them. A task walks its shard
in one process on the engine's listing threads (:func:`alfcache._walk.engine.walk_here`, the
same ``_scan`` code as every other walk) and returns Arrow IPC bytes and plain Python data,
never pandas objects. While it walks, it logs what it has found every ``REPORT_SECONDS`` as a
Dask event under a topic of the run, so that progress moves with the listings, not only when
tasks end (:class:`_Found` sums them). Every task lists the folders above the sessions (a
shard's walk does not enter other shards' sessions), so what those folders yield, skip records
and links to folders, comes once per task and is counted once here. The main process then does
what :class:`alfcache._walk.local.RunningWalk` does with its workers' rows: it plans the links
to follow between rounds (a round's links become tasks of the next one) and assembles every
batch at once, so the tables are those of the default backend, ids included.

With ``--shard K/N`` the tasks are the shards ``K + N*j`` of ``N*M``: a session's shard of
``N*M`` is its shard of ``N`` modulo ``N``, so they cover shard K exactly.

Files are read (hashing, ``--update``) on the cluster too, after the walk: the main process
plans the reading tasks (:func:`alfcache._digest.schedule.plan_tasks`: large files alone, small
ones packed by folder) for the cluster's threads, and :class:`DaskReaders` hands them to the same
client; each runs :func:`alfcache._digest.read.hash_task` on a worker and returns plain lists
(sizes, modification times, hex digests, skip records). Results, checkpoints and progress (by
finished task) are the main process's, as with the default backend. The cluster started here is
closed once the files are read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from alfcache._alf.sharding import ArrayShard
from alfcache._digest.read import ReadResult
from alfcache._exceptions import AlfcacheError, BadArgument, ScanFailed, SchedulerUnreachable
from alfcache._processes import sigint_deferred
from alfcache._progress import Progress
from alfcache._records import DATASET_BATCH_SCHEMA, SESSION_BATCH_SCHEMA, ScanResult, Skip
from alfcache._walk.engine import Walked, assemble_walk, depth_share, walk_here
from alfcache._walk.scan import Rules, Start, plan_links

if TYPE_CHECKING:
    from alfcache._tables.build import Tables

BACKENDS = ("processes", "dask")
"""``backend=`` values: the engine's worker processes (the default), or a Dask cluster."""

LOCAL = "local"
"""``scheduler=`` for a ``LocalCluster`` of ``n_jobs`` single-threaded worker processes."""

TASKS_PER_THREAD = 4
"""Shards per Dask thread: enough for the scheduler to balance uneven shards; each one more
lists the folders above the sessions once more."""

CONNECT_SECONDS = 10.0
"""How long to try to reach a scheduler before giving up (a reachable one answers at once)."""

WORKERS_SECONDS = 120.0
"""How long to wait for a scheduler's first worker (a batch system may start them late)."""

_ANY_PORT = "127.0.0.1:0"

DaskTaskResult = dict[str, Any]
"""What a task returns: IPC bytes of each table's batches, and plain Python data."""


def distributed_module() -> ModuleType:
    """``distributed``, or a one-line error saying how to install it.

    Raises
    ------
    BadArgument
        The ``dask`` extra is not installed.
    """
    try:
        import distributed
    except ImportError as exc:
        raise BadArgument(
            f"backend='dask' needs Dask's distributed scheduler ({exc}); install it with "
            "pip install 'alfcache[dask]', or use the default backend"
        ) from None
    return distributed


def check_backend(backend: object, scheduler: object) -> None:
    """Validate ``backend=`` and ``scheduler=`` before anything starts.

    Raises
    ------
    BadArgument
        An unknown backend, a scheduler without the Dask backend, or the extra not installed.
    """
    if backend not in BACKENDS:
        raise BadArgument(f"backend={backend!r} is not a backend; use one of {BACKENDS}")
    if backend == "processes":
        if scheduler is not None:
            raise BadArgument(
                f"scheduler={scheduler!r} is for backend='dask'; pass both, or neither"
            )
        return
    distributed = distributed_module()
    if scheduler is not None and not (
        isinstance(scheduler, distributed.Client) or (isinstance(scheduler, str) and scheduler)
    ):
        raise BadArgument(
            f"scheduler={scheduler!r} is not a Dask scheduler; pass its address "
            f"('tcp://host:8786'), {LOCAL!r} for a LocalCluster, or a distributed.Client"
        )


def _connect(scheduler: object, n_jobs: int) -> tuple[Any, Callable[[], None]]:
    """A live client for ``scheduler``, and what closes what was started here."""
    distributed = distributed_module()
    if isinstance(scheduler, distributed.Client):
        return scheduler, lambda: None  # the caller's: the caller closes it
    if scheduler is None:
        try:
            return distributed.default_client(), lambda: None
        except ValueError:
            raise BadArgument(
                "backend='dask' without scheduler= needs a distributed.Client made before; "
                f"pass scheduler='tcp://host:8786', {LOCAL!r} or a Client"
            ) from None
    if scheduler == LOCAL:
        # Single-threaded workers: a task runs its own listing threads. Its HTTP server on a
        # free port of loopback: the default 8787 may be another cluster's (then Dask warns).
        # Ctrl-C is this process's, which closes the cluster: the cluster's event loop thread,
        # and the worker processes it starts, inherit the blocked signal, so a terminal's
        # SIGINT to the whole group does not end the workers with tracebacks of their own.
        # No statistical profiler in the workers: nobody reads it, it samples every thread
        # every 10 ms, and on Python < 3.11.9 or < 3.12.3 its sys._current_frames deadlocks with
        # a thread that ends (gh-106883; a walk's listing threads end with every task).
        import dask  # installed with distributed

        with sigint_deferred(), dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = distributed.LocalCluster(
                n_workers=n_jobs,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=_ANY_PORT,
                # Cancelled tasks after a Ctrl-C are logged as warnings: errors only, so
                # that stderr holds alfcache's one line.
                silence_logs=logging.ERROR,
            )
        try:
            client = distributed.Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise

        def close() -> None:
            client.close()
            cluster.close()

        return client, close
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachable(
            f"cannot reach the Dask scheduler at {scheduler} ({exc}); nothing was indexed. "
            f"Check the address, start the scheduler (dask scheduler), or use --scheduler {LOCAL}"
        ) from None
    except ValueError as exc:
        raise BadArgument(
            f"scheduler={scheduler!r} is not a scheduler address ({exc}); write e.g. "
            "tcp://host:8786"
        ) from None
    return client, client.close


def task_shards(array_shard: ArrayShard | None, tasks: int) -> list[ArrayShard]:
    """The array shards that ``tasks`` tasks walk: together exactly ``array_shard``'s sessions."""
    k, n = array_shard or (0, 1)
    return [ArrayShard(k + n * j, n * tasks) for j in range(tasks)]


def _ipc(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _batch(data: bytes) -> pa.RecordBatch:
    """The one record batch of the rows an IPC stream holds."""
    table = pa.ipc.open_stream(data).read_all().combine_chunks()
    columns = [c.chunk(0) if c.num_chunks else pa.array([], c.type) for c in table.columns]
    return pa.RecordBatch.from_arrays(columns, schema=table.schema)


def walk_task(
    rules: Rules, starts: list[Start], cap: int, topic: str | None = None, number: int = 0
) -> DaskTaskResult:
    """One Dask task: walk from ``starts`` here by ``rules`` (their array shard the task's);
    the rows as Arrow IPC bytes (their ids null unless ``rules.hash_ids``).

    With a ``topic``, the task logs ``(number, sessions, files)`` found so far under it as a
    Dask event every ``REPORT_SECONDS``: the main process shows them as progress.
    """
    report = None
    if topic is not None:
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:  # not on a Dask worker (joblib ran it here): no one to tell
            pass
        else:

            def report(sessions: int, files: int) -> None:
                worker.log_event(topic, (number, sessions, files))

    results, threads = walk_here(rules, starts, cap, report)
    return {
        "number": number,
        "sessions": _ipc((r.sessions for r in results), SESSION_BATCH_SCHEMA),
        "datasets": _ipc((r.datasets for r in results), DATASET_BATCH_SCHEMA),
        "skipped": [tuple(s) for r in results for s in r.skipped],
        "ignored": sum(r.ignored for r in results),
        "links": [link for r in results for link in r.links],
        "listed": sum(r.listed for r in results),
        "threads": threads,
    }


def scan_result(task: DaskTaskResult, seen: set[Skip]) -> ScanResult:
    """A task's result as the walk's :class:`ScanResult`; a record in ``seen`` is dropped.

    Every task lists the folders above the sessions, so their records come from each task.
    """
    skipped = []
    for record in map(Skip._make, task["skipped"]):
        if record not in seen:
            seen.add(record)
            skipped.append(record)
    return ScanResult(
        _batch(task["sessions"]),
        _batch(task["datasets"]),
        skipped,
        task["ignored"],
        task["links"],
        task["listed"],
    )


class DaskReaders:
    """A cluster's threads as :class:`alfcache._digest.schedule.Readers`: where files are read."""

    def __init__(self, client: Any) -> None:
        # Not pure: a task reads the files as they are now, never a result cached by its key.
        self._executor = client.get_executor(pure=False)
        self._workers: int = max(1, sum(client.nthreads().values()))

    @property
    def workers(self) -> int:
        return self._workers

    def submit(self, fn: Callable[..., ReadResult], /, *args: object) -> Future[ReadResult]:
        future: Future[ReadResult] = self._executor.submit(fn, *args)
        return future

    def failed(self, exc: Exception) -> Exception:
        return ScanFailed(
            f"reading files on the Dask cluster failed ({type(exc).__name__}: {exc}); no table "
            "was written, the previous tables are unchanged. Check the Dask workers' logs, or "
            "run without --backend dask"
        )


class _Found:
    """A Dask walk's progress: the counts of the finished tasks plus the last ones each running
    task reported (Dask events, which arrive on the client's thread), shown as one sum."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self._done = (0, 0)
        self._running: dict[int, tuple[int, int]] = {}
        self._finished: set[int] = set()
        self._closed = False

    def event(self, event: tuple[float, Any]) -> None:
        """A running task's counts so far: ``(timestamp, (number, sessions, files))``."""
        number, sessions, files = event[1]
        with self._lock:
            if number not in self._finished and not self._closed:  # else a late report
                self._running[number] = (sessions, files)
                self._show()

    def finished(self, number: int, sessions: int, files: int) -> None:
        """Task ``number`` ended with these rows: they replace what it reported."""
        with self._lock:
            self._finished.add(number)
            self._running.pop(number, None)
            self._done = (self._done[0] + sessions, self._done[1] + files)
            self._show()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._bar.close()

    def _show(self) -> None:
        running = self._running.values()
        self._bar.show(
            self._done[0] + sum(s for s, _ in running), self._done[1] + sum(f for _, f in running)
        )


class DaskWalk:
    """A walk on a Dask cluster, with the interface of :class:`alfcache._walk.local.RunningWalk`.

    Connecting is done here, so that an unreachable scheduler fails the run before anything
    else; :meth:`finish` walks and assembles, :meth:`readers` reads files on the same cluster,
    and :meth:`abort` closes what was started (a ``LocalCluster``), by itself when the walk
    fails. ``rules`` as for :class:`alfcache._walk.local.RunningWalk`; each task walks by them
    with its own part of ``rules.array_shard``.
    """

    def __init__(self, rules: Rules, n_jobs: int, io_depth: int | None, scheduler: object) -> None:
        self._rules = rules
        self._io_depth = io_depth
        self._client, self._close = _connect(scheduler, n_jobs)

    def finish(
        self, *, lab: str | None, progress: bool, cache_dir: Path | None = None
    ) -> tuple[Tables, Walked]:
        """Walk on the cluster and assemble the tables; see RunningWalk.finish."""
        found = _Found(Progress(enabled=progress))
        topic = f"alfcache-walk-{uuid.uuid4().hex}"
        results: list[ScanResult] = []
        seen: set[Skip] = set()
        skipped: list[Skip] = []
        rules = self._rules
        indexed = {rules.root: "the indexed folder"}
        tasks = listed = threads = 0
        try:
            self._client.wait_for_workers(1, timeout=WORKERS_SECONDS)
            self._client.subscribe_topic(topic, found.event)
            n_threads = max(1, sum(self._client.nthreads().values()))
            cap = depth_share(self._io_depth, n_threads)
            # A task's rules are the run's but for the array shard: its part of the run's.
            work: list[tuple[list[Start], Rules]] = [
                ([Start("", True)], dataclasses.replace(rules, array_shard=shard))
                for shard in task_shards(rules.array_shard, TASKS_PER_THREAD * n_threads)
            ]
            while work:
                links: set[str] = set()
                for task in self._run(work, cap, topic, tasks):
                    result = scan_result(task, seen)
                    results.append(result)
                    links.update(result.links)
                    listed += result.listed
                    threads += task["threads"]
                    found.finished(
                        task["number"], result.sessions.num_rows, result.datasets.num_rows
                    )
                tasks += len(work)
                # As between the rounds of the default walk: the links of a round, planned
                # together, are walked in the next one.
                starts, revisits = plan_links(rules.root, links, indexed)
                skipped += revisits
                work = [([start], rules) for start in starts]
        except BaseException as exc:
            self.abort()
            if isinstance(exc, AlfcacheError) or not isinstance(exc, Exception):
                raise
            raise ScanFailed(
                f"the Dask walk failed ({type(exc).__name__}: {exc}); no table was written, "
                "the previous tables are unchanged. Check the Dask workers' logs, or run "
                "without --backend dask"
            ) from exc
        finally:
            found.close()
            with contextlib.suppress(Exception):  # a client closed by the abort above
                self._client.unsubscribe_topic(topic)
        return assemble_walk(
            results,
            rules=rules,
            lab=lab,
            cache_dir=cache_dir,
            tasks=tasks,
            skipped=skipped,
            listed={"main": 0, "workers": listed},
            threads=threads,
        )

    def _run(
        self, work: list[tuple[list[Start], Rules]], cap: int, topic: str, first: int
    ) -> Iterable[DaskTaskResult]:
        """Each task's result as it comes, through joblib's Dask backend; the tasks are
        numbered from ``first`` and report their progress under ``topic``."""
        from joblib import Parallel, delayed, parallel_config

        with parallel_config(backend="dask", client=self._client):
            # One shard per Dask task, all handed over at once: the scheduler balances them.
            # Taken as they finish: in the order given, one slow task held back every result
            # after it, and the progress of the whole walk with them.
            parallel = Parallel(
                n_jobs=-1, batch_size=1, pre_dispatch="all", return_as="generator_unordered"
            )
            yield from parallel(
                delayed(walk_task)(rules, starts, cap, topic, first + i)
                for i, (starts, rules) in enumerate(work)
            )

    def readers(self) -> DaskReaders:
        """The cluster's threads, to read files on after the walk."""
        return DaskReaders(self._client)

    def abort(self) -> None:
        """Close the client and the cluster started here (after an error, Ctrl-C, or the end)."""
        close, self._close = self._close, lambda: None
        close()
