"""The pandas face of the tables: ONE-api's column maps and empty frames.

Only the user-facing API imports this module (pandas costs a second of start-up); the indexing
path builds Arrow tables directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alfcache._tables.schema import QC_LEVELS

QC_TYPE = pd.CategoricalDtype(categories=list(QC_LEVELS), ordered=True)
"""pandas.api.types.CategoricalDtype: The cache table QC column data type."""

SESSIONS_COLUMNS: dict[str, object] = {
    "id": object,
    "lab": object,
    "subject": object,
    "date": object,  # datetime.date
    "number": np.uint16,
    "task_protocol": object,
    "projects": object,
}
"""dict: A map of sessions table fields and their data types."""

DATASETS_COLUMNS: dict[str, object] = {
    "eid": object,
    "id": object,
    "rel_path": object,  # relative to the session path, includes the file name
    "file_size": "UInt64",
    "hash": object,  # MD5 hex digest, or null when not hashed
    "exists": bool,
    "qc": QC_TYPE,
}
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
