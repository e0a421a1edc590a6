"""``alfcache synth ROOT``: a synthetic ALF tree for trials, the demo and the benchmarks.

The command line over :func:`alfcache.synth.make_tree`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from alfcache._cli.common import add_common, print_json, say
from alfcache._exceptions import BadArgument
from alfcache._paths import plural, shown


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``synth`` verb to the command line's subparsers."""
    synth = subparsers.add_parser("synth", help="generate a synthetic ALF tree (demo, benchmarks)")
    synth.add_argument("root", help="folder to write the tree into")
    synth.add_argument("--sessions", type=int, default=200, help="number of sessions")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--force", action="store_true", help="write into ROOT even if it is not empty"
    )
    add_common(synth, "print what was written as JSON on stdout")
    synth.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write a synthetic tree into ``args.root`` (refusing a non-empty folder without --force)."""
    from alfcache.synth import make_tree

    if args.sessions < 0:
        raise BadArgument(f"--sessions {args.sessions}: use zero or more")
    root = Path(args.root)
    # Fake files written into a real lab tree would be indexed as data: never without asking.
    if not args.force and root.is_dir() and any(root.iterdir()):
        raise BadArgument(
            f"{shown(root)} is not empty; synth writes made-up datasets. Pass an empty or new "
            "folder, or --force to write into it anyway"
        )
    if root.exists() and not root.is_dir():
        raise BadArgument(f"{shown(root)} is a file; pass a folder to write the tree into")
    tree = make_tree(root, args.sessions, seed=args.seed)
    if not args.quiet:
        say(
            f"wrote {plural(tree.sessions, 'session')}, {plural(tree.datasets, 'dataset')} "
            f"and {plural(tree.non_alf_files, 'non-ALF file')} ({tree.bytes / 1e6:,.1f} MB) "
            f"to {shown(tree.root)}"
        )
    if args.json:
        print_json({**dataclasses.asdict(tree), "root": str(tree.root)})
    return 0
