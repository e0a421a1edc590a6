"""The command line's process gives freed memory back (alfcache.__main__): the tail of a large
run is a chain of whole-column copies, and the allocators' defaults kept the freed ones."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_SHOW = (
    "import os; from alfcache.__main__ import _return_freed_memory; _return_freed_memory(); "
    "print(os.environ.get('_RJEM_MALLOC_CONF'))"
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, "dirty_decay_ms:0,muzzy_decay_ms:0"), ("narenas:1", "narenas:1")],
)
def test_polars_allocator_returns_freed_memory_unless_told_otherwise(
    given: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    if given is not None:
        env["_RJEM_MALLOC_CONF"] = given
    proc = subprocess.run(
        [sys.executable, "-c", _SHOW], env=env, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == expected


_ARROW_CHURN = """
import ctypes, os, sys, time
from alfcache.__main__ import _return_freed_memory
_return_freed_memory()
import pyarrow as pa

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))

before = rss()
# Many medium blocks, as reading a table makes: 200 MiB, each written so that it is resident.
blocks = [pa.allocate_buffer(256 << 10) for _ in range(800)]
for block in blocks:
    ctypes.memset(block.address, 1, block.size)
held = rss()
del blocks
time.sleep(0.05)
print(pa.default_memory_pool().backend_name, before, held, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_arrow_allocator_returns_freed_memory() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    proc = subprocess.run(
        [sys.executable, "-c", _ARROW_CHURN], env=env, capture_output=True, text=True, check=True
    )
    backend, before, held, after = proc.stdout.split()
    if backend != "mimalloc":
        pytest.skip(f"PyArrow allocates with {backend} here, not mimalloc")
    assert int(held) - int(before) >= 150, proc.stdout  # the blocks were resident
    assert int(after) - int(before) < 50, f"MiB before, holding, after freeing: {proc.stdout}"
