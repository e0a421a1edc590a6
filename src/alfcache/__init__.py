"""alfcache: a parallel indexer that writes ONE-api's parquet cache tables.

The public API mirrors ``one.alf.cache``. Names are resolved on first access (PEP 562): a scan
worker imports ``alfcache._scan`` and must not pay for Polars, pandas or the parquet writer, and
``QC_TYPE`` and the empty frames are the only reason to load pandas at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from alfcache._exceptions import (
    AlfcacheError,
    BadArgument,
    BadOutDir,
    BadRoot,
    LabConflict,
    MergeFailed,
    MissingRoot,
    OutDirLocked,
    OutDirNotWritable,
    RootNotReadable,
    ScanFailed,
    SchedulerUnreachable,
    Terminated,
    WriteFailed,
)

if TYPE_CHECKING:
    from alfcache._frames import (
        DATASETS_COLUMNS,
        EMPTY_DATASETS_FRAME,
        EMPTY_SESSIONS_FRAME,
        QC_TYPE,
        SESSIONS_COLUMNS,
    )
    from alfcache._ids import NAMESPACE
    from alfcache._index import IndexReport, index, make_parquet_db
    from alfcache._maintain import (
        patch_cache,
        patch_tables,
        remove_cache_table_files,
        remove_missing_datasets,
        remove_table_files,
    )
    from alfcache._merge import merge_parts
    from alfcache._tables import cast_index_object, default_cache, load_tables, merge_tables

__version__ = "0.1.0"

__all__ = [
    "DATASETS_COLUMNS",
    "EMPTY_DATASETS_FRAME",
    "EMPTY_SESSIONS_FRAME",
    "NAMESPACE",
    "QC_TYPE",
    "SESSIONS_COLUMNS",
    "AlfcacheError",
    "BadArgument",
    "BadOutDir",
    "BadRoot",
    "IndexReport",
    "LabConflict",
    "MergeFailed",
    "MissingRoot",
    "OutDirLocked",
    "OutDirNotWritable",
    "RootNotReadable",
    "ScanFailed",
    "SchedulerUnreachable",
    "Terminated",
    "WriteFailed",
    "cast_index_object",
    "default_cache",
    "index",
    "load_tables",
    "make_parquet_db",
    "merge_parts",
    "merge_tables",
    "patch_cache",
    "patch_tables",
    "remove_cache_table_files",
    "remove_missing_datasets",
    "remove_table_files",
]

_LAZY = {
    "QC_TYPE": "_frames",
    "SESSIONS_COLUMNS": "_frames",
    "DATASETS_COLUMNS": "_frames",
    "EMPTY_DATASETS_FRAME": "_frames",
    "EMPTY_SESSIONS_FRAME": "_frames",
    "NAMESPACE": "_ids",
    "IndexReport": "_index",
    "index": "_index",
    "make_parquet_db": "_index",
    "merge_parts": "_merge",
    "load_tables": "_tables",
    "merge_tables": "_tables",
    "cast_index_object": "_tables",
    "default_cache": "_tables",
    "patch_cache": "_maintain",
    "patch_tables": "_maintain",
    "remove_cache_table_files": "_maintain",
    "remove_table_files": "_maintain",
    "remove_missing_datasets": "_maintain",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"alfcache.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'alfcache' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
