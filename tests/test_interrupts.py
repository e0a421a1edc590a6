"""Ctrl-C at any moment of the first seconds of a run.

``test_faults.py`` interrupts runs at one chosen moment (hashing has started). Here a seeded
loop interrupts the command line at random moments of its first 1.5 s, on a 300-session tree
with the default number of workers: while it imports, while the planner lists, while loky
starts its workers, while the main process walks, while Polars loads. Each run must end
promptly by SIGINT (exit status 130 in a shell) after the one-line message, print no
traceback, leave no process behind and leave the previous tables byte-identical.

The moments are counted from the end of the interpreter's own start-up (its ``site`` module,
where a Ctrl-C is Python's to report, not alfcache's): the hook below says when.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _procs import (
    cmdline,
    comm,
    descendants,
    group_members,
    wait_all_gone,
    without_loky_tracker_noise,
)

import alfcache
from alfcache._executor import WORKER_NAME
from alfcache._synth import make_tree

SRC = Path(__file__).resolve().parents[1] / "src"
RUNS = 24
SEED = 8
EARLIEST, LATEST = 0.05, 1.5
EXIT_SECONDS = 5.0
"""How long a run may take to exit after the signal (it takes well under a second)."""
WORKERS_GONE_SECONDS = 0.5
"""How long its workers may outlive it: they are killed before it exits, not left to finish
their task (loky's resource tracker, which leaves when it sees its parent gone, has
EXIT_SECONDS)."""

INTERRUPTED = "alfcache: interrupted; no table was written, the previous tables are unchanged"

# Loaded by every Python process of the run (PYTHONPATH). Each folder listing sleeps a little,
# so that even on a quiet machine the run is still going at LATEST: a signal that came after
# the run finished would test nothing. A worker's listings sleep longer: its task lasts
# seconds, so a worker that is not killed on Ctrl-C outlives the run. The command line's
# process (the only one whose parent is the test) writes its pid to a file once the
# interpreter and the alfcache package loaded.
SLOW_LISTINGS = """
import os, time
with open("/proc/self/cmdline", "rb") as f:
    _pause = 0.05 if b"popen_loky" in f.read() else 0.003
_scandir = os.scandir
def _slow_scandir(*args, **kwargs):
    time.sleep(_pause)
    return _scandir(*args, **kwargs)
os.scandir = _slow_scandir
if os.getppid() == int(os.environ["ALFCACHE_TEST_PARENT"]):
    import alfcache
    with open(os.environ["ALFCACHE_TEST_STARTED"], "a") as f:
        f.write(f"{os.getpid()}\\n")
"""


def _is_walk_worker(pid: int) -> bool:
    """The walk's worker processes name themselves; hashing workers are loky's."""
    return comm(pid) == WORKER_NAME or b"popen_loky" in cmdline(pid)


def _restore_sigint() -> None:
    # A shell that starts jobs in the background hands them SIGINT ignored, and Python then
    # never raises KeyboardInterrupt: give the command line the default, as a terminal does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _wait_until_started(proc: subprocess.Popen[str], started: Path) -> None:
    end = time.monotonic() + 60.0
    while time.monotonic() < end and proc.poll() is None:
        if started.exists() and str(proc.pid) in started.read_text().split():
            return
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"the command line never started; stderr: {proc.communicate()[1]}")


def test_ctrl_c_at_random_moments(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", 300).root
    out = tmp_path / "out"
    alfcache.make_parquet_db(root, out, n_jobs=1)
    before = _snapshot(out)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_LISTINGS)
    started = tmp_path / "started"
    env = {
        **os.environ,
        "PYTHONPATH": f"{hooks}{os.pathsep}{SRC}",
        "ALFCACHE_TEST_PARENT": str(os.getpid()),
        "ALFCACHE_TEST_STARTED": str(started),
    }
    rng = random.Random(SEED)
    failures: list[str] = []
    for run in range(RUNS):
        delay = rng.uniform(EARLIEST, LATEST)
        whole_group = rng.random() < 0.5  # a terminal's Ctrl-C, or kill -INT of the process
        what = f"run {run}: SIGINT to the {'group' if whole_group else 'process'} at {delay:.2f} s"
        proc = subprocess.Popen(
            # Two listings in flight at most: the sleeps below are to keep the run going, not
            # to look like slow storage to the engine, which would add threads and finish early.
            [
                sys.executable,
                "-m",
                "alfcache",
                "index",
                str(root),
                "--out-dir",
                str(out),
                "--io-depth",
                "2",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_restore_sigint,
            start_new_session=True,
        )
        _wait_until_started(proc, started)
        time.sleep(delay)
        run_pids = descendants(proc.pid)
        if proc.poll() is not None:
            failures.append(f"{what}: the run had ended already (code {proc.returncode})")
            continue
        if whole_group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
            failures.append(f"{what}: still running {EXIT_SECONDS} s later; stderr: {stderr}")
            continue
        # Ended by SIGINT every time, never exit(130): a shell shows 130 for it, and stops
        # a script there (alfcache.__main__ says why it cannot be exit(130) reliably).
        if proc.returncode != -signal.SIGINT:
            failures.append(f"{what}: exit code {proc.returncode}; stderr: {stderr}")
        if "Traceback" in stderr or without_loky_tracker_noise(stderr) != INTERRUPTED:
            failures.append(f"{what}: stderr is not the one-line message: {stderr}")
        workers = [p for p in {*run_pids, *group_members(proc.pid)} if _is_walk_worker(p)]
        if left := wait_all_gone(workers, WORKERS_GONE_SECONDS):
            failures.append(f"{what}: workers {left} were still walking after the run exited")
        if left := wait_all_gone([*run_pids, *group_members(proc.pid)], EXIT_SECONDS):
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            failures.append(f"{what}: processes {left} outlived the run")
        if _snapshot(out) != before:
            failures.append(f"{what}: the previous tables changed")
            before = _snapshot(out)
    if failures:
        pytest.fail("\n".join(failures))
