"""File digests: planned by bytes in the main process, computed by workers.

The walk only stats files. Reading them is a phase of its own, because only once every size is
known can the reading be cut into tasks of similar cost (:func:`plan_tasks`): a file that costs
a task's share or more is a task of its own, the others are packed together, and the tasks go to
the workers costliest first. A tree of a few huge files and many small ones then keeps every
worker busy until the last huge file is done, and every file is read exactly once. Reading one
task is :func:`alfcache._digest.read.hash_task`.

``hashlib`` and ``xxhash`` digest a block without holding the GIL. So when the files are
large on average, the workers are threads of this process: they digest in parallel and start at
once. Only when small files dominate, and opening them and the per-file bookkeeping (which hold
the GIL) would serialise the threads, do the tasks go to worker processes (a loky pool started
for the reading; the walk's workers have ended by then), and only on storage that opens a file
at once: a few files are opened first, and if that takes longer
than :data:`SLOW_OPEN` (a network round trip) threads read, many at a time.

On threads, large files and small ones are read by two sets of threads. A large file is read
by one of ``n_jobs`` readers, one per core: reading is digesting there, and more readers would
only compete for the cores and the disk. Small files cost a round trip to open rather than
time to digest; on network storage that round trip is a millisecond, so there up to
:data:`MAX_DEPTH` threads keep that many opens in flight (on local disk, one per core: more
would only queue for the GIL). Small files are packed into tasks folder by folder.

Tasks report the bytes they have read on a *board* of one counter per task, which the main
thread sums a few times a second; worker processes write theirs into a small file with
``pwrite``. Progress counted per finished task would stand still for minutes while a 50 GB
recording is read.

The tasks can also run elsewhere: given :class:`Readers` (the Dask backend's cluster, see
:class:`alfcache._walk.dask.DaskReaders`), the files are cut into tasks as for worker processes,
for the readers' threads, and each task is handed to them with ``submit``; only the planning,
the results and the checkpoints stay in this process.
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from alfcache._digest.read import ReadResult, hash_task
from alfcache._exceptions import AlfcacheError, worker_died
from alfcache._processes import ignore_interrupts, sigint_at_checks
from alfcache._progress import ByteProgress
from alfcache._records import Skip

FILE_COST = 1 << 14
"""Opening, stat-ing and closing a file takes about as long as digesting this many bytes."""

TASKS_PER_JOB = 16
"""Tasks planned per worker: the last task to finish is then a small part of the whole."""

MIN_TASK_COST = 4 << 20
"""Below this, a task costs more to hand to a worker process than to do."""

THREAD_TASK_COST = 1 << 19
"""The same for a thread (tens of microseconds to hand over): about 30 small files."""

LARGE_FILE = 1 << 20
"""Files at least this large are read by the ``n_jobs`` readers, one file per task."""

MAX_DEPTH = 64
"""Threads reading small files at most: opens in flight on storage where each is a round trip."""

SLOW_OPEN = 250e-6
"""Opening a file slower than this (seconds) means storage that answers over a network: a
local open takes a few microseconds, one on NFS or SMB a round trip (0.1-10 ms)."""

_PROBES = 8  # files opened to measure the latency of opening one

READERS_WINDOW = 2
"""Tasks in flight per thread of :class:`Readers`: one reading, one on its way to the thread,
so that no thread waits for a round trip to this process between two tasks."""

_REPORT_EVERY = 16 << 20  # bytes a worker reads between two writes to the progress board
_POLL = 0.25  # seconds between two looks at the progress board


def plan_tasks(
    sizes: Sequence[int] | np.ndarray,
    n_jobs: int,
    folders: np.ndarray | None = None,
    min_cost: int = MIN_TASK_COST,
) -> list[np.ndarray]:
    """Cut the files into tasks of similar cost, the costliest first.

    Parameters
    ----------
    sizes : sequence of int
        File sizes in bytes.
    n_jobs : int
        Number of workers.
    folders : numpy.ndarray of int, optional
        A code per file, equal for files of the same folder: the files packed together are
        then taken folder by folder, so that a task opens each folder once.
    min_cost : int
        The smallest share worth a task of its own.

    Returns
    -------
    list of numpy.ndarray
        Positions in ``sizes``, one array per task. A file that costs a task's share or more
        is a task of its own.
    """
    cost = np.asarray(sizes, dtype=np.int64) + FILE_COST
    share = max(int(cost.sum()) // (n_jobs * TASKS_PER_JOB), min_cost)
    alone = np.flatnonzero(cost >= share)
    alone = alone[np.argsort(-cost[alone], kind="stable")]
    packed = np.flatnonzero(cost < share)
    if folders is None:
        packed = packed[np.argsort(-cost[packed], kind="stable")]
    else:
        packed = packed[np.argsort(folders[packed], kind="stable")]
    # A task is every packed file whose cumulative start falls in the same window of `share`
    # bytes; each costs less than a share, so a task holds less than two.
    ordered = cost[packed]
    window = (np.cumsum(ordered) - ordered) // share
    tasks = [alone[i : i + 1] for i in range(len(alone))]
    if len(packed):
        tasks += np.split(packed, np.flatnonzero(np.diff(window)) + 1)
    return tasks


def plan_thread_tasks(
    sizes: Sequence[int] | np.ndarray, n_jobs: int, folders: np.ndarray, depth: int
) -> tuple[list[np.ndarray], int]:
    """Tasks for threads: each large file alone, the largest first, then the small files.

    Parameters
    ----------
    sizes : sequence of int
        File sizes in bytes.
    n_jobs : int
        Threads reading large files (one per core).
    folders : numpy.ndarray of int
        A code per file, equal for the files of one folder (:func:`folder_codes`).
    depth : int
        Threads reading small files; their files are packed folder by folder into tasks
        for that many threads.

    Returns
    -------
    list of numpy.ndarray
        Positions in ``sizes``, one array per task.
    int
        How many of the tasks, at the start of the list, are large files.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    large = np.flatnonzero(sizes >= LARGE_FILE)
    large = large[np.argsort(-sizes[large], kind="stable")]
    small = np.flatnonzero(sizes < LARGE_FILE)
    packed = plan_tasks(sizes[small], depth, folders[small], THREAD_TASK_COST)
    return [large[i : i + 1] for i in range(len(large))] + [small[t] for t in packed], len(large)


def folder_codes(paths: Sequence[str]) -> np.ndarray:
    """A code per path, equal for the paths of files in the same folder."""
    folders = np.array([p.rpartition("/")[0] for p in paths], dtype=object)
    return np.unique(folders, return_inverse=True)[1] if len(paths) else np.zeros(0, np.int64)


class Readers(Protocol):
    """Threads outside this process that run reading tasks (a Dask cluster's).

    Like a ``concurrent.futures.Executor``, with the number of threads the tasks are planned
    for and the error that a failed task becomes.
    """

    @property
    def workers(self) -> int:
        """Threads that read at once: the tasks are planned for that many."""
        ...

    def submit(self, fn: Callable[..., ReadResult], /, *args: object) -> Future[ReadResult]:
        """Run ``fn(*args)`` on one of the threads."""
        ...

    def failed(self, exc: Exception) -> Exception:
        """The error to raise when a task failed with ``exc`` (a lost worker, ...)."""
        ...


class NullBoard:
    """No counter: a task running elsewhere reports its bytes only by finishing."""

    def add(self, n: int) -> None:
        """Nothing to count: progress moves by finished task."""

    def close(self) -> None:
        """Nothing to release."""


class FileBoard:
    """One task's counter on the progress board file; pickled to the worker as path and slot."""

    def __init__(self, path: str, slot: int) -> None:
        self.path = path
        self.slot = slot
        self._fd = -1
        self._done = 0
        self._shown = 0
        self._shown_at = 0.0

    def add(self, n: int) -> None:
        # By bytes for large files, by time for small ones: a task of a thousand small files
        # may never reach _REPORT_EVERY, and its bytes would show only once it is all read.
        self._done += n
        if self._done - self._shown >= _REPORT_EVERY or time.monotonic() - self._shown_at >= _POLL:
            self._write()

    def _write(self) -> None:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        os.pwrite(self._fd, struct.pack("<q", self._done), 8 * self.slot)
        self._shown, self._shown_at = self._done, time.monotonic()

    def close(self) -> None:
        if self._done != self._shown:
            self._write()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Stopped(Exception):
    """Raised inside a hashing thread when the run is abandoned (an error, Ctrl-C)."""


class _MemoryBoard:
    """A task's counter when tasks run on threads; also how the main thread stops the task."""

    def __init__(self, counts: list[int], slot: int, stop: threading.Event) -> None:
        self.counts = counts
        self.slot = slot
        self.stop = stop

    def add(self, n: int) -> None:
        if self.stop.is_set():
            raise _Stopped
        self.counts[self.slot] += n

    def close(self) -> None:
        """Nothing to release: the counts belong to the main thread."""


@dataclass
class Hashing:
    """What the reading phase did, for the report."""

    algorithms: tuple[str, ...]
    files: int
    """Files read (the others kept the digests of the previous tables)."""
    bytes: int
    seconds: float
    resumed: int = 0
    """Files whose digests came from a checkpoint of an interrupted run, not read again."""
    checkpoint: str | None = None
    """That checkpoint, as shown to a person (None: no digest came from one)."""

    @property
    def rate(self) -> float:
        """Bytes read per second."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Digests:
    """What reading the files found, aligned with the paths that were asked about."""

    columns: dict[str, list[str | None]]
    """Hex digests per algorithm; None where the file could not be hashed."""
    sizes: np.ndarray
    """Size of the content digested; -1 where the file could not be hashed."""
    mtimes: np.ndarray
    """Modification time (ns) of the content digested; -1 where not hashed."""
    vanished: np.ndarray
    """True where the file no longer exists."""
    skipped: list[Skip]
    bytes: int = 0
    """Bytes planned for reading (the sizes found by the walk)."""
    seconds: float = 0.0
    on_task: Callable[[np.ndarray, ReadResult], None] | None = None
    """Called with each finished task's rows and result (the checkpoint's hook)."""

    @classmethod
    def empty(cls, n: int, algorithms: tuple[str, ...]) -> Digests:
        return cls(
            columns={a: [None] * n for a in algorithms},
            sizes=np.full(n, -1, dtype=np.int64),
            mtimes=np.full(n, -1, dtype=np.int64),
            vanished=np.zeros(n, dtype=bool),
            skipped=[],
        )

    def summary(self) -> Hashing:
        # Files hashed, not files planned: those that vanished, could not be read or kept
        # changing have no digest and are reported on their own.
        hashed = int(np.count_nonzero(self.sizes >= 0))
        return Hashing(tuple(self.columns), hashed, self.bytes, self.seconds)

    def put(self, rows: np.ndarray, result: ReadResult) -> None:
        """Place a task's results at the positions the task was planned with."""
        self.sizes[rows] = result.sizes
        self.mtimes[rows] = result.mtimes
        self.vanished[rows[result.vanished]] = True
        for column, found in zip(self.columns.values(), result.digests, strict=True):
            for row, digest in zip(rows.tolist(), found, strict=True):
                column[row] = digest
        self.skipped += result.skipped
        if self.on_task is not None:
            self.on_task(rows, result)


def digest_files(
    root: str,
    paths: Sequence[str],
    sizes: Sequence[int] | np.ndarray,
    algorithms: tuple[str, ...],
    n_jobs: int,
    progress: bool = False,
    depth: int = MAX_DEPTH,
    *,
    on_task: Callable[[np.ndarray, ReadResult], None] | None = None,
    readers: Readers | None = None,
    follow_symlinks: bool = False,
) -> Digests:
    """Read ``paths`` once each and compute ``algorithms``, on ``n_jobs`` workers.

    Parameters
    ----------
    root : str
        Absolute path of the indexed folder.
    paths : sequence of str
        File paths relative to ``root``.
    sizes : sequence of int
        Their sizes as the walk found them; the tasks are planned with these.
    algorithms : tuple of str
        Digests to compute (see :func:`resolve_algorithms`).
    n_jobs : int
        Number of workers: threads of this process, or worker processes when small files
        dominate (see the module docstring).
    progress : bool
        Show the bytes read, the rate and the time left on stderr.
    depth : int
        Threads reading small files at most, used where opening a file waits (see the
        module docstring).
    on_task : callable, optional
        Called in this thread with the positions and result of every finished task.
    readers : Readers, optional
        Run the tasks there (a Dask cluster) instead of on this process's threads and the
        walk's processes; ``n_jobs`` and ``depth`` are then unused.
    follow_symlinks : bool
        Also read links to files outside ``root`` (see :func:`hash_task`).

    Returns
    -------
    Digests

    Raises
    ------
    ScanFailed
        A worker died.
    """
    start = time.perf_counter()
    out = Digests.empty(len(paths), algorithms)
    out.bytes = int(np.sum(sizes, dtype=np.int64))
    out.on_task = on_task
    if not paths or not algorithms:
        return out
    folders = folder_codes(paths)
    bar = ByteProgress(out.bytes, enabled=progress)
    try:
        task = functools.partial(hash_task, follow_symlinks=follow_symlinks)
        if readers is not None:
            tasks = plan_tasks(sizes, readers.workers, folders)
            _run_on_readers(readers, root, paths, sizes, tasks, algorithms, bar, out, task)
        elif (threads := small_file_threads(root, paths, out.bytes, n_jobs, depth)) == 0:
            tasks = plan_tasks(sizes, n_jobs, folders)
            _run_in_processes(root, paths, tasks, algorithms, n_jobs, bar, out, task)
        else:
            tasks, large = plan_thread_tasks(sizes, n_jobs, folders, threads)
            _run_in_threads(root, paths, tasks, algorithms, n_jobs, bar, out, large, threads, task)
    finally:
        bar.close()
    out.seconds = time.perf_counter() - start
    return out


def small_file_threads(
    root: str, paths: Sequence[str], total: int, n_jobs: int, depth: int
) -> int:
    """How many threads read the small files; 0 to read on worker processes.

    Where opening a file waits for a server, ``depth`` threads: they keep that many opens in
    flight, a process one (at 1 ms per call, see ``benchmarks/bench_network.py``). Where it
    does not, more threads than cores only queue for the GIL (144,000 small files, 2 cores:
    2.4-2.9 s on 2 threads, 3.0-3.2 s on 64), and when small files dominate the per-file work
    under the GIL would outweigh a thread's share of the digesting: worker processes read them,
    their start included (144,000 files of the 5,000-session synthetic tree, warm, quiet 2-core
    machine, 2 Dec: 2.7-2.9 s on processes, 5.6-5.7 s on 2 threads).
    """
    if open_latency(root, paths) >= SLOW_OPEN:
        return depth
    if n_jobs > 1 and len(paths) * FILE_COST * n_jobs > total:
        return 0
    return min(depth, n_jobs)


def open_latency(root: str, paths: Sequence[str]) -> float:
    """Median seconds to open and close a few of ``paths`` (0 when none can be opened)."""
    times = []
    for rel in paths[:: max(1, len(paths) // _PROBES)][:_PROBES]:
        start = time.perf_counter()
        try:
            os.close(os.open(f"{root}/{rel}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError:
            continue  # reported when the file is read
        times.append(time.perf_counter() - start)
    return statistics.median(times) if times else 0.0


def _collect(
    submit: Callable[[int, np.ndarray], Future[ReadResult]],
    tasks: list[np.ndarray],
    window: int,
    bytes_read: Callable[[], int],
    bar: ByteProgress,
    out: Digests,
) -> None:
    """Run ``tasks``, at most ``window`` submitted at a time; show the bytes read meanwhile.

    Each future puts itself on a queue when it is done, and a Ctrl-C is taken between two
    looks at that queue (it wakes the wait), where this thread holds no lock: handing a task
    to a future and reading its result take the future's lock, and a KeyboardInterrupt
    raised while one was held (in ``concurrent.futures.wait``, used before, or in
    ``add_done_callback``) left it locked for good; the reading thread that finished that task
    then hung, and with it the pools' shutdown after the Ctrl-C.
    """
    finished: queue.SimpleQueue[Future[ReadResult] | None] = queue.SimpleQueue()
    todo = iter(enumerate(tasks))
    running: dict[Future[ReadResult], np.ndarray] = {}

    def start(n: int) -> None:
        for slot, rows in itertools.islice(todo, n):
            future = submit(slot, rows)
            running[future] = rows
            future.add_done_callback(finished.put)

    # A Ctrl-C puts None on the queue: the wait ends at once, and the top of the loop takes it.
    with sigint_at_checks(wake=lambda: finished.put(None)) as take_ctrl_c:
        start(window)
        while running:
            take_ctrl_c()
            try:
                future = finished.get(timeout=_POLL)
            except queue.Empty:
                pass
            else:
                if future is None:
                    continue
                out.put(running.pop(future), future.result())
                start(1)
                if not finished.empty():
                    continue  # every finished task first, then the bar
            bar.update_to(bytes_read())


def _run_in_threads(
    root: str,
    paths: Sequence[str],
    tasks: list[np.ndarray],
    algorithms: tuple[str, ...],
    n_jobs: int,
    bar: ByteProgress,
    out: Digests,
    large: int,
    depth: int,
    task: Callable[..., ReadResult],
) -> None:
    """Run the first ``large`` tasks on ``n_jobs`` threads, the others on ``depth`` threads;
    ``task`` is :func:`hash_task` with its options."""
    counts = [0] * len(tasks)
    stop = threading.Event()
    # A pool starts a thread per task submitted until it is full: small trees start few. With
    # no more small-file threads than cores (local disk), one pool reads all, large files
    # first: more threads than cores would only take turns.
    readers = ThreadPoolExecutor(n_jobs, thread_name_prefix="alfcache-read")
    openers = (
        ThreadPoolExecutor(depth, thread_name_prefix="alfcache-open")
        if depth > n_jobs
        else readers
    )

    def submit(slot: int, rows: np.ndarray) -> Future[ReadResult]:
        board = _MemoryBoard(counts, slot, stop)
        pool = readers if slot < large else openers
        return pool.submit(task, root, [paths[i] for i in rows], algorithms, board)

    try:
        _collect(submit, tasks, len(tasks), lambda: sum(counts), bar, out)
    finally:
        stop.set()  # after an error or Ctrl-C, tasks still reading stop at their next block
        for pool in (readers, openers):
            pool.shutdown(wait=True, cancel_futures=True)


def _run_in_processes(
    root: str,
    paths: Sequence[str],
    tasks: list[np.ndarray],
    algorithms: tuple[str, ...],
    n_jobs: int,
    bar: ByteProgress,
    out: Digests,
    task: Callable[..., ReadResult],
) -> None:
    # Imported here: most runs hash on threads.
    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    fd, board = tempfile.mkstemp(prefix="alfcache-progress-")
    try:
        os.ftruncate(fd, 8 * len(tasks))
        executor = get_reusable_executor(max_workers=n_jobs, initializer=ignore_interrupts)

        def submit(slot: int, rows: np.ndarray) -> Future[ReadResult]:
            task_paths = [paths[i] for i in rows]
            # Typed here: joblib has no type information.
            future: Future[ReadResult] = executor.submit(
                task, root, task_paths, algorithms, FileBoard(board, slot)
            )
            return future

        def bytes_read() -> int:
            return int(np.frombuffer(os.pread(fd, 8 * len(tasks), 0), dtype="<i8").sum())

        try:
            # A window of loky's call-queue size, as for the walk: a task waiting in loky's
            # other queue would make its shutdown(kill_workers=True) fail with a traceback.
            _collect(submit, tasks, executor.queue_size, bytes_read, bar, out)
        except BaseException as exc:
            executor.shutdown(wait=True, kill_workers=True)  # no worker may read on after this
            if isinstance(exc, TerminatedWorkerError):
                raise worker_died(exc, "hashing", "file") from exc
            raise
    finally:
        os.close(fd)
        os.unlink(board)


def _run_on_readers(
    readers: Readers,
    root: str,
    paths: Sequence[str],
    sizes: Sequence[int] | np.ndarray,
    tasks: list[np.ndarray],
    algorithms: tuple[str, ...],
    bar: ByteProgress,
    out: Digests,
    task: Callable[..., ReadResult],
) -> None:
    """Run ``tasks`` on ``readers``, :data:`READERS_WINDOW` per thread in flight at a time;
    ``task`` is :func:`hash_task` with its options."""
    cost = np.asarray(sizes, dtype=np.int64)
    running: dict[Future[ReadResult], int] = {}  # each task's planned bytes

    def submit(slot: int, rows: np.ndarray) -> Future[ReadResult]:
        future = readers.submit(task, root, [paths[i] for i in rows], algorithms, NullBoard())
        running[future] = int(cost[rows].sum())
        return future

    def bytes_read() -> int:
        # By finished task: the readers have no board this thread can read, so the bar steps
        # once per task (a large file, a task of its own, shows only once it is read whole).
        return sum(planned for future, planned in running.items() if future.done())

    try:
        _collect(submit, tasks, READERS_WINDOW * readers.workers, bytes_read, bar, out)
    except Exception as exc:
        if isinstance(exc, AlfcacheError):
            raise
        raise readers.failed(exc) from exc
    finally:
        for future in running:
            future.cancel()  # after an error or Ctrl-C: tasks not yet read are dropped
