"""The command line: thin commands over library calls.

Every command maps alfcache's exceptions to a one-line message and an exit code; ``--debug``
shows the traceback instead. Human output goes to stderr, ``--json`` output to stdout.

Exit codes: 0 success, 1 the run failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from alfcache import __version__, _cmd_info, _cmd_merge, _cmd_prune, _cmd_verify
from alfcache._cmd_common import jobs as _jobs
from alfcache._exceptions import (
    AlfcacheError,
    BadArgument,
    BadOutDir,
    BadRoot,
    LabConflict,
    MergeFailed,
    OutDirNotWritable,
    RootNotReadable,
    Terminated,
)
from alfcache._lock import DEFAULT_TIMEOUT
from alfcache._sharding import ArrayShard, parse_shard, shard_from_env

_BAD_INPUT = (
    BadArgument,
    BadOutDir,
    BadRoot,
    LabConflict,
    MergeFailed,
    OutDirNotWritable,
    RootNotReadable,
)

if TYPE_CHECKING:
    from alfcache._scan import Skip

_SHOWN_SKIPS = 5


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other alfcache error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"alfcache: error: {message} (see: {self.prog} --help)\n")


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (OS and library messages may span several)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of listings") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} listings in flight: use a positive number")
    return value


def _shard(text: str) -> ArrayShard:
    try:
        return parse_shard(text)
    except BadArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} seconds: use 0 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="alfcache", description="Index ALF data folders into ONE-api cache tables."
    )
    parser.add_argument("--version", action="version", version=f"alfcache {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    idx = commands.add_parser("index", help="write sessions.pqt and datasets.pqt for ROOT")
    idx.add_argument("root", help="folder to index")
    idx.add_argument("--out-dir", help="where to write the tables (default: ROOT)")
    idx.add_argument(
        "--jobs",
        "-j",
        type=_jobs,
        default=-1,
        help="worker processes (default: all cores; 1 scans in this process)",
    )
    idx.add_argument(
        "--io-depth",
        type=_depth,
        help="folder listings in flight at most, over all processes (default: adapts to the "
        "storage, up to 64)",
    )
    idx.add_argument("--lab", help="lab name for sessions whose folders carry none")
    idx.add_argument(
        "--no-hash-ids",
        action="store_true",
        help="use ALF paths as ids instead of UUID v3 (ONE-api's client, 3.0 and 3.6 alike, "
        "rejects path ids as eids: for other tools only)",
    )
    idx.add_argument(
        "--hash-files", action="store_true", help="store the MD5 of every file (= --hash md5)"
    )
    idx.add_argument(
        "--hash",
        choices=("md5", "xxh3", "both"),
        help="digests to store: md5 in 'hash' (what ONE-api checks), xxh3 in 'xxh3_128'",
    )
    idx.add_argument(
        "--update",
        action="store_true",
        help="read only new and changed files; take the rest from the tables in the output "
        "folder (and their digests, unless --hash says otherwise)",
    )
    idx.add_argument(
        "--keep-missing",
        action="store_true",
        help="with --update: keep datasets whose files vanished, with exists=False",
    )
    idx.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symbolic links to folders (each folder once)",
    )
    idx.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="index only shard K of N (K from 0) for one task of an array job; default in a "
        "SLURM array: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT. "
        "Join the parts with 'alfcache merge'",
    )
    idx.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="wait this long for another run writing into the output folder, then fail "
        f"with exit code 1 (default: {DEFAULT_TIMEOUT:g})",
    )
    idx.add_argument("--quiet", "-q", action="store_true", help="no progress and no summary")
    idx.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    idx.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    idx.set_defaults(func=_index)

    synth = commands.add_parser("synth", help="generate a synthetic ALF tree (demo, benchmarks)")
    synth.add_argument("root", help="folder to write the tree into")
    synth.add_argument("--sessions", type=int, default=200, help="number of sessions")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--force", action="store_true", help="write into ROOT even if it is not empty"
    )
    synth.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    synth.set_defaults(func=_synth)
    for verb in (_cmd_merge, _cmd_verify, _cmd_info, _cmd_prune):
        verb.add_parser(commands)
    return parser


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM is how a batch scheduler ends a job at its time limit: end like Ctrl-C, but say
    # so, and let the hashing save its checkpoint on the way out (alfcache._checkpoint).
    raise Terminated(
        "terminated by SIGTERM (a job's time limit?); no table was written, the previous "
        "tables are unchanged"
    )


def _check_index_options(args: argparse.Namespace) -> None:
    """Options that contradict each other, told with their command-line names."""
    if args.hash_files and args.hash == "xxh3":
        raise BadArgument(
            "--hash-files asks for the MD5 that ONE-api checks, but --hash xxh3 computes none; "
            "use --hash both, or drop --hash-files"
        )
    if args.keep_missing and not args.update:
        raise BadArgument("--keep-missing needs --update: only an update sees what vanished")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _print_records(kind: str, records: Sequence[Skip]) -> None:
    """The first records of a kind on stderr, then how many more ``--json`` lists."""
    for s in records[:_SHOWN_SKIPS]:
        print(f"alfcache: {kind} {s.path}: {s.reason}: {s.message}", file=sys.stderr)
    if len(records) > _SHOWN_SKIPS:
        n = len(records) - _SHOWN_SKIPS
        label = "skipped" if kind == "skipped" else _plural(n, kind).partition(" ")[2]
        print(f"alfcache: ... {n} more {label} (all are listed with --json)", file=sys.stderr)


def _index(args: argparse.Namespace) -> int:
    from alfcache._index import index

    shard = args.shard or shard_from_env(os.environ)
    if shard and not args.shard and not args.quiet:
        print(f"alfcache: indexing shard {shard} of a SLURM array job", file=sys.stderr)
    previous_handler = signal.signal(signal.SIGTERM, _terminate)
    _check_index_options(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = index(
                args.root,
                args.out_dir,
                hash_ids=not args.no_hash_ids,
                hash_files=args.hash_files,
                hash_algorithm=args.hash,
                lab=args.lab,
                n_jobs=args.jobs,
                io_depth=args.io_depth,
                follow_symlinks=args.follow_symlinks,
                progress=not args.quiet,
                update=args.update,
                keep_missing=args.keep_missing,
                lock_timeout=args.lock_timeout,
                shard=shard,
            )
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
    if not args.quiet:
        for w in caught:
            print(f"alfcache: warning: {w.message}", file=sys.stderr)
        _print_records("skipped", report.skipped)
        _print_records("notice", report.notices)
        if report.loadability:
            print(f"alfcache: {report.loadability}", file=sys.stderr)
        if report.changes:
            c = report.changes
            fate = "kept with exists=False" if args.keep_missing else "dropped"
            unknown = f", {c.unknown} read again (no time recorded)" if c.unknown else ""
            print(
                f"alfcache: update: {c.new} new, {c.changed} changed, {c.unchanged} unchanged"
                f"{unknown}, {c.vanished} vanished ({fate}), {c.carried_over} carried over "
                "(below entries not indexed: see skipped)",
                file=sys.stderr,
            )
        if report.hashing and report.hashing.files:
            h = report.hashing
            print(
                f"alfcache: hashed {h.files} files ({h.bytes / 1e6:,.1f} MB, "
                f"{'+'.join(h.algorithms)}) in {h.seconds:.2f} s, {h.rate / 1e6:,.0f} MB/s",
                file=sys.stderr,
            )
        notices = _plural(len(report.notices), "notice")
        print(
            f"alfcache: {_plural(report.sessions, 'session')}, "
            f"{_plural(report.datasets, 'dataset')} ({report.bytes / 1e6:,.1f} MB) in "
            f"{report.seconds:.2f} s with {_plural(report.n_jobs, 'worker')}, "
            f"{len(report.skipped)} skipped (not indexed), {notices} (indexed) "
            f"-> {report.sessions_table.parent}{f' (shard {shard})' if shard else ''}",
            file=sys.stderr,
        )
    if args.json:
        summary = report.as_dict()
        summary["warnings"] = [str(w.message) for w in caught]
        print(json.dumps(summary, indent=2))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from alfcache._synth import make_tree

    if args.sessions < 0:
        raise BadArgument(f"--sessions {args.sessions}: use zero or more")
    root = Path(args.root)
    # Fake files written into a real lab tree would be indexed as data: never without asking.
    if not args.force and root.is_dir() and any(root.iterdir()):
        raise BadArgument(
            f"{root} is not empty; synth writes made-up datasets. Pass an empty or new folder, "
            "or --force to write into it anyway"
        )
    if root.exists() and not root.is_dir():
        raise BadArgument(f"{root} is a file; pass a folder to write the tree into")
    tree = make_tree(root, args.sessions, seed=args.seed)
    print(
        f"alfcache: wrote {tree.sessions} sessions, {tree.datasets} datasets and "
        f"{tree.non_alf_files} non-ALF files ({tree.bytes / 1e6:,.1f} MB) to {tree.root}",
        file=sys.stderr,
    )
    return 0


def _note_interrupts() -> list[int]:
    """Record each SIGINT (then raise KeyboardInterrupt as Python does); the list of them.

    Some imports turn a KeyboardInterrupt into another error (NumPy's C extension raises an
    ImportError): with the record, that error is still reported as the interruption it is.
    """
    received: list[int] = []

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        signal.default_int_handler(signum, frame)

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_sigint)
    return received


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    interrupts = _note_interrupts()
    try:
        args = _parser().parse_args(argv)
    except KeyboardInterrupt:
        return _interrupted()
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = func(args)
        # The work is done and reported: a Ctrl-C now would only print a traceback from the
        # interpreter's shutdown (joining threads, atexit hooks).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return code
    except KeyboardInterrupt:
        if args.debug:
            raise
        return _interrupted()
    except Exception as exc:
        if args.debug:
            raise
        if interrupts:  # the KeyboardInterrupt was turned into this error on its way up
            return _interrupted()
        if isinstance(exc, AlfcacheError):
            print(f"alfcache: error: {_one_line(exc)}", file=sys.stderr)
            return 2 if isinstance(exc, _BAD_INPUT) else 1
        if isinstance(exc, OSError):
            print(f"alfcache: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        raise


def _interrupted() -> int:
    print(
        "alfcache: interrupted; no table was written, the previous tables are unchanged",
        file=sys.stderr,
    )
    return 130


if __name__ == "__main__":
    sys.exit(main())
