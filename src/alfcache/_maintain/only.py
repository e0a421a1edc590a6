"""Update by path (``--update --only PATH``): walk the given folders, carry every other row over.

A transfer script knows which session folder it wrote; a full ``--update`` would still list and
stat the whole server. Here only the given paths are walked, and the previous tables are cut in
two: the rows the walk answers for (*inside*), matched with the fresh rows exactly as a full
update matches them (:func:`alfcache._maintain.update.reconcile`), and every other row
(*outside*), carried over untouched.

The tables record no session folder, only its ALF path, so a previous session is inside when

* a given path lies at or inside its folder (the path names it), or the walk found it; or
* a folder ONE-api would look for it in (``[lab/Subjects/]subject/date/NNN``, placed below the
  root as the root's own names allow) lies at or below a folder walked or a given path that
  is gone.

A path is widened before the walk, so that every entry is classified as the full walk would:
a path at or inside a session becomes that session's folder (its files keep their session and
collection); a file outside any session is in no table and is passed over. Clashes are
resolved as a full run resolves them: for each session found, its siblings of the same number
(``1`` beside ``001``) and the folders ONE-api would look for it in are walked too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from alfcache._alf.grammar import session_parts
from alfcache._exceptions import BadArgument
from alfcache._maintain.update import Previous
from alfcache._paths import shown
from alfcache._records import ScanResult, Skip
from alfcache._tables.build import Tables
from alfcache._walk.engine import Walked, assemble_walk
from alfcache._walk.scan import (
    _NO_SESSION,
    Rules,
    Start,
    Walk,
    _session_of,
    plan_links,
    scan_folders,
)

Key = tuple[str, str, str, int]
"""A session as ONE-api identifies it: lab ('' for none), subject, date (YYYY-MM-DD), number."""


@dataclass(frozen=True)
class Targets:
    """The given paths, widened and checked: what to walk and which previous rows it replaces."""

    walk: tuple[str, ...]
    """Folders to walk whole, relative to the root; none lies below another."""
    scope: tuple[str, ...]
    """Folders whose previous rows are replaced: those walked and the given paths now gone."""
    named: frozenset[tuple[str, Key]]
    """Session folders a given path lies at or inside, and their sessions: the previous rows
    of these sessions are replaced."""
    everything: bool
    """A given path is the root: a full update."""


def _names(rel: str) -> tuple[str, ...]:
    return tuple(rel.split("/")) if rel else ()


def _covered(rel: str, folders: AbstractSet[str]) -> bool:
    """Whether ``rel`` is one of ``folders`` or lies below one (all relative to the root).

    A set lookup of ``rel`` and of each folder above it, never a scan of ``folders``: every
    previous session is checked against the paths given, which may be thousands (``find
    -newer`` on stdin); a scan made 1,000 paths at 30,000 sessions take longer than a full
    update.
    """
    if "" in folders or rel in folders:
        return True
    at = rel.find("/")
    while at >= 0:
        if rel[:at] in folders:
            return True
        at = rel.find("/", at + 1)
    return False


def _outermost(folders: Iterable[str]) -> tuple[str, ...]:
    """``folders`` without those below another: each folder is walked once."""
    kept: set[str] = set()
    for folder in sorted(set(folders)):  # a parent sorts before its children
        if not _covered(folder, kept):
            kept.add(folder)
    return tuple(sorted(kept))


def _key(names: tuple[str, ...], lab: str | None) -> Key | None:
    """The session whose folder ``names`` is, with the lab the run gives it (as assemble does)."""
    parts = session_parts(names)
    if parts is None:
        return None
    return (lab or parts.lab, parts.subject, parts.date, int(parts.number))


def _relative(root: Path, path: str | os.PathLike[str]) -> str:
    """A given path relative to ``root`` ('' for the root), links resolved.

    Raises
    ------
    BadArgument
        The path lies outside ``root``, or is relative and names nothing below ``root`` but
        something below the current folder.
    """
    given = Path(path).expanduser()
    if not given.is_absolute() and not os.path.lexists(root / given) and os.path.lexists(given):
        # `find data -newer STAMP` run beside ROOT=data prints data/...: read below the root,
        # such a path names nothing, and its update would silently do nothing.
        raise BadArgument(
            f"--only {path} names nothing below the indexed folder {shown(root)}, but something "
            "below the current folder: relative paths are read relative to the indexed folder; "
            "give absolute paths (find with an absolute root prints them)"
        )
    # realpath, not Path.resolve: it never raises, on a missing path or a link loop alike.
    full = Path(os.path.realpath(given if given.is_absolute() else root / given))
    if full != root and root not in full.parents:
        raise BadArgument(
            f"--only {shown(full)} is not inside the indexed folder {shown(root)}; give "
            "folders or files at or below it"
        )
    rel = full.relative_to(root).as_posix()
    return "" if rel == "." else rel


def plan_only(rules: Rules, paths: Iterable[str | os.PathLike[str]], lab: str | None) -> Targets:
    """Check and widen the paths given to ``--only``.

    Parameters
    ----------
    rules : Rules
        The rules of the walk to come: its root (resolved) and the array shard the tables to
        update hold.
    paths : iterable of path-like
        Folders or files at or below ``rules.root``, absolute or relative to it; they need not
        exist.
    lab : str, optional
        The run's ``lab``.

    Returns
    -------
    Targets

    Raises
    ------
    BadArgument
        A path lies outside ``rules.root``, or in a session of another array shard.
    """
    root = Path(rules.root)
    root_names = _names(rules.root.strip("/"))
    # Only asked which array shard a folder is in: it lists nothing and makes no rows.
    shard_walk = Walk(rules)
    walk: set[str] = set()
    scope: set[str] = set()
    named: set[tuple[str, Key]] = set()
    for path in paths:
        rel = _relative(root, path)
        full = root / rel
        session = _session_of(root_names, rel)
        if session is not _NO_SESSION:
            # The whole session: a file's session and collection come from the folders above.
            unit = session.rel_dir
            if (key := _key(root_names + _names(unit), lab)) is not None:
                named.add((unit, key))
            if not shard_walk._in_array_shard(unit):
                raise BadArgument(
                    f"--only {shown(full)} is in a session of another array shard than "
                    f"{rules.array_shard}; give it to that shard's run, or update the merged "
                    "tables"
                )
        elif full.exists() and not full.is_dir():
            continue  # a file outside any session is in no table: nothing to walk or replace
        else:
            unit = rel
        scope.add(unit)
        if (root / unit).is_dir():
            walk.add(unit)
    return Targets(_outermost(walk), _outermost(scope), frozenset(named), "" in scope)


def _locations(root_names: tuple[str, ...], key: Key, lab: str | None) -> Iterator[str]:
    """The folders, relative to the root, where ONE-api would look for session ``key``.

    ``lab/Subjects/subject/date/NNN`` below the root; when the root's own names end with the
    start of that path (the root is a lab, ``Subjects``, subject or date folder), the rest of
    it. A lab the run gave (``lab``) has no folder: the path without ``lab/Subjects`` too.
    """
    session_lab, subject, date, number = key
    tail = [subject, date, f"{number:03d}"]
    alf_paths = [[session_lab, "Subjects", *tail]] if session_lab else [tail]
    if session_lab and session_lab == lab:
        alf_paths.append(tail)
    for names in alf_paths:
        for above in range(len(names) + 1):
            if above == 0 or root_names[-above:] == tuple(names[:above]):
                yield "/".join(names[above:])


def _found(root: str, result: ScanResult, lab: str | None) -> set[tuple[str, Key]]:
    """The session folders a walk found, and their sessions."""
    root_names = _names(root.strip("/"))
    folders = result.sessions["session"].to_pylist()
    found = ((rel, _key(root_names + _names(rel), lab)) for rel in folders)
    return {(rel, key) for rel, key in found if key is not None}


def _clash_members(
    root: str, sessions: Iterable[tuple[str, Key]], walked: AbstractSet[str], lab: str | None
) -> set[str]:
    """Session folders outside ``walked`` that ``sessions`` may clash with.

    A full run keeps one folder per session (``1`` beside ``001``, the same session below two
    parents): the siblings of the same number and the folders ONE-api looks in are walked too,
    so that the same folder wins, and a session gone from one of its folders is found in the
    other.
    """
    root_names = _names(root.strip("/"))
    members: set[str] = set()
    for rel, key in sessions:
        members |= {
            where
            for where in _locations(root_names, key, lab)
            if not _covered(where, walked) and os.path.isdir(f"{root}/{where}")
        }
        parent = rel.rpartition("/")[0]
        if _covered(parent, walked):
            continue  # its siblings were walked with it
        try:
            with os.scandir(f"{root}/{parent}" if parent else root) as entries:
                names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue  # the walk of the session itself reports what cannot be listed
        _, subject, date, number = key
        for name in names:
            parts = session_parts((subject, date, name))
            if parts is not None and int(parts.number) == number:
                members.add(f"{parent}/{name}" if parent else name)
    return {folder for folder in members if not _covered(folder, walked)}


class OnlyWalk:
    """The walk of ``--only``: the target folders in this process, then clash members and links.

    Offers what :func:`alfcache._index.index` uses of a :class:`RunningWalk`: ``finish`` and
    ``abort``. A transfer's session is a few hundred files: worker processes would cost more
    than they save. ``rules`` as for :class:`RunningWalk`.
    """

    def __init__(self, rules: Rules, targets: Targets) -> None:
        self._rules = rules
        self._targets = targets

    def finish(
        self, *, lab: str | None, progress: bool, cache_dir: Path | None = None
    ) -> tuple[Tables, Walked]:
        """Walk the targets and assemble their tables (``progress`` is not shown: it is short)."""
        rules = self._rules
        root = rules.root
        results: list[ScanResult] = []
        walked: list[str] = []
        indexed = {root: "the indexed folder"}
        revisits: list[Skip] = []
        todo = [Start(folder, True) for folder in self._targets.walk]
        members = _clash_members(root, self._targets.named, {*self._targets.walk}, lab)
        todo += [Start(folder, True) for folder in _outermost(members)]
        while todo:
            result = scan_folders(rules, todo)
            results.append(result)
            walked += [start.rel_dir for start in todo]
            links, skipped = plan_links(root, result.links, indexed)
            revisits += skipped
            members = _clash_members(root, _found(root, result, lab), {*walked}, lab)
            todo = links + [Start(folder, True) for folder in _outermost(members)]
        return assemble_walk(
            results,
            rules=rules,
            lab=lab,
            cache_dir=cache_dir,
            tasks=len(walked),
            skipped=revisits,
            listed={"main": sum(r.listed for r in results), "workers": 0},
            threads=1 if walked else 0,
        )

    def abort(self) -> None:
        """Nothing runs in the background."""


def _fresh_keys(tables: Tables) -> set[Key]:
    sessions = tables.sessions.select(["lab", "subject", "date", "number"]).to_pydict()
    return {
        (lab or "", subject, str(date), int(number))
        for lab, subject, date, number in zip(*sessions.values(), strict=True)
    }


def split_previous(
    previous: Previous, tables: Tables, targets: Targets, root: Path, lab: str | None
) -> tuple[Previous, Previous]:
    """Cut the previous tables into the rows the walk answers for and the rows outside it.

    Parameters
    ----------
    previous : Previous
        The tables of the previous run.
    tables : Tables
        What the walk of ``targets`` found.
    targets : Targets
        The widened paths.
    root : pathlib.Path
        The indexed folder, resolved.
    lab : str, optional
        The run's ``lab``.

    Returns
    -------
    Previous
        The rows inside: matched with ``tables`` as a full update matches them.
    Previous
        The rows outside: carried over untouched.
    """
    root_names = _names(str(root).strip("/"))
    keys = {key for _, key in targets.named} | _fresh_keys(tables)
    scope = set(targets.scope)
    sessions = previous.sessions
    columns = [sessions[c].to_list() for c in ("lab", "subject", "date", "number")]
    inside = []
    for session_lab, subject, date, number in zip(*columns, strict=True):
        if subject is None or date is None or number is None:  # no ALF path: not ours to judge
            inside.append(False)
            continue
        key = (session_lab, subject, date.isoformat(), number)
        inside.append(
            key in keys
            or any(_covered(where, scope) for where in _locations(root_names, key, lab))
        )
    mask = pl.Series(inside, dtype=pl.Boolean)
    in_datasets = previous.datasets["eid"].is_in(sessions.filter(mask)["id"].implode())

    def part(session_rows: pl.Series, dataset_rows: pl.Series) -> Previous:
        return Previous(
            sessions.filter(session_rows),
            previous.datasets.filter(dataset_rows),
            previous.algorithms,
            previous.origin,
        )

    return part(mask, in_datasets), part(~mask, ~in_datasets)
