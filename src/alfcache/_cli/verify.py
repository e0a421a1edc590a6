"""``alfcache verify ROOT``: do the cache tables still describe the tree on disk?

Exit 0 when they match, 1 when anything differs, 2 on bad input (a missing root or table).
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import TYPE_CHECKING

from alfcache._cli.common import add_any_origin, add_common, add_jobs, print_json, say
from alfcache._paths import plural, shown

if TYPE_CHECKING:
    from alfcache._maintain.verify import Difference

SHOWN = 10
"""Differences named on stderr; ``--json`` lists them all."""

_SAYS = {
    "missing_file": "{e} bytes in the tables, no file on disk",
    "size_mismatch": "{e} bytes in the tables, {f} on disk",
    "exists_mismatch": "marked missing (exists=False), a file of {f} bytes on disk",
    "extra_file": "a file of {f} bytes on disk, not in the tables",
    "missing_session": "in the tables, no folder on disk",
    "extra_session": "a folder on disk, not in the tables",
    "orphan_dataset": "its eid {e} is not in the sessions table",
    "unreadable": "could not be read: {f}",
}
"""What each kind of difference means, in words; a digest mismatch shows both digests.

A record's ``expected`` or ``found`` is None where that side has nothing (no file, no row):
printed as such it read ``expected None, found None``.
"""


def _described(d: Difference) -> str:
    """One difference as a line for a person: its path, kind, and what either side holds."""
    says = _SAYS.get(d.kind, "expected {e}, found {f}")
    return f"{d.path}: {d.kind} ({says.format(e=d.expected, f=d.found)})"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "verify", help="compare the cache tables with the files on disk (exit 1 if they differ)"
    )
    parser.add_argument("root", help="the data folder the tables describe")
    parser.add_argument("--tables", help="folder of sessions.pqt and datasets.pqt (default: ROOT)")
    parser.add_argument(
        "--hashes",
        action="store_true",
        help="also read the files and compare the digests the tables hold (MD5, XXH3)",
    )
    add_jobs(parser)
    parser.add_argument(
        "--lab", help="lab of sessions whose folders carry none (default: as indexed)"
    )
    parser.add_argument(
        "--follow-symlinks",
        action="store_const",
        const=True,
        help="follow links to folders, as index does (default: as indexed)",
    )
    add_any_origin(parser)
    add_common(parser, "print every difference as JSON on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alfcache._maintain.verify import verify

    report = verify(
        args.root,
        args.tables,
        hashes=args.hashes,
        lab=args.lab,
        n_jobs=args.jobs,
        follow_symlinks=args.follow_symlinks,
        progress=not args.quiet,
        any_origin=args.any_origin,
    )
    if not args.quiet:
        for d in report.differences[:SHOWN]:
            say(f"differs {_described(d)}")
        if len(report.differences) > SHOWN:
            say(
                f"... {len(report.differences) - SHOWN} more differences "
                "(all are listed with --json)"
            )
        if args.hashes and not report.algorithms:
            say("warning: the tables hold no digests; --hashes compared none")
        if report.skipped:
            entries = plural(len(report.skipped), "entry", "entries")
            say(f"{entries} on disk could not be indexed (see --json)")
        kinds = Counter(d.kind for d in report.differences)
        verdict = (
            "match"
            if report.ok
            else "differ: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        )
        say(
            f"verify: the tables in {shown(report.tables_dir)} and {shown(report.root)} "
            f"{verdict} ({plural(report.sessions, 'session')}, "
            f"{plural(report.datasets, 'dataset')}, "
            f"{plural(report.digests_checked, 'digest')} checked, {report.seconds:.2f} s)"
        )
    if args.json:
        print_json(report.as_dict())
    return 0 if report.ok else 1
