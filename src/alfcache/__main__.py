"""The process around the command line: ``python -m alfcache`` and the ``alfcache`` command.

An interrupted run ends by SIGINT, after its one-line message and a normal interpreter
shutdown, as a shell expects of a program the user stopped with Ctrl-C: a shell shows exit
status 130 for it and a shell script stops there, where it would run on after a plain
``exit(130)``. It is also the only exit that does not depend on timing: CPython ends by SIGINT
when any ``exec`` or ``eval`` of a string (a dataclass or named tuple being created, as
libraries do while they import) was cut short by a KeyboardInterrupt, even one handled later,
until the next such evaluation clears its flag (``_Py_UnhandledKeyboardInterrupt``,
``Python/pythonrun.c`` and ``Modules/main.c``). So the exit is made that way every time, by
leaving the KeyboardInterrupt unhandled, with its traceback silenced.

Any other run ends by :func:`_exit`: a normal exit's work for others (threads joined, exit
handlers run, output flushed) without the interpreter's teardown of every module.

The process also asks its allocators to give freed memory back at once (see
:func:`_return_freed_memory`); a program that imports alfcache as a library keeps its own
settings.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import NoReturn

_GLIBC_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 20


def _return_freed_memory() -> None:
    """Make the allocators of this process and its workers return freed memory to the system.

    At a million files the tables are built by a chain of whole-column copies (Polars frames,
    Arrow tables, Parquet pages), each freed before the next is much used; with the default
    settings the allocators keep the freed memory for reuse, and the run's peak resident size
    was about 680 MiB where its live data never exceeded 450 MiB. Polars' own jemalloc (its
    symbols are prefixed ``_rjem_``, and so is its variable) reads its configuration when
    Polars loads, after this; glibc keeps freed blocks below its mmap threshold, which grows
    with every large block freed (up to 32 MiB): fixing it at 1 MiB returns the walk's
    received batches once their rows are in a frame. An explicit setting of either is kept.
    """
    os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc
        return
    mallopt(_GLIBC_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def _quiet_interrupt(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    # The one-line message is printed already; any other exception is shown as usual.
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)


def _end_by_sigint() -> NoReturn:
    """Shut the interpreter down, then end by SIGINT (CPython's way for a KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # another Ctrl-C now would only interrupt that
    sys.excepthook = _quiet_interrupt
    raise KeyboardInterrupt from None


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line in this process and end it with the command line's exit code."""
    _return_freed_memory()
    try:
        from alfcache._cli.main import EXIT_INTERRUPTED, main
    except KeyboardInterrupt:  # a Ctrl-C before the command line can catch it is one line too
        message = "interrupted; no table was written, the previous tables are unchanged"
        print(f"alfcache: {message}", file=sys.stderr)
        _end_by_sigint()
    code = main(argv)
    if code == EXIT_INTERRUPTED:
        _end_by_sigint()
    _exit(code)


def _exit(code: int) -> NoReturn:
    """End the process with ``code``: a normal exit's work for others, without its teardown.

    What a normal exit does that anything depends on is done here, as CPython does it:
    non-daemon threads are joined, then the ``atexit`` handlers run (multiprocessing's,
    logging's, concurrent.futures', Dask's), and the standard streams are flushed. What is
    skipped is the teardown of every module and the C++ static destructors of PyArrow and
    Polars: 55 ms of every run, 4% of indexing 175k warm files (issue 21). A ``--json`` reader
    that closed its end of the pipe early gets no error from the last flush, as it would from
    a normal exit either (there, a warning and exit status 120).
    """
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed stream
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
