"""Deterministic ids: UUID version 3 computed a column at a time.

``uuid.uuid3(NAMESPACE, name)`` is the MD5 of the namespace's 16 bytes followed by the UTF-8
name, with the version and variant bits set (RFC 4122). Building a ``uuid.UUID`` per row costs
microseconds; here the MD5s are taken in one pass, the bits are set with NumPy on the whole
block, and the hex text is laid out directly in an Arrow string buffer.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

try:
    # CPython's own MD5 (the one hashlib falls back on): without OpenSSL's context behind each
    # object it takes 370 ns a name where OpenSSL's takes 560, and ids are 1.2 million hashes
    # of a million-file tree. Builds without it use OpenSSL's; the digests are the same.
    from _md5 import md5 as _md5  # type: ignore[import-not-found]  # no stub: private module
except ImportError:  # a CPython built without its own MD5
    _md5 = hashlib.md5

NAMESPACE = uuid.UUID("2a6e3c58-8e0a-4b1f-9d36-6c1f0b5a1c3e")
"""The fixed namespace of every alfcache id; documented in the README. Never change it: ids
would change with it."""

_GROUPS = ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24))
"""The groups of hex digits of the canonical ``8-4-4-4-12`` form: digits [start, stop) go to
text column ``at``."""


def uuid_text(raw: np.ndarray) -> np.ndarray:
    """The canonical text of UUIDs given as bytes: the one place that lays out UUID hex.

    Parameters
    ----------
    raw : numpy.ndarray
        ``(n, 16)`` uint8, the 16 bytes of each UUID in order.

    Returns
    -------
    numpy.ndarray
        ``(n, 36)`` uint8: lower-case ASCII ``8-4-4-4-12`` text, one UUID per row.
    """
    n = len(raw)
    # bytes.hex lays out the digits in C; NumPy only moves them in between the dashes.
    hex_digits = np.ascontiguousarray(raw).tobytes().hex().encode()
    digits = np.frombuffer(hex_digits, dtype=np.uint8).reshape(n, 32)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for start, stop, at in _GROUPS:
        text[:, at : at + stop - start] = digits[:, start:stop]
    return text


def uuid3_strings(names: Sequence[str]) -> pa.StringArray:
    """Return ``str(uuid.uuid3(NAMESPACE, name))`` for every name, as an Arrow string array.

    Parameters
    ----------
    names : sequence of str
        The names to hash.

    Returns
    -------
    pyarrow.StringArray
        Lower-case canonical UUID strings, version 3.
    """
    prefix = _md5(NAMESPACE.bytes)
    digests: list[bytes] = []
    for name in names:
        h = prefix.copy()
        h.update(name.encode())
        digests.append(h.digest())
    return _uuid3_text(b"".join(digests), len(names))


def uuid3_joined(
    folders: Iterable[str],
    names: Sequence[str],
    folder_path: Callable[[str], str] | None = None,
) -> pa.StringArray:
    """:func:`uuid3_strings` of ``f"{folder}/{name}"`` for each pair, without building the joins.

    The rows of a folder come one after another (a walk emits them so): the MD5 state after
    the folder is taken once per run of rows and copied for each name, so only the name is
    hashed per row. Rows out of order give the same ids, only slower.

    Parameters
    ----------
    folders : iterable of str
        Row by row, a folder...
    names : sequence of str
        ...and a name below it.
    folder_path : callable, optional
        The path hashed for a folder of ``folders`` (the folder itself when not given);
        called once per run of rows.

    Returns
    -------
    pyarrow.StringArray
        Lower-case canonical UUID strings, version 3.
    """
    namespace = _md5(NAMESPACE.bytes)
    digests: list[bytes] = []
    append = digests.append
    last = None
    copy = namespace.copy
    for folder, name in zip(folders, names, strict=True):
        if folder != last:  # the same object for a run of rows: compared by identity first
            state = namespace.copy()
            path = folder if folder_path is None else folder_path(folder)
            state.update(f"{path}/".encode())
            copy, last = state.copy, folder
        h = copy()
        h.update(name.encode())
        append(h.digest())
    return _uuid3_text(b"".join(digests), len(names))


def _uuid3_text(digests: bytes, n: int) -> pa.StringArray:
    """The UUID v3 text of ``n`` MD5 digests laid end to end."""
    raw = np.frombuffer(digests, dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x30  # version 3
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = uuid_text(raw)
    offsets = np.arange(0, 36 * n + 1, 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
