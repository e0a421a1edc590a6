"""The Dask backend (``--backend dask``): the tables of the default backend, from a cluster.

A ``LocalCluster`` on 127.0.0.1 (threads of this process, talking over TCP, so every result
really travels as bytes) is started once for the module and stopped at its end. Each run is
compared with a run of the default backend on the same tree, read back from disk: equal row
for row, ids included, with the same metadata but ``date_created``, and the same report. The
tree holds what a careless split would get wrong: clashes across parent folders, a nested
session, and records of folders above the sessions, which every task lists (a stray dataset
at the root, a link to a folder there).
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import distributed
import pyarrow.parquet as pq
import pytest
from _helpers import forbid_uuids, python_env
from distributed import Client, LocalCluster

import alfcache
import alfcache._digest.read
import alfcache._digest.schedule
from alfcache import BadArgument, ScanFailed
from alfcache._cli import main as _cli
from alfcache._progress import Progress
from alfcache._walk import dask as _dask
from alfcache._walk.scan import Walk
from alfcache.synth import make_tree

TABLES = ("sessions.pqt", "datasets.pqt")
AWKWARD = [
    "s1/2021-01-01/1/alf/from.unpadded.npy",  # clashes with 001 of the same day
    "s1/2021-01-01/001/alf/from.padded.npy",
    "a/s2/2021-02-01/001/alf/first.parent.npy",  # one ALF path below two parent folders
    "b/s2/2021-02-01/001/alf/second.parent.npy",
    "s4/2021-04-01/001/alf/outer.times.npy",  # a session inside a session
    "s4/2021-04-01/001/raw/s5/2021-05-01/002/alf/inner.times.npy",
    "s6/2021-02-30/001/alf/bad.date.npy",  # invalid_date
    "s7/2024-1-5/001/alf/near.miss.npy",  # near_miss folder
    "stray.times.npy",  # near_miss at the root: every task lists the root
]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # No profiler, as alfcache's own local clusters: on Python < 3.11.9 its sys._current_frames
    # deadlocks with a thread that ends (gh-106883; hung this suite once, a listing thread
    # ending while the profiler's gc ran a finalizer).
    with dask.config.set({"distributed.worker.profile.enabled": False}):  # read at the start
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def tree(tmp_path: Path, make_files: Any) -> Path:
    root = make_tree(tmp_path / "data", 30, empty_every=7, no_lab_every=3).root
    make_files(root, AWKWARD)
    (root / "s1/2021-01-01/001/alf/empty.times.npy").write_bytes(b"")
    elsewhere = make_files(tmp_path / "elsewhere", ["alf/linked.times.npy"])
    (root / "s1/2021-01-01/001/linked").symlink_to(elsewhere)  # followed with the option
    (root / "s4/2021-04-01/001/again").symlink_to(elsewhere)  # then a revisit
    # a link above the sessions: every task meets it; its sessions fall in both array shards
    other = make_files(
        tmp_path / "other", [f"s{i}/2021-06-01/001/alf/via.link.npy" for i in range(8, 16)]
    )
    (root / "more").symlink_to(other)
    return root


def _metadata(path: Path) -> dict[bytes, object]:
    meta = dict(pq.read_schema(path).metadata)
    one = json.loads(meta.pop(b"one_metadata"))
    del one["date_created"]
    shard = json.loads(meta.pop(b"alfcache_shard", b"{}"))
    shard.pop("run", None)  # a fresh id per run, shared by its two tables
    record = json.loads(meta.pop(b"alfcache"))
    del record["run"]  # each write's own id
    return {**meta, b"one_metadata": one, b"alfcache_shard": shard, b"alfcache": record}


def assert_same_tables(expected: Path, actual: Path) -> None:
    for name in TABLES:
        want, got = pq.read_table(expected / name), pq.read_table(actual / name)
        assert got.schema.equals(want.schema), (name, got.schema, want.schema)
        assert got.equals(want), name
        assert _metadata(actual / name) == _metadata(expected / name), name


def _same_as_the_default_backend(
    root: Path, tmp_path: Path, client: Client, **options: Any
) -> alfcache.IndexReport:
    """Index ``root`` with both backends; the Dask run's report, once proven equal."""
    default = alfcache.index(root, tmp_path / "default", n_jobs=2, **options)
    dask = alfcache.index(
        root, tmp_path / "dask", n_jobs=2, backend="dask", scheduler=client, **options
    )
    assert_same_tables(tmp_path / "default", tmp_path / "dask")
    assert dask.skipped == default.skipped
    assert dask.notices == default.notices
    assert (dask.sessions, dask.datasets, dask.ignored) == (
        default.sessions,
        default.datasets,
        default.ignored,
    )
    return dask


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"follow_symlinks": True, "hash_algorithm": "md5"},
        {"shard": (1, 2)},
        {"shard": (1, 2), "follow_symlinks": True},
    ],
    ids=["plain", "links-and-md5", "array-shard", "array-shard-and-links"],
)
def test_tables_and_report_equal_the_default_backend(
    tree: Path, tmp_path: Path, client: Client, options: dict[str, Any]
) -> None:
    dask = _same_as_the_default_backend(tree, tmp_path, client, **options)
    if "shard" not in options:  # the tree holds what it should (a shard holds some of it)
        reasons = {s.reason for s in dask.skipped}
        assert {"session_clash", "invalid_date", "near_miss"} <= reasons, reasons
        assert {"nested_session", "empty_file"} <= {s.reason for s in dask.notices}
    # Many more tasks than the cluster's two threads, so that the scheduler balances them.
    assert dask.tasks >= 2 * _dask.TASKS_PER_THREAD
    assert client.status == "running"  # the caller's client is the caller's to close


def test_results_are_taken_as_their_tasks_finish(
    tree: Path, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Taken in the order given, a slow first task held back every other result, and the
    # progress of the whole walk with them.
    real_walk, real_result = _dask.walk_task, _dask.scan_result
    slow_done = tmp_path / "slow_done"  # the task is pickled, a list in it would be a copy
    taken: list[float] = []

    def slow_first(rules: Any, starts: Any, *args: Any) -> Any:
        shard = rules.array_shard
        if shard is not None and shard.k == 0 and starts[0].rel_dir == "":
            time.sleep(2.0)
            slow_done.write_text(str(time.monotonic()))
        return real_walk(rules, starts, *args)

    def taking(task: Any, seen: Any) -> Any:
        taken.append(time.monotonic())
        return real_result(task, seen)

    # The cluster's workers are threads of this process: the patch reaches their tasks.
    monkeypatch.setattr(_dask, "walk_task", slow_first)
    monkeypatch.setattr(_dask, "scan_result", taking)
    alfcache.index(tree, tmp_path / "out", n_jobs=2, backend="dask", scheduler=client)
    assert len(taken) >= 2 * _dask.TASKS_PER_THREAD
    assert sum(t < float(slow_done.read_text()) for t in taken) >= len(taken) // 2


def test_progress_counts_the_files_of_a_task_still_walking(
    tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One session, so one task finds every file. Its listing of alf/ waits until progress has
    # counted the session folder's own two files, which only that task's reports can give
    # (every other task finds nothing). Counted by finished task, the first count was 3.
    session = tmp_path / "data/lab/Subjects/s1/2021-01-01/001"
    for name in ("a.times.npy", "b.times.npy", "alf/c.times.npy"):
        (session / name).parent.mkdir(parents=True, exist_ok=True)
        (session / name).write_bytes(b"x")
    counted = threading.Event()
    counts: list[int] = []
    real_show, real_list = Progress.show, Walk._list

    def show(self: Progress, sessions: int, files: int) -> None:
        if files:
            counts.append(files)
            counted.set()
        real_show(self, sessions, files)

    def held_list(self: Walk, rel_dir: str, *args: Any) -> None:
        if rel_dir.endswith("001/alf"):
            counted.wait(10.0)
        real_list(self, rel_dir, *args)

    # The cluster's workers are threads of this process: the patches reach their walks.
    monkeypatch.setattr(Progress, "show", show)
    monkeypatch.setattr(Walk, "_list", held_list)
    report = alfcache.index(
        tmp_path / "data", tmp_path / "out", n_jobs=2, backend="dask", scheduler=client
    )
    assert report.datasets == 3
    assert counts[0] == 2, counts
    assert counts[-1] == 3, counts


def test_path_ids_hash_nothing_and_equal_the_default_backend(
    tree: Path, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cluster's workers are threads of this process: the patch reaches their walks.
    forbid_uuids(monkeypatch)
    dask = _same_as_the_default_backend(
        tree, tmp_path, client, hash_ids=False, follow_symlinks=True
    )
    ids = pq.read_table(tmp_path / "dask" / "sessions.pqt")["id"].to_pylist()
    assert "s1/2021-01-01/001" in ids and len(ids) == dask.sessions


@pytest.mark.parametrize("where", ["root", "link"])
def test_sessions_where_a_task_starts_equal_the_default_backend(
    tmp_path: Path, client: Client, make_files: Any, where: str
) -> None:
    # the start of a task's walk is itself a session: the indexed folder, or a followed link
    # named like a session; its own rows come from the task's start, not from a listing
    session = "s1/2021-01-01/001"
    files = ["alf/spikes.times.npy", "raw/wheel.position.npy"]
    if where == "root":
        root = make_files(tmp_path / "data" / session, files)
    else:
        root = make_files(tmp_path / "data", [f"s0/2021-01-01/001/{f}" for f in files])
        target = make_files(tmp_path / "archive", files)
        (root / session).parent.mkdir(parents=True)
        (root / session).symlink_to(target)
    dask = _same_as_the_default_backend(root, tmp_path, client, follow_symlinks=True)
    assert (dask.sessions, dask.datasets) == (1 if where == "root" else 2, dask.sessions * 2)


def _record_readers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Where each file is read from now on: a Dask worker's address, or ``"main process"``.

    The module's cluster runs its workers as threads of this process, so the patched reader
    is the one they call; outside a task, ``get_worker`` finds no worker.
    """
    where: list[str] = []
    real_read = alfcache._digest.read._read

    def recording_read(*args: Any) -> Any:
        try:
            where.append(distributed.get_worker().address)
        except ValueError:
            where.append("main process")
        return real_read(*args)

    monkeypatch.setattr(alfcache._digest.read, "_read", recording_read)
    return where


@pytest.mark.parametrize("algorithm", ["md5", "both"])
def test_files_are_read_on_the_workers_with_the_digests_of_the_default_backend(
    tree: Path, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch, algorithm: str
) -> None:
    default = alfcache.index(tree, tmp_path / "default", n_jobs=2, hash_algorithm=algorithm)
    where = _record_readers(monkeypatch)
    dask = alfcache.index(
        tree, tmp_path / "dask", backend="dask", scheduler=client, hash_algorithm=algorithm
    )
    assert_same_tables(tmp_path / "default", tmp_path / "dask")
    assert (dask.skipped, dask.notices) == (default.skipped, default.notices)
    assert dask.hashing is not None and default.hashing is not None
    assert dask.hashing.files == default.hashing.files == dask.datasets
    assert len(where) == dask.datasets
    assert set(where) <= set(client.scheduler_info()["workers"]), set(where)


def test_update_reads_new_and_changed_files_on_the_workers(
    tree: Path, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for out in ("default", "dask"):
        alfcache.index(tree, tmp_path / out, n_jobs=1, hash_files=True)
    changed = tree / "s4/2021-04-01/001/alf/outer.times.npy"
    changed.write_bytes(b"longer than before")
    added = tree / "s4/2021-04-01/001/alf/added.times.npy"
    added.write_bytes(b"new")
    default = alfcache.index(tree, tmp_path / "default", n_jobs=1, update=True)
    where = _record_readers(monkeypatch)
    dask = alfcache.index(tree, tmp_path / "dask", backend="dask", scheduler=client, update=True)
    assert_same_tables(tmp_path / "default", tmp_path / "dask")
    assert dask.changes == default.changes
    assert dask.changes is not None and (dask.changes.changed, dask.changes.new) == (1, 1)
    assert len(where) == 2  # only the changed file and the new one are read
    assert set(where) <= set(client.scheduler_info()["workers"]), set(where)
    hashes = dict(
        zip(
            *pq.read_table(tmp_path / "dask" / "datasets.pqt", columns=["rel_path", "hash"])
            .to_pydict()
            .values(),
            strict=True,
        )
    )
    assert hashes["alf/added.times.npy"] == hashlib.md5(b"new").hexdigest()
    assert hashes["alf/outer.times.npy"] == hashlib.md5(b"longer than before").hexdigest()


def test_a_file_the_worker_cannot_read_is_reported_as_locally(
    tree: Path, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tree / "s4/2021-04-01/001/alf/outer.times.npy"
    content, before = target.read_bytes(), target.stat()
    real_digest_files = alfcache._digest.schedule.digest_files

    def swap_then_digest(*args: Any, **kwargs: Any) -> Any:
        # After the walk, before the read: a folder where the walk saw a file cannot be read.
        target.unlink()
        target.mkdir()
        try:
            return real_digest_files(*args, **kwargs)
        finally:
            target.rmdir()
            target.write_bytes(content)
            os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # as the walk saw it

    monkeypatch.setattr("alfcache._digest.checkpoint.digest_files", swap_then_digest)
    default = alfcache.index(tree, tmp_path / "default", n_jobs=1, hash_files=True)
    where = _record_readers(monkeypatch)
    dask = alfcache.index(
        tree, tmp_path / "dask", backend="dask", scheduler=client, hash_files=True
    )
    unreadable = [s for s in dask.notices if s.reason == "unreadable"]
    assert [s.path for s in unreadable] == ["s4/2021-04-01/001/alf/outer.times.npy"]
    assert "cannot read: Is a directory" in unreadable[0].message
    assert dask.notices == default.notices
    assert_same_tables(tmp_path / "default", tmp_path / "dask")
    assert len(where) == dask.datasets  # each file, the unreadable one too, on a worker
    assert set(where) <= set(client.scheduler_info()["workers"]), set(where)


def _broken(*args: object, **kwargs: object) -> None:
    raise OSError(errno.EIO, "Input/output error")


@pytest.fixture
def local_clusters(monkeypatch: pytest.MonkeyPatch) -> list[LocalCluster]:
    """The LocalClusters that ``--scheduler local`` starts, recorded (and in threads: quicker)."""
    started: list[LocalCluster] = []

    class InProcess(LocalCluster):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(processes=False, protocol="tcp", **kwargs)
            self.profiled = [
                "profile" in worker.periodic_callbacks for worker in self.workers.values()
            ]
            started.append(self)

    monkeypatch.setattr(distributed, "LocalCluster", InProcess)
    return started


def test_a_failed_reading_task_fails_the_run_and_closes_the_local_cluster(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_clusters: list[LocalCluster]
) -> None:
    monkeypatch.setattr(alfcache._digest.schedule, "hash_task", _broken)
    match = r"reading files on the Dask cluster failed \(OSError: \[Errno 5\]"
    with pytest.raises(ScanFailed, match=match):
        alfcache.index(
            tree,
            tmp_path / "out",
            n_jobs=1,
            backend="dask",
            scheduler=_dask.LOCAL,
            hash_files=True,
        )
    assert [c.status.name for c in local_clusters] == ["closed"]
    assert not (tmp_path / "out" / "sessions.pqt").exists()


def test_a_local_cluster_runs_no_profiler(
    tree: Path, tmp_path: Path, local_clusters: list[LocalCluster]
) -> None:
    # Its sys._current_frames every 10 ms deadlocks with a listing thread that ends on
    # Python < 3.11.9 (gh-106883), and nobody reads the profile.
    alfcache.index(tree, tmp_path / "out", n_jobs=2, backend="dask", scheduler=_dask.LOCAL)
    assert [c.profiled for c in local_clusters] == [[False, False]]  # type: ignore[attr-defined]
    assert dask.config.get("distributed.worker.profile.enabled") is True  # the caller's unchanged


def test_cli_with_a_local_cluster(tree: Path, tmp_path: Path) -> None:
    # Worker processes of their own: the reading tasks and their results travel pickled.
    alfcache.index(tree, tmp_path / "default", n_jobs=1, hash_algorithm="both")
    args = ["--backend", "dask", "--scheduler", "local", "--jobs", "1", "--hash", "both"]
    args += ["--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "alfcache", "index", str(tree), "--out-dir", tmp_path / "d", *args],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert_same_tables(tmp_path / "default", tmp_path / "d")
    assert json.loads(proc.stdout)["tasks"] >= _dask.TASKS_PER_THREAD
    assert "Traceback" not in proc.stderr, proc.stderr


def test_unreachable_scheduler_is_a_one_line_error(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(_dask, "CONNECT_SECONDS", 1.0)
    start = time.monotonic()
    dask = ["--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"]  # a closed port
    code = _cli.main(["index", str(tree), "--out-dir", str(tmp_path / "out"), *dask])
    assert time.monotonic() - start < 15
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1, err
    assert err.startswith("alfcache: error: cannot reach the Dask scheduler at tcp://127.0.0.1:1")
    assert not (tmp_path / "out" / "sessions.pqt").exists()


def test_without_the_extra_the_error_says_what_to_install(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real_import = builtins.__import__

    def no_distributed(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "distributed" or name.startswith("distributed."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    with pytest.raises(BadArgument, match=r"pip install 'alfcache\[dask\]'"):
        alfcache.index(tree, tmp_path / "out", backend="dask", scheduler="local")
    code = _cli.main(["index", str(tree), "--backend", "dask", "--scheduler", "local"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert "pip install 'alfcache[dask]'" in err
    assert not (tree / "sessions.pqt").exists()


def test_a_failed_walk_closes_the_local_cluster(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_clusters: list[LocalCluster]
) -> None:
    monkeypatch.setattr(_dask, "walk_task", _broken)
    with pytest.raises(ScanFailed, match=r"the Dask walk failed \(OSError"):
        alfcache.index(tree, tmp_path / "out", n_jobs=1, backend="dask", scheduler=_dask.LOCAL)
    assert [c.status.name for c in local_clusters] == ["closed"]
    assert not (tmp_path / "out" / "sessions.pqt").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "spark"}, "not a backend"),
        ({"scheduler": "local"}, "is for backend='dask'"),
        ({"backend": "dask", "scheduler": 8786}, "not a Dask scheduler"),
    ],
)
def test_bad_backend_arguments(tree: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(BadArgument, match=match):
        alfcache.index(tree, **kwargs)
