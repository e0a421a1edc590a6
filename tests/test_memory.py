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
