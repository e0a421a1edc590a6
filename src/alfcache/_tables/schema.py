"""The cache tables' Arrow schemas, as ONE-api needs them (see ``alf-layout.md``).

Built with pyarrow only, so the indexing path never imports pandas. The ``pandas`` schema
metadata is written by hand, exactly as pandas itself records it when one-api's
``make_parquet_db`` saves a frame: path ids are plain columns over a ``RangeIndex``, hashed ids the
frame's index (its columns come last), so ``pd.read_parquet`` gives a user the same frame from
either tool.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pyarrow as pa

QC_LEVELS = ("NOT_SET", "PASS", "WARNING", "FAIL", "CRITICAL")
"""The QC categories in ONE-api's order; a new index writes NOT_SET."""

QC_ARROW_TYPE = pa.dictionary(pa.int8(), pa.string(), ordered=True)

SESSIONS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("lab", pa.string()),
        ("subject", pa.string()),
        ("date", pa.date32()),
        ("number", pa.uint16()),
        ("task_protocol", pa.string()),
        ("projects", pa.string()),
    ]
)
SESSIONS_INDEX = ("id",)

DATASETS_SCHEMA = pa.schema(
    [
        ("eid", pa.string()),
        ("id", pa.string()),
        ("rel_path", pa.string()),
        ("file_size", pa.uint64()),
        ("hash", pa.string()),  # pa.null() when no file was hashed: see build.datasets_table
        ("exists", pa.bool_()),
        ("qc", QC_ARROW_TYPE),
    ]
)
DATASETS_INDEX = ("eid", "id")

SESSION_KEY = ("lab", "subject", "date", "number")
"""How ONE-api tells sessions apart (it rebuilds the folder from them), whatever their ids:
tables made by another tool are matched, verified and merged by these columns."""

DIGEST_COLUMNS = {"md5": "hash", "xxh3": "xxh3_128"}
"""The datasets-table column of each digest. ONE-api compares ``hash`` with the MD5 of every
file it loads, so nothing but an MD5 may go there; no name may contain ``id``, or ONE-api would
make the column part of the index."""

MTIME_COLUMN = "mtime_ns"
"""The datasets-table column of each file's modification time (int64 nanoseconds), in hashed
tables: ONE-api carries extra columns along as long as their names do not contain ``id``."""

ONE_API_NEEDS: dict[str, dict[str, tuple[str, Callable[[pa.DataType], bool]]]] = {
    "sessions": {
        "id": ("string", pa.types.is_string),
        "lab": ("string", lambda t: pa.types.is_string(t) or pa.types.is_null(t)),
        "subject": ("string", pa.types.is_string),
        "date": ("date32", pa.types.is_date32),
        "number": ("an integer", pa.types.is_integer),
    },
    "datasets": {
        "eid": ("string", pa.types.is_string),
        "id": ("string", pa.types.is_string),
        "rel_path": ("string", pa.types.is_string),
        "file_size": ("uint64", pa.types.is_integer),
        "hash": ("MD5 hex or null", lambda t: pa.types.is_string(t) or pa.types.is_null(t)),
        "exists": ("bool", pa.types.is_boolean),
        "qc": ("an ordered dictionary of the five QC levels", pa.types.is_dictionary),
    },
}
"""Per table, column -> (what ONE-api needs, whether an Arrow type meets it), as the column
table of ``alf-layout.md`` has them: what ``info`` checks a table made by any tool against."""

INDEX = {"sessions": SESSIONS_INDEX, "datasets": DATASETS_INDEX}
"""The columns ONE-api makes each table's index."""

# (pandas_type, numpy_type, metadata) per Arrow type, as pandas records them in parquet files.
_PANDAS_TYPES: dict[pa.DataType, tuple[str, str, dict[str, object] | None]] = {
    pa.string(): ("unicode", "object", None),
    pa.date32(): ("date", "object", None),
    pa.uint16(): ("uint16", "uint16", None),
    pa.uint64(): ("uint64", "UInt64", None),
    pa.int64(): ("int64", "int64", None),
    pa.bool_(): ("bool", "bool", None),
    # An all-null hash (see build.datasets_table) is recorded as the string column one-api
    # writes, so pandas 2 and 3 read it as object None, never as pandas 3's NaN-holding string
    # dtype.
    pa.null(): ("unicode", "object", None),
    QC_ARROW_TYPE: ("categorical", "int8", {"num_categories": len(QC_LEVELS), "ordered": True}),
}


def numpy_type(arrow_type: pa.DataType) -> str:
    """The dtype pandas (and ONE-api's column maps) give a column of ``arrow_type``."""
    return _PANDAS_TYPES[arrow_type][1]


def pandas_metadata(schema: pa.Schema, index: tuple[str, ...], num_rows: int) -> bytes:
    """The ``pandas`` key of a table's schema metadata.

    ``index`` names the index columns; empty, the table is read over a ``RangeIndex`` of
    ``num_rows`` rows (pandas records it as ``{"kind": "range", ...}``, not as a column).
    """
    columns = []
    for f in schema:
        pandas_type, numpy_type, meta = _PANDAS_TYPES[f.type]
        columns.append(
            {
                "name": f.name,
                "field_name": f.name,
                "pandas_type": pandas_type,
                "numpy_type": numpy_type,
                "metadata": meta,
            }
        )
    return json.dumps(
        {
            "index_columns": list(index)
            or [{"kind": "range", "name": None, "start": 0, "stop": num_rows, "step": 1}],
            "column_indexes": [
                {
                    "name": None,
                    "field_name": None,
                    "pandas_type": "unicode",
                    "numpy_type": "object",
                    "metadata": {"encoding": "UTF-8"},
                }
            ],
            "columns": columns,
            "attributes": {},
            "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.0",
        }
    ).encode()


def forbidden_extra_columns(schema: pa.Schema, base: pa.Schema) -> list[str]:
    """Extra columns whose names contain ``id``: ONE-api would pull them into the index."""
    return [n for n in schema.names if n not in base.names and "id" in n]
