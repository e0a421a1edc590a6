"""Partial tables of an array job (``--shard K/N``), and their merge into one table pair.

Each array task writes an ordinary table pair (ONE-api can load it: a cache of its sessions)
whose schema metadata holds, under ``alfcache_shard``, JSON with the shard, the origin (the
indexed folder), the options that shape the rows, and a run id shared by the pair::

    {"shard": 2, "of": 8, "origin": "/mnt/lab-data", "run": "5f0c...",
     "options": {"hash_ids": "uuid3", "lab": null, "hash": ["md5"],
                 "follow_symlinks": false, "keep_missing": false}}

:func:`merge_parts` checks that the parts are all N shards of one origin and one set of
options, each exactly once, and writes the tables one full run would write: the shards hold
disjoint sessions (see :mod:`alfcache._alf.sharding`) and ids depend only on ALF paths, so the
merge is a concatenation in the full run's order. The key is separate from ``one_metadata``
(ONE-api's) and from alfcache's own provenance, so that neither reader trips on it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from alfcache._alf.sharding import METADATA_KEY, ArrayShard
from alfcache._exceptions import BadArgument, MergeFailed
from alfcache._paths import shown
from alfcache._tables.checks import ANY_ORIGIN
from alfcache._tables.lock import DEFAULT_TIMEOUT, check_timeout, out_dir_lock
from alfcache._tables.schema import SESSION_KEY
from alfcache._tables.store import (
    DATASETS_FILE,
    SESSIONS_FILE,
    one_metadata,
    prepare_out_dir,
    read_metadata,
    read_parquet,
    read_provenance,
    write_tables,
)

_SHOWN = 10  # shards named in a message


def shard_metadata(
    shard: ArrayShard, origin: str, options: dict[str, object]
) -> dict[str, object]:
    """The ``alfcache_shard`` value of one array task's tables (a fresh run id)."""
    return {
        "shard": shard.k,
        "of": shard.n,
        "origin": origin,
        "options": options,
        "run": uuid.uuid4().hex,
    }


def _schema_json(path: Path, key: str) -> dict[str, object] | None:
    """The JSON under ``key`` in a parquet file's schema metadata; None when absent."""
    try:
        meta = read_metadata(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise MergeFailed(f"cannot read {shown(path)}: {exc}; index that shard again") from exc
    raw = meta.get(key.encode())
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise MergeFailed(
            f"{shown(path)}: {key} metadata is not JSON; index that shard again"
        ) from exc
    return value if isinstance(value, dict) else None


def check_update_shard(out_dir: Path, shard: ArrayShard, origin: str | None) -> None:
    """Refuse ``--update --shard K/N`` over tables that are not that shard of that origin
    (of any origin when ``origin`` is None: ``--any-origin``, the tree was moved).

    An update drops (or, with ``keep_missing``, keeps as missing) every row it does not find
    again, so updating shard K over another shard's or a full table would lose or falsify rows.

    Raises
    ------
    BadArgument
        The tables in ``out_dir`` are of another shard or origin, or not partial tables.
    """
    path = out_dir / SESSIONS_FILE
    if not path.exists():
        return
    info = _schema_json(path, METADATA_KEY)
    if info is None:
        raise BadArgument(
            f"--update --shard {shard}: the tables in {shown(out_dir)} are not partial tables; "
            "pass the --out-dir this shard was indexed into, or index it without --update"
        )
    if (info.get("shard"), info.get("of")) != (shard.k, shard.n):
        raise BadArgument(
            f"--update --shard {shard}: the tables in {shown(out_dir)} are shard "
            f"{info.get('shard')}/{info.get('of')}; pass the --out-dir this shard was indexed into"
        )
    if origin is not None and info.get("origin") != origin:
        raise BadArgument(
            f"--update --shard {shard} of {origin}: the tables in {shown(out_dir)} are of "
            f"{info.get('origin')}; pass the --out-dir this shard was indexed into, or "
            f"{ANY_ORIGIN} if the tree was moved"
        )


@dataclass(frozen=True)
class _Part:
    folder: Path
    info: dict[str, object]
    record: dict[str, object]
    """alfcache's provenance of the part (``alfcache`` key), which the merged tables carry."""

    @property
    def run(self) -> tuple[object, object, str]:
        """What every part of one array job shares: N, the origin and the options."""
        options = json.dumps(self.info.get("options"), sort_keys=True)
        return self.info.get("of"), self.info.get("origin"), options

    def describe(self) -> str:
        info = self.info
        return (
            f"{shown(self.folder)} (shard {info.get('shard')}/{info.get('of')} of "
            f"{info.get('origin')}, "
            f"options {json.dumps(info.get('options'), sort_keys=True)})"
        )


def _read_part(folder: Path) -> _Part:
    ses, ds = folder / SESSIONS_FILE, folder / DATASETS_FILE
    if not (ses.is_file() and ds.is_file()):
        raise MergeFailed(
            f"{shown(folder)} holds no {SESSIONS_FILE} and {DATASETS_FILE}; pass the --out-dir of "
            "each array task (alfcache index --shard K/N)"
        )
    infos = [_schema_json(ses, METADATA_KEY), _schema_json(ds, METADATA_KEY)]
    if infos[0] is None or infos[1] is None:
        raise MergeFailed(
            f"{shown(folder)} holds tables that are not partial: no {METADATA_KEY} metadata. Only "
            "tables written by alfcache index --shard K/N can be merged"
        )
    if infos[0].get("run") != infos[1].get("run"):
        raise MergeFailed(
            f"{shown(folder)} holds the {SESSIONS_FILE} of one run and the {DATASETS_FILE} of "
            "another; index that shard again"
        )
    return _Part(folder, infos[0], read_provenance(read_metadata(ses)))


def _check_complete(parts: Sequence[_Part]) -> int:
    """Check that ``parts`` are all shards of one run, once each; returns N."""
    first = parts[0]
    for part in parts[1:]:
        if part.run != first.run:
            raise MergeFailed(
                f"the parts are not of one array job: {first.describe()} but "
                f"{part.describe()}; merge the parts of one origin, one shard count and one "
                "set of options"
            )
    n = first.info.get("of")
    if not isinstance(n, int):
        raise MergeFailed(f"{first.folder}: {METADATA_KEY} has no shard count; index it again")
    by_shard: dict[object, list[Path]] = {}
    for part in parts:
        by_shard.setdefault(part.info.get("shard"), []).append(part.folder)
    doubled = {k: folders for k, folders in by_shard.items() if len(folders) > 1}
    if doubled:
        shown = "; ".join(
            f"shard {k}/{n} in {', '.join(map(str, folders))}"
            for k, folders in sorted(doubled.items(), key=str)
        )
        raise MergeFailed(f"shards given more than once: {shown}; pass each shard once")
    missing = [k for k in range(n) if k not in by_shard]
    if missing:
        shown = ", ".join(f"{k}/{n}" for k in missing[:_SHOWN])
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise MergeFailed(
            f"shards missing: {shown}{more} (have {len(by_shard)} of {n}); index them "
            f"(alfcache index {first.info.get('origin')} --shard K/{n}) and merge again"
        )
    return n


def _check_disjoint(sessions: pa.Table) -> None:
    """Two shards holding one session (for ONE-api) would make ids that one run never makes."""
    counts = sessions.group_by(list(SESSION_KEY)).aggregate([("id", "count")])
    doubled = counts.filter(pc.greater(counts["id_count"], 1)).to_pylist()
    if doubled:
        shown = ", ".join(
            f"{r['lab'] + '/' if r['lab'] else ''}{r['subject']}/{r['date']}/{r['number']}"
            for r in doubled[:_SHOWN]
        )
        raise MergeFailed(
            f"sessions in more than one shard: {shown} (a session inside another session's "
            "folder clashing with one of another shard); index this tree without --shard"
        )


@dataclass
class MergeReport:
    """What a merge wrote."""

    sessions_table: Path
    datasets_table: Path
    sessions: int
    datasets: int
    shards: int
    origin: str

    def as_dict(self) -> dict[str, object]:
        return {
            "sessions_table": str(self.sessions_table),
            "datasets_table": str(self.datasets_table),
            "sessions": self.sessions,
            "datasets": self.datasets,
            "shards": self.shards,
            "origin": self.origin,
        }


def merge_parts(
    parts: Sequence[str | Path], out_dir: str | Path, *, lock_timeout: float = DEFAULT_TIMEOUT
) -> MergeReport:
    """Merge the partial tables of all shards of an array job into one table pair.

    Parameters
    ----------
    parts : sequence of path
        The output folders of the array tasks (each holding a partial table pair).
    out_dir : path
        Where to write ``sessions.pqt`` and ``datasets.pqt``; created when missing.
    lock_timeout : float
        Seconds to wait for another run writing into ``out_dir``.

    Returns
    -------
    MergeReport

    Raises
    ------
    MergeFailed
        A part is missing, doubled, unreadable, of another origin, shard count or options.
    BadOutDir, OutDirNotWritable, OutDirLocked, WriteFailed
        As for :func:`alfcache.index`.
    """
    check_timeout(lock_timeout)
    if not parts:
        raise MergeFailed("no parts to merge; pass the --out-dir of every array task")
    read = [_read_part(Path(p).expanduser()) for p in parts]
    n = _check_complete(read)
    out = prepare_out_dir(Path(out_dir).expanduser())
    tables = {
        name: pa.concat_tables(
            [read_parquet(p.folder / name) for p in read], promote_options="permissive"
        )
        for name in (SESSIONS_FILE, DATASETS_FILE)
    }
    # The order of one full run (alfcache._tables.build): ids are unique, so the order is total.
    sessions = tables[SESSIONS_FILE].sort_by("id")
    _check_disjoint(sessions)
    datasets = tables[DATASETS_FILE].sort_by([("eid", "ascending"), ("id", "ascending")])
    sessions, datasets = sessions.combine_chunks(), datasets.unify_dictionaries().combine_chunks()
    origin = str(read[0].info.get("origin"))
    # The metadata a full run writes: only date_created is new; the provenance is the parts'
    # (they agree on the options that shape the rows, checked above).
    record = read[0].record or None
    with out_dir_lock(out, lock_timeout):
        fn_ses, fn_ds = write_tables(sessions, datasets, out, one_metadata(origin), record)
    return MergeReport(fn_ses, fn_ds, sessions.num_rows, datasets.num_rows, n, origin)
