"""``alfcache info DIR``: what a cache folder holds and whether ONE-api can use it.

Exit 0 when the tables meet what ONE-api needs, 1 when they do not, 2 on bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from alfcache._cli.common import add_common, plural, print_json, say


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info", help="what a cache folder holds, who wrote it, and whether ONE-api can load it"
    )
    parser.add_argument("dir", help="folder of sessions.pqt and datasets.pqt")
    add_common(parser, "print the description as JSON on stdout")
    parser.set_defaults(func=run)


def _human(summary: dict[str, Any]) -> list[str]:
    dates = (
        f"{summary['first_date']} to {summary['last_date']}" if summary["first_date"] else "none"
    )
    labs = ", ".join(summary["labs"]) or "none"
    writer = (
        f"alfcache {summary['alfcache_version']}"
        if summary["alfcache_version"]
        else "not alfcache (no alfcache record)"
    )
    one_api = summary["one_api"]
    lines = [
        f"tables    {summary['tables']}",
        f"sessions  {summary['sessions']:,} ({plural(summary['subjects'], 'subject')}; "
        f"labs: {labs})",
        f"datasets  {summary['datasets']:,} ({summary['bytes'] / 1e6:,.1f} MB; "
        f"{summary['missing_datasets']:,} marked missing)",
        f"dates     {dates}",
        f"created   {summary['created']} from {summary['origin']}",
        f"ids       {summary['id_kind']}",
        f"digests   {', '.join(summary['digests']) or 'none'}",
        f"written   by {writer}",
        f"ONE-api   {'can load these tables' if one_api['ok'] else 'CANNOT use these tables'}",
    ]
    lines += [f"  error: {e}" for e in one_api["errors"]]
    lines += [f"  warning: {w}" for w in one_api["warnings"]]
    return lines


def run(args: argparse.Namespace) -> int:
    from alfcache._maintain.info import info

    summary = info(args.dir)
    if args.json:
        print_json(summary)
    else:
        for line in _human(summary):
            print(line)
    if not summary["one_api"]["ok"]:
        if not args.quiet:
            say(f"the tables in {summary['tables']} do not meet what ONE-api needs (see above)")
        return 1
    return 0
