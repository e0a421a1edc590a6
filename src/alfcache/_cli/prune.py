"""``alfcache prune ROOT``: dataset files and session folders the tables do not list.

Dry by default (the list is printed, nothing is touched); ``--apply`` deletes, with the
guarantees of :func:`alfcache.remove_missing_datasets` (only ALF files and emptied session
folders, never the cache folder, never without both tables).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alfcache._cli.common import (
    add_any_origin,
    add_common,
    add_lock_timeout,
    print_json,
    say,
)
from alfcache._exceptions import BadArgument
from alfcache._paths import plural, shown


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "prune", help="list (or with --apply delete) files and sessions the tables do not hold"
    )
    parser.add_argument("root", help="the data folder to clean")
    parser.add_argument("--tables", help="folder of sessions.pqt and datasets.pqt (default: ROOT)")
    parser.add_argument("--apply", action="store_true", help="delete them (default: only list)")
    parser.add_argument(
        "--keep-empty-sessions",
        action="store_true",
        help="keep session folders that the sessions table lacks",
    )
    add_any_origin(parser)
    add_lock_timeout(parser, "the tables' folder (with --apply)")
    add_common(parser, "print the paths as JSON on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alfcache._maintain.prune import prune_locked
    from alfcache._options import resolve_root

    root = resolve_root(args.root)
    tables_dir = Path(args.tables).expanduser() if args.tables else root
    try:
        paths = prune_locked(
            root,
            tables_dir,
            None,
            remove_empty_sessions=not args.keep_empty_sessions,
            dry=not args.apply,
            lock_timeout=args.lock_timeout,
            any_origin=args.any_origin,
        )
    except (FileNotFoundError, KeyError) as exc:  # a table missing or without ids
        raise BadArgument(f"cannot prune {shown(root)}: {exc}") from exc
    relative = [p.relative_to(root).as_posix() for p in paths]
    if args.json:
        print_json(
            {
                "root": str(root),
                "tables": shown(tables_dir),
                "applied": args.apply,
                "paths": relative,
            }
        )
    else:
        for path in relative:
            print(path)
    if not args.quiet:
        verb = "removed" if args.apply else "would be removed (dry run; --apply deletes)"
        say(f"prune: {plural(len(paths), 'path')} {verb} in {shown(root)}")
    return 0
