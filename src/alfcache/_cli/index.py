"""``alfcache index ROOT``: write sessions.pqt and datasets.pqt for a data folder.

The command line over :func:`alfcache._index.index`; ``alfcache._cli.main`` dispatches to it and
maps its errors. The summary (the first skipped entries and notices, the update's and the
hashing's counts, one closing line) goes to stderr; ``--json`` prints the whole report on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from alfcache._alf.sharding import ArrayShard, parse_shard, shard_from_env
from alfcache._cli.common import add_any_origin, add_common, add_lock_timeout, jobs
from alfcache._exceptions import BadArgument, Terminated
from alfcache._paths import plural, shown
from alfcache._progress import megabytes

if TYPE_CHECKING:
    from alfcache._records import Skip

_SHOWN_SKIPS = 5


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


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``index`` verb to the command line's subparsers."""
    idx = subparsers.add_parser("index", help="write sessions.pqt and datasets.pqt for ROOT")
    idx.add_argument("root", help="folder to index")
    idx.add_argument("--out-dir", help="where to write the tables (default: ROOT)")
    idx.add_argument(
        "--jobs",
        "-j",
        type=jobs,
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
        "--only",
        action="append",
        metavar="PATH",
        help="with --update: walk only this folder or file (absolute or relative to ROOT; "
        "repeatable) and carry every other row over untouched",
    )
    idx.add_argument(
        "--only-from",
        metavar="FILE",
        help="with --update: as --only, for each path in FILE (one a line; - for stdin)",
    )
    add_any_origin(idx, update=True)
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
    add_lock_timeout(idx, "the output folder")
    idx.add_argument(
        "--backend",
        choices=("processes", "dask"),  # alfcache._walk.dask.BACKENDS, which would load pyarrow
        default="processes",
        help="who walks and reads files: this machine's processes (default) or a Dask "
        "cluster (needs --scheduler and pip install 'alfcache[dask]')",
    )
    idx.add_argument(
        "--scheduler",
        metavar="ADDRESS|local",
        help="with --backend dask: the scheduler's address (tcp://host:8786), or 'local' for "
        "a LocalCluster of --jobs workers on this machine",
    )
    add_common(idx, "print a JSON summary on stdout")
    idx.set_defaults(func=run)


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM is how a batch scheduler ends a job at its time limit: end like Ctrl-C, but say
    # so, and let the hashing save its checkpoint on the way out (alfcache._digest.checkpoint).
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
    if args.any_origin and not args.update:
        raise BadArgument("--any-origin needs --update: it updates the tables of a moved tree")
    for option, given in (("--only", args.only), ("--only-from", args.only_from)):
        if given is not None and not args.update:
            raise BadArgument(f"{option} needs --update: it updates the tables of a previous run")
        if given is not None and args.backend == "dask":
            raise BadArgument(f"{option} walks in this process; drop --backend dask")
    if args.backend == "dask" and not args.scheduler:
        raise BadArgument(
            "--backend dask needs --scheduler: a scheduler's address (tcp://host:8786), or "
            "local for a LocalCluster on this machine"
        )
    if args.scheduler and args.backend != "dask":
        raise BadArgument("--scheduler is for --backend dask; add --backend dask")


def _print_records(kind: str, records: Sequence[Skip]) -> None:
    """The first records of a kind on stderr, then how many more ``--json`` lists."""
    for s in records[:_SHOWN_SKIPS]:
        print(f"alfcache: {kind} {s.path}: {s.reason}: {s.message}", file=sys.stderr)
    if len(records) > _SHOWN_SKIPS:
        n = len(records) - _SHOWN_SKIPS
        label = "skipped" if kind == "skipped" else plural(n, kind).partition(" ")[2]
        print(f"alfcache: ... {n} more {label} (all are listed with --json)", file=sys.stderr)


def _only_paths(args: argparse.Namespace) -> list[str] | None:
    """The paths of ``--only`` and ``--only-from`` (blank lines skipped); None for neither."""
    if args.only is None and args.only_from is None:
        return None
    paths = list(args.only or [])
    if args.only_from == "-":
        paths += sys.stdin.read().splitlines()
    elif args.only_from is not None:
        try:
            with open(args.only_from, encoding="utf-8") as file:
                paths += file.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise BadArgument(f"cannot read --only-from {shown(args.only_from)}: {why}") from None
    return [p for p in paths if p.strip()]


def run(args: argparse.Namespace) -> int:
    """Index ``args.root``; the summary on stderr, ``--json`` on stdout."""
    from alfcache._index import index

    shard = args.shard or shard_from_env(os.environ)
    if shard and not args.shard and not args.quiet:
        print(f"alfcache: indexing shard {shard} of a SLURM array job", file=sys.stderr)
    _check_index_options(args)
    only = _only_paths(args)
    # Set only once the options are checked, and restored in the finally below: a caller that
    # lives on (a Python program, the test suite) must not keep a handler that raises
    # Terminated into whatever it does next.
    previous_handler = signal.signal(signal.SIGTERM, _terminate)
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
                backend=args.backend,
                scheduler=args.scheduler,
                only=only,
                any_origin=args.any_origin,
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
                "(below entries not indexed: see skipped)"
                + (f", {c.untouched} outside --only untouched" if only is not None else ""),
                file=sys.stderr,
            )
        if report.hashing and report.hashing.resumed:
            print(
                f"alfcache: resumed {plural(report.hashing.resumed, 'digest')} from checkpoint "
                f"{report.hashing.checkpoint}",
                file=sys.stderr,
            )
        if report.hashing and report.hashing.files:
            h = report.hashing
            print(
                f"alfcache: hashed {plural(h.files, 'file')} ({h.bytes / 1e6:,.1f} MB, "
                f"{'+'.join(h.algorithms)}) in {h.seconds:.2f} s, "
                f"{megabytes(h.rate, h.rate)} MB/s",
                file=sys.stderr,
            )
        notices = plural(len(report.notices), "notice")
        print(
            f"alfcache: {plural(report.sessions, 'session')}, "
            f"{plural(report.datasets, 'dataset')} ({report.bytes / 1e6:,.1f} MB) in "
            f"{report.seconds:.2f} s with {plural(report.n_jobs, 'worker')}, "
            f"{len(report.skipped)} skipped (not indexed), {notices} (indexed) "
            f"-> {shown(report.sessions_table.parent)}{f' (shard {shard})' if shard else ''}",
            file=sys.stderr,
        )
    if args.json:
        summary = report.as_dict()
        summary["warnings"] = [str(w.message) for w in caught]
        print(json.dumps(summary, indent=2))
    return 0
