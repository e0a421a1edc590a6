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


def with_offsets(array: pa.Array, type_: pa.DataType) -> pa.Array:
    """A ``string`` or ``large_string`` array as ``type_`` (the other one), its buffers reused.

    Arrow's ``cast`` does the same but imports ``pyarrow.compute``, a tenth of the start-up of
    a small run, and Polars imports it too for any string column that is not ``large_string``.
    """
    if array.type == type_:
        return array
    validity, offsets, data = array.buffers()
    wide = np.int64 if array.type == pa.large_string() else np.int32
    n = array.offset + len(array)
    old = np.frombuffer(offsets, dtype=wide, count=n + 1) if offsets else np.zeros(1, wide)
    if type_ == pa.string() and old[-1] > np.iinfo(np.int32).max:
        return array.cast(type_)  # more than 2 GiB of text: Arrow's own error
    new = old.astype(np.int64 if type_ == pa.large_string() else np.int32)
    return pa.Array.from_buffers(
        type_,
        len(array),
        [validity, pa.py_buffer(new), data or pa.py_buffer(b"")],
        array.null_count,
        array.offset,
    )


def numeric_array(values: Sequence[int] | np.ndarray, dtype: pa.DataType) -> pa.Array:
    """A primitive array of ``dtype`` (e.g. ``pa.uint64()``) without nulls."""
    data = np.asarray(values, dtype=dtype.to_pandas_dtype())
    return pa.Array.from_buffers(dtype, len(data), [None, pa.py_buffer(data)])


def bool_array(value: bool, n: int) -> pa.Array:
    """A boolean array of ``n`` copies of ``value``."""
    return mask_array(np.full(n, value, dtype=bool))


def mask_array(mask: np.ndarray) -> pa.Array:
    """A boolean array of the values of a NumPy bool array, without nulls."""
    bits = np.packbits(mask, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])
