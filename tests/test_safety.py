"""Data safety: tables other users can read, updates and pruning that never lose what the
walk could not see, and no leftovers of dead runs.

Permission tests drop root's powers (``setpriv`` to ``nobody``, see ``test_faults.py``): as
root, ``chmod`` alone proves nothing.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from test_faults import ENV, User, public_tmp, unprivileged  # noqa: F401  (fixtures)

import alfcache

SPIKES = "alf/spikes.times.npy"
TABLES = ("sessions.pqt", "datasets.pqt")


def _read_as(user: User, table: Path) -> subprocess.CompletedProcess[str]:
    """Read ``table`` with pyarrow as ``user``."""
    code = f"import pyarrow.parquet as pq; pq.read_table({str(table)!r})"
    return subprocess.run(
        [*user.prefix, sys.executable, "-c", code],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )


# --------------------------------------------------------------------------------------------
# item 1: table modes
# --------------------------------------------------------------------------------------------


def test_new_tables_take_the_umask_and_other_users_can_read_them(
    public_tmp: Path,  # noqa: F811
    make_files: Any,
    unprivileged: User,  # noqa: F811
) -> None:
    root = make_files(public_tmp / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    old = os.umask(0o022)
    try:
        alfcache.make_parquet_db(root, n_jobs=1)
    finally:
        os.umask(old)
    for name in TABLES:
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o644
        done = _read_as(unprivileged, root / name)
        assert done.returncode == 0, done.stderr
    os.umask(0o077)
    try:
        alfcache.make_parquet_db(public_tmp / "data", public_tmp / "private", n_jobs=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((public_tmp / "private" / TABLES[0]).stat().st_mode) == 0o600


def test_reindex_keeps_the_mode_and_group_of_the_tables_it_replaces(
    tmp_path: Path, make_files: Any
) -> None:
    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    alfcache.make_parquet_db(root, n_jobs=1)
    group = 4242 if os.geteuid() == 0 else os.getegid()
    for name in TABLES:
        os.chown(root / name, -1, group)
        (root / name).chmod(0o640)
    make_files(root, [f"s2/2021-01-01/001/{SPIKES}"])
    old = os.umask(0o077)
    try:
        alfcache.make_parquet_db(root, n_jobs=1)
    finally:
        os.umask(old)
    for name in TABLES:
        st = (root / name).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, group)
    assert pq.read_table(root / TABLES[0]).num_rows == 2
