"""The command line: the dispatcher of thin commands over library calls.

Each verb lives in its own ``_cmd_<verb>`` module (its arguments and its ``run``); this one
builds the parser from them, runs the chosen verb and turns what it raises into an exit code.

Every command maps alfcache's exceptions to a one-line message and an exit code; ``--debug``
shows the traceback instead. Human output goes to stderr, ``--json`` output to stdout.

Exit codes: 0 success, 1 the run failed, 2 bad input, 130 interrupted. :func:`main` returns
them; the process (``alfcache``, ``python -m alfcache``: :func:`alfcache.__main__.run`) exits
with them, except that an interrupted run ends by SIGINT once it has printed its one line and
shut down, which a shell shows as 130 (see :mod:`alfcache.__main__` for why).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType, TracebackType
from typing import NoReturn

from alfcache._cli import index as _cmd_index
from alfcache._cli import info as _cmd_info
from alfcache._cli import merge as _cmd_merge
from alfcache._cli import prune as _cmd_prune
from alfcache._cli import synth as _cmd_synth
from alfcache._cli import verify as _cmd_verify
from alfcache._exceptions import (
    AlfcacheError,
    BadArgument,
    BadOutDir,
    BadRoot,
    LabConflict,
    MergeFailed,
    OutDirNotWritable,
    RootNotReadable,
)
from alfcache._version import __version__

EXIT_INTERRUPTED = 130
"""128 + SIGINT, the status a shell shows for a program that Ctrl-C ended."""

_BAD_INPUT = (
    BadArgument,
    BadOutDir,
    BadRoot,
    LabConflict,
    MergeFailed,
    OutDirNotWritable,
    RootNotReadable,
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other alfcache error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"alfcache: error: {message} (see: {self.prog} --help)\n")


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (OS and library messages may span several)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="alfcache", description="Index ALF data folders into ONE-api cache tables."
    )
    parser.add_argument("--version", action="version", version=f"alfcache {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    for verb in (_cmd_index, _cmd_merge, _cmd_verify, _cmd_info, _cmd_prune, _cmd_synth):
        verb.add_parser(commands)
    return parser


_RESEND_SECONDS = 0.01
"""How long after a Ctrl-C a finalizer dropped it is sent again (see :func:`_note_interrupts`)."""


def _note_interrupts() -> list[int]:
    """Record each SIGINT (then raise KeyboardInterrupt as Python does); the list of them.

    Some imports turn a KeyboardInterrupt into another error (NumPy's C extension raises an
    ImportError): with the record, that error is still reported as the interruption it is.
    Others drop it: a finalizer, or an extension's function that cannot raise (Cython prints
    the error through ``sys.excepthook``, then reports it to ``sys.unraisablehook``). Such a
    Ctrl-C is shown by neither hook and sent again. :func:`main` puts both hooks back.
    """
    received: list[int] = []
    unraisable = sys.unraisablehook
    excepthook = sys.excepthook
    again: list[threading.Timer] = []

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        signal.default_int_handler(signum, frame)

    def send_again() -> None:
        # From another thread, once the hook has returned: raised in the hook, it would be
        # dropped as well. Once per interrupt, which Cython shows to both hooks.
        if again and again[-1].is_alive():
            return
        timer = threading.Timer(_RESEND_SECONDS, os.kill, (os.getpid(), signal.SIGINT))
        timer.daemon = True
        timer.start()
        again.append(timer)

    def on_unraisable(args: sys.UnraisableHookArgs) -> None:
        # A Ctrl-C raised inside a finalizer (one runs while Polars is imported) was dropped
        # there, with a traceback, and the run went on to write its tables.
        if isinstance(args.exc_value, KeyboardInterrupt):
            send_again()
        else:
            unraisable(args)

    def on_printed(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            send_again()
        else:
            excepthook(kind, value, tb)

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_sigint)
        sys.unraisablehook = on_unraisable
        sys.excepthook = on_printed
    return received


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    hooks = sys.excepthook, sys.unraisablehook
    try:
        return _run(argv, _note_interrupts())
    finally:
        # An exception raised from here (``--debug``) is shown as usual.
        sys.excepthook, sys.unraisablehook = hooks


def _run(argv: Sequence[str] | None, interrupts: list[int]) -> int:
    try:
        args = _parser().parse_args(argv)
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = func(args)
        # The work is done and reported: a Ctrl-C now would only print a traceback from the
        # interpreter's shutdown (joining threads, atexit hooks).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return code
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        return _interrupted(exc)
    except Exception as exc:
        if args.debug:
            raise
        if interrupts:  # the KeyboardInterrupt was turned into this error on its way up
            return _interrupted(exc)
        if isinstance(exc, AlfcacheError):
            _error(exc)
            return 2 if isinstance(exc, _BAD_INPUT) else 1
        if isinstance(exc, OSError):
            _error(exc)
            return 1
        raise


def _notes(exc: BaseException) -> None:
    """What the run noted on the exception on its way up (a checkpoint it saved), a line each."""
    for note in getattr(exc, "__notes__", ()):
        print(f"alfcache: {note}", file=sys.stderr)


def _error(exc: BaseException) -> None:
    print(f"alfcache: error: {_one_line(exc)}", file=sys.stderr)
    _notes(exc)


def _interrupted(exc: BaseException) -> int:
    print(
        "alfcache: interrupted; no table was written, the previous tables are unchanged",
        file=sys.stderr,
    )
    _notes(exc)
    return EXIT_INTERRUPTED
