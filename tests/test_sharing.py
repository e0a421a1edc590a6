"""Every way of sharing the walk gives the tables of a one-worker walk.

With two or more workers the main process walks tasks itself while no worker has a result. On
a warm machine a worker always answers first, so these tests make the listings slow and the
workers late (a ``sitecustomize`` on the subprocess's ``PYTHONPATH``), and check
``listed`` in ``--json`` to know that both the main process and the workers really walked:
a test where only one of them did could pass by luck.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _helpers import assert_same_rows, python_env, spikes_tree, with_sitecustomize

import alfcache

SPIKES = "alf/spikes.times.npy"
DEADLINE = 120.0

# Loaded by every Python process of the run (PYTHONPATH): each folder listing sleeps
# ALFCACHE_TEST_SLOW_LISTINGS seconds, and with ALFCACHE_TEST_LATE_WORKERS a loky worker (its
# command line names loky's popen module) starts late, so that the main process walks several
# tasks before any worker answers.
SLOW_LISTINGS = """
import os, time
if os.environ.get("ALFCACHE_TEST_SLOW_LISTINGS"):
    _delay = float(os.environ["ALFCACHE_TEST_SLOW_LISTINGS"])
    if os.environ.get("ALFCACHE_TEST_LATE_WORKERS"):
        with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
            if b"popen_loky" in f.read():
                time.sleep(1.5)
    _scandir = os.scandir
    def _slow_scandir(*args, **kwargs):
        time.sleep(_delay)
        return _scandir(*args, **kwargs)
    os.scandir = _slow_scandir
"""


def _slow_run(
    tmp_path: Path, root: Path, out: Path, *options: str, delay: float = 0.05, late: bool = True
) -> dict[str, Any]:
    """``alfcache index ROOT --jobs 2 --json`` with listings of ``delay`` seconds and, when
    ``late``, late workers; a run that does not end within DEADLINE fails the test."""
    hooks = with_sitecustomize(tmp_path, SLOW_LISTINGS)
    env = python_env(
        hooks,
        ALFCACHE_TEST_SLOW_LISTINGS=str(delay),
        **({"ALFCACHE_TEST_LATE_WORKERS": "1"} if late else {}),
    )
    cmd = [sys.executable, "-m", "alfcache", "index", str(root), "--out-dir", str(out)]
    done = subprocess.run(
        [*cmd, "--jobs", "2", "--json", "--quiet", *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _assert_both_walked(summary: dict[str, Any]) -> None:
    # Without this, a run where the workers answered first (or the main process did all the
    # walking) would pass without testing the other path.
    listed = summary["listed"]
    assert listed["main"] > 0, listed
    assert listed["workers"] > 0, listed


def test_main_process_walks_while_workers_start(tmp_path: Path) -> None:
    root = spikes_tree(tmp_path / "data", 24)
    one = alfcache.index(root, tmp_path / "out1", n_jobs=1)
    assert one.listed == {"main": 24 * 4 + 1, "workers": 0}
    two = _slow_run(tmp_path, root, tmp_path / "out2")
    _assert_both_walked(two)
    assert sum(two["listed"].values()) == sum(one.listed.values())
    assert two["sessions"] == 24
    assert_same_rows(tmp_path / "out1", tmp_path / "out2")


def test_main_process_follows_links_while_workers_start(tmp_path: Path) -> None:
    # Every subject holds a link to a session outside the root, so whichever tasks the main
    # process walks meet links, and the round of links that follows has tasks for both.
    root = spikes_tree(tmp_path / "data", 16)
    for i in range(16):
        target = spikes_tree(tmp_path / f"archive{i:02d}", 1) / "s00/2021-01-01/001"
        (root / f"s{i:02d}/2021-01-01/002").symlink_to(target, target_is_directory=True)
    one = alfcache.index(root, tmp_path / "out1", n_jobs=1, follow_symlinks=True)
    assert one.sessions == 32
    two = _slow_run(tmp_path, root, tmp_path / "out2", "--follow-symlinks")
    _assert_both_walked(two)
    assert two["skipped"] == [s._asdict() for s in one.skipped]
    assert_same_rows(tmp_path / "out1", tmp_path / "out2")


def test_workers_take_a_share_of_a_slow_walk(tmp_path: Path) -> None:
    # The queue is refilled while fewer tasks wait in it than processes wait for one: a count
    # of queued tasks that never went down would stop the sharing after the first few tasks
    # (then the workers list 8 of the 401 folders here, and the main process the rest).
    root = spikes_tree(tmp_path / "data", 100)
    summary = _slow_run(tmp_path, root, tmp_path / "out", delay=0.05, late=False)
    listed = summary["listed"]
    assert sum(listed.values()) == 100 * 4 + 1
    assert listed["workers"] >= 40, listed


def test_workers_taking_several_tasks_per_idle_report_end_the_run(tmp_path: Path) -> None:
    # The depth left to adapt, slow listings and 180 sessions: a worker takes several shared
    # tasks before it falls idle, and reports them all at once. Counting only one of them
    # would leave work outstanding forever; DEADLINE turns that hang into a failure.
    root = tmp_path / "data"
    for i in range(60 * 3):
        path = root / f"s{i // 3:02d}/2021-01-0{1 + i % 3}/001/{SPIKES}"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"0")
    summary = _slow_run(tmp_path, root, tmp_path / "out", delay=0.03, late=False)
    assert summary["sessions"] == 180
    assert summary["listed"]["workers"] > 0, summary["listed"]


def test_listed_in_the_report(tmp_path: Path) -> None:
    root = spikes_tree(tmp_path / "data", 3)
    report = alfcache.index(root, tmp_path / "out", n_jobs=1)
    assert report.as_dict()["listed"] == {"main": 3 * 4 + 1, "workers": 0}
