"""Cache tables in pandas, as ``one.alf.cache`` has them: ``load_tables``, ``merge_tables``,
``patch_cache`` and ``remove_cache_table_files`` (with their one-api 3.x names ``patch_tables``
and ``remove_table_files``), and :func:`read_cache_tables`, which prune reads its tables with.

one-api 3.0.0 ships them next to ``make_parquet_db``; code written against that module must run
unchanged with alfcache, so they follow its behaviour step by step (the differential tests in
``tests/test_tables.py`` and ``tests/test_maintain.py`` hold them to it). The departures: a
``.pqt`` file without any schema metadata is skipped with a warning, like one without
``date_created``, where one-api raises a ``TypeError`` from deep inside ``iblutil``; and
:func:`patch_cache` decodes integer UUID pairs with NumPy on the whole column at once and never
modifies the frame it is given.

Like the rest of the pandas face, this module is imported on first use (``alfcache.__getattr__``).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from packaging.version import InvalidVersion, Version

from alfcache._alf.ids import uuid_text
from alfcache._exceptions import BadArgument
from alfcache._tables.checks import pair_mismatch
from alfcache._tables.frames import EMPTY_DATASETS_FRAME, EMPTY_SESSIONS_FRAME, QC_TYPE
from alfcache._tables.lock import DEFAULT_TIMEOUT, check_timeout, out_dir_lock
from alfcache._tables.store import (
    DATASETS_FILE,
    SESSIONS_FILE,
    read_metadata,
    read_one_metadata,
    read_parquet,
    read_table,
)

__all__ = [
    "Bunch",
    "cast_index_object",
    "default_cache",
    "load_tables",
    "merge_tables",
    "patch_cache",
    "patch_tables",
    "read_cache_tables",
    "remove_cache_table_files",
    "remove_table_files",
]

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
    table = read_parquet(file)
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
        metadata = (read_metadata(files[t]) for t in ("sessions", "datasets"))
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


CACHE_INFO_FILE = "cache_info.json"
"""ONE-api's cache metadata file, removed together with the tables."""

# -------------------------------------------------------------------------------------------------
# patch_cache
# -------------------------------------------------------------------------------------------------


def _version(text: str) -> Version:
    """``text`` as a PEP 440 version, ordered as one-api orders them (``packaging``).

    Raises
    ------
    BadArgument
        ``text`` is not a version number.
    """
    try:
        return Version(text.strip())
    except InvalidVersion:
        raise BadArgument(
            f"min_api_version={text!r} is not a version number such as '2.7.0'"
        ) from None


def _uuid_strings(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Canonical UUID strings from the two int64 halves that old cache tables store.

    The 16 UUID bytes are the little-endian bytes of ``low`` followed by those of ``high``,
    exactly as ``iblutil.io.parquet.np2str`` reads them; all rows are converted at once.

    Returns
    -------
    numpy.ndarray
        An object array of lower-case ``8-4-4-4-12`` strings.
    """
    halves = np.column_stack([_as_int64(low), _as_int64(high)]).astype("<i8", copy=False)
    raw = np.ascontiguousarray(halves).view(np.uint8).reshape(len(halves), 16)
    return uuid_text(raw).view("S36").ravel().astype(str).astype(object)


def _as_int64(values: np.ndarray | pd.Series) -> np.ndarray:
    """The 64 bits of each value as int64 (unsigned values are reinterpreted, not converted)."""
    array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if array.dtype.kind == "u" and array.dtype.itemsize == 8:
        return array.view(np.int64)
    if array.dtype.kind not in "iu" and array.dtype != object:
        raise BadArgument(f"integer UUID column has dtype {array.dtype}; expected int64")
    return array.astype(np.int64)


def _int_ids_to_str(table: pd.DataFrame) -> pd.DataFrame:
    """Replace integer UUID column pairs (``id_0``/``id_1``, ...) by string UUID columns.

    As in ONE-api, this applies only to a table whose (multi-level) index holds such a pair;
    every ``<name>_0``/``<name>_1`` pair of the table is converted and the converted names,
    sorted, become the index (old datasets tables kept ``eid_0``/``eid_1`` as plain columns).
    """
    index_names = [n for n in table.index.names if isinstance(n, str)]
    if table.index.nlevels < 2 or not any(n.endswith("_0") for n in index_names):
        return table
    table = table.reset_index()
    columns = {c for c in table.columns if isinstance(c, str)}
    names = sorted(c[:-2] for c in columns if c.endswith("_0") and f"{c[:-2]}_1" in columns)
    converted = {name: _uuid_strings(table[f"{name}_0"], table[f"{name}_1"]) for name in names}
    int_columns = [f"{name}_{half}" for name in names for half in (0, 1)]
    return table.drop(columns=int_columns).assign(**converted).set_index(names)


def patch_cache(
    table: pd.DataFrame, min_api_version: str | None = None, name: str | None = None
) -> pd.DataFrame:
    """Reformat older cache tables to comply with this version of ONE.

    Currently this function will 1. convert integer UUIDs to string UUIDs; 2. rename the
    'project' column to 'projects'; 3. add QC column; 4. drop session_path column.

    Parameters
    ----------
    table : pandas.DataFrame
        A cache table (from One._cache). It is not modified.
    min_api_version : str, optional
        The minimum API version supported by this cache table ('0.0.0' when None).
    name : {'datasets', 'sessions'}, optional
        The name of the table; the QC and session_path fixes apply to 'datasets' only.

    Returns
    -------
    pandas.DataFrame
        The patched table (``table`` itself when nothing needed patching).

    Raises
    ------
    BadArgument
        ``min_api_version`` is not a version number, or an integer id column is not integer.
    """
    version = _version(min_api_version or "0.0.0")
    table = _int_ids_to_str(table)
    if version < Version("1.13.0") and "project" in table.columns:
        table = table.rename(columns={"project": "projects"})
    if name == "datasets":
        if version < Version("2.7.0") and "qc" not in table.columns:
            codes = np.zeros(len(table.index), dtype=np.int8)  # NOT_SET
            table = table.assign(qc=pd.Categorical.from_codes(codes, dtype=QC_TYPE))
        if "session_path" in table.columns:
            table = table.drop(columns="session_path")
    return table


patch_tables = patch_cache
"""one-api 3.x's name of :func:`patch_cache` (the seed's name stays)."""


# -------------------------------------------------------------------------------------------------
# remove_cache_table_files
# -------------------------------------------------------------------------------------------------


def remove_cache_table_files(
    folder: str | os.PathLike[str],
    tables: Iterable[str] = ("sessions", "datasets"),
    *,
    lock_timeout: float = DEFAULT_TIMEOUT,
) -> list[Path]:
    """Delete cache tables on disk.

    Parameters
    ----------
    folder : str, pathlib.Path
        The directory path containing cache tables to remove.
    tables : iterable of str
        Table names to remove, e.g. ['sessions', 'datasets'].
        NB: This will also delete the cache_info.json metadata file.
    lock_timeout : float
        Seconds to wait for an index run writing into ``folder``
        (see :mod:`alfcache._tables.lock`).

    Returns
    -------
    list of pathlib.Path
        The removed files; a file that is not there is logged as a warning.

    Raises
    ------
    OutDirLocked
        Another run kept writing into ``folder`` for ``lock_timeout`` seconds.
    """
    folder = Path(folder)
    check_timeout(lock_timeout)
    removed: list[Path] = []
    names = (CACHE_INFO_FILE, *(f"{t}.pqt" for t in tables))
    if not folder.is_dir():  # nothing to remove, and nowhere to put a lock
        for name in names:
            _logger.warning("%s not found", folder / name)
        return removed
    # An index run renaming its pair into place meanwhile would be left half deleted.
    with out_dir_lock(folder, lock_timeout):
        for name in names:
            file = folder / name
            try:
                file.unlink()
            except FileNotFoundError:
                _logger.warning("%s not found", file)
                continue
            removed.append(file)
    return removed


remove_table_files = remove_cache_table_files
"""one-api 3.x's name of :func:`remove_cache_table_files` (the seed's name stays)."""


# -------------------------------------------------------------------------------------------------
# read_cache_tables
# -------------------------------------------------------------------------------------------------


def _min_api_version(file: Path) -> str | None:
    """The ``min_api_version`` in a table's ``one_metadata``, if any."""
    return (read_one_metadata(read_metadata(file)) or {}).get("min_api_version")


def read_cache_tables(cache_dir: Path) -> dict[str, pd.DataFrame]:
    """Read ``sessions.pqt`` and ``datasets.pqt`` from ``cache_dir`` as ONE-api would index them.

    A table written without pandas index metadata gets every column whose name contains 'id'
    as its index, sorted by name, as in ``one.alf.cache.load_tables``; older tables are patched.

    Raises
    ------
    FileNotFoundError
        A table is missing: pruning against a missing table would flag the whole tree.
    BadArgument
        A table is not parquet or holds a value that is not UTF-8.
    KeyError
        A table without an index has no column whose name contains 'id'.
    """
    tables = {}
    for name, file_name in (("sessions", SESSIONS_FILE), ("datasets", DATASETS_FILE)):
        file = cache_dir / file_name
        if not file.is_file():
            raise FileNotFoundError(
                f"{file} not found; index the folder first or pass the tables explicitly"
            )
        table = read_table(file).to_pandas()
        if isinstance(table.index, pd.RangeIndex):
            id_columns = sorted(c for c in table.columns if "id" in str(c))
            if not id_columns:
                raise KeyError(f"{file}: failed to set index (no column name contains 'id')")
            table = table.set_index(id_columns)
        tables[name] = patch_cache(table, _min_api_version(file), name)
    return tables
