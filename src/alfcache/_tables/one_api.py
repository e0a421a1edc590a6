"""Cache tables in memory: ``load_tables`` and ``merge_tables`` as ``one.alf.cache`` has them.

one-api 3.0.0 ships both next to ``make_parquet_db``; code written against that module must run
unchanged with alfcache, so both follow its behaviour step by step (the differential tests in
``tests/test_tables.py`` hold them to it). The one departure: a ``.pqt`` file without any
schema metadata is skipped with a warning, like one without ``date_created``, where one-api
raises a ``TypeError`` from deep inside ``iblutil``.

Like the rest of the pandas face, this module is imported on first use (``alfcache.__getattr__``).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from alfcache._maintain.prune import patch_cache
from alfcache._tables.checks import pair_mismatch
from alfcache._tables.frames import EMPTY_DATASETS_FRAME, EMPTY_SESSIONS_FRAME

__all__ = ["Bunch", "cast_index_object", "default_cache", "load_tables", "merge_tables"]

_logger = logging.getLogger("alfcache")

_INDEX_KEY = ".?id"
"""one-api's pattern for the columns that become the index of a table saved without one."""


class Bunch(dict[str, Any]):
    """A dictionary whose keys are also attributes, as ``iblutil.util.Bunch`` (one-api's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__ = self


def _is_uuid_string(value: object) -> bool:
    """True for a canonical lower-case UUID string of version 3, 4 or 5 (``is_uuid_string``)."""
    if not isinstance(value, str):
        return False
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return False
    return parsed.version in (3, 4, 5) and str(parsed) == value


def cast_index_object(df: pd.DataFrame, dtype: Callable[[Any], Any] = uuid.UUID) -> pd.DataFrame:
    """Cast the index object to the specified dtype.

    NB: The data frame index will remain as 'object', however the underlying object type will
    be modified. Nulls are left alone.

    Parameters
    ----------
    df : pandas.DataFrame
        A data frame with an index to cast; its index is replaced in place.
    dtype : type, function
        The desired dtype or a mapping function.

    Returns
    -------
    pandas.DataFrame
        ``df``, with its new index.
    """
    if isinstance(df.index, pd.MultiIndex):
        df.index = pd.MultiIndex.from_arrays(
            [
                df.index.get_level_values(i).map(dtype, na_action="ignore")
                for i in range(df.index.nlevels)
            ],
            names=df.index.names,
        )
    else:
        df.index = df.index.map(dtype, na_action="ignore")
    return df


def default_cache(origin: str = "") -> Bunch:
    """An empty cache dictionary with the default tables, as one-api 3.x's ``default_cache``.

    Parameters
    ----------
    origin : str, optional
        The origin of the cache (e.g. a computer name or database name).

    Returns
    -------
    Bunch
        Empty ``datasets`` and ``sessions`` frames and ``_meta``, whose ``raw`` holds for each
        table a ``date_created`` (now) and an ``origin``: the set of ``origin``, empty for ''.
    """
    now = datetime.datetime.now().isoformat(sep=" ", timespec="minutes")
    return Bunch(
        {
            "datasets": EMPTY_DATASETS_FRAME.copy(),
            "sessions": EMPTY_SESSIONS_FRAME.copy(),
            "_meta": {
                "created_time": None,
                "loaded_time": None,
                "modified_time": None,
                "saved_time": None,
                "raw": {
                    table: {"date_created": now, "origin": set(filter(None, [origin]))}
                    for table in ("datasets", "sessions")
                },
            },
        }
    )


def _read(file: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A table and its ``one_metadata`` (``{}`` when it has none), as ``iblutil.io.parquet``."""
    table = pq.read_table(file)
    try:
        metadata = json.loads((table.schema.metadata or {})[b"one_metadata"])
    except KeyError:
        _logger.debug("No parquet metadata in %s", file)
        metadata = {}
    return table.to_pandas(), metadata


def _warn_if_two_runs(files: dict[str, Path]) -> None:
    """Warn when the loaded sessions and datasets tables were written by two runs.

    one-api's ``load_tables`` does not check, so neither refuses: code written for it still
    runs, and the log says why its queries may find rows of another run.
    """
    if "sessions" in files and "datasets" in files:
        metadata = (pq.read_schema(files[t]).metadata for t in ("sessions", "datasets"))
        if why := pair_mismatch(*metadata):
            _logger.warning("%s in %s; index the folder again", why, files["sessions"].parent)


def load_tables(tables_dir: str | os.PathLike[str], glob_pattern: str = "*.pqt") -> Bunch:
    """Load parquet cache files from a local directory.

    Parameters
    ----------
    tables_dir : str, pathlib.Path
        The directory location of the parquet files.
    glob_pattern : str
        A glob pattern to match the cache files.

    Returns
    -------
    Bunch
        A Bunch object containing the loaded cache tables and associated metadata: one frame per
        file, named by its stem (``datasets`` and ``sessions`` are empty frames of the right
        columns when absent), and ``_meta`` with ``created_time`` (the oldest ``date_created``),
        ``loaded_time``, ``modified_time``, ``saved_time`` and ``raw`` (each file's
        ``one_metadata``).

    Raises
    ------
    KeyError
        A table without index metadata has no column whose name contains 'id'.
    """
    meta: dict[str, Any] = {
        "created_time": None,
        "loaded_time": None,
        "modified_time": None,
        "saved_time": None,
        "raw": {},
    }
    caches = Bunch(
        {
            "datasets": EMPTY_DATASETS_FRAME.copy(),
            "sessions": EMPTY_SESSIONS_FRAME.copy(),
            "_meta": meta,
        }
    )
    files: dict[str, Path] = {}
    for cache_file in Path(tables_dir).glob(glob_pattern):
        table = cache_file.stem
        cache, meta["raw"][table] = _read(cache_file)
        if "date_created" not in meta["raw"][table]:
            _logger.warning("%s does not appear to be a valid table. Skipping", cache_file)
            continue
        meta["loaded_time"] = datetime.datetime.now()

        if isinstance(cache.index, pd.RangeIndex):
            idx_columns = sorted(cache.filter(regex=_INDEX_KEY).columns)
            if not idx_columns:
                raise KeyError(f"Failed to set index: {cache_file} has no column named like 'id'")
            cache = cache.set_index(idx_columns)

        cache = patch_cache(cache, meta["raw"][table].get("min_api_version"), table)

        # Old caches may have path ids: only UUID ids are cast.
        if any(map(_is_uuid_string, cache.index.get_level_values(0))):
            cache = cast_index_object(cache, uuid.UUID)

        # A sorted index makes MultiIndex look-ups O(1) instead of O(N).
        if not cache.index.is_monotonic_increasing:
            cache = cache.sort_index()
        caches[table] = cache
        files[table] = cache_file

    _warn_if_two_runs(files)
    created = [
        datetime.datetime.fromisoformat(x["date_created"])
        for x in meta["raw"].values()
        if "date_created" in x
    ]
    if created:
        meta["created_time"] = min(created)
    return caches


def merge_tables(
    cache: dict[str, Any],
    strict: bool = False,
    origin: str | None = None,
    **kwargs: pd.DataFrame | pd.Series | None,
) -> datetime.datetime | None:
    """Update the cache tables with new records.

    Parameters
    ----------
    cache : dict
        A map of cache tables to update (as :func:`load_tables` returns); updated in place.
    strict : bool
        If not True, the columns don't need to match. Extra columns in input tables are
        dropped and missing columns are added and filled with np.nan.
    origin : str, optional
        The origin of the records (e.g. a computer name or database name), added to the
        ``origin`` set in each updated table's ``_meta['raw']`` (as one-api 3.1+). A table
        without raw metadata gets a ``date_created``.
    kwargs
        pandas.DataFrame or pandas.Series to insert/update for each table.

    Returns
    -------
    datetime.datetime
        A timestamp of when the cache was updated; None when no records were given.

    Raises
    ------
    AssertionError
        When strict is True the input columns must exactly match those of the cache table.
    KeyError
        One or more of the keyword arguments does not match a table in cache.
    """
    updated = None
    for table, given in kwargs.items():
        if given is None or given.empty:
            continue
        if table not in cache:
            raise KeyError(f'Table "{table}" not in cache')
        if isinstance(given, pd.Series):
            records = pd.DataFrame([given])
            records.index = records.index.set_names(cache[table].index.names)
        else:
            records = given
        records = records[~records.index.duplicated(keep="first")]
        if not strict:
            # Columns of the cache that the records lack are added, as nullable, and filled
            # with the null of their type (an ``exists_*`` column with the records' ``exists``).
            extra_columns = list(set(cache[table].columns) - set(records.columns))
            cache[table][extra_columns] = cache[table][extra_columns].convert_dtypes()
            positions = list(cache[table].columns)
            for col in sorted(extra_columns, key=positions.index):
                n = positions.index(col)
                dtype = cache[table][col].dtype
                nan = getattr(dtype, "na_value", np.nan)
                val = records.get("exists", True) if col.startswith("exists_") else nan
                records.insert(n, col, val)
            records = records.drop(columns=[c for c in records.columns if c not in cache[table]])
            records = records.reindex(columns=cache[table].columns)
        assert set(cache[table].columns) == set(records.columns)
        records = records.astype(cache[table].dtypes)
        to_update = records.index.isin(cache[table].index)
        try:
            cache[table].loc[records.index[to_update], :] = records[to_update]
        except ValueError as exc:
            # Nullable and categorical columns loaded from parquet may be backed by read-only
            # Arrow buffers (one-api 3.1+ copies the table then, and so do we).
            if "read-only" not in str(exc):
                raise
            cache[table] = cache[table].copy()
            cache[table].loc[records.index[to_update], :] = records[to_update]
        cache[table] = pd.concat([cache[table], records[~to_update]]).sort_index()
        updated = datetime.datetime.now()
        _note_origin(cache["_meta"], table, origin)
    cache["_meta"]["modified_time"] = updated
    return updated


def _note_origin(meta: dict[str, Any], table: str, origin: str | None) -> None:
    """Record ``origin`` and a ``date_created`` in the table's raw metadata, as one-api 3.1+.

    The origin becomes a set; a table loaded by :func:`load_tables` holds it as written (a
    string, as one-api 3.0.0 loads it, or a list after one-api re-saved it), so it is taken in.
    """
    table_meta = meta["raw"].get(table, {})
    if origin is not None:
        held = table_meta.get("origin")
        if held is None:
            table_meta["origin"] = {origin}
        else:
            held = held if isinstance(held, set | list | tuple) else [held]
            table_meta["origin"] = {*filter(None, held), origin}
        meta["raw"][table] = table_meta
    if "date_created" not in table_meta:
        table_meta["date_created"] = datetime.datetime.now().isoformat(sep=" ", timespec="minutes")
        meta["raw"][table] = table_meta
