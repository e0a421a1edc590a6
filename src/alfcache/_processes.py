"""The room for a run's worker processes: how they start, what they ignore, how they end.

Worker processes are *forked* when that is safe, because a forked worker costs a few
milliseconds and no imports, where a fresh interpreter (spawn, loky) costs 0.4-2 s and about
70 MiB. Forking is safe only while the main process runs a single thread and has not imported
Polars: fork copies the calling thread alone, so Polars's thread pool would be dead in the
child and the first Polars call there would hang. The walk therefore forks its workers first,
before it starts its listing threads and before the main process imports Polars. When a caller has
loaded Polars already (a notebook, a test suite), workers come from a fork server instead: one
fresh interpreter, started once per process, that forks the workers from a clean state.

Every worker ignores SIGINT (Ctrl-C belongs to the main process, which kills the workers),
dies with its parent (``PR_SET_PDEATHSIG``), and is named ``alfcache-walk`` in ``/proc/PID/comm``
so that tools and tests can tell it apart. :meth:`Processes.kill` sends SIGKILL and reaps.
The pools of other runners (loky's for reading files, a Dask ``LocalCluster``) are started
with the same rule: :func:`ignore_interrupts` in each worker, :func:`sigint_deferred` around
the start.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from multiprocessing.context import DefaultContext, ForkContext, ForkServerContext
    from types import FrameType

Context: TypeAlias = "ForkContext | ForkServerContext | DefaultContext"
"""A start method's context: what :func:`context` and ``multiprocessing.get_context()`` return
(``BaseContext``, their base, has no ``Process``)."""

WORKER_NAME = "alfcache-walk"
"""The name of a worker process in ``/proc/PID/comm``."""

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def fork_is_safe() -> bool:
    """True when a forked child would inherit a usable state: one thread, no Polars."""
    return (
        sys.platform == "linux" and "polars" not in sys.modules and threading.active_count() == 1
    )


def context() -> ForkContext | ForkServerContext:
    """The cheapest start method that is safe now (see the module's docstring)."""
    if fork_is_safe():
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    # The fork server imports the scanner once; every worker it forks then starts warm.
    ctx.set_forkserver_preload(["alfcache._walk.scan"])
    return ctx


_FORK_SIGNALS = {signal.SIGINT, signal.SIGTERM}
"""Blocked while a worker is forked: until :func:`become_worker` has reset them, the child
would run the parent's Python handlers (the command line turns SIGTERM into an error, which a
worker would print as a traceback when the main process ends it)."""


def become_worker() -> None:
    """First thing in a worker: ignore Ctrl-C, die with the parent, carry the worker's name."""
    ignore_interrupts()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the main process's way to end us
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORK_SIGNALS)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.prctl(_PR_SET_NAME, WORKER_NAME.encode(), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the main process still kills us on abort
        pass


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Keep a fork server's worker from importing the caller's ``__main__``.

    multiprocessing re-runs the main script (or module) in such a worker, to find functions
    defined there; a worker runs alfcache's code only, and a script that calls ``index()``
    without an ``if __name__ == "__main__"`` guard would index again in it, then fail.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    try:
        if "__file__" in saved:
            del main.__file__  # type: ignore[union-attr]
        if "__spec__" in saved:
            main.__spec__ = None  # type: ignore[union-attr]
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def _worker(target: Callable[..., None], args: tuple[Any, ...]) -> None:
    become_worker()
    target(*args)


class Processes:
    """The worker processes of one run."""

    def __init__(self) -> None:
        self.procs: list[BaseProcess] = []

    def start(
        self, ctx: Context, target: Callable[..., None], args: tuple[Any, ...]
    ) -> BaseProcess:
        """Start one worker that runs ``target(*args)``."""
        proc = ctx.Process(target=_worker, args=(target, args), daemon=True)
        if ctx.get_start_method() == "fork":
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _FORK_SIGNALS)
            try:
                proc.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        else:
            with _main_hidden():
                proc.start()
        self.procs.append(proc)
        return proc

    def dead(self) -> list[int]:
        """Exit codes of workers that ended with an error or a signal (negative codes)."""
        return [p.exitcode for p in self.procs if p.exitcode not in (None, 0)]

    def join(self) -> None:
        for proc in self.procs:
            proc.join()

    def kill(self) -> None:
        """SIGKILL every worker still running, then reap them all: none may outlive the run."""
        for proc in self.procs:
            if proc.exitcode is None:
                proc.kill()
        self.join()


def ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C is for the main process, which then kills the workers.

    A terminal sends SIGINT to the workers too; a worker that died of it first would turn an
    interrupt into a "worker died" error, or print loky's traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def sigint_at_checks(wake: Callable[[], object] | None = None) -> Iterator[Callable[[], None]]:
    """Hold a Ctrl-C back during the block, but for the calls of the function it yields.

    For work in the main thread that a KeyboardInterrupt must not cut just anywhere, and that
    says where it may: a loop that takes locks shared with other threads (a future's, to hand
    it a task or read its result; raised between the acquire of a ``threading.Condition`` and
    the ``with`` that would release it, a KeyboardInterrupt leaves the lock taken, and the
    thread that needs it next hangs, and so does the pool's shutdown), or the write of the
    tables (a temporary file not yet noted for removal, one table renamed and not the other).
    The block calls the yielded function where nothing is half done: a Ctrl-C received
    meanwhile is handed there to the handler the block found (which raises KeyboardInterrupt,
    as the default does); ``wake`` is called on each Ctrl-C, so that a wait of a loop can end
    at once. Outside the main thread, or with Ctrl-C ignored, the function does nothing.
    """
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or handler in (
        signal.SIG_IGN,
        None,  # installed outside Python: leave it alone
    ):
        yield lambda: None
        return
    received: list[int] = []

    def note(signum: int, _: FrameType | None) -> None:
        received.append(signum)
        if wake is not None:
            wake()

    def check() -> None:
        if received:
            received.clear()
            signal.signal(signal.SIGINT, handler)
            signal.raise_signal(signal.SIGINT)  # the handler runs here, before this returns

    signal.signal(signal.SIGINT, note)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, handler)
        if received:  # one came after the last check: it is not lost
            signal.raise_signal(signal.SIGINT)


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block ends, where it raises KeyboardInterrupt as usual.

    For the steps that a KeyboardInterrupt must not cut in two: starting the workers and the
    pool's threads (they inherit the blocked signal: a worker interrupted while it imports,
    before :func:`ignore_interrupts` runs, prints a traceback) and handing a task to loky (an
    interrupted ``submit`` leaves a work id that loky's manager thread dies on, with a
    KeyError traceback, when the pool is killed). Outside the main thread, which gets no
    KeyboardInterrupt, it only blocks the signal.
    """
    # Started first: starting it unblocks SIGINT in this thread (Python 3.11's multiprocessing
    # restores no signal mask), which loky would otherwise do while it starts the workers.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        # A thread started before the block may still take the signal: it is held back too.
        with sigint_at_checks():
            yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # a pending one is delivered now


def describe_exit_codes(codes: list[int]) -> str:
    """``{SIGKILL(-9)}`` for a worker killed by SIGKILL, as loky writes it; ``{1}`` for an exit."""
    shown = []
    for code in codes:
        try:
            shown.append(f"{signal.Signals(-code).name}({code})" if code < 0 else str(code))
        except ValueError:
            shown.append(str(code))
    return "{" + ", ".join(shown) + "}"
