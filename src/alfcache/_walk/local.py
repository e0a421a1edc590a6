"""The process backend (the default): the walk on this machine's processes.

:func:`start_walk` starts a :class:`RunningWalk`: the main process lists folders on its own
listing threads (:class:`alfcache._walk.engine.Lister`) while ``n_jobs - 1`` worker processes
(:mod:`alfcache._processes`) take subtrees from the shared queue. The Dask backend
(:mod:`alfcache._walk.dask`) has the same interface.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TYPE_CHECKING

from alfcache import _processes as executor
from alfcache._exceptions import ScanFailed, workers_died
from alfcache._progress import Progress
from alfcache._records import ScanResult, Skip
from alfcache._walk.engine import (
    POLL_SECONDS,
    Counter,
    DepthChoice,
    Lister,
    Sharer,
    Tally,
    Walked,
    add,
    assemble_walk,
    depth_share,
    serve,
    work,
)
from alfcache._walk.scan import Rules, Start, Task, Walk, plan_links

if TYPE_CHECKING:
    from alfcache._tables.build import Tables  # a type only: Polars loads while the walk runs

LATE_START_SECONDS = 0.2
"""Without fork, workers cost a fresh interpreter: start them only for walks that last longer."""


class _Worker:
    """A worker process as the main process sees it: its pipe and whether it said goodbye."""

    def __init__(self, proc: BaseProcess, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.threads = 0
        self.depth: DepthChoice | None = None
        self.ended = False


class RunningWalk:
    """A walk that has started: it lists folders while the caller does other work.

    :func:`start_walk` creates it; :meth:`finish` collects the rows, shows progress, follows
    links round after round and assembles. This is the one entry point to the walk for every
    verb that needs the tree (``index``, ``verify``), so they share its speed and its fault
    handling. The main process starts walking at once on its own listing threads; ``n_jobs - 1``
    worker processes take subtrees from the shared queue (see :mod:`alfcache._walk.engine`).
    They are forked at once when that is safe, else started from a fork server once the walk has
    lasted ``LATE_START_SECONDS``. :meth:`abort` kills them. Every process walks by the same
    ``rules`` (:class:`alfcache._walk.scan.Rules`); with ``rules.hash_ids`` False no process
    hashes ids: the rows carry null ids and the tables get path ids.
    """

    def __init__(self, rules: Rules, n_jobs: int, io_depth: int | None = None) -> None:
        self._rules = rules
        self._start = time.perf_counter()
        self._n_workers = n_jobs - 1
        self._cap = depth_share(io_depth, n_jobs)
        self._ctx = executor.context() if self._n_workers else multiprocessing.get_context()
        self._procs = executor.Processes()
        self._workers: list[_Worker] = []
        self._tasks: Queue[list[Task] | None] = self._ctx.Queue()
        self._tasks.cancel_join_thread()  # at exit after an abort, tasks left do not matter
        self._queued: Counter = self._ctx.Value("q", 0)
        self._waiting: Counter = self._ctx.Value("q", 0)
        self._outstanding: Counter = self._ctx.Value("q", 0)
        self._found = Tally(n_jobs, self._cap)
        self._sharer = Sharer(self._tasks, self._queued, self._waiting, self._outstanding)
        self._sharer.enabled = False
        self._main_results: deque[ScanResult] = deque()
        if self._n_workers and (self._ctx.get_start_method() == "fork" or LATE_START_SECONDS <= 0):
            self._start_workers()  # now: before any thread starts, before Polars loads
        self._lister = Lister(
            rules,
            self._cap,
            emit=self._main_results.append,
            on_idle=lambda n: add(self._outstanding, -n),
            share=self._sharer if self._n_workers else None,
            found=self._found,
        )
        self._started = 0
        self._walk_from([Start("", True)])
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
                self._rules,
                self._cap,
                self._tasks,
                self._queued,
                self._waiting,
                self._outstanding,
                send,
                self._found.for_worker(len(self._workers)),
            )
            proc = self._procs.start(self._ctx, work, args)
            send.close()  # the worker holds the only write end: its death is an EOF here
            self._workers.append(_Worker(proc, receive))
        self._sharer.enabled = True

    def _walk_from(self, starts: list[Start]) -> None:
        """Start walking from ``starts`` here (their own session rows are emitted here)."""
        walk = Walk(self._rules)
        tasks = [walk.start(start) for start in starts]
        self._found.add(*walk.found, thread=-1)  # this thread does not list
        self._main_results.append(walk.flush())
        self._started += len(tasks)
        add(self._outstanding, len(tasks))
        self._lister.add(tasks, taken=len(tasks))

    def finish(
        self, *, lab: str | None, progress: bool, cache_dir: Path | None = None
    ) -> tuple[Tables, Walked]:
        """Wait for the walk and assemble the tables (ids as ``rules.hash_ids`` says).

        ``cache_dir`` is the folder ONE-api will be given: sessions it would look for in other
        folders than where they were found are reported (``not_loadable``).
        """

        bar = Progress(enabled=progress, start=self._start)
        results: list[ScanResult] = []
        listed = {"main": 0, "workers": 0}
        links: list[str] = []
        indexed = {self._rules.root: "the indexed folder"}
        skipped: list[Skip] = []

        def take(where: str, result: ScanResult) -> None:
            results.append(result)
            listed[where] += result.listed
            links.extend(result.links)

        try:
            while True:
                # Once every folder is listed nothing is on its way: no wait (50 ms a run).
                self._collect(take, POLL_SECONDS if self._outstanding.value else 0.0)
                bar.show(*self._found.counts)  # each poll: a line is due every 5 s
                if self._outstanding.value:
                    continue
                # Every folder of this round is listed and every row has arrived.
                while self._main_results:
                    take("main", self._main_results.popleft())
                starts, revisits = plan_links(self._rules.root, links, indexed)
                links.clear()
                skipped += revisits
                if not starts:
                    break
                self._walk_from(starts)
            self._close(take)
        except BaseException:
            self.abort()  # Ctrl-C or a failure: no worker may walk on, or outlive us
            raise
        finally:
            bar.close()
        return assemble_walk(
            results,
            rules=self._rules,
            lab=lab,
            cache_dir=cache_dir,
            tasks=self._started + self._sharer.shared,
            skipped=skipped,
            listed=listed,
            threads=self._lister.used + sum(w.threads for w in self._workers),
            depths=[self._lister.choice, *(w.depth for w in self._workers if w.depth)],
        )

    def _collect(
        self, take: Callable[[str, ScanResult], None], timeout: float = POLL_SECONDS
    ) -> None:
        """Take what arrived within ``timeout``; raise if a process of the walk failed."""
        while self._main_results:
            take("main", self._main_results.popleft())
        if self._lister.error is not None:
            raise self._lister.error
        if not self._workers:
            if self._n_workers and time.perf_counter() - self._start > LATE_START_SECONDS:
                self._start_workers()  # the walk proved long enough to pay for them
            self._lister.wait_idle(timeout)
            return
        conns = [w.conn for w in self._workers if not w.ended]
        for conn in wait(conns, timeout=timeout) if conns else ():
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
            worker.threads, worker.depth = value
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


def start_walk(rules: Rules, n_jobs: int, io_depth: int | None = None) -> RunningWalk:
    """Start walking ``rules.root`` (resolved, readable) on ``n_jobs`` processes; see RunningWalk.

    ``io_depth`` is the most folder listings in flight over all processes; None adapts it to
    the storage (up to ``DEFAULT_IO_DEPTH``). ``rules`` say which links, array shard and ids
    (:class:`alfcache._walk.scan.Rules`).
    """
    walk = RunningWalk(rules, n_jobs, io_depth)
    try:
        # Polars and the parquet writer load while the walk runs.
        import pyarrow.parquet  # noqa: F401

        import alfcache._tables.build  # noqa: F401
    except BaseException:
        walk.abort()  # Ctrl-C while Polars loads: the workers must not outlive us
        raise
    return walk
