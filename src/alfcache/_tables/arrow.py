"""Arrow arrays from Python values, laid out buffer by buffer.

``pyarrow.array`` on a Python list (or NumPy array) imports pandas to ask whether the input is
pandas-like: half a second in every worker and in the command line. Laying out the buffers with
NumPy skips that check and is faster besides.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def string_array(values: Sequence[str | None]) -> pa.Array:
    """A ``large_string`` array of ``values`` (None becomes null); values must encode as UTF-8."""
    n = len(values)
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n), out=offsets[1:])
    validity = None
    if any(v is None for v in values):
        present = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)), validity
    )


def numeric_array(values: Sequence[int] | np.ndarray, dtype: pa.DataType) -> pa.Array:
    """A primitive array of ``dtype`` (e.g. ``pa.uint64()``) without nulls."""
    data = np.asarray(values, dtype=dtype.to_pandas_dtype())
    return pa.Array.from_buffers(dtype, len(data), [None, pa.py_buffer(data)])


def mask_array(mask: np.ndarray) -> pa.Array:
    """A boolean array of the values of a NumPy bool array, without nulls."""
    bits = np.packbits(mask, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])
