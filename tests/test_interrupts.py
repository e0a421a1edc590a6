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

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import python_env, snapshot, with_sitecustomize
from _procs import (
    cmdline,
    comm,
    descendants,
    group_members,
    restore_sigint,
    wait_all_gone,
    without_loky_tracker_noise,
)

import alfcache
import alfcache._tables.store as store
from alfcache._processes import WORKER_NAME, sigint_at_checks
from alfcache.synth import make_tree

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
    before = snapshot(out)
    hooks = with_sitecustomize(tmp_path, SLOW_LISTINGS)
    started = tmp_path / "started"
    env = python_env(
        hooks, ALFCACHE_TEST_PARENT=str(os.getpid()), ALFCACHE_TEST_STARTED=str(started)
    )
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
            preexec_fn=restore_sigint,
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
        if (after := snapshot(out)) != before:
            changed = sorted(n for n in {*before, *after} if before.get(n) != after.get(n))
            failures.append(f"{what}: the output folder changed: {changed}")
            before = after
    if failures:
        pytest.fail("\n".join(failures))


# The tests below interrupt a Python process that lives on after the interrupt (a notebook, a
# service calling the library): neither its exit (multiprocessing ends daemon children then)
# nor PR_SET_PDEATHSIG ends the workers there, only the walk's own abort does. Each runs a
# child interpreter with a sitecustomize hook of its own, and the child prints what it saw.

TESTS = Path(__file__).resolve().parent

# A walk worker's listings take 2 s each, and it says when it starts one: the child interrupts
# itself then, so the walk is surely still going (that listing's rows are outstanding). Until a
# worker lists, the main process's listings are slowed too, so that it does not finish the tree
# alone before the fork server's workers start.
SLOW_WORKERS = """
import os, time
_scandir = os.scandir
_LISTING = os.environ["ALFCACHE_TEST_LISTING"]
def _slow_scandir(*args, **kwargs):
    with open("/proc/self/comm") as f:
        worker = f.read().strip() == "alfcache-walk"
    if worker:
        with open(_LISTING, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(2.0)
    elif not os.path.exists(_LISTING):
        time.sleep(0.05)
    return _scandir(*args, **kwargs)
os.scandir = _slow_scandir
"""

# The main process's import of Polars sends it a SIGINT (where a user's Ctrl-C may land: the
# import takes a second). With RAISE set, the KeyboardInterrupt is turned into an ImportError
# on its way out of the import, as NumPy's C extension does. With WALKERS=N, the SIGINT waits
# until N forked workers have named themselves alfcache-walk (a fork returns before that).
INTERRUPTED_POLARS_IMPORT = """
import os, signal, sys, time
class _InterruptPolars:
    def find_spec(self, name, path=None, target=None):
        if name != "polars":
            return None
        sys.meta_path.remove(self)
        if walkers := int(os.environ.get("ALFCACHE_TEST_WALKERS", "0")):
            from _procs import comm, descendants
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline and sum(
                comm(p) == "alfcache-walk" for p in descendants(os.getpid())
            ) < walkers:
                time.sleep(0.005)
        if not os.environ.get("ALFCACHE_TEST_RAISE"):
            os.kill(os.getpid(), signal.SIGINT)
            return None
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10.0)  # the KeyboardInterrupt comes at once
        except KeyboardInterrupt:
            raise ImportError("polars: initialization interrupted") from None
        return None
sys.meta_path.insert(0, _InterruptPolars())
"""

# The SIGINT lands inside a finalizer (Polars' own import runs one, CPUID.__del__), where Python
# prints the KeyboardInterrupt as "Exception ignored" and drops it: a run went on and wrote its
# tables in CI (test_ctrl_c_at_random_moments, at 0.23 s). Here a finalizer run as Polars starts
# to load sends the signal and waits for it.
INTERRUPTED_FINALIZER = """
import os, signal, sys, time
class _Finalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5.0)  # the KeyboardInterrupt comes at once, inside this finalizer
class _InterruptInFinalizer:
    def find_spec(self, name, path=None, target=None):
        if name == "polars":
            sys.meta_path.remove(self)
            _Finalizer()  # dropped at once: its finalizer runs here
        return None
sys.meta_path.insert(0, _InterruptInFinalizer())
"""

# The SIGINT lands inside an extension's function that cannot raise: Cython prints the
# KeyboardInterrupt with a traceback (PyErr_PrintEx, through sys.excepthook), then drops it
# as unraisable. CI saw the traceback once (test_ctrl_c_at_random_moments, at 0.25 s, in
# importlib's _lock_unlock_module). Here the import of Polars does both, as Cython would.
INTERRUPTED_EXTENSION = """
import os, signal, sys, time
class _Dropped:
    def __del__(self):
        raise KeyboardInterrupt  # reported as unraisable, as Cython reports it
class _InterruptInExtension:
    def find_spec(self, name, path=None, target=None):
        if name == "polars":
            sys.meta_path.remove(self)
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5.0)  # the KeyboardInterrupt comes at once
            except KeyboardInterrupt:
                sys.excepthook(*sys.exc_info())  # what PyErr_PrintEx does
                _Dropped()
        return None
sys.meta_path.insert(0, _InterruptInExtension())
"""

# The interpreter's shutdown receives a SIGINT (a second Ctrl-C, or one that came late) and
# takes a while: an atexit hook, registered first and so run last, sends it and sleeps.
INTERRUPTED_SHUTDOWN = """
import atexit, os, signal, time
def _interrupt_shutdown():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)
atexit.register(_interrupt_shutdown)
"""

# Calls index() from the main thread and catches the KeyboardInterrupt, as a notebook does;
# prints (JSON) the walk workers alive when the interrupt came and those alive 0.5 s later.
# With WATCH set, a thread of its own sends the SIGINT once a worker lists.
LIBRARY_CALLER = """
import json, os, signal, sys, threading, time
import alfcache
from _procs import comm, descendants

root, out = sys.argv[1:3]
listing = os.environ.get("ALFCACHE_TEST_LISTING")
at_interrupt = []

def walk_workers():
    return [p for p in descendants(os.getpid()) if comm(p) == "alfcache-walk"]

def interrupt_once_a_worker_lists():
    while not os.path.exists(listing):
        time.sleep(0.005)
    at_interrupt.extend(walk_workers())
    os.kill(os.getpid(), signal.SIGINT)

def note_workers(signum, frame):
    at_interrupt.extend(walk_workers())
    signal.default_int_handler(signum, frame)

if listing:
    threading.Thread(target=interrupt_once_a_worker_lists, daemon=True).start()
else:
    signal.signal(signal.SIGINT, note_workers)
try:
    alfcache.index(root, out, n_jobs=2, io_depth=2)
except KeyboardInterrupt:
    time.sleep(0.5)
    print(json.dumps({"at_interrupt": sorted(set(at_interrupt)), "after": walk_workers()}))
else:
    print(json.dumps({"finished": True}))
"""


def _child(
    tmp_path: Path, hook: str, args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` with ``hook`` as its sitecustomize; kill what it leaves behind."""
    hooks = with_sitecustomize(tmp_path, hook)
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=python_env(hooks, TESTS, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=restore_sigint,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=60.0)
    finally:
        for pid in group_members(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _interrupted_caller(tmp_path: Path, hook: str, env: dict[str, str]) -> dict[str, object]:
    """What LIBRARY_CALLER printed: the workers at the interrupt and 0.5 s after it."""
    out = tmp_path / "out"
    done = _child(tmp_path, hook, ["-c", LIBRARY_CALLER, str(tmp_path / "data"), str(out)], env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert "finished" not in seen, "the walk finished before the interrupt: it tested nothing"
    assert not (out / "sessions.pqt").exists()
    return seen


def test_interrupted_library_call_kills_its_workers(tmp_path: Path) -> None:
    # Workers from a fork server (the caller runs a thread), walking when the SIGINT comes.
    make_tree(tmp_path / "data", 40, files_per_session=3)
    listing = tmp_path / "listing"
    seen = _interrupted_caller(tmp_path, SLOW_WORKERS, {"ALFCACHE_TEST_LISTING": str(listing)})
    assert seen["at_interrupt"]  # the interrupt came while they walked
    assert seen["after"] == [], f"walk workers {seen['after']} outlived the interrupted call"


def test_interrupt_while_polars_loads_kills_the_workers(tmp_path: Path) -> None:
    # Forked workers (the caller has one thread and no Polars): they run before the main
    # process imports Polars, which is where the SIGINT lands.
    make_tree(tmp_path / "data", 4, files_per_session=3)
    # n_jobs=2: one walk worker, named before the SIGINT comes
    seen = _interrupted_caller(tmp_path, INTERRUPTED_POLARS_IMPORT, {"ALFCACHE_TEST_WALKERS": "1"})
    assert seen["at_interrupt"]
    assert seen["after"] == [], f"walk workers {seen['after']} outlived the interrupted call"


@pytest.mark.parametrize(
    ("hook", "env"),
    [
        (INTERRUPTED_POLARS_IMPORT, {"ALFCACHE_TEST_RAISE": "1"}),
        (INTERRUPTED_FINALIZER, {}),
        (INTERRUPTED_EXTENSION, {}),
    ],
    ids=[
        "an import turns it into another error",
        "a finalizer drops it",
        "an extension prints it, then drops it",
    ],
)
def test_an_interrupt_lost_on_its_way_still_stops_the_run(
    tmp_path: Path, hook: str, env: dict[str, str]
) -> None:
    root = make_tree(tmp_path / "data", 4, files_per_session=3).root
    out = tmp_path / "out"
    done = _child(
        tmp_path,
        hook,
        ["-m", "alfcache", "index", str(root), "--out-dir", str(out), "--jobs", "1"],
        env,
    )
    assert done.stderr.strip() == INTERRUPTED
    assert done.returncode == -signal.SIGINT
    assert not (out / "sessions.pqt").exists()


def test_ctrl_c_during_shutdown_after_a_run_prints_nothing(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", 4, files_per_session=3).root
    out = tmp_path / "out"
    done = _child(
        tmp_path,
        INTERRUPTED_SHUTDOWN,
        ["-m", "alfcache", "index", str(root), "--out-dir", str(out), "--jobs", "1"],
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    assert (out / "sessions.pqt").exists()


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_ctrl_c_held_back_comes_at_a_check_or_at_the_end() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt), sigint_at_checks() as check:
        signal.raise_signal(signal.SIGINT)
        reached.append("after the Ctrl-C")  # held back here
        check()
        reached.append("after the check")
    assert reached == ["after the Ctrl-C"]
    with pytest.raises(KeyboardInterrupt), sigint_at_checks():
        signal.raise_signal(signal.SIGINT)
        reached.append("no check")  # nor lost: it comes as the block ends
    assert reached[-1] == "no check"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# Where a Ctrl-C could cut the write of the tables in two: each test sends the signal from
# inside a step, at the moment a file exists that nothing yet owns, or one table is renamed.


TABLES = (store.SESSIONS_FILE, store.DATASETS_FILE)


def _tables(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    alfcache.make_parquet_db(make_tree(tmp_path / "data", 3).root, out, n_jobs=1)
    return out


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_ctrl_c_between_the_renames_still_writes_both_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _tables(tmp_path)
    sessions, datasets = (store.read_parquet(out / name) for name in TABLES)
    replace = Path.replace

    def then_ctrl_c(self: Path, target: Path) -> Path:
        done = replace(self, target)
        if target.name == store.SESSIONS_FILE:  # the datasets table is not renamed yet
            signal.raise_signal(signal.SIGINT)
        return done

    monkeypatch.setattr(Path, "replace", then_ctrl_c)
    try:
        store.write_tables(sessions, datasets, out, {"origin": "x"})
    except KeyboardInterrupt:  # pytest would take it for the user's and stop the session
        pytest.fail("the write was interrupted between its renames")
    monkeypatch.undo()
    runs = {
        store.read_provenance(store.read_metadata(out / name))[store.RUN_KEY] for name in TABLES
    }
    assert len(runs) == 1  # one pair, of this write
    assert sorted(p.name for p in out.iterdir()) == [store.DATASETS_FILE, store.SESSIONS_FILE]


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_ctrl_c_while_the_tables_are_written_leaves_the_previous_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _tables(tmp_path)
    before = snapshot(out)
    sessions, datasets = (store.read_parquet(out / name) for name in TABLES)
    write_tmp = store._write_tmp

    def then_ctrl_c(*args: object) -> Path:
        tmp = write_tmp(*args)  # type: ignore[arg-type]
        signal.raise_signal(signal.SIGINT)  # its temporary file is not yet in the list
        return tmp

    monkeypatch.setattr(store, "_write_tmp", then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        store.write_tables(sessions, datasets, out, {"origin": "x"})
    assert snapshot(out) == before
