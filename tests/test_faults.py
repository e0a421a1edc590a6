"""Faults: the run fails or is cut short, and the tables a user already has survive.

Each test writes "previous" tables first, then makes a run fail (a worker killed, Ctrl-C, an
output folder that cannot be written, a full disk, an unreadable root) and checks that

* the command line exits non-zero with one line on stderr and no traceback,
* the previous tables are byte-identical and no temporary file is left next to them,
* no process of the run outlives it.

The command line runs as a subprocess, with ``PYTHONPATH`` pointing at this checkout's ``src``.
Permission tests need a user without root's powers: as root they switch to ``nobody`` with
``setpriv`` (or ``runuser``); as any other user they run as that user. A slow run, for the
signals to land mid-walk, comes from hashing large sparse files (no disk space used).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow.parquet as pq
import pytest
from _helpers import SRC, python_env, snapshot, with_sitecustomize
from _procs import (
    alive,
    cmdline,
    comm,
    descendants,
    restore_sigint,
    without_loky_tracker_noise,
)

import alfcache
import alfcache._digest.checkpoint
import alfcache._tables.store
from alfcache._cli.main import main as cli_main
from alfcache._processes import WORKER_NAME

ENV = python_env()
TABLE_FILES = {"sessions.pqt", "datasets.pqt"}
SPIKES = "alf/spikes.times.npy"
SPARSE_SIZE = 1 << 36  # 64 GiB of holes: minutes of MD5, no disk space
BUSY_BYTES = 1 << 28  # a process that has read this much is hashing, i.e. mid-walk
DEADLINE = 60.0  # seconds to wait for a run to reach a state; only reached on failure


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _start(
    args: Sequence[str | Path],
    user: User | None = None,
    cli: Sequence[str] = ("-m", "alfcache"),
) -> subprocess.Popen[str]:
    """Start ``alfcache index ARGS`` (as ``user``, else as ourselves) in its own process group."""
    python, env = (user.python, user.env) if user else ([sys.executable], ENV)
    return subprocess.Popen(
        [*python, *cli, "index", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=restore_sigint,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait for ``proc``; on a timeout kill its whole group and fail."""
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the command line did not finish in {DEADLINE} s; stderr: {err}")
    return proc.returncode, out, err


def _run(args: Sequence[str | Path], user: User | None = None) -> tuple[int, str, str]:
    return _finish(_start(args, user))


def _one_error_line(stderr: str, *fragments: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = without_loky_tracker_noise(stderr).splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("alfcache: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr
    return lines[0]


def _previous_tables(root: Path, out: Path) -> dict[str, bytes]:
    alfcache.make_parquet_db(root, out, n_jobs=1)
    before = snapshot(out)
    assert set(before) == TABLE_FILES
    return before


def _assert_all_gone(pids: list[int], timeout: float = 15.0) -> None:
    # loky's resource trackers leave a moment after their parent; workers must be gone at once
    end = time.monotonic() + timeout
    while any(map(alive, pids)) and time.monotonic() < end:
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)], "processes of the run outlived it"


def _bytes_read(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/io") as f:
            return int(next(line for line in f if line.startswith("rchar:")).split()[1])
    except (OSError, StopIteration):
        return 0


def _wait_until_hashing(proc: subprocess.Popen[str], in_worker: bool) -> int:
    """Wait until the run hashes (a worker's, or the main process's, reads grow); its pid."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end and proc.poll() is None:
        pids = (
            [p for p in descendants(proc.pid) if b"popen_loky" in cmdline(p)]
            if in_worker
            else [proc.pid]
        )
        busy = [p for p in pids if _bytes_read(p) > BUSY_BYTES]
        if busy:
            return busy[0]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"the run never started hashing; stderr: {proc.communicate()[1]}")


@pytest.fixture
def slow_tree(tmp_path: Path) -> Path:
    """20 sessions (so two workers get several shards); two hold huge sparse files to hash."""
    root = tmp_path / "data"
    for i in range(20):
        session = root / f"s{i:02d}/2021-01-01/001"
        (session / "alf").mkdir(parents=True)
        (session / SPIKES).write_bytes(b"x")
    for i in (0, 1):
        big = root / f"s{i:02d}/2021-01-01/001/raw.ap.bin"
        with open(big, "wb") as f:
            f.truncate(SPARSE_SIZE)
        if big.stat().st_blocks * 512 > 1 << 20:
            pytest.skip("this file system has no sparse files")
    return root


# --------------------------------------------------------------------------------------------
# a worker killed, Ctrl-C
# --------------------------------------------------------------------------------------------


# Large files are hashed on threads of the main process; worker processes hash trees of small
# files, too fast to kill a worker mid-run. Pretending that opening a file costs a terabyte
# of reading sends the sparse files to the workers.
HASH_IN_WORKERS = (
    "-c",
    "import sys, alfcache._digest.schedule as h; h.FILE_COST = 1 << 40; "
    "from alfcache.__main__ import run; run(sys.argv[1:])",
)


def test_worker_killed_mid_run(slow_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = _previous_tables(slow_tree, out)
    args = [slow_tree, "--out-dir", out, "--jobs", "2", "--hash-files", "--quiet"]
    proc = _start(args, cli=HASH_IN_WORKERS)
    worker = _wait_until_hashing(proc, in_worker=True)
    run = descendants(proc.pid)
    os.kill(worker, signal.SIGKILL)
    code, stdout, stderr = _finish(proc)
    assert code == 1
    _one_error_line(stderr, "alfcache: error: a hashing worker died", "SIGKILL", "unchanged")
    assert stdout == ""
    assert snapshot(out) == before
    _assert_all_gone(run)


# Loaded by every Python process of a run through PYTHONPATH: in the command line (and so in
# the walk's worker processes, forked from it) each folder listing sleeps, so that the walk
# lasts seconds and a walk worker can be killed mid-walk, without a test hook in alfcache.
SLOW_WALK = """
import os, time
with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
    command = f.read()
if b"alfcache" in command and b"index" in command:
    _scandir = os.scandir
    def _slow_scandir(*args):
        time.sleep(0.3)
        return _scandir(*args)
    os.scandir = _slow_scandir
"""


def test_scan_worker_killed_mid_walk(tmp_path: Path, make_files: Any) -> None:
    root = make_files(tmp_path / "data", [f"s{i:02d}/2021-01-01/001/{SPIKES}" for i in range(60)])
    out = tmp_path / "out"
    before = _previous_tables(root, out)
    hooks = with_sitecustomize(tmp_path, SLOW_WALK)
    cmd = [sys.executable, "-m", "alfcache", "index", root, "--out-dir", out, "--jobs", "2"]
    proc = subprocess.Popen(
        # 4 listings in flight: about 250 listings of 0.3 s last 20 s, the kill comes at 1 s
        [*map(str, cmd), "--io-depth", "4", "--quiet"],
        env=python_env(hooks),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    end = time.monotonic() + DEADLINE
    workers: list[int] = []
    while not workers and time.monotonic() < end and proc.poll() is None:
        workers = [p for p in descendants(proc.pid) if comm(p) == WORKER_NAME]
        time.sleep(0.05)
    assert workers, "the run started no worker process"
    time.sleep(1.0)  # let them walk: the walk lasts many seconds
    run = descendants(proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    code, stdout, stderr = _finish(proc)
    assert code == 1, stderr
    _one_error_line(stderr, "alfcache: error: a scan worker died", "SIGKILL", "unchanged")
    assert stdout == ""
    assert snapshot(out) == before
    _assert_all_gone(run)


@pytest.mark.parametrize(
    ("jobs", "target"),
    [("1", "process"), ("2", "process"), ("2", "group")],
    ids=["1job", "2jobs", "2jobs-whole-group"],
)
def test_ctrl_c_mid_run(slow_tree: Path, tmp_path: Path, jobs: str, target: str) -> None:
    # 'process': SIGINT to the command line only (kill -INT); 'group': to it and its workers,
    # as a terminal's Ctrl-C does.
    out = tmp_path / "out"
    before = _previous_tables(slow_tree, out)
    proc = _start([slow_tree, "--out-dir", out, "--jobs", jobs, "--hash-files", "--quiet"])
    _wait_until_hashing(proc, in_worker=False)  # large files: threads of the main process
    run = descendants(proc.pid)
    if target == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    code, stdout, stderr = _finish(proc)
    assert code == -signal.SIGINT  # a shell shows 130 (alfcache.__main__ says why)
    _one_error_line(stderr, "alfcache: interrupted", "unchanged")
    assert stdout == ""
    assert snapshot(out) == before
    _assert_all_gone(run)


@pytest.mark.parametrize("target", ["process", "group"])
def test_ctrl_c_while_workers_hash(slow_tree: Path, tmp_path: Path, target: str) -> None:
    """The hashing workers are killed, not left reading a 64 GiB file after the run gave up."""
    out = tmp_path / "out"
    before = _previous_tables(slow_tree, out)
    args = [slow_tree, "--out-dir", out, "--jobs", "2", "--hash-files", "--quiet"]
    proc = _start(args, cli=HASH_IN_WORKERS)
    _wait_until_hashing(proc, in_worker=True)
    run = descendants(proc.pid)
    if target == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    code, stdout, stderr = _finish(proc)
    assert code == -signal.SIGINT  # a shell shows 130 (alfcache.__main__ says why)
    _one_error_line(stderr, "alfcache: interrupted", "unchanged")
    assert stdout == ""
    assert snapshot(out) == before
    _assert_all_gone(run)


# --------------------------------------------------------------------------------------------
# the disk fills up while the tables are written
# --------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (needs root and a kernel that lets this container mount)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; test_full_disk_cli_message fakes ENOSPC")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file that takes every free byte of ``folder``'s file system."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        block = bytes(4096)
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == 28  # ENOSPC
    return filler


def test_full_disk_during_the_write(small_disk: Path, tmp_path: Path, make_files: Any) -> None:
    root = make_files(tmp_path / "data", [f"s{i}/2021-01-01/001/{SPIKES}" for i in range(3)])
    before = _previous_tables(root, small_disk)
    # more sessions: the new tables differ, and need space the full disk no longer has
    make_files(root, [f"t{i}/2021-01-02/001/{SPIKES}" for i in range(40)])
    filler = _fill(small_disk)
    before[filler.name] = filler.read_bytes()
    code, stdout, stderr = _run([root, "--out-dir", small_disk, "--jobs", "1", "--quiet"])
    assert code == 1
    _one_error_line(stderr, "alfcache: error:", "No space left on device", "unchanged")
    assert stdout == ""
    assert snapshot(small_disk) == before


def test_full_disk_cli_message(
    tmp_path: Path,
    make_files: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Where no tmpfs can be mounted: the same failure, faked at the parquet writer.
    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    out = tmp_path / "out"
    before = _previous_tables(root, out)
    make_files(root, [f"s2/2021-01-01/001/{SPIKES}"])

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", no_space)
    code = cli_main(["index", str(root), "--out-dir", str(out), "--jobs", "1", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    _one_error_line(captured.err, "No space left on device", "unchanged")
    assert snapshot(out) == before


def test_full_output_disk_is_found_before_any_file_is_read(
    tmp_path: Path,
    make_files: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Found by the final write, a full disk threw hours of hashing away. Faked at statvfs:
    # one free block, less than the smallest pair of tables.
    root = make_files(tmp_path / "data", [f"s{i}/2021-01-01/001/{SPIKES}" for i in range(3)])
    out = tmp_path / "out"
    before = _previous_tables(root, out)
    real = os.statvfs(out)
    one_block = os.statvfs_result((*real[:3], 1, 1, *real[5:]))
    monkeypatch.setattr(alfcache._tables.store.os, "statvfs", lambda path: one_block)

    def read(*args: Any, **kwargs: Any) -> None:
        pytest.fail("a file was read on a disk that cannot hold the tables")

    monkeypatch.setattr(alfcache._digest.checkpoint, "digest_files", read)
    args = ["index", str(root), "--out-dir", str(out), "--jobs", "1", "--hash", "md5", "-q"]
    code = cli_main(args)
    assert code == 1
    _one_error_line(
        capsys.readouterr().err,
        f"cannot write the cache tables in {out}: No space left on device",
        "found before reading any file",
        "the previous tables are unchanged",
    )
    assert snapshot(out) == before


def test_full_tmpfs_is_found_before_any_file_is_read(
    small_disk: Path, tmp_path: Path, make_files: Any
) -> None:
    root = make_files(tmp_path / "data", [f"s{i}/2021-01-01/001/{SPIKES}" for i in range(3)])
    _fill(small_disk)
    code, _, stderr = _run([root, "--out-dir", small_disk, "--jobs", "1", "--hash", "md5", "-q"])
    assert code == 1
    _one_error_line(stderr, "No space left on device", "found before reading any file")


# --------------------------------------------------------------------------------------------
# permissions, as a user without root's powers
# --------------------------------------------------------------------------------------------


class User(NamedTuple):
    python: list[str]
    """The command that runs Python as this user: a privilege drop, if any, then a Python."""
    env: dict[str, str]
    """The environment that Python needs (PYTHONPATH)."""
    uid: int


def _system_python() -> str | None:
    """The system's Python of our version, which 'nobody' may run (ours may be under /root)."""
    for folder in ("/usr/bin", "/usr/local/bin"):
        path = f"{folder}/python{sys.version_info.major}.{sys.version_info.minor}"
        if os.access(path, os.X_OK) and os.path.realpath(path) != os.path.realpath(sys.executable):
            return path
    return None


@pytest.fixture(scope="module")
def unprivileged() -> User:
    """A user without root's powers: 'nobody' when we are root, else the current user.

    As root, the run is started through setpriv (or runuser) with this Python or, when
    'nobody' may not run it (a venv made from ~root/.pyenv: loky starts its workers with
    ``sys.executable``), with the system's Python of the same version on this environment's
    packages.
    """
    if os.geteuid() != 0:
        return User([sys.executable], ENV, os.geteuid())
    nobody = pwd.getpwnam("nobody")
    if shutil.which("setpriv"):
        drop = [
            "setpriv",
            f"--reuid={nobody.pw_uid}",
            f"--regid={nobody.pw_gid}",
            "--clear-groups",
        ]
    elif shutil.which("runuser"):
        drop = ["runuser", "-u", "nobody", "--"]
    else:
        pytest.fail("running as root, and neither setpriv nor runuser can drop to 'nobody'")
    packages = sysconfig.get_paths()["purelib"]
    candidates = [(sys.executable, ENV)]
    if (system := _system_python()) is not None:
        candidates.append((system, {**ENV, "PYTHONPATH": f"{SRC}{os.pathsep}{packages}"}))
    # The Python must start worker processes with its own sys.executable, as loky does.
    check = (
        "import subprocess, sys, alfcache._cli.main; "
        "subprocess.run([sys.executable, '-c', ''], check=True)"
    )
    errors = []
    for python, env in candidates:
        done = subprocess.run(
            [*drop, python, "-c", check], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return User([*drop, python], env, nobody.pw_uid)
        errors.append(f"{python}: {done.stderr.strip().splitlines()[-1:]}")
    pytest.fail(f"'nobody' can run no Python that starts worker processes here: {errors}")


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A folder the unprivileged user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="alfcache-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for folder, dirs, _ in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(folder, name), 0o755)
        shutil.rmtree(path)


def _owned_by(path: Path, uid: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, uid, -1)
    return path


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_unreadable_folder_and_file(
    public_tmp: Path, make_files: Any, unprivileged: User, jobs: str
) -> None:
    root = make_files(
        public_tmp / "data",
        [f"s{i:02d}/2021-01-01/001/{SPIKES}" for i in range(20)]
        + ["s00/2021-01-01/001/alf/secret.times.npy", f"s01/2021-01-01/001/raw/{SPIKES}"],
    )
    (root / "s00/2021-01-01/001/alf/secret.times.npy").chmod(0o000)
    (root / "s01/2021-01-01/001/raw").chmod(0o000)
    out = _owned_by(public_tmp / "out", unprivileged.uid)
    code, stdout, stderr = _run(
        [root, "--out-dir", out, "--jobs", jobs, "--hash-files", "--json"], unprivileged
    )
    assert code == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout)
    assert [(s["path"], s["reason"]) for s in summary["skipped"]] == [
        ("s01/2021-01-01/001/raw", "permission_denied"),
    ]
    # indexed (its size is known) without a digest: a notice, not a skip
    assert [(s["path"], s["reason"]) for s in summary["notices"]] == [
        ("s00/2021-01-01/001/alf/secret.times.npy", "unreadable"),
    ]
    assert "alfcache: skipped s01/2021-01-01/001/raw: permission_denied" in stderr
    datasets = pq.read_table(out / "datasets.pqt")
    assert summary["sessions"] == 20 and summary["datasets"] == datasets.num_rows == 21
    # a file that cannot be read is still indexed (its size is known), without a hash
    hashes = dict(zip(datasets["rel_path"].to_pylist(), datasets["hash"].to_pylist(), strict=True))
    assert hashes["alf/secret.times.npy"] is None
    assert set(os.listdir(out)) == TABLE_FILES


def test_unreadable_root(public_tmp: Path, make_files: Any, unprivileged: User) -> None:
    root = make_files(public_tmp / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    out = _owned_by(public_tmp / "out", unprivileged.uid)
    before = _previous_tables(root, out)
    root.chmod(0o000)
    code, _, stderr = _run([root, "--out-dir", out, "--jobs", "1"], unprivileged)
    assert code == 2
    _one_error_line(stderr, "alfcache: error: cannot read root folder", str(root))
    assert snapshot(out) == before  # not overwritten by empty tables


def test_output_folder_not_writable(public_tmp: Path, make_files: Any, unprivileged: User) -> None:
    root = make_files(public_tmp / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    out = public_tmp / "out"  # the test's user may read it, not write it
    before = _previous_tables(root, out)
    if os.geteuid() != 0:
        out.chmod(0o555)
    make_files(root, [f"s2/2021-01-01/001/{SPIKES}"])
    # two workers: the output folder is checked before any worker starts
    code, _, stderr = _run([root, "--out-dir", out, "--jobs", "2"], unprivileged)
    assert code == 2
    _one_error_line(stderr, "alfcache: error: cannot write in output folder", str(out))
    assert snapshot(out) == before


# --------------------------------------------------------------------------------------------
# special files named like datasets
# --------------------------------------------------------------------------------------------


def test_fifo_socket_and_device_never_opened(
    tmp_path: Path, make_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Opening a FIFO for reading blocks until a writer comes: a run that opens one (to hash
    # it) hangs, and this test fails on its timeout instead of hanging the suite.
    session = "s1/2021-01-01/001"
    root = make_files(tmp_path / "data", [f"{session}/{SPIKES}"])
    alf = root / session / "alf"
    os.mkfifo(alf / "spikes.fifo.npy")
    (alf / "link.fifo.npy").symlink_to("spikes.fifo.npy")
    monkeypatch.chdir(alf)  # a socket's path is limited to ~100 bytes: bind it relative
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("spikes.sock.npy")
    expected = ["alf/link.fifo.npy", "alf/spikes.fifo.npy", "alf/spikes.sock.npy"]
    try:
        os.mknod(alf / "spikes.null.npy", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        expected.append("alf/spikes.null.npy")
    except PermissionError:
        pass  # no CAP_MKNOD in this container: FIFOs and sockets still make the point
    try:
        code, stdout, stderr = _run(
            [root, "--out-dir", tmp_path / "out", "--jobs", "1", "--hash-files", "--json"]
        )
    finally:
        sock.close()
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert sorted((s["path"], s["reason"]) for s in summary["skipped"]) == [
        (f"{session}/{rel}", "not_regular_file") for rel in sorted(expected)
    ]
    assert summary["datasets"] == 1


# --------------------------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["index", "ROOT", "--jobs", "0"],
        ["index", "ROOT", "--jobs", "two"],
        ["index", "ROOT", "--no-such-option"],
        ["index"],
        [],
    ],
    ids=["jobs-0", "jobs-two", "unknown-option", "no-root", "no-command"],
)
def test_bad_command_lines_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    args = [str(tmp_path) if a == "ROOT" else a for a in args]
    with pytest.raises(SystemExit) as info:
        cli_main(args)
    assert info.value.code == 2
    line = _one_error_line(capsys.readouterr().err, "alfcache: error:", "--help")
    assert "usage:" not in line


def test_unknown_hash_algorithm(tmp_path: Path, make_files: Any) -> None:
    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    with pytest.raises(alfcache.BadArgument, match="no-such-digest"):
        alfcache.index(root, tmp_path / "out", n_jobs=1, hash_algorithm="no-such-digest")
    assert not (tmp_path / "out" / "sessions.pqt").exists()
