"""alfcache: a parallel indexer that writes ONE-api's parquet cache tables.

The public API mirrors ``one.alf.cache``. The pandas-based attributes (``QC_TYPE``, the column
maps and the empty frames) are loaded on first access, so indexing never pays for pandas.
"""

from __future__ import annotations

from typing import Any

from alfcache._exceptions import (
    AlfcacheError,
    BadArgument,
    BadOutDir,
    BadRoot,
    LabConflict,
    OutDirNotWritable,
    ScanFailed,
    WriteFailed,
)
from alfcache._ids import NAMESPACE
from alfcache._index import IndexReport, index, make_parquet_db

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
    "OutDirNotWritable",
    "ScanFailed",
    "WriteFailed",
    "index",
    "make_parquet_db",
    "patch_cache",
    "remove_cache_table_files",
    "remove_missing_datasets",
]

_FRAMES = {
    "QC_TYPE",
    "SESSIONS_COLUMNS",
    "DATASETS_COLUMNS",
    "EMPTY_DATASETS_FRAME",
    "EMPTY_SESSIONS_FRAME",
}
_MAINTENANCE = {"patch_cache", "remove_missing_datasets", "remove_cache_table_files"}


def __getattr__(name: str) -> Any:
    if name in _FRAMES:
        from alfcache import _frames

        return getattr(_frames, name)
    if name in _MAINTENANCE:
        from alfcache import _maintain

        return getattr(_maintain, name)
    raise AttributeError(f"module 'alfcache' has no attribute {name!r}")
