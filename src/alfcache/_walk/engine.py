"""Scheduling of the walk: many listings in flight per process, work shared as it is found.

:mod:`alfcache._walk.scan` decides what an entry is; this module decides who lists which folder.

* In every process a :class:`Lister` runs listing threads over a pool of folder tasks. Each
  thread walks depth first on its own stack and moves the bottom of its stack (the largest
  subtree it knows) to the pool while the pool holds fewer tasks than there are threads free to
  take them. ``os.scandir`` and ``stat`` release the GIL, so on storage that makes every call
  wait, many listings are in flight at once even in a single process.
* How many threads may list at once adapts to the storage (:class:`Depth`): a process climbs
  above one listing thread only when its listings wait on storage and more of them in flight
  raise the rate. Each measurement (every ``ADAPT_SECONDS``) gives the work listed per second
  (folders plus files) and how busy the process kept the CPU (:func:`cpu_demand`). While each
  listing thread leaves most of a core idle (below ``WAITING``) the listings wait on storage:
  the process tries twice the threads (four times, far below ``WAITING``) and keeps them only
  if the rate rose by ``GAIN``; a climb that does not pay is undone and tried again ever more
  rarely. Above ``BUSY`` the listings are CPU-bound and the process tries half the threads. A
  rate alone misled: it rises and falls with the folders a measurement happens to hold (and in
  the main process with the import of Polars), and such noise made the walk climb on a warm
  local disk, where it cost up to 57% (issue 21). A ratio of CPU to wall time alone misled
  too, since waiting for the GIL or for a core looks like waiting on storage: :func:`cpu_demand`
  counts the time a thread waits for a core as busy, and the thread holding the GIL is busy
  too.
* Between processes, tasks go through one shared queue: a thread hands the bottom half of its
  stack (or of its process's pool) to the queue as one message, and only while fewer messages
  wait there than processes wait for one, since a message per folder would cost more than
  listing it. A process takes from the queue when its own threads run dry.
* Termination is counted: ``outstanding`` holds the messages of tasks not yet walked (the
  first tasks count one each). A process reports how many it took once it is idle, after its
  rows; the main process subtracts them and, at zero, knows that every folder has been listed.

Rows leave each thread as Arrow record batches every ``BATCH_ROWS`` rows and whenever its
process falls idle, so neither workers nor the main process hold Python lists of the whole tree.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import RawArray
from typing import TYPE_CHECKING, Any, Protocol

from alfcache._records import ScanResult, Skip
from alfcache._walk.scan import Rules, Stack, Start, Task, Walk

if TYPE_CHECKING:
    from pathlib import Path

    from alfcache._tables.build import Tables  # a type only: Polars stays out of the workers

DEFAULT_IO_DEPTH = 64
"""Listings in flight at most, over all processes, when the depth adapts (``io_depth=None``)."""


def depth_share(io_depth: int | None, processes: int) -> int:
    """One process's share of ``io_depth`` (None: ``DEFAULT_IO_DEPTH``), rounded up.

    The cap of that process's listing threads (:class:`Depth`): the walk's processes together
    keep at most about ``io_depth`` listings in flight.
    """
    return -(-(io_depth or DEFAULT_IO_DEPTH) // processes)


BATCH_ROWS = 50_000
"""Rows after which a thread sends what it found: memory stays flat, messages stay few."""

ADAPT_SECONDS = 0.1
"""The shortest time over which a process measures its listing rate..."""

ADAPT_LISTINGS = 8
"""...and the fewest listings (unless ``MAX_ADAPT_SECONDS`` passed): a rate needs a sample."""

MAX_ADAPT_SECONDS = 0.5

WAITING = 0.4
"""Listing threads that keep less of a core busy than this each wait on storage: a climb may
pay. Compared per thread, since on network storage the process's own CPU (and a file
system client's) grows with the listings in flight while each listing still waits."""

BUSY = 0.7
"""Listing threads that keep more of a core busy than this are CPU-bound: the depth goes down."""

GAIN = 1.5
"""Doubling the threads must raise the rate this much to be kept."""

HOLD = 10
"""Measurements to wait after the first climb that did not pay before the next try; the wait
doubles with every climb that does not pay, so a disk that never pays is seldom disturbed."""

POLL_SECONDS = 0.05
"""How long a wait lasts before it looks again at errors, stops and Ctrl-C."""

REPORT_SECONDS = 1.0
"""How often :func:`walk_here` reports what it has found so far (a Dask task's progress)."""


@dataclass
class Walked:
    """What a walk did besides its rows (those are in the tables :func:`assemble_walk` makes).

    Kept apart from the tables so that a run can let go of the walk's rows once they are in
    its plan (:mod:`alfcache._digest.tables`) and still report on the walk.
    """

    tasks: int
    """Folder tasks handed between processes, plus the root and the links followed."""
    ignored: int
    skipped: list[Skip]
    """Entries left out that the tables' ``skipped`` does not hold (links to folders not
    followed)."""
    listed: dict[str, int]
    """Folders listed, by where: ``"main"`` and ``"workers"`` (see IndexReport.listed)."""
    threads: int
    """Listing threads that listed at least one folder, summed over the processes."""
    depths: list[DepthChoice] = field(default_factory=list)
    """How far each process's depth climbed and why: the main process first."""


def assemble_walk(
    results: list[ScanResult],
    *,
    rules: Rules,
    lab: str | None,
    cache_dir: Path | None,
    tasks: int,
    skipped: list[Skip],
    listed: dict[str, int],
    threads: int,
    depths: list[DepthChoice] | None = None,
) -> tuple[Tables, Walked]:
    """A finished walk's rows assembled into tables: the last step of every backend.

    ``rules`` are the walk's own (its rows hold UUIDs only when ``rules.hash_ids``).
    """
    from alfcache._tables.build import assemble  # here: Polars stays out of the workers

    ignored = sum(r.ignored for r in results)
    tables = assemble(
        results,
        hash_ids=rules.hash_ids,
        lab=lab,
        root=rules.root,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )
    return tables, Walked(tasks, ignored, skipped, listed, threads, depths or [])


class Counter(Protocol):
    """A ``multiprocessing.Value``: an integer shared by the processes of a run."""

    value: int

    def get_lock(self) -> Any: ...

    def get_obj(self) -> Any: ...


def add(counter: Counter, n: int) -> None:
    with counter.get_lock():
        counter.value += n


class Tally:
    """The sessions and files found so far, over every process of a walk (for progress).

    Every listing thread of every process adds what each listing found, so progress moves as
    folders are listed: rows travel only every ``BATCH_ROWS`` or when a process falls idle,
    which on slow storage is the end of the walk. Each thread adds into a pair of slots of its
    own (no lock: it is their only writer), and the counts are read without a lock. A lock
    shared by every process, taken per listing, cost 10% of a warm 1M-file walk (issue 21); a
    lock per process and ctypes indexing still took 0.9 us a listing, these slots 0.4 us.

    Parameters
    ----------
    processes : int
        How many processes add: the main process's slots come first, worker ``i``'s after
        ``i + 1`` processes' slots.
    threads : int
        The most listing threads of a process; each process has one more pair of slots, for
        adds from a thread that does not list (``thread=-1``).
    """

    def __init__(self, processes: int, threads: int) -> None:
        self._array: Any = RawArray("q", 2 * processes * (threads + 1))
        self._threads = threads
        self._first = 0
        self._view = _int64s(self._array)

    def for_worker(self, worker: int) -> Tally:
        """The tally worker ``worker`` (from 0) adds into: the same counts, its own slots."""
        return _slots_of(self._array, self._threads, (worker + 1) * (self._threads + 1))

    def __reduce__(self) -> tuple[object, tuple[Any, int, int]]:
        # To a worker process: the shared array travels, with where its slots start.
        return _slots_of, (self._array, self._threads, self._first)

    def add(self, sessions: int, files: int, thread: int) -> None:
        """Count what listing thread ``thread`` of this process found; -1 for another thread
        (one at a time: its slots are shared)."""
        if sessions or files:
            at = 2 * (self._first + (thread if thread >= 0 else self._threads))
            view = self._view
            view[at] += sessions
            view[at + 1] += files

    @property
    def counts(self) -> tuple[int, int]:
        """Sessions and files found so far by every process."""
        values = self._view.tolist()
        return sum(values[0::2]), sum(values[1::2])


def _int64s(array: Any) -> memoryview:
    # Elements read and written through a memoryview: no ctypes object made per access.
    return memoryview(array).cast("B").cast("q")


def _slots_of(array: Any, threads: int, first: int) -> Tally:
    """A :class:`Tally` over the shared ``array`` whose slots start at pair ``first``."""
    tally = Tally.__new__(Tally)
    tally._array, tally._threads, tally._first = array, threads, first
    tally._view = _int64s(array)
    return tally


@dataclass(frozen=True)
class Sample:
    """One measurement of a process's listings at its current depth."""

    seconds: float
    """Wall time measured over."""
    items: int
    """Folders listed plus files found in them: the work done."""
    demand: float
    """Seconds the process's threads ran or waited for a core (see :func:`cpu_demand`)."""

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    @property
    def busy(self) -> float:
        """The cores the process kept busy or wanted: near 1 when its listings never wait."""
        return self.demand / self.seconds


def cpu_demand() -> float:
    """Seconds this process's threads have run, plus those they waited for a core to run on.

    Time spent waiting for a core counts as busy: on a loaded machine a process that lists a
    warm disk gets half a core and would otherwise look as if it waited on storage. A thread
    that waits for the GIL sleeps and is not counted, but the thread holding it is, so the
    GIL does not look like storage either. Read from ``/proc`` (Linux); elsewhere the CPU time.
    """
    total = read = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                    ran, waited, _ = f.read().split()
                total += int(ran) + int(waited)
                read += 1
    except OSError:  # no /proc
        read = 0
    # No scheduler statistics (a kernel without them): the CPU time of the process.
    return total / 1e9 if read else time.process_time()


@dataclass(frozen=True)
class DepthChoice:
    """What a process's depth reached and why it ended where it did (for ``--json``)."""

    reached: int
    """The most listing threads the process allowed at once."""
    why: str


class Depth:
    """How many listing threads a process allows: climbs only while a climb pays.

    Each :meth:`observe` reports a :class:`Sample` at the current depth. A climb (doubling, or
    four times the depth below a quarter of ``WAITING``) is tried only while the listings wait
    (``Sample.busy`` below ``WAITING`` per thread) and is judged by the next sample's rate:
    kept when it rose by ``GAIN``, undone otherwise, with a hold before the next try that
    doubles each time. CPU-bound listings (``busy`` above ``BUSY``) try half the depth, kept
    unless the rate fell by as much. :attr:`why` says what the last decision was based on.
    """

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self.value = 1
        self.reached = 1
        self.why = "capped at one listing per process" if self.cap == 1 else "the walk ended first"
        self._trial: tuple[int, float] | None = None
        """The depth and rate before the climb being judged."""
        self._hold = 0
        self._next_hold = HOLD
        self._way = 0
        """1 after a climb that paid, -1 after a descent that paid: the way to go on (a
        descent on CPU-bound listings must not be undone by a climb on the next sample)."""
        self._rates: deque[float] = deque(maxlen=3)
        """The last rates at the current depth: a try is judged against their mean, since one
        measurement may happen to hold only small folders, or only large ones."""

    def observe(self, sample: Sample) -> int:
        """The depth to use next, given a measurement at the current depth."""
        rate, busy = sample.rate, sample.busy
        self._rates.append(rate)
        rate = sum(self._rates) / len(self._rates)
        if self._trial is not None:
            (before, before_rate), self._trial = self._trial, None
            if not self._judge(before, before_rate, rate):
                return self.value
            # It paid: the next try starts at once, so a climb on slow storage is quick.
        if self._hold:
            self._hold -= 1
        elif self._way >= 0 and busy < WAITING * self.value and self.value < self.cap:
            # Listings that wait far longer than the threshold would still wait at twice the
            # depth: four times as many go in flight, and a climb to 32 takes three
            # measurements rather than five (0.4 s of a 3 s walk of network storage).
            step = 4 if busy < WAITING * self.value / 4 else 2
            self._try(min(self.cap, self.value * step), rate)
        elif busy > BUSY and self.value > 1:
            self._try(self.value // 2, rate)
        elif self.value == 1 and self.cap > 1:
            self.why = (
                f"listings kept {busy:.2f} cores busy: they do not wait on storage, so more "
                "in flight would not raise the rate"
            )
        return self.value

    def _try(self, depth: int, rate: float) -> None:
        self._trial = (self.value, rate)
        self._rates.clear()
        self.value = depth
        self.reached = max(self.reached, depth)

    def _judge(self, before: int, before_rate: float, rate: float) -> bool:
        """Keep the depth tried (True) or go back to ``before``, given the rates at both."""
        gain = rate / before_rate if before_rate else float("inf")
        if self.value > before:
            paid = gain >= GAIN
            verdict = (
                f"listings waited on storage and the climb to {self.value} raised the rate "
                f"{gain:.2f}x"
                if paid
                else f"a climb to {self.value} raised the rate {gain:.2f}x, less than {GAIN}x"
            )
        else:
            paid = gain * GAIN >= 1.0
            verdict = (
                f"listings kept the CPU busy and going down to {self.value} kept "
                f"{gain:.2f}x of the rate"
                if paid
                else f"going down to {self.value} cut the rate to {gain:.2f}x"
            )
        if paid:
            self._next_hold = HOLD
            self._way = 1 if self.value > before else -1
            self.why = verdict
        else:
            self._way = 0
            self.why = f"{verdict}: back to {before}"
            self.value = before
            self._rates.clear()
            self._hold, self._next_hold = self._next_hold, self._next_hold * 2
        return paid

    @property
    def choice(self) -> DepthChoice:
        return DepthChoice(self.reached, self.why)


class Lister:
    """The listing threads of one process and their pool of folder tasks.

    Parameters
    ----------
    rules : Rules
        The folder to walk and how (see :class:`alfcache._walk.scan.Rules`): every listing
        thread's walk follows them.
    cap : int
        The most threads that may list at once in this process.
    emit : callable
        Receives each :class:`ScanResult` as it is flushed (from any thread).
    on_idle : callable
        Called with the number of tasks taken by :meth:`add` since the last call, once the
        process has no task left and every result has been emitted.
    share : callable, optional
        Offered a thread's stack when it holds more than one task, or this process's pool
        when that does; may take tasks from its bottom for other processes, and then returns
        True.
    found : Tally, optional
        Where each listing adds the sessions and files it found (for progress).
    """

    def __init__(
        self,
        rules: Rules,
        cap: int,
        emit: Callable[[ScanResult], None],
        on_idle: Callable[[int], None],
        share: Callable[[Stack], bool] | None = None,
        found: Tally | None = None,
    ) -> None:
        self.rules = rules
        self._found = found
        self._emit = emit
        self._on_idle = on_idle
        self._share = share
        self._cond = threading.Condition()
        self._drained = threading.Condition(self._cond._lock)  # type: ignore[attr-defined]
        """Notified when a thread runs dry (see :meth:`hungry`)."""
        self._pool: deque[Task] = deque()
        self._busy = 0
        self._taken = 0
        self._idle = True
        self._stopped = False
        self._depth = Depth(cap)
        self._target = 1
        self._listings = 0
        self._items = 0
        """Listings, and listings plus files, since ``_since``."""
        self._settled = True
        """False for the first measurement after a change: new threads have not yet finished a
        listing (on slow storage one can take 30 ms), so it would undercount their gain."""
        self._threads: list[threading.Thread] = []
        self._walks: list[Walk] = []
        self._since = time.perf_counter()
        self._demand_since = cpu_demand()
        self.used = 0
        """Threads that listed at least one folder."""
        self.error: BaseException | None = None
        """What stopped a listing thread, if anything did."""

    @property
    def choice(self) -> DepthChoice:
        """How far this process's depth climbed, and why it ended where it did."""
        return self._depth.choice

    def add(self, tasks: list[Task], taken: int) -> None:
        """Hand ``tasks`` to the threads; ``taken`` of them count for :meth:`on_idle`."""
        with self._cond:
            if self._idle:  # time spent idle says nothing about the storage
                self._since, self._demand_since = time.perf_counter(), cpu_demand()
                self._listings, self._items = 0, 0
            self._pool.extend(tasks)
            self._taken += taken
            self._idle = False
            self._start_threads()
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called or a thread failed: no more tasks are listed."""
        return self._stopped

    def hungry(self) -> bool:
        """True when a thread free to list has nothing to list: time to take shared work."""
        return not self._pool and self._busy < self._target

    def wait_hungry(self, timeout: float) -> None:
        with self._cond:
            self._drained.wait_for(lambda: self.hungry() or self._stopped, timeout)

    def wait_idle(self, timeout: float) -> None:
        """Wait until every task is walked, a thread failed, or ``timeout`` passed."""
        with self._cond:
            self._cond.wait_for(lambda: self._idle or self._stopped, timeout)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop every thread after its current listing; wait up to ``timeout`` for them."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            self._drained.notify_all()
        # A listing on slow storage may take a while: an abort does not hang on it (the threads
        # are daemons and drop their work).
        end = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, end - time.monotonic()))

    def _start_threads(self) -> None:
        """Start threads up to the target (called with the lock held)."""
        while len(self._threads) < self._target:
            walk = Walk(self.rules)
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

    def _run(self, index: int, walk: Walk) -> None:
        stack: Stack = deque()
        try:
            with walk.rooted():
                self._walk(index, walk, stack)
        except BaseException as exc:  # reported by whoever waits for this process
            self.error = exc
            with self._cond:
                self._stopped = True
                self._cond.notify_all()

    def _walk(self, index: int, walk: Walk, stack: Stack) -> None:
        if (task := self._next(index, stack)) is not None:
            with self._cond:
                self.used += 1
        while task is not None:
            sessions, files = walk.list_folder(task, stack)
            if self._found is not None:
                self._found.add(sessions, files, index)
            if len(stack) > 1:
                self._give(stack)
            if walk.rows >= BATCH_ROWS:
                self._emit(walk.flush())
            self._adapt(1 + files)
            task = self._next(index, stack)

    def _next(self, index: int, stack: Stack) -> Task | None:
        if stack and index < self._target and not self._stopped:
            return stack.pop()
        with self._cond:
            if stack:  # this thread is beyond the target now: its work goes to the others
                self._pool.extend(stack)
                stack.clear()
                self._cond.notify_all()
            self._busy -= 1
            if not self._pool:
                self._drained.notify_all()
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
        self._cond.notify_all()  # wait_idle

    def _give(self, stack: Stack) -> None:
        # Threads of this process first (no message), then processes that wait: a process
        # waits only when it has a thread free and nothing for it. Unlocked reads: a stale
        # count moves one task more or less.
        if len(self._pool) < self._target - self._busy:
            with self._cond:
                self._pool.append(stack.popleft())
                self._cond.notify_all()
        elif self._share is not None:
            if len(self._pool) > 1:  # what another process handed here, not listed yet
                with self._cond:
                    self._share(self._pool)
            else:
                self._share(stack)

    def _adapt(self, items: int) -> None:
        """Count a listing of ``items`` (itself and its files); now and then let
        :class:`Depth` choose the number of threads."""
        # Unlocked: a count lost to a race does not change a verdict.
        self._listings += 1
        self._items += items
        now = time.perf_counter()
        elapsed = now - self._since
        if elapsed < ADAPT_SECONDS or (
            self._listings < ADAPT_LISTINGS and elapsed < MAX_ADAPT_SECONDS
        ):
            return
        with self._cond:
            elapsed = now - self._since
            if elapsed < ADAPT_SECONDS:
                return  # another thread measured meanwhile
            demand = cpu_demand()
            # A thread that ended takes its count along: never below zero.
            sample = Sample(elapsed, self._items, max(0.0, demand - self._demand_since))
            self._since, self._demand_since, self._listings, self._items = now, demand, 0, 0
            if not self._settled:
                self._settled = True
                return
            target = self._depth.observe(sample)
            if target != self._target:
                self._target = target
                self._settled = False
                self._start_threads()
                self._cond.notify_all()


class Sharer:
    """Hands work to the other processes while fewer messages wait in the queue than processes
    wait: half of a stack (or pool) of folder tasks per message, the bottom half (the largest
    subtrees)."""

    def __init__(
        self,
        tasks: Queue[list[Task] | None],
        queued: Counter,
        waiting: Counter,
        outstanding: Counter,
    ):
        self._tasks = tasks
        self._queued = queued
        self._waiting = waiting
        self._outstanding = outstanding
        # Read after every listing, without their locks (a stale count moves one message more
        # or less), through memoryviews: ctypes' .value took 0.29 us a read, these 0.06.
        self._queued_now = _int64s(queued.get_obj())
        self._waiting_now = _int64s(waiting.get_obj())
        self.enabled = True
        self.shared = 0
        """Tasks this process put on the queue."""

    def __call__(self, stack: Stack) -> bool:
        if not (self.enabled and len(stack) > 1 and self._queued_now[0] < self._waiting_now[0]):
            return False
        # Half, not one: a tree's top folders are many and small (a lab's subjects), and a
        # process handed one at a time spent 12% of a warm 1M-file walk waiting for the next.
        tasks = [stack.popleft() for _ in range(len(stack) // 2)]
        add(self._outstanding, 1)  # before the put: the count never reaches 0 too early
        add(self._queued, 1)
        self._tasks.put(tasks)
        self.shared += len(tasks)
        return True


def serve(
    lister: Lister, tasks: Queue[list[Task] | None], queued: Counter, waiting: Counter
) -> None:
    """Feed ``lister`` from the shared queue whenever it runs dry; return at the sentinel.

    While it waits, the process counts in ``waiting``: the other processes share tasks then.
    Each message counts once in ``outstanding``, however many tasks it holds. Returns too
    once the lister is stopped (a walk aborted with tasks left would have it spin).
    """
    while lister.error is None and not lister.stopped:
        if not lister.hungry():
            lister.wait_hungry(POLL_SECONDS)
            continue
        add(waiting, 1)
        try:
            message = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
        finally:
            add(waiting, -1)
        if message is None:
            return
        add(queued, -1)
        lister.add(message, taken=1)


def work(
    rules: Rules,
    cap: int,
    tasks: Queue[list[Task] | None],
    queued: Counter,
    waiting: Counter,
    outstanding: Counter,
    conn: Connection,
    found: Tally | None = None,
) -> None:
    """A worker process: list what the shared queue holds, send rows and reports on ``conn``.

    Messages, in order: ``("rows", ScanResult)``, ``("idle", n)`` once the ``n`` tasks taken
    since the last report are walked, and at the end ``("end", (threads that listed,
    DepthChoice))`` or ``("error", message)``. ``rules`` as for :class:`Lister`, pickled as
    they are (the arguments are positional: a worker process is started with a tuple of them).
    """
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with lock:
            conn.send(message)

    lister = Lister(
        rules,
        cap,
        emit=lambda result: send(("rows", result)),
        on_idle=lambda n: send(("idle", n)),
        share=Sharer(tasks, queued, waiting, outstanding),
        found=found,
    )
    serve(lister, tasks, queued, waiting)
    lister.stop()
    if lister.error is not None:
        send(("error", f"{type(lister.error).__name__}: {lister.error}"))
        return
    send(("end", (lister.used, lister.choice)))


def walk_here(
    rules: Rules,
    starts: list[Start],
    cap: int,
    report: Callable[[int, int], None] | None = None,
) -> tuple[list[ScanResult], int]:
    """Walk from ``starts`` in this process alone, on its listing threads (a Dask task's walk).

    The same walk as a worker process's, fed from a list instead of the shared queue; with
    ``rules.hash_ids`` False its rows' ids are null (see :class:`alfcache._walk.scan.Rules`).
    ``report`` is given the sessions and files found so far every ``REPORT_SECONDS``.

    Returns
    -------
    list of ScanResult
        Everything the walk found, in the order its threads flushed it.
    int
        Listing threads that listed at least one folder.
    """
    results: list[ScanResult] = []  # appended from the listing threads: list.append is atomic
    done = threading.Event()
    found = Tally(1, cap)
    lister = Lister(
        rules,
        cap,
        emit=results.append,
        on_idle=lambda _: done.set(),  # called after the last rows were emitted
        found=found,
    )
    walk = Walk(rules)
    tasks = [walk.start(start) for start in starts]
    results.append(walk.flush())
    try:
        lister.add(tasks, taken=len(tasks))
        reported = time.perf_counter()
        while not done.wait(POLL_SECONDS):
            if lister.error is not None:
                raise lister.error
            if report is not None and time.perf_counter() - reported >= REPORT_SECONDS:
                report(*found.counts)
                reported = time.perf_counter()
    finally:
        lister.stop()
    if lister.error is not None:
        raise lister.error
    return results, lister.used
