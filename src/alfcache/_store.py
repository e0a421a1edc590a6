"""Parquet on disk: where the tables are written (and read back).

Writing is all-or-nothing per run: both tables go to temporary names that do not end in
``.pqt`` (ONE-api loads every ``*.pqt`` in the folder), are flushed to disk, and only then
renamed over the previous tables. A failure before the renames leaves the previous tables
untouched and removes the temporary files.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from alfcache._exceptions import BadOutDir, OutDirNotWritable, WriteFailed
from alfcache._schema import DATASETS_INDEX, SESSIONS_INDEX, pandas_metadata

SESSIONS_FILE = "sessions.pqt"
DATASETS_FILE = "datasets.pqt"
_TMP_SUFFIX = ".alfcache-tmp"

PROVENANCE_KEY = b"alfcache"
"""The schema-metadata key of alfcache's own record of a run (see :func:`provenance`); kept out
of ``one_metadata``, which holds only what one-api writes."""


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` when missing and prove that files can be written in it.

    Runs before the scan, so a bad output folder fails in a second, not after hours.

    Raises
    ------
    BadOutDir
        ``out_dir`` (or a parent) is a file, or the folder cannot be created.
    OutDirNotWritable
        The folder exists but a file cannot be created in it.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise BadOutDir(f"output folder {out_dir} is a file; pass a folder as out_dir")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadOutDir(
            f"cannot create output folder {out_dir}: {exc.strerror or exc}; "
            "pass a folder that can be created"
        ) from exc
    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, suffix=_TMP_SUFFIX):
            pass
    except OSError as exc:
        raise OutDirNotWritable(
            f"cannot write in output folder {out_dir}: {exc.strerror or exc}; "
            "choose another --out-dir or fix its permissions"
        ) from exc
    return out_dir


def one_metadata(origin: str) -> dict[str, str]:
    """The ``one_metadata`` JSON that ONE-api reads: creation time (naive, minutes) and origin.

    Exactly the two keys one-api writes: its own tests compare the metadata for equality.
    """
    now = datetime.datetime.now().isoformat(sep=" ", timespec="minutes")
    return {"date_created": now, "origin": origin}


def provenance(
    id_kind: str, digests: Sequence[str], options: Mapping[str, object]
) -> dict[str, object]:
    """alfcache's own record of a run, stored under :data:`PROVENANCE_KEY`.

    Parameters
    ----------
    id_kind : {'uuid3', 'path'}
        The kind of ids the tables hold.
    digests : sequence of str
        The digests the datasets table holds (``md5``, ``xxh3``).
    options : mapping
        The options of the run, as the library was called.
    """
    from alfcache import __version__

    return {
        "version": __version__,
        "id_kind": id_kind,
        "digests": list(digests),
        "options": dict(options),
    }


def read_provenance(metadata: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    """The provenance in a table's schema metadata; ``{}`` for tables of other tools.

    Tables of alfcache 0.1.0 kept ``alfcache_hash`` (digests) and ``alfcache_hash_ids`` (id
    kind) inside ``one_metadata``; they are read as the same record, so such tables still
    update.
    """
    metadata = metadata or {}
    try:
        record = json.loads(metadata[PROVENANCE_KEY])
    except (KeyError, ValueError):
        record = None
    if isinstance(record, dict):
        return record
    try:
        legacy = json.loads(metadata[b"one_metadata"])
    except (KeyError, ValueError):
        return {}
    if not isinstance(legacy, dict):
        return {}
    return {
        key: legacy[old]
        for key, old in (("digests", "alfcache_hash"), ("id_kind", "alfcache_hash_ids"))
        if old in legacy
    }


def _with_metadata(
    table: pa.Table,
    index: tuple[str, ...],
    meta: dict[str, str],
    record: dict[str, object] | None,
) -> pa.Table:
    metadata = {
        b"one_metadata": json.dumps(meta).encode(),
        b"pandas": pandas_metadata(table.schema, index),
    }
    if record is not None:
        metadata[PROVENANCE_KEY] = json.dumps(record).encode()
    return table.replace_schema_metadata(metadata)


def _write_tmp(table: pa.Table, final: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=_TMP_SUFFIX)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_tables(
    sessions: pa.Table,
    datasets: pa.Table,
    out_dir: Path,
    meta: dict[str, str],
    record: dict[str, object] | None = None,
) -> tuple[Path, Path]:
    """Write both tables into ``out_dir`` atomically (see the module docstring).

    ``meta`` goes under ``one_metadata``, ``record`` (see :func:`provenance`) under
    :data:`PROVENANCE_KEY`.

    Returns
    -------
    pathlib.Path, pathlib.Path
        The sessions and datasets table paths.

    Raises
    ------
    WriteFailed
        Writing failed (disk full, permissions); the previous tables are untouched.
    """
    plan = (
        (_with_metadata(sessions, SESSIONS_INDEX, meta, record), out_dir / SESSIONS_FILE),
        (_with_metadata(datasets, DATASETS_INDEX, meta, record), out_dir / DATASETS_FILE),
    )
    written: list[tuple[Path, Path]] = []
    try:
        for table, final in plan:
            written.append((_write_tmp(table, final), final))
        for tmp, final in written:
            tmp.replace(final)
    except OSError as exc:
        raise WriteFailed(
            f"could not write the cache tables in {out_dir}: {exc.strerror or exc}; "
            "the previous tables are unchanged. Free space or choose another --out-dir."
        ) from exc
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
    return out_dir / SESSIONS_FILE, out_dir / DATASETS_FILE
