"""Scheduling of the walk: many listings in flight per process, work shared as it is found.

:mod:`alfcache._scan` decides what an entry is; this module decides who lists which folder.

* In every process a :class:`Lister` runs listing threads over a pool of folder tasks. Each
  thread walks depth first on its own stack and moves the bottom of its stack (the largest
  subtree it knows) to the pool while the pool holds fewer tasks than there are threads free to
  take them. ``os.scandir`` and ``stat`` release the GIL, so on storage that makes every call
  wait, many listings are in flight at once even in a single process.
* How many threads may list at once adapts to the storage: every ``ADAPT_SECONDS`` the process's
  CPU time is compared with the wall time. A process that mostly waits (network storage, a cold
  disk) gets more threads, up to its share of ``io_depth``; one that is CPU-bound (a warm local
  disk) is brought back towards one thread, because more threads then only queue for the GIL.
  The per-thread ratio (``thread_time`` against wall time) would count the wait for the GIL as
  waiting on storage and so add threads exactly when they hurt; the process's CPU does not.
* Between processes, tasks go through one shared queue: a thread hands the bottom of its stack
  to the queue only while the queue is short, since a message per folder would cost more than
  listing it. A process takes from the queue when its own threads run dry.
* Termination is counted: ``outstanding`` holds the shared tasks not yet walked (the root
  counts as one). A process reports how many it took once it is idle, after its rows; the
  main process subtracts them and, at zero, knows that every folder has been listed.

Rows leave each thread as Arrow record batches every ``BATCH_ROWS`` rows and whenever its
process falls idle, so neither workers nor the main process hold Python lists of the whole tree.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any, Protocol

from alfcache._scan import ScanResult, Stack, Task, _Walk

BATCH_ROWS = 50_000
"""Rows after which a thread sends what it found: memory stays flat, messages stay few."""

ADAPT_SECONDS = 0.05
"""How often a process compares its CPU time with the wall time to choose its depth."""

WAITING = 0.5
"""CPU per wall second below which a process mostly waits: more listings in flight help."""

IDLE = 0.1
"""CPU per wall second below which a process waits almost all the time: use the whole depth."""

BUSY = 0.85
"""CPU per wall second above which more threads only queue for the GIL: use fewer."""

POLL_SECONDS = 0.05
"""How long a wait lasts before it looks again at errors, stops and Ctrl-C."""


class Counter(Protocol):
    """A ``multiprocessing.Value``: an integer shared by the processes of a run."""

    value: int

    def get_lock(self) -> Any: ...


def add(counter: Counter, n: int) -> None:
    with counter.get_lock():
        counter.value += n


class Lister:
    """The listing threads of one process and their pool of folder tasks.

    Parameters
    ----------
    root : str
        Absolute path of the indexed folder.
    follow_symlinks : bool
        See :func:`alfcache._scan.scan_shards`.
    cap : int
        The most threads that may list at once in this process.
    emit : callable
        Receives each :class:`ScanResult` as it is flushed (from any thread).
    on_idle : callable
        Called with the number of tasks taken by :meth:`add` since the last call, once the
        process has no task left and every result has been emitted.
    share : callable, optional
        Offered a thread's stack when it holds more than one task; may take tasks from its
        bottom for other processes.
    """

    def __init__(
        self,
        root: str,
        follow_symlinks: bool,
        cap: int,
        emit: Callable[[ScanResult], None],
        on_idle: Callable[[int], None],
        share: Callable[[Stack], None] | None = None,
    ) -> None:
        self.root = root
        self.follow_symlinks = follow_symlinks
        self.cap = max(1, cap)
        self._emit = emit
        self._on_idle = on_idle
        self._share = share
        self._cond = threading.Condition()
        self._pool: deque[Task] = deque()
        self._busy = 0
        self._taken = 0
        self._idle = True
        self._stopped = False
        self._target = 1
        self._threads: list[threading.Thread] = []
        self._walks: list[_Walk] = []
        self._clock = (time.perf_counter(), time.process_time())
        self.peak = 0
        """The most threads that were allowed to list at once."""
        self.error: BaseException | None = None
        """What stopped a listing thread, if anything did."""

    def add(self, tasks: list[Task], taken: int) -> None:
        """Hand ``tasks`` to the threads; ``taken`` of them count for :meth:`on_idle`."""
        with self._cond:
            if self._idle:  # time spent idle says nothing about the storage
                self._clock = (time.perf_counter(), time.process_time())
            self._pool.extend(tasks)
            self._taken += taken
            self._idle = False
            self._start_threads()
            self._cond.notify_all()

    def hungry(self) -> bool:
        """True when a thread free to list has nothing to list."""
        return not self._pool and self._busy < self._target

    def wait_hungry(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.hungry() or self._stopped, timeout)

    def wait_idle(self, timeout: float) -> None:
        """Wait until every task is walked, a thread failed, or ``timeout`` passed."""
        with self._cond:
            self._cond.wait_for(lambda: self._idle or self._stopped, timeout)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop every thread after its current listing; wait up to ``timeout`` for them."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        # A listing on slow storage may take a while: an abort does not hang on it (the threads
        # are daemons and drop their work).
        end = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, end - time.monotonic()))

    def _start_threads(self) -> None:
        """Start threads up to the target (called with the lock held)."""
        self.peak = max(self.peak, self._target)
        while len(self._threads) < self._target:
            walk = _Walk(self.root, self.follow_symlinks)
            thread = threading.Thread(
                target=self._run,
                args=(len(self._threads), walk),
                name=f"alfcache-list-{len(self._threads)}",
                daemon=True,
            )
            self._walks.append(walk)
            self._threads.append(thread)
            self._busy += 1  # until its first _next
            thread.start()

    def _run(self, index: int, walk: _Walk) -> None:
        stack: Stack = deque()
        try:
            while (task := self._next(index, stack)) is not None:
                walk.list_folder(task, stack)
                if len(stack) > 1:
                    self._give(stack)
                if walk.rows >= BATCH_ROWS:
                    self._emit(walk.flush())
                self._adapt()
        except BaseException as exc:  # reported by whoever waits for this process
            self.error = exc
            with self._cond:
                self._stopped = True
                self._cond.notify_all()

    def _next(self, index: int, stack: Stack) -> Task | None:
        if stack and index < self._target and not self._stopped:
            return stack.pop()
        with self._cond:
            if stack:  # this thread is beyond the target now: its work goes to the others
                self._pool.extend(stack)
                stack.clear()
                self._cond.notify_all()
            self._busy -= 1
            while not self._stopped:
                if self._pool and index < self._target:
                    self._busy += 1
                    return self._pool.popleft()
                if not self._idle and self._busy == 0 and not self._pool:
                    self._become_idle()
                self._cond.wait()
            return None

    def _become_idle(self) -> None:
        """Emit every thread's rows, then report the tasks done (called with the lock held).

        Every other thread waits for the lock, so no walk is touched meanwhile; the order
        matters, since the main process takes the report as the promise that the rows came.
        """
        self._idle = True
        for walk in self._walks:
            if walk.rows or walk.skipped or walk.links or walk.ignored or walk.listed:
                self._emit(walk.flush())
        taken, self._taken = self._taken, 0
        self._on_idle(taken)

    def _give(self, stack: Stack) -> None:
        # Unlocked reads: a stale count only moves one task more or less.
        if len(self._pool) < self._target - self._busy:
            with self._cond:
                self._pool.append(stack.popleft())
                self._cond.notify_all()
        elif self._share is not None:
            self._share(stack)

    def _adapt(self) -> None:
        """Choose how many threads may list, from this process's CPU per wall second."""
        now = time.perf_counter()
        if now - self._clock[0] < ADAPT_SECONDS:
            return
        with self._cond:
            start, cpu_start = self._clock
            if now - start < ADAPT_SECONDS:
                return
            cpu = time.process_time()
            use = (cpu - cpu_start) / (now - start)
            self._clock = (now, cpu)
            if use < IDLE:
                target = self.cap
            elif use < WAITING:
                target = min(self.cap, self._target * 2)
            elif use > BUSY:
                target = max(1, self._target // 2)
            else:
                return
            if target != self._target:
                self._target = target
                self._start_threads()
                self._cond.notify_all()


class Sharer:
    """Hands tasks to the other processes while the shared queue is short."""

    def __init__(self, tasks: Queue[Task | None], queued: Counter, outstanding: Counter, low: int):
        self._tasks = tasks
        self._queued = queued
        self._outstanding = outstanding
        self._low = low
        self.enabled = True
        self.shared = 0
        """Tasks this process put on the queue."""

    def __call__(self, stack: Stack) -> None:
        if self.enabled and self._queued.value < self._low and len(stack) > 1:
            task = stack.popleft()
            add(self._outstanding, 1)  # before the put: the count never reaches 0 too early
            add(self._queued, 1)
            self._tasks.put(task)
            self.shared += 1


def serve(lister: Lister, tasks: Queue[Task | None], queued: Counter) -> None:
    """Feed ``lister`` from the shared queue whenever it runs dry; return at the sentinel."""
    while lister.error is None:
        if not lister.hungry():
            lister.wait_hungry(POLL_SECONDS)
            continue
        try:
            task = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
        if task is None:
            return
        add(queued, -1)
        lister.add([task], taken=1)


def work(
    root: str,
    follow_symlinks: bool,
    cap: int,
    tasks: Queue[Task | None],
    queued: Counter,
    outstanding: Counter,
    low: int,
    conn: Connection,
) -> None:
    """A worker process: list what the shared queue holds, send rows and reports on ``conn``.

    Messages, in order: ``("rows", ScanResult)``, ``("idle", n)`` once the ``n`` tasks taken
    since the last report are walked, and at the end ``("end", peak threads)`` or
    ``("error", message)``.
    """
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with lock:
            conn.send(message)

    lister = Lister(
        root,
        follow_symlinks,
        cap,
        emit=lambda result: send(("rows", result)),
        on_idle=lambda n: send(("idle", n)),
        share=Sharer(tasks, queued, outstanding, low),
    )
    serve(lister, tasks, queued)
    lister.stop()
    if lister.error is not None:
        send(("error", f"{type(lister.error).__name__}: {lister.error}"))
        return
    send(("end", lister.peak))
