"""The pandas face of the tables: ONE-api's column maps and empty frames.

Only the user-facing API imports this module (pandas costs a second of start-up); the indexing
path builds Arrow tables directly.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from alfcache._tables.schema import (
    DATASETS_SCHEMA,
    QC_ARROW_TYPE,
    QC_LEVELS,
    SESSIONS_SCHEMA,
    numpy_type,
)

QC_TYPE = pd.CategoricalDtype(categories=list(QC_LEVELS), ordered=True)
"""pandas.api.types.CategoricalDtype: The cache table QC column data type."""


def _column_map(schema: pa.Schema) -> dict[str, object]:
    """A table's fields and the pandas dtypes ONE-api gives them (``QC_TYPE`` for ``qc``)."""
    columns: dict[str, object] = {}
    for f in schema:
        is_qc = f.type == QC_ARROW_TYPE
        columns[f.name] = QC_TYPE if is_qc else pd.api.types.pandas_dtype(numpy_type(f.type))
    return columns


SESSIONS_COLUMNS = _column_map(SESSIONS_SCHEMA)
"""dict: A map of sessions table fields and their data types."""

DATASETS_COLUMNS = _column_map(DATASETS_SCHEMA)
"""dict: A map of datasets table fields and their data types."""


def empty_datasets_frame() -> pd.DataFrame:
    """An empty datasets dataframe with correct columns and dtypes."""
    return (
        pd.DataFrame(columns=list(DATASETS_COLUMNS))
        .astype(DATASETS_COLUMNS)
        .set_index(["eid", "id"])
    )


def empty_sessions_frame() -> pd.DataFrame:
    """An empty sessions dataframe with correct columns and dtypes."""
    return pd.DataFrame(columns=list(SESSIONS_COLUMNS)).astype(SESSIONS_COLUMNS).set_index("id")


EMPTY_DATASETS_FRAME = empty_datasets_frame()
"""pandas.DataFrame: An empty datasets dataframe with correct columns and dtypes."""

EMPTY_SESSIONS_FRAME = empty_sessions_frame()
"""pandas.DataFrame: An empty sessions dataframe with correct columns and dtypes."""
