"""``alfcache info DIR``: what a cache folder holds and whether ONE-api can use it.

Exit 0 when the tables meet what ONE-api needs, 1 when they do not, 2 on bad input.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from alfcache._cli.common import add_common, print_json, say
from alfcache._paths import plural

if TYPE_CHECKING:
    from alfcache._maintain.info import InfoReport


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info", help="what a cache folder holds, who wrote it, and whether ONE-api can load it"
    )
    parser.add_argument("dir", help="folder of sessions.pqt and datasets.pqt")
    add_common(parser, "print the description as JSON on stdout")
    parser.set_defaults(func=run)


def _human(report: InfoReport) -> list[str]:
    dates = f"{report.first_date} to {report.last_date}" if report.first_date else "none"
    labs = ", ".join(report.labs) or "none"
    writer = (
        f"alfcache {report.alfcache_version}"
        if report.alfcache_version
        else "not alfcache (no alfcache record)"
    )
    lines = [
        f"tables    {report.tables}",
        f"sessions  {report.sessions:,} ({plural(report.subjects, 'subject')}; labs: {labs})",
        f"datasets  {report.datasets:,} ({report.bytes / 1e6:,.1f} MB; "
        f"{report.missing_datasets:,} marked missing)",
        f"dates     {dates}",
        f"created   {report.created} from {report.origin}",
        f"ids       {report.id_kind}",
        f"digests   {', '.join(report.digests) or 'none'}",
        f"written   by {writer}",
        f"ONE-api   {'can load these tables' if report.ok else 'CANNOT use these tables'}",
    ]
    lines += [f"  error: {e}" for e in report.errors]
    lines += [f"  warning: {w}" for w in report.warnings]
    return lines


def run(args: argparse.Namespace) -> int:
    from alfcache._maintain.info import info

    report = info(args.dir)
    if args.json:
        print_json(report.as_dict())
    else:
        for line in _human(report):
            print(line)
    if not report.ok:
        if not args.quiet:
            say(f"the tables in {report.tables} do not meet what ONE-api needs (see above)")
        return 1
    return 0
