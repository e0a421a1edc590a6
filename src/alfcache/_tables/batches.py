"""The Arrow record batches a walk hands to the assembler: their schemas, how a walk's columns
become them, and how they travel from a Dask task.

A walk imports this module at its first flush, not when it starts: pyarrow and NumPy take
0.25 s to import on a warm disk and twice that on a cold one, and the walk starts first, so that
its listings wait on storage while they load (start-up, issue 21).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import pyarrow as pa

from alfcache._alf.ids import uuid3_joined, uuid3_strings
from alfcache._tables.arrow import numeric_array, string_array, with_offsets

SESSION_BATCH_SCHEMA = pa.schema(
    [
        ("session", pa.large_string()),
        ("lab", pa.large_string()),
        ("subject", pa.large_string()),
        ("date", pa.large_string()),
        ("number", pa.large_string()),
        ("num", pa.uint16()),
        ("id", pa.large_string()),
    ]
)
r"""One row per session folder; ``session`` is the folder's path relative to the root, ``number``
the folder name as written and ``num`` its value (Python's ``int`` reads any Unicode digits,
as the reference's ``\d`` admits them); ``id`` its UUID v3
(:func:`alfcache._walk.scan.session_id_name`), or null when ids are not hashed
(``hash_ids=False``: the assembler makes path ids)."""

DATASET_BATCH_SCHEMA = pa.schema(
    [
        ("session", pa.large_string()),
        ("rel_path", pa.large_string()),
        ("file_size", pa.uint64()),
        ("mtime_ns", pa.int64()),
        ("id", pa.large_string()),
    ]
)
"""One row per dataset file; ``rel_path`` is relative to the session folder and ``id`` is the
UUID v3 of ``{session's ALF path}/{rel_path}``, or null when ids are not hashed
(``hash_ids=False``: the assembler makes path ids). Files are read (and hashed) in a later phase,
see :mod:`alfcache._digest.read`.

The ids are made by the walk, in the workers, as rows are found, rather than by the main
process after it: a session's ALF path (:func:`alfcache._walk.scan.session_id_name`) depends
only on its own folder names, and the table builder keeps or drops sessions but never moves
one."""


def walk_batches(
    sessions: Mapping[str, Sequence[str]],
    numbers: Sequence[int],
    datasets: tuple[Sequence[str], Sequence[str], Sequence[int], Sequence[int]],
    alf_path: Callable[[str], str] | None,
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """The rows of a walk as one batch of each schema.

    Parameters
    ----------
    sessions : mapping of str to sequence of str
        The text columns of ``SESSION_BATCH_SCHEMA`` in its order (``session`` to ``number``).
    numbers : sequence of int
        The ``num`` column.
    datasets : (session, rel_path, file_size, mtime_ns)
        The columns of ``DATASET_BATCH_SCHEMA`` but its ids.
    alf_path : callable, optional
        The ALF path of a session folder (relative to the root), whose UUID v3 is its id; None
        leaves the ids null.
    """
    session, rel_path, size, mtime = datasets
    if alf_path is not None:
        session_ids = _large(uuid3_strings([alf_path(s) for s in sessions["session"]]))
        dataset_ids = _large(uuid3_joined(session, rel_path, alf_path))
    else:
        # Path ids are made by the assembler from the other columns, a column at a time:
        # UUIDs made here would be thrown away (0.8 s of MD5 per million rows).
        session_ids = pa.nulls(len(numbers), pa.large_string())
        dataset_ids = pa.nulls(len(session), pa.large_string())
    session_batch = pa.RecordBatch.from_arrays(
        [
            *(string_array(column) for column in sessions.values()),
            numeric_array(numbers, pa.uint16()),
            session_ids,
        ],
        schema=SESSION_BATCH_SCHEMA,
    )
    dataset_batch = pa.RecordBatch.from_arrays(
        [
            string_array(session),
            string_array(rel_path),
            numeric_array(size, pa.uint64()),
            numeric_array(mtime, pa.int64()),
            dataset_ids,
        ],
        schema=DATASET_BATCH_SCHEMA,
    )
    return session_batch, dataset_batch


def _large(ids: pa.StringArray) -> pa.Array:
    """Ids as ``large_string``, the walk's one text type: Polars converts any other with
    ``pyarrow.compute``, whose import a small run cannot afford."""
    return with_offsets(ids, pa.large_string())


def to_ipc(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> bytes:
    """``batches`` as the bytes of one Arrow IPC stream (what a Dask task returns)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def from_ipc(data: bytes) -> pa.RecordBatch:
    """The one record batch of the rows an IPC stream holds."""
    table = pa.ipc.open_stream(data).read_all().combine_chunks()
    columns = [c.chunk(0) if c.num_chunks else pa.array([], c.type) for c in table.columns]
    return pa.RecordBatch.from_arrays(columns, schema=table.schema)
