"""``alfcache merge PARTS... --out-dir DIR``: join the partial tables of an array job.

The command line over :func:`alfcache._maintain.merge.merge_parts`; ``alfcache._cli.main``
dispatches to it and maps its errors (a missing, doubled or mismatched part is bad input: exit
code 2).
"""

from __future__ import annotations

import argparse

from alfcache._cli.common import add_common, print_json, say
from alfcache._paths import plural, shown
from alfcache._tables.lock import DEFAULT_TIMEOUT


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``merge`` verb to the command line's subparsers."""
    merge = subparsers.add_parser(
        "merge",
        help="merge the partial tables of all shards (alfcache index --shard K/N) into one pair",
        description="Check that PARTS are all N shards of one origin and one set of options, "
        "each once, and write the sessions.pqt and datasets.pqt one full run would write.",
    )
    merge.add_argument("parts", nargs="+", metavar="PART", help="output folder of one shard")
    merge.add_argument("--out-dir", required=True, help="where to write the merged tables")
    merge.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="wait this long for another run writing into the output folder "
        f"(default: {DEFAULT_TIMEOUT:g})",
    )
    add_common(merge, "print a JSON summary on stdout")
    merge.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Merge, print the summary; errors propagate to the dispatcher."""
    from alfcache._maintain.merge import merge_parts

    report = merge_parts(args.parts, args.out_dir, lock_timeout=args.lock_timeout)
    if not args.quiet:
        say(
            f"merged {plural(report.shards, 'shard')} of {report.origin}: "
            f"{plural(report.sessions, 'session')}, {plural(report.datasets, 'dataset')} -> "
            f"{shown(report.sessions_table.parent)}"
        )
    if args.json:
        print_json(report.as_dict())
    return 0
