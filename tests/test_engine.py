"""Every way the walk shares work, proved to have run, gives the rows of a one-process walk.

The ways: the main process alone; listing threads in one process (the depth adapts to slow
listings); worker processes started late from a fork server (when the caller has loaded
Polars); worker processes forked at once and fed from the shared queue, down to one huge
subject folder. Each test checks ``listed``/``threads`` to know that the way it is about
really walked, since a run where one side did everything would give the same rows. Slow
listings are made by wrapping ``os.scandir`` with a sleep: in this process with monkeypatch, in
a command line's processes with a ``sitecustomize`` on its ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _helpers import assert_same_rows, python_env, spikes_tree, with_sitecustomize
from _procs import alive, comm, descendants

import alfcache
import alfcache._walk.local
from alfcache import _processes as _executor
from alfcache._walk.engine import DEFAULT_IO_DEPTH, GAIN, HOLD, Depth, depth_share

DEADLINE = 120.0

# Every process of the command line (workers are forked from it, so they inherit the wrapper)
# sleeps in each listing: then listings wait, as on network storage.
SLOW_LISTINGS = """
import os, time
with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
    command = f.read()
if b"alfcache" in command and b"index" in command:
    _scandir = os.scandir
    def _slow_scandir(*args, **kwargs):
        time.sleep(float(os.environ["ALFCACHE_TEST_LISTING_SECONDS"]))
        return _scandir(*args, **kwargs)
    os.scandir = _slow_scandir
"""


def _cli(
    tmp_path: Path, root: Path, out: Path, *options: str, seconds: float = 0.0
) -> dict[str, Any]:
    """``alfcache index ROOT --json`` with listings that sleep ``seconds``; its summary."""
    hooks = with_sitecustomize(tmp_path, SLOW_LISTINGS)
    env = python_env(hooks, ALFCACHE_TEST_LISTING_SECONDS=str(seconds))
    cmd = [sys.executable, "-m", "alfcache", "index", str(root), "--out-dir", str(out)]
    done = subprocess.run(
        [*cmd, "--json", "--quiet", *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def slow_scandir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listings in this process sleep 20 ms (worker processes are not affected)."""
    real = os.scandir

    def scandir(*args: Any) -> Any:
        time.sleep(0.02)
        return real(*args)

    monkeypatch.setattr(os, "scandir", scandir)


def test_main_process_alone(tmp_path: Path) -> None:
    root = spikes_tree(tmp_path / "data", 6)
    report = alfcache.index(root, tmp_path / "out", n_jobs=1, io_depth=1)
    assert report.listed == {"main": 6 * 4 + 1, "workers": 0}
    assert report.threads == 1  # io_depth=1: a single listing thread, whatever the storage
    assert report.sessions == 6


def test_threads_of_one_process_on_slow_listings(tmp_path: Path, slow_scandir: None) -> None:
    root = spikes_tree(tmp_path / "data", 24)
    one = alfcache.index(root, tmp_path / "out1", n_jobs=1, io_depth=1)
    many = alfcache.index(root, tmp_path / "out2", n_jobs=1, io_depth=16)
    # The depth rose because more listings in flight raised the rate: more than one thread
    # listed, all in this process.
    assert one.threads == 1
    assert many.threads > 1, many
    assert many.listed == one.listed == {"main": 24 * 4 + 1, "workers": 0}
    assert many.skipped == one.skipped
    assert_same_rows(tmp_path / "out1", tmp_path / "out2")


def test_workers_started_late_from_a_fork_server(tmp_path: Path, slow_scandir: None) -> None:
    import polars  # noqa: F401  with Polars loaded, forking this process is unsafe

    assert _executor.context().get_start_method() == "forkserver"
    root = spikes_tree(tmp_path / "data", 30)
    one = alfcache.index(root, tmp_path / "out1", n_jobs=1)
    start = time.perf_counter()
    two = alfcache.index(root, tmp_path / "out2", n_jobs=2, io_depth=2)
    # This process lists slowly; the worker, started once the walk had lasted
    # LATE_START_SECONDS, lists at full speed and so takes whatever is shared with it.
    assert time.perf_counter() - start > alfcache._walk.local.LATE_START_SECONDS
    assert two.listed["workers"] > 0, two.listed
    assert two.listed["main"] > 0, two.listed
    assert sum(two.listed.values()) == sum(one.listed.values())
    assert two.skipped == one.skipped
    assert_same_rows(tmp_path / "out1", tmp_path / "out2")


@pytest.mark.parametrize("jobs", ["2", "3"])
def test_forked_workers_fed_from_the_shared_queue(tmp_path: Path, jobs: str) -> None:
    root = spikes_tree(tmp_path / "data", 16)
    one = _cli(tmp_path, root, tmp_path / "out1", "--jobs", "1")
    # One listing in flight per process: only the shared queue spreads the walk.
    many = _cli(
        tmp_path, root, tmp_path / "out2", "--jobs", jobs, "--io-depth", jobs, seconds=0.02
    )
    assert many["listed"]["workers"] > 0, many["listed"]
    assert many["listed"]["main"] > 0, many["listed"]
    assert many["threads"] > 1  # listing threads of two or more processes took part
    assert sum(many["listed"].values()) == sum(one["listed"].values())
    assert many["skipped"] == one["skipped"]
    assert_same_rows(tmp_path / "out1", tmp_path / "out2")


def test_one_huge_subject_folder_is_shared(tmp_path: Path) -> None:
    # The root holds a single folder: a worker can only get work that the walk found below it.
    root = spikes_tree(tmp_path / "data", 1, per_subject=28)
    one = _cli(tmp_path, root, tmp_path / "out1", "--jobs", "1")
    two = _cli(tmp_path, root, tmp_path / "out2", "--jobs", "2", "--io-depth", "2", seconds=0.02)
    assert two["listed"]["workers"] > 0, two["listed"]
    assert two["listed"]["main"] > 0, two["listed"]
    assert two["sessions"] == one["sessions"] == 28
    assert_same_rows(tmp_path / "out1", tmp_path / "out2")


def test_links_followed_across_processes(tmp_path: Path) -> None:
    # Every subject links to a session outside the root: the rounds of links run with tasks
    # shared between the processes too, and choose the same links.
    root = spikes_tree(tmp_path / "data", 12)
    for i in range(12):
        target = spikes_tree(tmp_path / f"archive{i:02d}", 1) / "s00/2021-01-01/001"
        (root / f"s{i:02d}/2021-01-01/002").symlink_to(target, target_is_directory=True)
    (root / "s00/2021-01-01/003").symlink_to(root / "s01", target_is_directory=True)
    one = _cli(tmp_path, root, tmp_path / "out1", "--jobs", "1", "--follow-symlinks")
    two = _cli(tmp_path, root, tmp_path / "out2", "--jobs", "2", "--follow-symlinks", seconds=0.02)
    assert two["listed"]["workers"] > 0, two["listed"]
    assert two["listed"]["main"] > 0, two["listed"]
    assert one["sessions"] == 24
    assert [s["reason"] for s in one["skipped"]] == ["symlink_revisit"]
    assert two["skipped"] == one["skipped"]
    assert_same_rows(tmp_path / "out1", tmp_path / "out2")


def test_workers_die_with_a_killed_main_process(tmp_path: Path) -> None:
    root = spikes_tree(tmp_path / "data", 40)
    hooks = with_sitecustomize(tmp_path, SLOW_LISTINGS)
    env = python_env(hooks, ALFCACHE_TEST_LISTING_SECONDS="0.3")
    cmd = [sys.executable, "-m", "alfcache", "index", str(root), "--out-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [*cmd, "--jobs", "2", "--io-depth", "2", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + DEADLINE
    workers: list[int] = []
    while not workers and time.monotonic() < end and proc.poll() is None:
        workers = [p for p in descendants(proc.pid) if comm(p) == _executor.WORKER_NAME]
        time.sleep(0.05)
    assert workers, "the run started no worker process"
    proc.send_signal(signal.SIGKILL)  # no clean-up code runs: the kernel must end the workers
    proc.wait()
    end = time.monotonic() + 10
    while any(map(alive, workers)) and time.monotonic() < end:
        time.sleep(0.05)
    assert not [p for p in workers if alive(p)], "a worker outlived the main process"


# --------------------------------------------------------------------------------------------
# the depth's hill climb, on made-up rates
# --------------------------------------------------------------------------------------------


def _climb(rate_at: Any, cap: int, steps: int) -> list[int]:
    depth = Depth(cap)
    seen = []
    for _ in range(steps):
        seen.append(depth.observe(rate_at(depth.value)))
    return seen


def test_depth_climbs_to_the_cap_when_listings_wait() -> None:
    # Each listing waits: the rate grows with the listings in flight.
    seen = _climb(lambda depth: 100.0 * depth, cap=64, steps=8)
    assert seen[:7] == [2, 4, 8, 16, 32, 64, 64]


def test_depth_stays_low_when_listings_are_cpu_bound() -> None:
    # The GIL: more threads do not list faster, a little slower even.
    seen = _climb(lambda depth: 1000.0 / (1 + 0.05 * (depth - 1)), cap=64, steps=60)
    assert max(seen) == 2  # tried once in a while...
    assert seen.count(1) > len(seen) * 0.8  # ...and undone at once
    assert seen[-1] in (1, 2)


def test_depth_goes_back_down_when_threads_stop_paying() -> None:
    fast = {"on": False}

    def rate(depth: int) -> float:
        return 1000.0 / depth if fast["on"] else 100.0 * depth

    depth = Depth(16)
    for _ in range(6):
        depth.observe(rate(depth.value))
    assert depth.value == 16
    fast["on"] = True  # the storage became fast (a warm cache): fewer threads do better
    for _ in range(4 * (HOLD + 2)):
        depth.observe(rate(depth.value))
    assert depth.value == 1


def test_depth_keeps_a_doubling_only_when_it_pays() -> None:
    depth = Depth(8)
    assert depth.observe(100.0) == 2
    assert depth.observe(100.0 * GAIN * 0.99) == 1  # not enough: undone
    assert depth.observe(100.0) == 1  # and held


def test_depth_of_one_never_moves() -> None:
    assert set(_climb(lambda depth: 100.0 * depth, cap=1, steps=30)) == {1}


def test_depth_share_splits_io_depth_over_processes_rounding_up() -> None:
    # The one rule both backends use for a process's (or a Dask thread's) listing threads.
    assert depth_share(None, 1) == DEFAULT_IO_DEPTH
    assert depth_share(None, 3) == 22  # 64 / 3, rounded up: together at least io_depth
    assert depth_share(8, 4) == 2
    assert depth_share(1, 4) == 1  # never 0: every process lists


def test_fork_server_workers_from_a_script_without_main_guard(tmp_path: Path) -> None:
    # Polars loaded first: the workers come from a fork server, which by default re-runs the
    # caller's script in each of them; without a main guard that script would index again.
    root = spikes_tree(tmp_path / "data", 8)
    script = tmp_path / "index_it.py"
    script.write_text(
        "import sys, polars, alfcache, alfcache._walk.local\n"
        "alfcache._walk.local.LATE_START_SECONDS = 0.0\n"
        "report = alfcache.index(sys.argv[1], sys.argv[2], n_jobs=2)\n"
        "print(report.sessions)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(root), str(tmp_path / "out")],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "8\n"
    assert "Traceback" not in done.stderr
