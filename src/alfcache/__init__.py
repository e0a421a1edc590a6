"""alfcache: a parallel indexer that writes ONE-api's parquet cache tables.

The public API mirrors ``one.alf.cache``. Names are resolved on first access (PEP 562): a scan
worker imports ``alfcache._walk.scan`` and must not pay for Polars, pandas or the parquet
writer, and ``QC_TYPE`` and the empty frames are the only reason to load pandas at all.
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
from alfcache._version import __version__ as __version__

if TYPE_CHECKING:
    from alfcache._alf.ids import NAMESPACE
    from alfcache._index import IndexReport, index, make_parquet_db
    from alfcache._maintain.info import InfoReport, info
    from alfcache._maintain.merge import merge_parts
    from alfcache._maintain.prune import remove_missing_datasets
    from alfcache._maintain.verify import Difference, VerifyReport, verify
    from alfcache._tables.frames import (
        DATASETS_COLUMNS,
        EMPTY_DATASETS_FRAME,
        EMPTY_SESSIONS_FRAME,
        QC_TYPE,
        SESSIONS_COLUMNS,
    )
    from alfcache._tables.one_api import (
        cast_index_object,
        default_cache,
        load_tables,
        merge_tables,
        patch_cache,
        patch_tables,
        remove_cache_table_files,
        remove_table_files,
    )

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
    "Difference",
    "IndexReport",
    "InfoReport",
    "LabConflict",
    "MergeFailed",
    "MissingRoot",
    "OutDirLocked",
    "OutDirNotWritable",
    "RootNotReadable",
    "ScanFailed",
    "SchedulerUnreachable",
    "Terminated",
    "VerifyReport",
    "WriteFailed",
    "cast_index_object",
    "default_cache",
    "index",
    "info",
    "load_tables",
    "make_parquet_db",
    "merge_parts",
    "merge_tables",
    "patch_cache",
    "patch_tables",
    "remove_cache_table_files",
    "remove_missing_datasets",
    "remove_table_files",
    "verify",
]

_LAZY = {
    "QC_TYPE": "_tables.frames",
    "SESSIONS_COLUMNS": "_tables.frames",
    "DATASETS_COLUMNS": "_tables.frames",
    "EMPTY_DATASETS_FRAME": "_tables.frames",
    "EMPTY_SESSIONS_FRAME": "_tables.frames",
    "NAMESPACE": "_alf.ids",
    "IndexReport": "_index",
    "index": "_index",
    "make_parquet_db": "_index",
    "merge_parts": "_maintain.merge",
    "info": "_maintain.info",
    "InfoReport": "_maintain.info",
    "verify": "_maintain.verify",
    "VerifyReport": "_maintain.verify",
    "Difference": "_maintain.verify",
    "load_tables": "_tables.one_api",
    "merge_tables": "_tables.one_api",
    "cast_index_object": "_tables.one_api",
    "default_cache": "_tables.one_api",
    "patch_cache": "_tables.one_api",
    "patch_tables": "_tables.one_api",
    "remove_cache_table_files": "_tables.one_api",
    "remove_table_files": "_tables.one_api",
    "remove_missing_datasets": "_maintain.prune",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"alfcache.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'alfcache' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
