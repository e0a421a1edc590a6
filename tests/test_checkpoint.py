"""Runs that survive time limits: digests are checkpointed, and the next run reads the rest.

The command line runs as a subprocess; a ``sitecustomize`` on its ``PYTHONPATH`` slows the
reading of every file and logs each file read, so that a SIGTERM (what SLURM sends at a job's
time limit) or a SIGKILL lands mid-hash at a known point, and the rerun's log shows which files
it read again. The files are sparse, 8 MiB each: every one is a reading task of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers import python_env, with_sitecustomize
from _inject import READ_HOOKS, rewrite_in_place
from _procs import finish_or_dump, restore_sigint

import alfcache._digest.checkpoint
from alfcache._cli.main import main as cli_main
from alfcache._digest.checkpoint import CHECKPOINT_FILE
from alfcache._digest.read import ReadResult
from alfcache._paths import plural

DEADLINE = 60.0  # seconds for a state to be reached; only reached on failure
BIG = 8 << 20
N_BIG = 6
TABLES = ("sessions.pqt", "datasets.pqt")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(N_BIG):
        path = root / f"mouse/2021-01-0{1 + i % 3}/00{1 + i // 3}/alf/big{i}.times.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(BIG)  # sparse: no disk space, still 8 MiB to read
    (root / "mouse/2021-01-01/001/alf/small.times.npy").write_bytes(b"small")
    return root


def _start(tmp_path: Path, args: list[str | Path], **env: str) -> subprocess.Popen[str]:
    hooks = with_sitecustomize(tmp_path, READ_HOOKS)
    return subprocess.Popen(
        [sys.executable, "-m", "alfcache", "index", *map(str, args)],
        env=python_env(hooks, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=restore_sigint,
    )


def _read_log(log: Path) -> list[str]:
    """The files read, relative to the tree (the hook logs absolute paths)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split("/data/", 1)[1] for line in lines]


def _taken(log: Path) -> Path:
    """The hook's log of the files whose digests the main thread took."""
    return log.with_name(log.name + ".taken")


def _wait_for_reads(log: Path, n: int, proc: subprocess.Popen[str]) -> None:
    """Wait until ``log`` (of the files read, or ``_taken``) has ``n`` lines."""
    deadline = time.monotonic() + DEADLINE
    while (done := log.read_text().count("\n") if log.exists() else 0) < n:
        if proc.poll() is not None:
            pytest.fail(f"run ended after {done} files: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{n} files were never read")
        time.sleep(0.05)


def _checkpointed(out: Path) -> set[str]:
    return set(pq.read_table(out / CHECKPOINT_FILE).column("path").to_pylist())


def _assert_same_tables(expected: Path, actual: Path) -> None:
    for name in TABLES:
        want, got = pq.read_table(expected / name), pq.read_table(actual / name)
        assert got.equals(want) and got.schema.equals(want.schema), name
        want_meta, got_meta = (
            json.loads(pq.read_schema(d / name).metadata[b"one_metadata"])
            for d in (expected, actual)
        )
        assert {**want_meta, "date_created": None} == {**got_meta, "date_created": None}


def _rerun(tmp_path: Path, tree: Path, out: Path, log: Path) -> dict[str, Any]:
    log.unlink(missing_ok=True)
    proc = _start(
        tmp_path,
        [tree, "--out-dir", out, "--hash", "md5", "-j", "1", "-q", "--json"],
        READ_LOG=str(log),
        READ_DELAY="0",
    )
    stdout, stderr = finish_or_dump(proc, DEADLINE)
    assert proc.returncode == 0, stderr
    return json.loads(stdout)


def test_sigterm_mid_hash_then_rerun_reads_only_the_rest(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _start(tmp_path, [tree, "--out-dir", out, "-j", "1", "-q"])  # the previous tables
    assert first.wait(DEADLINE) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    log = tmp_path / "read.log"
    args = [tree, "--out-dir", out, "--hash", "md5", "-j", "1", "-q"]
    proc = _start(tmp_path, args, READ_LOG=str(log))
    _wait_for_reads(_taken(log), 2, proc)  # the two largest files' tasks are done
    proc.send_signal(signal.SIGTERM)
    _, stderr = finish_or_dump(proc, DEADLINE)

    assert proc.returncode == 1, stderr
    [line] = stderr.splitlines()
    assert line.startswith("alfcache: error: terminated by SIGTERM"), line
    saved = _checkpointed(out)
    n = len(saved)
    assert n >= 2
    where = out / CHECKPOINT_FILE
    assert f"saved a checkpoint of {n} digests (of {N_BIG + 1} files) at {where}:" in line
    assert "run the same command again" in line
    assert saved <= set(_read_log(log))
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.name != CHECKPOINT_FILE}
    assert after == before  # the previous tables untouched, no temporary file left

    summary = _rerun(tmp_path, tree, out, log)
    reread = set(_read_log(log))
    assert not reread & saved
    assert summary["hashing"]["files"] == N_BIG + 1 - len(saved) == len(reread)
    assert not (out / CHECKPOINT_FILE).exists()
    whole = _start(
        tmp_path, [tree, "--out-dir", tmp_path / "whole", "--hash", "md5", "-j", "1", "-q"]
    )
    assert whole.wait(DEADLINE) == 0
    _assert_same_tables(tmp_path / "whole", out)


def test_interrupted_run_says_it_saved_a_checkpoint_and_the_rerun_that_it_resumed(
    tree: Path, tmp_path: Path
) -> None:
    # Ctrl-C, not SIGTERM: the one line says "interrupted", the next names the checkpoint.
    out = tmp_path / "out"
    log = tmp_path / "read.log"
    proc = _start(
        tmp_path, [tree, "--out-dir", out, "--hash", "md5", "-j", "1"], READ_LOG=str(log)
    )
    _wait_for_reads(log, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = finish_or_dump(proc, DEADLINE)
    assert proc.returncode == -signal.SIGINT, stderr
    n, where = len(_checkpointed(out)), out / CHECKPOINT_FILE
    # One digest or more, depending on when the Ctrl-C lands: "1 digest", "2 digests".
    digests = plural(n, "digest")
    assert f"alfcache: saved a checkpoint of {digests} (of {N_BIG + 1} files) at {where}:" in (
        stderr
    )

    log.unlink()
    proc = _start(tmp_path, [tree, "--out-dir", out, "--hash", "md5", "-j", "1", "--json"])
    stdout, stderr = finish_or_dump(proc, DEADLINE)
    assert proc.returncode == 0, stderr
    assert f"alfcache: resumed {digests} from checkpoint {where}\n" in stderr
    hashing = json.loads(stdout)["hashing"]
    assert (hashing["resumed"], hashing["checkpoint"]) == (n, str(where))
    assert hashing["files"] == N_BIG + 1 - n


def test_sigterm_on_a_full_disk_says_the_run_stopped_and_why(
    tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The checkpoint written on the way out hits a full disk: its "[Errno 28]" once replaced
    # the message that the run was stopped and the previous tables are intact.
    out = tmp_path / "out"
    assert cli_main(["index", str(tree), "--out-dir", str(out), "-j", "1", "-q"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def one_task_then_sigterm(*args: Any, on_task: Any, **kwargs: Any) -> None:
        on_task(np.zeros(1, dtype=np.int64), ReadResult([BIG], [1], [["0" * 32]], [], []))
        os.kill(os.getpid(), signal.SIGTERM)  # the command line's handler raises here
        pytest.fail("SIGTERM did not end the run")

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(alfcache._digest.checkpoint, "digest_files", one_task_then_sigterm)
    monkeypatch.setattr(alfcache._digest.checkpoint.pq, "write_table", no_space)
    code = cli_main(["index", str(tree), "--out-dir", str(out), "--hash", "md5", "-j", "1", "-q"])
    [line] = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line.startswith("alfcache: error: terminated by SIGTERM"), line
    assert "no table was written, the previous tables are unchanged" in line
    where = out / CHECKPOINT_FILE
    assert line.endswith(
        f"could not save a checkpoint of 1 digest at {where}: No space left on device"
    ), line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_killed_run_resumes_from_the_last_periodic_checkpoint(tree: Path, tmp_path: Path) -> None:
    # SIGKILL (SLURM's after KillWait, or the OOM killer) leaves no time to save: only the
    # periodic checkpoint (every task here, SAVE_EVERY=0) is there for the rerun.
    out = tmp_path / "out"
    log = tmp_path / "read.log"
    args = [tree, "--out-dir", out, "--hash", "md5", "-j", "1", "-q"]
    proc = _start(tmp_path, args, READ_LOG=str(log), SAVE_EVERY="0", KILL_AT="4")
    finish_or_dump(proc, DEADLINE)
    assert proc.returncode == -signal.SIGKILL
    saved = _checkpointed(out)
    assert saved == set(_read_log(log)) and len(saved) == 3
    assert not (out / "sessions.pqt").exists()

    summary = _rerun(tmp_path, tree, out, log)
    assert summary["hashing"]["files"] == N_BIG + 1 - 3
    assert not set(_read_log(log)) & saved


def test_checkpoint_of_other_digests_is_not_used(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    log = tmp_path / "read.log"
    args = [tree, "--out-dir", out, "--hash", "xxh3", "-j", "1", "-q"]
    proc = _start(tmp_path, args, READ_LOG=str(log), SAVE_EVERY="0", KILL_AT="3")
    finish_or_dump(proc, DEADLINE)
    assert len(_checkpointed(out)) == 2
    summary = _rerun(tmp_path, tree, out, log)  # asks for MD5: the XXH3 digests do not help
    assert summary["hashing"]["files"] == N_BIG + 1


def test_checkpoint_of_a_run_that_followed_links_is_not_used_by_one_that_does_not(
    tree: Path, tmp_path: Path
) -> None:
    # Without --follow-symlinks a link to a file outside the root is never read (a root run
    # must not put the digest of a file only root can read into tables others read); the
    # checkpoint of a run that followed it holds that digest.
    outside = tmp_path / "elsewhere" / "outside.bin"
    outside.parent.mkdir()
    with open(outside, "wb") as f:
        f.truncate(2 * BIG)  # the largest file: read first
    link = "mouse/2021-01-01/001/alf/outside.times.npy"
    (tree / link).symlink_to(outside)
    out = tmp_path / "out"
    log = tmp_path / "read.log"
    args = [tree, "--out-dir", out, "--hash", "md5", "-j", "1", "-q", "--follow-symlinks"]
    proc = _start(tmp_path, args, READ_LOG=str(log), SAVE_EVERY="0", KILL_AT="4")
    finish_or_dump(proc, DEADLINE)
    assert link in _checkpointed(out)
    summary = _rerun(tmp_path, tree, out, log)  # without --follow-symlinks
    assert summary["hashing"]["files"] == N_BIG + 1  # the checkpoint is not used at all
    assert [n["path"] for n in summary["notices"]] == [link]
    datasets = pq.read_table(out / "datasets.pqt", columns=["rel_path", "hash"]).to_pylist()
    assert {"rel_path": "alf/outside.times.npy", "hash": None} in datasets


def test_a_saved_file_rewritten_before_the_rerun_is_read_again(tree: Path, tmp_path: Path) -> None:
    # same path, same size, a later mtime: its saved digest is of content that is gone
    out = tmp_path / "out"
    log = tmp_path / "read.log"
    args = [tree, "--out-dir", out, "--hash", "md5", "-j", "1", "-q"]
    proc = _start(tmp_path, args, READ_LOG=str(log), SAVE_EVERY="0", KILL_AT="4")
    finish_or_dump(proc, DEADLINE)
    saved = _checkpointed(out)
    assert len(saved) == 3
    rewritten = sorted(saved)[0]
    rewrite_in_place(tree / rewritten)
    summary = _rerun(tmp_path, tree, out, log)
    assert set(_read_log(log)) & saved == {rewritten}
    assert summary["hashing"]["files"] == N_BIG + 1 - 2
    hashes = dict(
        zip(
            *pq.read_table(out / "datasets.pqt", columns=["rel_path", "hash"]).columns,
            strict=True,
        )
    )
    rel_path = rewritten.split("/", 3)[3]  # below mouse/DATE/NNN
    want = hashlib.md5((tree / rewritten).read_bytes()).hexdigest()
    assert hashes[pa.scalar(rel_path)].as_py() == want


def _checkpoint_after_failure(
    tmp_path: Path, tree: Path, jobs: str, code: int, **env: str
) -> set[str]:
    """Start a run that reads slowly and saves no periodic checkpoint; the digests it saved
    once it failed with exit ``code`` (``env``: what makes it fail, else a SIGINT)."""
    out = tmp_path / "out"
    log = tmp_path / "read.log"
    args = [tree, "--out-dir", out, "--hash", "md5", "-j", jobs, "-q"]
    proc = _start(tmp_path, args, READ_LOG=str(log), SAVE_EVERY="3600", **env)
    if "KILL_AT" not in env:
        _wait_for_reads(_taken(log), 2, proc)
        proc.send_signal(signal.SIGINT)
    _, stderr = finish_or_dump(proc, DEADLINE)
    assert proc.returncode == code, stderr
    assert not (out / "sessions.pqt").exists()
    saved = _checkpointed(out)
    assert saved and saved <= set(_read_log(log))
    return saved


def test_ctrl_c_mid_hash_saves_the_checkpoint(tree: Path, tmp_path: Path) -> None:
    assert len(_checkpoint_after_failure(tmp_path, tree, "1", -signal.SIGINT)) >= 2


def test_a_dead_reading_worker_saves_the_checkpoint(tree: Path, tmp_path: Path) -> None:
    # the worker about to read the 4th file kills itself; the main process lives on to save
    saved = _checkpoint_after_failure(tmp_path, tree, "2", 1, KILL_AT="4", READ_IN_WORKERS="1")
    assert saved
