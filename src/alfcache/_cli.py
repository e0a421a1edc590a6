"""The command line: thin commands over library calls.

Every command maps alfcache's exceptions to a one-line message and an exit code; ``--debug``
shows the traceback instead. Human output goes to stderr, ``--json`` output to stdout.

Exit codes: 0 success, 1 the run failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from alfcache import __version__, _cmd_info, _cmd_prune, _cmd_verify
from alfcache._cmd_common import jobs as _jobs
from alfcache._exceptions import (
    AlfcacheError,
    BadArgument,
    BadOutDir,
    BadRoot,
    LabConflict,
    OutDirNotWritable,
    RootNotReadable,
)

if TYPE_CHECKING:
    from alfcache._scan import Skip

_BAD_INPUT = (BadArgument, BadOutDir, BadRoot, LabConflict, OutDirNotWritable, RootNotReadable)
_SHOWN_SKIPS = 5


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
    for verb in (_cmd_verify, _cmd_info, _cmd_prune):
        verb.add_parser(commands)
    return parser


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

    _check_index_options(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = index(
            args.root,
            args.out_dir,
            hash_ids=not args.no_hash_ids,
            hash_files=args.hash_files,
            hash_algorithm=args.hash,
            lab=args.lab,
            n_jobs=args.jobs,
            follow_symlinks=args.follow_symlinks,
            progress=not args.quiet,
            update=args.update,
            keep_missing=args.keep_missing,
        )
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
            f"-> {report.sessions_table.parent}",
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(
            "alfcache: interrupted; no table was written, the previous tables are unchanged",
            file=sys.stderr,
        )
        return 130
    except AlfcacheError as exc:
        if args.debug:
            raise
        print(f"alfcache: error: {_one_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, _BAD_INPUT) else 1
    except OSError as exc:
        if args.debug:
            raise
        print(f"alfcache: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
