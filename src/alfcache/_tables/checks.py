"""Checks a table pair must pass before a verb acts on it: whose tree, whole, one run, text.

Each check works on what the reader already holds (schema metadata, an Arrow table), so every
reader (``--update``, ``verify``, ``prune``, ``info``) applies the same one:

* :func:`check_origin`: tables record the folder they were indexed from (``one_metadata``
  ``origin``, as one-api writes it too); acting on another tree's tables drops or deletes that
  tree's rows. Tables without an absolute origin (Alyx's, a relative one) cannot be checked and
  are accepted.
* :func:`check_whole`: the tables of one array shard (``--shard K/N``) lack the other shards'
  sessions.
* :func:`pair_mismatch`: both tables carry the id of the run that wrote them; a run killed
  between the two renames leaves a new ``sessions.pqt`` beside an old ``datasets.pqt``.

Text that is not UTF-8 is checked where tables are read (:func:`alfcache._tables.store.bad_text`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from alfcache._alf.sharding import METADATA_KEY
from alfcache._exceptions import BadArgument
from alfcache._paths import shown
from alfcache._tables.store import RUN_KEY, read_one_metadata, read_provenance

ANY_ORIGIN = "--any-origin"
"""The option (``any_origin=True`` in the library) that accepts tables moved on purpose."""


def origin_of(metadata: Mapping[bytes, bytes] | None) -> str | None:
    """The ``origin`` a table's ``one_metadata`` records; None when it has none."""
    origin = (read_one_metadata(metadata) or {}).get("origin")
    return origin if isinstance(origin, str) else None


def check_origin(origin: str | None, root: Path, tables_dir: Path, *, harm: str, fix: str) -> None:
    """Refuse tables made from another folder than ``root`` (resolved).

    Parameters
    ----------
    origin : str, optional
        The origin the tables record (:func:`origin_of`).
    root : pathlib.Path
        The folder the verb acts on, resolved.
    tables_dir : pathlib.Path
        Where the tables are, for the message.
    harm : str
        What acting on them would do (``an update would drop that tree's rows``).
    fix : str
        What to do instead.

    Raises
    ------
    BadArgument
        The tables record an absolute origin that is not ``root`` (a relative one, as one-api
        may write, cannot be checked and is accepted).
    """
    if origin is None or not Path(origin).is_absolute():
        return
    if Path(origin).resolve() != root:
        raise BadArgument(
            f"the tables in {shown(tables_dir)} were made from {origin}, not {root}: {harm}. {fix}"
        )


def check_whole(metadata: Mapping[bytes, bytes] | None, tables_dir: Path, verb: str) -> None:
    """Refuse the partial tables of one array shard, which lack the other shards' sessions.

    Raises
    ------
    BadArgument
        The table's schema metadata holds ``alfcache_shard``.
    """
    raw = (metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        return
    try:
        info = json.loads(raw)
        which = f"shard {info['shard']}/{info['of']}"
    except (TypeError, KeyError, ValueError):
        which = "one shard"
    raise BadArgument(
        f"the tables in {shown(tables_dir)} are partial ({which} of an array job): {verb} would "
        "take every session of the other shards as absent. Merge the parts first (alfcache merge)"
    )


def pair_mismatch(
    sessions: Mapping[bytes, bytes] | None, datasets: Mapping[bytes, bytes] | None
) -> str | None:
    """Why the two tables (their schema metadata) are not of one run; None when they are.

    Only tables that both carry alfcache's record can be paired (one-api's cannot, and pass);
    one with a run id beside one of an older alfcache, without, is a pair of two runs.
    """
    records = [read_provenance(m) for m in (sessions, datasets)]
    ses, ds = (r.get(RUN_KEY) for r in records)
    if not all(records) or ses == ds:
        return None
    return (
        f"sessions.pqt and datasets.pqt were written by two runs ({ses or 'no run id'} and "
        f"{ds or 'no run id'}): a run was stopped between renaming them into place"
    )


def check_pair(
    sessions: Mapping[bytes, bytes] | None,
    datasets: Mapping[bytes, bytes] | None,
    tables_dir: Path,
    fix: str,
) -> None:
    """Refuse a pair of tables of two runs (see :func:`pair_mismatch`).

    Raises
    ------
    BadArgument
        The tables carry different run ids.
    """
    if why := pair_mismatch(sessions, datasets):
        raise BadArgument(f"the tables in {shown(tables_dir)} do not match: {why}. {fix}")


def check_tables_for(
    verb: str,
    harm: str,
    metadata: Mapping[bytes, bytes] | None,
    datasets_metadata: Mapping[bytes, bytes] | None,
    root: Path,
    tables_dir: Path,
    *,
    any_origin: bool,
) -> None:
    """The checks of a verb that acts on ``root`` by the tables in ``tables_dir``.

    ``harm`` says what acting on another tree's tables would do, ``metadata`` and
    ``datasets_metadata`` are the tables' schema metadata; ``any_origin`` skips the origin
    check (tables moved on purpose), never the others.

    Raises
    ------
    BadArgument
        The tables are partial, of two runs, or (unless ``any_origin``) of another origin.
    """
    check_whole(metadata, tables_dir, verb)
    check_pair(metadata, datasets_metadata, tables_dir, "Index the folder again")
    if not any_origin:
        check_origin(
            origin_of(metadata),
            root,
            tables_dir,
            harm=harm,
            fix=f"Pass the tables of this folder, or {ANY_ORIGIN} if they were moved on purpose",
        )
