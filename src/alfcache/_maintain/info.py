"""Info: what a cache folder holds, who wrote it, and whether ONE-api can use it.

Works on tables written by alfcache and by one-api (or Alyx) alike: alfcache's own record
(``alfcache`` schema key, see :func:`alfcache._tables.store.provenance`) is shown when present, and
otherwise what can be read from the tables themselves (id kind, digest columns).

The checks follow the column table of ``alf-layout.md``. An *error* breaks loading or makes
queries return wrong answers; a *warning* loads but costs something (ONE-api re-hashing every
file, ``eid2path`` failing).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from alfcache._exceptions import BadArgument
from alfcache._paths import plural, shown
from alfcache._tables.checks import pair_mismatch
from alfcache._tables.revisions import COLUMN as DEFAULT_COLUMN
from alfcache._tables.revisions import groups_without_one_default
from alfcache._tables.schema import DIGEST_COLUMNS, INDEX, ONE_API_NEEDS, QC_LEVELS
from alfcache._tables.store import (
    DATASETS_FILE,
    SESSIONS_FILE,
    bad_text,
    read_one_metadata,
    read_provenance,
    read_table,
)

_MD5 = re.compile(r"[0-9a-f]{32}")


def _index_columns(table: pa.Table) -> list[str]:
    """The columns ONE-api makes the index: pandas metadata's, else every name with 'id'."""
    try:
        pandas = json.loads((table.schema.metadata or {})[b"pandas"])
        named = [c for c in pandas["index_columns"] if isinstance(c, str)]
    except (KeyError, ValueError, TypeError):
        named = []
    return named or sorted(c for c in table.column_names if "id" in c)


def _id_kind(ids: list[str | None]) -> tuple[str, list[str], list[str]]:
    """The kind of the session ids ('uuid3', 'uuid4', 'path', ...), with errors and warnings."""
    versions: set[int | None] = set()
    bad_uuid = 0
    for value in ids:
        try:
            parsed = uuid.UUID(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or len(value or "") != 36:
            versions.add(None)
        elif str(parsed) != value or parsed.version not in (3, 4, 5):
            bad_uuid += 1
            versions.add(parsed.version)
        else:
            versions.add(parsed.version)
    errors: list[str] = []
    warnings: list[str] = []
    if bad_uuid:
        errors.append(
            f"{bad_uuid} session id(s) are upper-case or of a UUID version other than 3, 4 or 5: "
            "ONE-api does not cast them and list_datasets(eid) fails"
        )
    if None in versions and len(versions) > 1:
        errors.append("session ids mix UUIDs and other strings: ONE-api fails to load the tables")
    if 5 in versions:
        warnings.append("UUID version 5 session ids load, but ONE-api's eid2path rejects them")
    if not ids:
        return "none", errors, warnings
    if versions == {None}:
        return "path", errors, warnings
    kinds = sorted(f"uuid{v}" for v in versions if v is not None)
    return "+".join(kinds) + ("+path" if None in versions else ""), errors, warnings


def _check_table(name: str, table: pa.Table, path: Path) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    if not table.schema.metadata:
        errors.append(f"{path.name} has no key-value metadata: ONE-api crashes loading it")
    else:
        meta = read_one_metadata(table.schema.metadata)
        if meta is None or "date_created" not in meta:
            errors.append(f"{path.name} has no one_metadata date_created: ONE-api skips it")
    index = _index_columns(table)
    if index != list(INDEX[name]):
        errors.append(
            f"{path.name}: ONE-api would index it by {index or 'nothing'} instead of "
            f"{list(INDEX[name])} (no pandas index metadata, and columns named like 'id')"
        )
    for column, (need, meets) in ONE_API_NEEDS[name].items():
        if column not in table.column_names:
            errors.append(f"{path.name} has no column {column!r} ({need})")
        elif not meets(table.schema.field(column).type):
            errors.append(
                f"{path.name}: column {column!r} is {table.schema.field(column).type}, "
                f"ONE-api needs {need}"
            )
    if name == "datasets":
        e, w = _check_datasets(table, path)
        errors += e
        warnings += w
    return errors, warnings


def _check_datasets(table: pa.Table, path: Path) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    for column in ("rel_path", "file_size"):
        if column in table.column_names and table[column].null_count:
            errors.append(f"{path.name}: {table[column].null_count} null {column} value(s)")
    if "hash" in table.column_names and pa.types.is_string(table.schema.field("hash").type):
        hashes = pl.Series(table["hash"]).drop_nulls()
        empty = int((hashes == "").sum())
        other = int((~hashes.str.contains(f"^{_MD5.pattern}$")).sum()) - empty
        # Both load; ONE-api then computes the MD5 of each such file it loads and logs a
        # mismatch, so they cost a read of every file, not a failure.
        if empty:
            warnings.append(
                f"{path.name}: {empty} hash value(s) are '' instead of null: ONE-api computes "
                "the MD5 of each such file it loads and logs a mismatch"
            )
        if other:
            warnings.append(
                f"{path.name}: {other} hash value(s) are not lower-case MD5 hex: ONE-api logs "
                "a mismatch for each such file it loads"
            )
    if {"eid", "rel_path"} <= set(table.column_names):
        if DEFAULT_COLUMN not in table.column_names:
            warnings.append(
                f"{path.name} has no {DEFAULT_COLUMN} column: ONE-api warns 'No default "
                "revision' for every dataset it loads, and list_datasets(..., "
                "default_revisions_only=True) raises"
            )
        elif not pa.types.is_boolean(table.schema.field(DEFAULT_COLUMN).type):
            errors.append(
                f"{path.name}: column {DEFAULT_COLUMN!r} is "
                f"{table.schema.field(DEFAULT_COLUMN).type}, ONE-api needs bool"
            )
        elif bad := groups_without_one_default(table):
            errors.append(
                f"{path.name}: {plural(bad, 'dataset')} with no or several {DEFAULT_COLUMN} "
                "rows: ONE-api raises loading them"
            )
    if "qc" in table.column_names and pa.types.is_dictionary(table.schema.field("qc").type):
        qc = table["qc"]
        levels = {tuple(chunk.dictionary.to_pylist()) for chunk in qc.chunks}
        if not qc.type.ordered or levels - {QC_LEVELS}:
            errors.append(
                f"{path.name}: column 'qc' must be ordered and hold exactly {list(QC_LEVELS)}; "
                "ONE-api's QC queries raise TypeError otherwise"
            )
    return errors, warnings


def held_digests(datasets: pa.Table) -> list[str]:
    """The digests a datasets table holds: a digest column with a value ('' is none)."""
    held = []
    for algorithm, column in DIGEST_COLUMNS.items():
        if column in datasets.column_names:
            values = pl.Series(datasets[column]).cast(pl.String, strict=False).replace("", None)
            if values.null_count() < len(values):
                held.append(algorithm)
    return held


@dataclass
class InfoReport:
    """What a cache folder holds, who wrote it, and whether ONE-api can use it.

    Attributes
    ----------
    tables : pathlib.Path
        The folder of the tables, resolved.
    sessions, datasets : int
        Rows of each table.
    bytes : int
        Total ``file_size`` of the datasets that exist.
    missing_datasets : int
        Datasets marked ``exists`` false.
    labs : list of str
        The labs of the sessions, sorted.
    subjects : int
        Distinct subjects.
    first_date, last_date : str or None
        The range of session dates (ISO), None without dates.
    created : str or None
        The earliest ``date_created`` of ONE-api's metadata.
    origin : object
        The ``origin`` of ONE-api's metadata (the folder indexed), None if not recorded.
    id_kind : str
        How the ids were made (alfcache's, ONE-api's hashed, UUIDs, ...).
    digests : list of str
        The digests the datasets table holds (``md5``, ``xxh3``).
    alfcache_version : str or None
        The alfcache that wrote the tables; None when alfcache did not.
    options : dict or None
        alfcache's run options, or None.
    errors, warnings : list of str
        What breaks ONE-api's loading or queries, and what costs something.
    """

    tables: Path
    sessions: int
    datasets: int
    bytes: int
    missing_datasets: int
    labs: list[str]
    subjects: int
    first_date: str | None
    last_date: str | None
    created: str | None
    origin: object
    id_kind: str
    digests: list[str]
    alfcache_version: str | None
    options: dict[str, Any] | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the tables meet what ONE-api needs (no error)."""
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        """The report as ``alfcache info --json`` prints it (ONE-api's verdict as ``one_api``)."""
        return {
            "tables": str(self.tables),
            "sessions": self.sessions,
            "datasets": self.datasets,
            "bytes": self.bytes,
            "missing_datasets": self.missing_datasets,
            "labs": list(self.labs),
            "subjects": self.subjects,
            "first_date": self.first_date,
            "last_date": self.last_date,
            "created": self.created,
            "origin": self.origin,
            "id_kind": self.id_kind,
            "digests": list(self.digests),
            "alfcache_version": self.alfcache_version,
            "options": self.options,
            "one_api": {"ok": self.ok, "errors": self.errors, "warnings": self.warnings},
        }


def info(tables_dir: str | os.PathLike[str]) -> InfoReport:
    """Describe the cache tables in ``tables_dir``: what they hold, whether ONE-api can use them.

    Works on tables written by alfcache and by one-api (or Alyx) alike.

    Parameters
    ----------
    tables_dir : str, pathlib.Path
        The folder holding ``sessions.pqt`` and ``datasets.pqt``.

    Returns
    -------
    InfoReport
        Its ``ok`` is False when ONE-api cannot use the tables (``errors`` say why).

    Raises
    ------
    BadArgument
        A table is missing or is not a parquet file.
    """
    folder = Path(tables_dir).expanduser()
    if not folder.is_dir():
        raise BadArgument(
            f"{shown(folder)} is not a folder; pass the folder that holds the tables"
        )
    ses_path, ds_path = folder / SESSIONS_FILE, folder / DATASETS_FILE
    sessions, datasets = read_table(ses_path, text=False), read_table(ds_path, text=False)
    errors: list[str] = []
    warnings: list[str] = []
    for table, path in ((sessions, ses_path), (datasets, ds_path)):
        if why := bad_text(table):
            errors.append(f"{path.name}: {why}: ONE-api fails to load it")
    for name, table, path in (("sessions", sessions, ses_path), ("datasets", datasets, ds_path)):
        e, w = _check_table(name, table, path)
        errors += e
        warnings += w
    if why := pair_mismatch(sessions.schema.metadata, datasets.schema.metadata):
        errors.append(f"{why}; ONE-api would join rows of two runs. Index the folder again")
    ids = sessions["id"].to_pylist() if "id" in sessions.column_names else []
    id_kind, e, w = _id_kind(ids)
    errors += e
    warnings += w

    record = read_provenance(datasets.schema.metadata)
    metas = [read_one_metadata(t.schema.metadata) or {} for t in (sessions, datasets)]
    created = sorted(str(m["date_created"]) for m in metas if "date_created" in m)
    ses = pl.DataFrame(
        sessions.select([c for c in ("lab", "subject", "date") if c in sessions.column_names])
    )
    exists = (
        pl.Series(datasets["exists"]).fill_null(True)
        if "exists" in datasets.column_names
        else pl.Series([True] * datasets.num_rows)
    )
    sizes = (
        pl.Series(datasets["file_size"]).cast(pl.Int64, strict=False)
        if "file_size" in datasets.column_names
        else pl.Series([0] * datasets.num_rows)
    )
    # A date column of another type is an error above; no range is made up from it.
    dates = ses["date"].drop_nulls() if ses.schema.get("date") == pl.Date else None
    labs = sorted({lab for lab in ses["lab"].to_list() if lab}) if "lab" in ses.columns else []
    return InfoReport(
        tables=folder.resolve(),
        sessions=sessions.num_rows,
        datasets=datasets.num_rows,
        bytes=int(sizes.filter(exists).sum() or 0),
        missing_datasets=int((~exists).sum()),
        labs=labs,
        subjects=ses["subject"].n_unique() if "subject" in ses.columns else 0,
        first_date=str(dates.min()) if dates is not None and len(dates) else None,
        last_date=str(dates.max()) if dates is not None and len(dates) else None,
        created=created[0] if created else None,
        origin=metas[0].get("origin", metas[1].get("origin")),
        id_kind=id_kind,
        digests=record.get("digests", held_digests(datasets)),
        alfcache_version=record.get("version"),
        options=record.get("options"),
        errors=errors,
        warnings=warnings,
    )
