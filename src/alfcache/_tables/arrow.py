"""Arrow arrays from Python values, laid out buffer by buffer.

``pyarrow.array`` on a Python list (or NumPy array) imports pandas to ask whether the input is
pandas-like: half a second in every worker and in the command line. Laying out the buffers with
NumPy skips that check and is faster besides.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

import numpy as np
import pyarrow as pa


def string_array(values: Sequence[str | None]) -> pa.Array:
    """A ``large_string`` array of ``values`` (None becomes null); values must encode as UTF-8."""
    n = len(values)
    validity = None
    strings = cast("Sequence[str]", values) if None not in values else None
    text = "".join(strings) if strings is not None else ""
    lengths: Iterator[int]
    if strings is not None and text.isascii():
        # Nearly every path is ASCII: its characters are its bytes, so the text is encoded
        # at once and the lengths are the strings' own (a third of the time per value).
        data = text.encode("ascii")
        lengths = map(len, strings)
    else:
        encoded = [b"" if v is None else v.encode() for v in values]
        data = b"".join(encoded)
        lengths = map(len, encoded)
        if any(v is None for v in values):
            present = np.fromiter((v is not None for v in values), dtype=bool, count=n)
            validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(lengths, dtype=np.int64, count=n), out=offsets[1:])
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), validity)


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


TEXT_TYPES = (pa.string(), pa.large_string())
"""The Arrow types of text: Arrow's own and Polars'."""


def cast_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table.cast(schema)``, without ``pyarrow.compute`` for what Polars hands over.

    Polars gives ``large_string`` text and ``uint8`` dictionary indices; ONE-api's schema
    wants ``string`` and ``int8``. Those are laid out again on the same buffers; any other
    change of type goes to Arrow's ``cast``, which imports ``pyarrow.compute``.
    """
    if table.schema.names != schema.names:
        raise ValueError(f"columns {table.schema.names} are not {schema.names}")
    columns = [
        column if column.type == field.type else _cast_column(column, field.type)
        for column, field in zip(table.columns, schema, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _cast_column(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray:
    old = column.type
    if old in TEXT_TYPES and type_ in TEXT_TYPES:
        return pa.chunked_array([with_offsets(c, type_) for c in column.chunks], type_)
    if (
        pa.types.is_dictionary(old)
        and pa.types.is_dictionary(type_)
        and old.value_type in TEXT_TYPES
        and type_.value_type in TEXT_TYPES
        and old.ordered == type_.ordered
        and pa.types.is_integer(old.index_type)
        and pa.types.is_integer(type_.index_type)
    ):
        return pa.chunked_array([_dictionary(c, type_) for c in column.chunks], type_)
    return column.cast(type_)


def _dictionary(array: pa.DictionaryArray, type_: pa.DictionaryType) -> pa.DictionaryArray:
    width = type_.index_type.to_pandas_dtype()
    indices = array.indices
    if indices.null_count or indices.offset:
        return array.cast(type_)  # not what Polars hands over: Arrow's cast
    codes = np.frombuffer(
        indices.buffers()[1], dtype=indices.type.to_pandas_dtype(), count=len(indices)
    )
    if len(codes) and codes.max() > np.iinfo(width).max:
        return array.cast(type_)  # an index beyond the new width: Arrow's own error
    new = pa.Array.from_buffers(
        type_.index_type, len(indices), [None, pa.py_buffer(codes.astype(width))]
    )
    return pa.DictionaryArray.from_arrays(
        new, with_offsets(array.dictionary, type_.value_type), ordered=type_.ordered
    )


def numeric_array(values: Sequence[int] | np.ndarray, dtype: pa.DataType) -> pa.Array:
    """A primitive array of ``dtype`` (e.g. ``pa.uint64()``) without nulls."""
    data = np.asarray(values, dtype=dtype.to_pandas_dtype())
    return pa.Array.from_buffers(dtype, len(data), [None, pa.py_buffer(data)])


def mask_array(mask: np.ndarray) -> pa.Array:
    """A boolean array of the values of a NumPy bool array, without nulls."""
    bits = np.packbits(mask, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])
