"""Safe on a shared server: a root run never writes, copies from or deletes through a link or
a file another user put in a folder they can write to (issue 17).

A nightly root run (cron) indexes into, and prunes, folders other users can write: a sticky
scratch folder or a lab's group folder. The attacks below plant what such a user could (a
link, a file of theirs) and check that root's run leaves the target alone. The kernel's
``fs.protected_symlinks`` would stop some of these in a sticky folder; the planted links are
root's own (as in a group-writable folder, where the kernel does not protect), so the tests
hold whatever the machine's setting.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers import run_alfcache
from test_checkpoint import (  # noqa: F401  (tree: a fixture)
    DEADLINE,
    N_BIG,
    _checkpointed,
    _start,
    _wait_for_reads,
    tree,
)
from test_faults import ENV, User, public_tmp, unprivileged  # noqa: F401  (fixtures)

from alfcache._digest.checkpoint import CHECKPOINT_FILE

NOBODY = 65534
SPIKES = "lab/Subjects/mouse/2021-01-01/001/alf/spikes.times.npy"
PRECIOUS = b"root's data, not to be overwritten\n"


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_alfcache(*args, env=ENV)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A world-writable sticky folder, as /tmp or a scratch space."""
    path = tmp_path / "shared"
    path.mkdir()
    path.chmod(0o1777)
    return path


@pytest.fixture
def precious(tmp_path: Path) -> Path:
    """A file that matters, owned by root, that a planted link points to."""
    path = tmp_path / "private" / "precious.txt"
    path.parent.mkdir()
    path.write_bytes(PRECIOUS)
    return path


def _assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode in (1, 2), proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("alfcache: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], proc.stderr


# --------------------------------------------------------------------------------------------
# item 1: the lock file
# --------------------------------------------------------------------------------------------


def test_index_refuses_a_lock_file_linked_elsewhere(
    tmp_path: Path, make_files: Any, shared: Path, precious: Path
) -> None:
    root = make_files(tmp_path / "data", [SPIKES])
    out = shared / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    lock = out / ".alfcache.lock"
    lock.symlink_to(precious)
    proc = _cli("index", root, "--out-dir", out)
    _assert_refused(proc, str(lock), "symbolic link")
    assert precious.read_bytes() == PRECIOUS
    assert lock.is_symlink() and not (out / "sessions.pqt").exists()


def test_lock_link_planted_by_nobody_in_a_sticky_folder(
    make_files: Any,
    public_tmp: Path,  # noqa: F811
    unprivileged: User,  # noqa: F811
) -> None:
    # The reproduction as it happens: another user plants the link, root's cron run follows.
    root = make_files(public_tmp / "data", [SPIKES])
    precious = public_tmp / "precious.txt"
    precious.write_bytes(PRECIOUS)
    out = public_tmp / "scratch"
    out.mkdir()
    out.chmod(0o1777)
    lock = out / ".alfcache.lock"
    code = f"import os; os.symlink({str(precious)!r}, {str(lock)!r})"
    subprocess.run([*unprivileged.python, "-c", code], env=unprivileged.env, check=True)
    assert lock.is_symlink() and os.lstat(lock).st_uid == unprivileged.uid
    _assert_refused(_cli("index", root, "--out-dir", out), str(lock), "symbolic link")
    assert precious.read_bytes() == PRECIOUS and lock.is_symlink()


def test_prune_refuses_a_lock_file_linked_elsewhere(
    make_files: Any, shared: Path, precious: Path
) -> None:
    root = make_files(shared / "data", [SPIKES])
    assert _cli("index", root, "--out-dir", root, "-q").returncode == 0
    extra = root / SPIKES.replace("spikes", "extra")
    extra.write_bytes(b"x")
    lock = root / ".alfcache.lock"
    lock.symlink_to(precious)
    proc = _cli("prune", root, "--apply")
    _assert_refused(proc, str(lock), "symbolic link")
    assert precious.read_bytes() == PRECIOUS
    assert extra.exists() and lock.is_symlink()


def test_lock_file_hard_linked_to_another_file_is_refused(
    tmp_path: Path, make_files: Any, shared: Path
) -> None:
    # A hard link is a regular file of root's: only its second name gives it away.
    root = make_files(tmp_path / "data", [SPIKES])
    precious = shared / "precious.txt"
    precious.write_bytes(PRECIOUS)
    out = shared / "out"
    out.mkdir()
    os.link(precious, out / ".alfcache.lock")
    _assert_refused(_cli("index", root, "--out-dir", out), "hard link")
    assert precious.read_bytes() == PRECIOUS


def test_lock_file_of_another_user_is_locked_but_not_written_or_removed(
    tmp_path: Path, make_files: Any
) -> None:
    root = make_files(tmp_path / "data", [SPIKES])
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".alfcache.lock"
    lock.write_bytes(PRECIOUS)
    os.chown(lock, NOBODY, -1)
    proc = _cli("index", root, "--out-dir", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert (out / "sessions.pqt").exists()
    assert lock.read_bytes() == PRECIOUS


def test_lock_released_unlinks_only_the_file_it_locked(tmp_path: Path, precious: Path) -> None:
    from alfcache._tables.lock import LOCK_FILE, out_dir_lock

    with out_dir_lock(tmp_path, timeout=0) as lock:
        # Swapped for a link while held (another user renamed theirs over it).
        os.unlink(lock)
        (tmp_path / LOCK_FILE).symlink_to(precious)
    assert (tmp_path / LOCK_FILE).is_symlink()
    assert precious.read_bytes() == PRECIOUS


# --------------------------------------------------------------------------------------------
# item 8: a table replaced
# --------------------------------------------------------------------------------------------


def test_table_linked_elsewhere_passes_on_no_owner_or_mode(
    tmp_path: Path, make_files: Any, shared: Path
) -> None:
    root = make_files(tmp_path / "data", [SPIKES])
    out = shared / "out"
    out.mkdir()
    target = shared / "nobodys-file"
    target.write_bytes(PRECIOUS)
    os.chown(target, NOBODY, NOBODY)
    target.chmod(0o4777)
    (out / "sessions.pqt").symlink_to(target)
    proc = _cli("index", root, "--out-dir", out, "-q")
    assert proc.returncode == 0, proc.stderr
    table = os.lstat(out / "sessions.pqt")
    assert stat.S_ISREG(table.st_mode) and table.st_uid == os.geteuid()
    assert stat.S_IMODE(table.st_mode) == stat.S_IMODE(os.stat(out / "datasets.pqt").st_mode)
    assert not table.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX)
    assert target.read_bytes() == PRECIOUS
    assert stat.S_IMODE(target.stat().st_mode) == 0o4777 and target.stat().st_uid == NOBODY


def test_table_replaced_never_keeps_set_id_bits(tmp_path: Path, make_files: Any) -> None:
    root = make_files(tmp_path / "data", [SPIKES])
    out = tmp_path / "out"
    assert _cli("index", root, "--out-dir", out, "-q").returncode == 0
    os.chown(out / "sessions.pqt", NOBODY, NOBODY)
    (out / "sessions.pqt").chmod(0o6775)
    assert _cli("index", root, "--out-dir", out, "-q").returncode == 0
    table = os.lstat(out / "sessions.pqt")
    assert stat.S_IMODE(table.st_mode) == 0o775 and table.st_uid == NOBODY  # as an admin set it


# --------------------------------------------------------------------------------------------
# items 2 and 7: the checkpoint of digests
# --------------------------------------------------------------------------------------------


def test_sigterm_never_writes_the_checkpoint_through_a_planted_link(
    tree: Path,  # noqa: F811
    tmp_path: Path,
    precious: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    planted = out / f"{CHECKPOINT_FILE}.tmp"  # the fixed name alfcache 0.2 wrote through
    planted.symlink_to(precious)
    log = tmp_path / "read.log"
    proc = _start(
        tmp_path, [tree, "--out-dir", out, "--hash", "md5", "-j", "1", "-q"], READ_LOG=str(log)
    )
    _wait_for_reads(log, 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1, stderr
    assert precious.read_bytes() == PRECIOUS
    saved = f"at {out / CHECKPOINT_FILE}: run the same command again"
    assert str(precious) not in stderr and saved in stderr
    checkpoint = os.lstat(out / CHECKPOINT_FILE)
    assert stat.S_ISREG(checkpoint.st_mode) and _checkpointed(out)
    assert planted.is_symlink()
    # No temporary file of the run is left beside the checkpoint.
    assert sorted(p.name for p in out.iterdir()) == sorted([CHECKPOINT_FILE, planted.name])


def _forged_checkpoint(root: Path, tmp_path: Path) -> Path:
    """A checkpoint with real paths, sizes and times, and all-zero MD5s: what a user who can
    write the output folder could leave there (made here by a killed run, then edited)."""
    out = tmp_path / "out"
    log = tmp_path / "read.log"
    args = [root, "--out-dir", out, "--hash", "md5", "-j", "1", "-q"]
    proc = _start(tmp_path, args, READ_LOG=str(log), SAVE_EVERY="0", KILL_AT="4")
    proc.communicate(timeout=DEADLINE)
    path = out / CHECKPOINT_FILE
    table = pq.read_table(path)
    assert table.num_rows == 3
    zeros = pa.array(["0" * 32] * table.num_rows)
    table = table.set_column(table.schema.get_field_index("md5"), "md5", zeros)
    path.unlink()
    pq.write_table(table, path)
    return path


def _md5s(out: Path) -> set[str]:
    return set(pq.read_table(out / "datasets.pqt").column("hash").to_pylist())


@pytest.mark.parametrize("planted", ["owned_by_nobody", "writable_by_others", "a_link"])
def test_checkpoint_another_user_could_have_written_is_ignored(
    tree: Path,  # noqa: F811
    tmp_path: Path,
    planted: str,
) -> None:
    path = _forged_checkpoint(tree, tmp_path)
    if planted == "owned_by_nobody":
        os.chown(path, NOBODY, NOBODY)
    elif planted == "writable_by_others":
        path.chmod(0o666)
    else:
        path.rename(tmp_path / "elsewhere")
        path.symlink_to(tmp_path / "elsewhere")
    out = path.parent
    proc = _start(tmp_path, [tree, "--out-dir", out, "--hash", "md5", "-j", "1", "--json"])
    stdout, stderr = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["hashing"]["files"] == N_BIG + 1  # every file read
    assert "0" * 32 not in _md5s(out)
    assert f"alfcache: warning: ignored the checkpoint {path}" in stderr


def test_own_checkpoint_is_used(tree: Path, tmp_path: Path) -> None:  # noqa: F811
    # The control for the test above: the same checkpoint, the running user's own, is used.
    path = _forged_checkpoint(tree, tmp_path)
    proc = _start(tmp_path, [tree, "--out-dir", path.parent, "--hash", "md5", "-j", "1", "--json"])
    stdout, stderr = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["hashing"]["files"] == N_BIG + 1 - 3
    assert "0" * 32 in _md5s(path.parent) and "ignored the checkpoint" not in stderr


def test_checkpoint_temporary_file_of_a_dead_run_is_removed(
    tmp_path: Path, make_files: Any
) -> None:
    # Its name is new each time, so one a SIGKILL left mid-write is not overwritten later.
    import alfcache._tables.store

    root = make_files(tmp_path / "data", [SPIKES])
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    left = out / f"{CHECKPOINT_FILE}.{alfcache._tables.store._HOST}.{dead.pid}.k2j4.alfcache-tmp"
    left.write_bytes(b"PAR1")
    assert _cli("index", root, "--out-dir", out, "-q").returncode == 0
    assert not left.exists()


# --------------------------------------------------------------------------------------------
# item 4: prune --apply and a folder swapped for a link
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("swapped", ["alf", "001", "mouse"])
def test_prune_never_deletes_through_a_folder_swapped_for_a_link(
    tmp_path: Path,
    make_files: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    swapped: str,
) -> None:
    import alfcache
    import alfcache._maintain.prune

    root = make_files(tmp_path / "data", [SPIKES])
    alfcache.make_parquet_db(root, n_jobs=1)
    extra = SPIKES.replace("spikes.times", "extra.thing")
    (root / extra).write_bytes(b"not in the tables")
    # Outside the root, what the swapped folder would lead to: a same-named file.
    folder = root / SPIKES.split(f"/{swapped}/")[0] / swapped
    outside = tmp_path / "outside"
    make_files(outside, [extra.split(f"/{swapped}/", 1)[1]])
    delete = alfcache._maintain.prune._delete

    def swap_then_delete(*args: Any) -> list[str]:
        # Between the walk (which planned to delete `extra`) and the deletion.
        folder.rename(tmp_path / "moved")
        folder.symlink_to(outside)
        return delete(*args)

    monkeypatch.setattr(alfcache._maintain.prune, "_delete", swap_then_delete)
    with caplog.at_level(logging.WARNING, logger="alfcache"):
        alfcache.remove_missing_datasets(root, dry=False)
    assert (outside / extra.split(f"/{swapped}/", 1)[1]).exists()
    [warning] = [r.getMessage() for r in caplog.records if r.name == "alfcache"]
    assert f"kept 1 path it was to remove, e.g. {root / extra}" in warning
    assert "changed since the walk" in warning


def test_prune_keeps_a_file_replaced_since_the_walk(
    tmp_path: Path,
    make_files: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import alfcache
    import alfcache._maintain.prune

    root = make_files(tmp_path / "data", [SPIKES])
    alfcache.make_parquet_db(root, n_jobs=1)
    extra = root / SPIKES.replace("spikes.times", "extra.thing")
    extra.write_bytes(b"not in the tables")
    delete = alfcache._maintain.prune._delete

    def replace_then_delete(*args: Any) -> list[str]:
        extra.unlink()
        extra.write_bytes(b"someone's new file, not what was walked")
        return delete(*args)

    monkeypatch.setattr(alfcache._maintain.prune, "_delete", replace_then_delete)
    with caplog.at_level(logging.WARNING, logger="alfcache"):
        alfcache.remove_missing_datasets(root, dry=False)
    assert extra.exists()
    assert any(str(extra) in r.getMessage() for r in caplog.records)
