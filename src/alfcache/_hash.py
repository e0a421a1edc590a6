"""File digests, computed inside the workers.

``hashlib`` releases the GIL while it digests a block, so large blocks keep the time in C.
"""

from __future__ import annotations

import hashlib

BLOCK_SIZE = 1 << 20


def md5_file(path: str) -> str:
    """Return the MD5 of a file in lower-case hex, as ``md5sum`` prints it."""
    digest = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(BLOCK_SIZE)
        view = memoryview(buf)
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()
