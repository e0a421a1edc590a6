"""What the command-line verbs share: the worker-count type and the common options.

Imported by ``_cli`` and every ``_cmd_<verb>`` module; it imports nothing of the library, so
``alfcache --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys


def jobs(text: str) -> int:
    """argparse type of ``--jobs``: a positive count, or -1 for all cores."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers") from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"{value} workers: use a positive number, or -1 for all")
    # Imported only when --jobs is given, so that a bare --help stays fast.
    from alfcache._options import available_cores, max_jobs

    if value > (cap := max_jobs()):
        raise argparse.ArgumentTypeError(
            f"{value} workers on {available_cores()} cores: use at most {cap}, or -1 for all"
        )
    return value


def add_jobs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        "-j",
        type=jobs,
        default=-1,
        help="worker processes (default: all cores; 1 works in this process)",
    )


def seconds(text: str) -> float:
    """argparse type of ``--lock-timeout``: seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} seconds: use 0 or more")
    return value


def add_lock_timeout(parser: argparse.ArgumentParser, folder: str) -> None:
    """``--lock-timeout``: how long to wait for another run writing into ``folder``."""
    from alfcache._tables.lock import DEFAULT_TIMEOUT  # the standard library only

    parser.add_argument(
        "--lock-timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"wait this long for another run writing into {folder}, then fail with exit "
        f"code 1 (default: {DEFAULT_TIMEOUT:g})",
    )


def add_any_origin(parser: argparse.ArgumentParser, *, update: bool = False) -> None:
    """``--any-origin``: act on tables recorded as made from another folder (moved on purpose);
    ``update`` for ``index``, where it takes effect with ``--update`` only."""
    text = (
        "with --update: update tables made from another folder than ROOT (the tree was moved)"
        if update
        else "accept tables made from another folder than ROOT (moved on purpose); partial "
        "tables of one shard are refused all the same"
    )
    parser.add_argument("--any-origin", action="store_true", help=text)


def add_common(parser: argparse.ArgumentParser, json_help: str) -> None:
    """The options every verb takes: ``--quiet``, ``--json``, ``--debug``.

    One set for all verbs, so that a script (or a cron line) written for one verb works for
    another. ``--quiet`` silences what goes to stderr for a person (progress, the summary);
    what goes to stdout (a listing, ``--json``) is the output asked for and stays. ``--debug``
    is also accepted before the verb.
    """
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="no progress and no summary on stderr"
    )
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )


def say(message: str) -> None:
    """One line for a person, on stderr (stdout is kept for ``--json``)."""
    print(f"alfcache: {message}", file=sys.stderr)


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2))
