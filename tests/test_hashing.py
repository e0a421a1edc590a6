"""Hashing: digests equal to ``md5sum`` and ``xxhash``, byte-balanced tasks, files that move.

Expected digests come from the real ``md5sum`` binary and from ``xxhash``/``hashlib`` on the file
contents, never from alfcache.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
from _helpers import index_quietly, python_env
from _inject import change_on_read, grow_on_read, rewrite_in_place
from hypothesis import given, settings
from hypothesis import strategies as st

import alfcache
import alfcache._digest.read
import alfcache._digest.schedule
from alfcache._digest.read import BLOCK_SIZE, ReadResult
from alfcache._digest.schedule import (
    FILE_COST,
    MIN_TASK_COST,
    TASKS_PER_JOB,
    Digests,
    FileBoard,
    plan_tasks,
)
from alfcache._progress import ByteProgress, megabytes
from alfcache._tables.schema import DATASETS_SCHEMA, forbidden_extra_columns
from alfcache.synth import make_tree

MakeFiles = Callable[[Path, Iterable[str]], Path]  # the conftest fixture
JOBS = [1, 2]
SESSION = "lab/Subjects/s1/2021-01-01/001"


def _datasets(out: Path) -> pa.Table:
    return pq.read_table(out / "datasets.pqt")


def _by_path(out: Path, column: str) -> dict[str, Any]:
    """``column`` of the datasets table keyed by the file's path below the root."""
    sessions = pq.read_table(out / "sessions.pqt").to_pylist()
    folders = {
        s["id"]: "/".join(
            [*([s["lab"], "Subjects"] if s["lab"] else []), s["subject"], str(s["date"])]
        )
        + f"/{s['number']:03d}"
        for s in sessions
    }
    rows = _datasets(out).to_pylist()
    return {f"{folders[r['eid']]}/{r['rel_path']}": r[column] for r in rows}


def _opened(path: Any, dir_fd: int | None) -> str:
    """The full path ``os.open(path, dir_fd=dir_fd)`` opens (files are opened in their folder)."""
    if dir_fd is None:
        return str(path)
    return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)


def _md5sum(root: Path, rel_paths: list[str]) -> dict[str, str]:
    """Digests printed by the real ``md5sum`` binary."""
    proc = subprocess.run(
        ["md5sum", "--", *rel_paths], cwd=root, capture_output=True, text=True, check=True
    )
    digests = {}
    for line in proc.stdout.splitlines():
        digest, name = line.split(maxsplit=1)
        digests[name.lstrip("*")] = digest
    return digests


@pytest.fixture
def sized_tree(tmp_path: Path) -> Path:
    """A synthetic tree plus files of edge sizes: empty, one block, a block and a byte, 1 MB."""
    root = tmp_path / "data"
    make_tree(root, 12, empty_every=0, max_file_size=4096)
    rng = np.random.default_rng(0)
    sizes = {
        "empty.size.npy": 0,
        "one.block.npy": BLOCK_SIZE,
        "block.plus.npy": BLOCK_SIZE + 1,
        "big.file.bin": 1_000_003,
    }
    for name, size in sizes.items():
        path = root / SESSION / "alf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(size))
    return root


# --------------------------------------------------------------------------------------------
# digests
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("md5sum") is None, reason="needs the md5sum binary")
@pytest.mark.parametrize("n_jobs", JOBS)
def test_md5_equals_md5sum_on_every_file(sized_tree: Path, tmp_path: Path, n_jobs: int) -> None:
    out = tmp_path / "out"
    report = index_quietly(sized_tree, out, hash_files=True, n_jobs=n_jobs)
    ours = _by_path(out, "hash")
    assert len(ours) == report.datasets > 300
    assert _md5sum(sized_tree, sorted(ours)) == ours
    assert report.hashing is not None
    assert report.hashing.algorithms == ("md5",)
    assert report.hashing.files == report.datasets
    assert report.hashing.bytes == report.bytes
    # Empty files are indexed (and hashed) but reported; nothing else may be skipped.
    assert not report.skipped and {s.reason for s in report.notices} <= {"empty_file"}
    assert "xxh3_128" not in _datasets(out).column_names


@pytest.mark.parametrize("n_jobs", JOBS)
def test_xxh3_in_its_own_column(sized_tree: Path, tmp_path: Path, n_jobs: int) -> None:
    out = tmp_path / "out"
    index_quietly(sized_tree, out, hash_algorithm="xxh3", n_jobs=n_jobs)
    digests = _by_path(out, "xxh3_128")
    assert digests == {
        rel: xxhash.xxh3_128_hexdigest((sized_tree / rel).read_bytes()) for rel in digests
    }
    assert _datasets(out)["hash"].null_count == len(digests)  # only ever MD5 in `hash`


def test_both_digests_from_one_read(
    sized_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: Any, *args: Any, dir_fd: int | None = None, **kwargs: Any) -> int:
        full = _opened(path, dir_fd)
        # Files are read opened in their folder; a few are opened by full path first, not
        # read, to time an open (local disk or network storage).
        if dir_fd is not None and os.path.isfile(full):
            opened.append(full)
        return real_open(path, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(alfcache._digest.read.os, "open", counting_open)
    out = tmp_path / "out"
    report = index_quietly(sized_tree, out, hash_algorithm="both", n_jobs=1)
    md5, xxh3 = _by_path(out, "hash"), _by_path(out, "xxh3_128")
    for rel in md5:
        data = (sized_tree / rel).read_bytes()
        assert md5[rel] == hashlib.md5(data).hexdigest()
        assert xxh3[rel] == xxhash.xxh3_128_hexdigest(data)
    assert len(opened) == len(set(opened)) == report.datasets  # every file read exactly once


def test_root_session_folder_and_linked_files(tmp_path: Path, make_files: MakeFiles) -> None:
    """Paths are rebuilt right when the root is the session, and links are read through (to
    a file outside the root, as here, only with ``follow_symlinks``)."""
    root = make_files(tmp_path / "lab/Subjects/s1/2021-01-01/001", ["alf/spikes.times.npy"])
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"linked content")
    (root / "alf/spikes.amps.npy").symlink_to(target)
    out = tmp_path / "out"
    index_quietly(root, out, hash_algorithm="both", n_jobs=1, follow_symlinks=True)
    table = _datasets(out)
    got = {
        rel: (md5, xxh3, size)
        for rel, md5, xxh3, size in zip(
            *(table[c].to_pylist() for c in ("rel_path", "hash", "xxh3_128", "file_size")),
            strict=True,
        )
    }
    expected = {}
    for rel, data in (
        ("alf/spikes.times.npy", b"0123456789"),
        ("alf/spikes.amps.npy", b"linked content"),
    ):
        expected[rel] = (hashlib.md5(data).hexdigest(), xxhash.xxh3_128_hexdigest(data), len(data))
    assert got == expected


def test_tables_record_algorithms_and_add_no_id_columns(small_tree: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    index_quietly(small_tree.root, out, hash_algorithm="both", n_jobs=1)
    for name in ("sessions.pqt", "datasets.pqt"):
        meta = json.loads(pq.read_schema(out / name).metadata[b"alfcache"])
        assert meta["digests"] == ["md5", "xxh3"]
    schema = pq.read_schema(out / "datasets.pqt")
    # Hashed ids are the pandas index, stored last as one-api's make_parquet_db stores them.
    columns = [n for n in DATASETS_SCHEMA.names if n not in ("eid", "id")]
    assert schema.names[: len(columns)] == columns and schema.names[-2:] == ["eid", "id"]
    extra = {"mtime_ns", "xxh3_128", "default_revision"}
    assert set(schema.names) - set(DATASETS_SCHEMA.names) == extra
    assert schema.field("mtime_ns").type == pa.int64()
    assert forbidden_extra_columns(schema, DATASETS_SCHEMA) == []
    pandas_meta = json.loads(schema.metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["eid", "id"]


def test_a_hashed_index_reads_without_the_update_machinery(
    tmp_path: Path, make_files: MakeFiles
) -> None:
    # A plain --hash is not an update without previous tables: it reads through
    # _digest.tables directly, as an update does after matching its rows.
    root = make_files(tmp_path / "data", [f"{SESSION}/alf/spikes.times.npy"])
    code = (
        "import sys, alfcache; "
        "report = alfcache.index(sys.argv[1], sys.argv[2], hash_files=True, n_jobs=1); "
        "print(report.hashing.files, 'alfcache._maintain.update' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(root), str(tmp_path / "out")],
        env=python_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["1", "False"]


@pytest.mark.parametrize("algorithm", ["sha1", "MD5", "", 5])
def test_unknown_algorithm(tmp_path: Path, algorithm: Any) -> None:
    with pytest.raises(alfcache.BadArgument, match="hash_algorithm"):
        alfcache.index(tmp_path, tmp_path / "out", hash_algorithm=algorithm)
    assert not (tmp_path / "out").exists()


def test_cli_hash_choice(tmp_path: Path, make_files: MakeFiles) -> None:
    root = make_files(tmp_path / "data", [f"{SESSION}/alf/spikes.times.npy", "s/2021-01-01/1/a.b"])

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alfcache", "index", str(root), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    proc = cli("--out-dir", str(tmp_path / "out"), "-j", "1", "--hash", "both", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["hashing"]["algorithms"] == ["md5", "xxh3"]
    assert summary["hashing"]["files"] == summary["datasets"]
    assert "MB/s" in proc.stderr
    bad = cli("--hash", "sha256")
    assert bad.returncode == 2
    assert "--hash" in bad.stderr


# --------------------------------------------------------------------------------------------
# planning by bytes
# --------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 1 << 34), max_size=300),
    n_jobs=st.integers(1, 64),
)
def test_plan_covers_every_file_once(sizes: list[int], n_jobs: int) -> None:
    tasks = plan_tasks(sizes, n_jobs)
    flat = np.concatenate(tasks) if tasks else np.array([], dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(len(sizes)))
    costs = [size + FILE_COST for size in sizes]
    share = max(sum(costs) // (n_jobs * TASKS_PER_JOB), MIN_TASK_COST)
    for task in tasks:
        if len(task) > 1:  # only files cheaper than a task's share are packed together
            assert max(costs[i] for i in task) < share
            assert sum(costs[i] for i in task) < 2 * share


def _makespan(tasks: list[np.ndarray], sizes: np.ndarray, n_jobs: int) -> float:
    """Finish time when workers take the tasks in order, each as soon as it is free."""
    free = np.zeros(n_jobs)
    for task in tasks:
        free[np.argmin(free)] += (sizes[task] + FILE_COST).sum()
    return float(free.max())


@pytest.mark.parametrize("n_jobs", [2, 4, 8, 32])
def test_plan_keeps_every_worker_busy(n_jobs: int) -> None:
    """Eight 256 MiB files and 2,000 of 20 KiB: no worker idles while another has work left."""
    sizes = np.array([256 << 20] * 8 + [20 << 10] * 2000)
    tasks = plan_tasks(sizes, n_jobs)
    big = [t for t in tasks if sizes[t].max() == 256 << 20]
    assert all(len(t) == 1 for t in big)  # a huge file is a task of its own
    assert [len(t) for t in tasks[:8]] == [1] * 8  # and goes first
    ideal = max((sizes + FILE_COST).sum() / n_jobs, 256 << 20)
    assert _makespan(tasks, sizes, n_jobs) <= 1.1 * ideal


def test_plan_by_file_count_would_not_balance() -> None:
    """Why bytes: the same number of files per task leaves one worker with all the bytes."""
    sizes = np.array([256 << 20] * 8 + [20 << 10] * 2000)
    by_count = np.array_split(np.arange(len(sizes)), 4)
    assert _makespan(by_count, sizes, 2) > 1.8 * _makespan(plan_tasks(sizes, 2), sizes, 2)


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------


def test_byte_progress_lines_show_rate_and_time_left() -> None:
    stream = io.StringIO()
    bar = ByteProgress(100_000_000, stream=stream, interval=0)
    bar.update_to(25_000_000)
    bar.update_to(50_000_000)
    bar.update_to(200_000_000)  # a file read twice never shows more than everything
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("alfcache: hashed 25 of 100 MB, ")
    assert all("MB/s" in line and "s left" in line for line in lines)
    assert "hashed 100 of 100 MB" in lines[-1]


def test_file_board_counts_bytes_per_task(tmp_path: Path) -> None:
    path = tmp_path / "board"
    path.write_bytes(bytes(8 * 3))
    board = FileBoard(str(path), 1)
    board.add(5)
    board.add(alfcache._digest.schedule._REPORT_EVERY)
    assert np.frombuffer(path.read_bytes(), "<i8").tolist() == [0, 5 + (16 << 20), 0]
    board.add(7)
    board.close()
    assert np.frombuffer(path.read_bytes(), "<i8").tolist() == [0, 12 + (16 << 20), 0]


@pytest.fixture
def large_tree(tmp_path: Path) -> Path:
    """Six files of 1 to 3 MB: large on average, so they are hashed on threads."""
    root = tmp_path / "large"
    rng = np.random.default_rng(1)
    for i in range(6):
        path = root / SESSION / "raw_ephys_data" / f"_spikeglx_ephysData_g0_t{i}.imec0.ap.cbin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(1_000_000 * (1 + i % 3)))
    return root


@pytest.mark.parametrize(
    ("tree", "runner"),
    [("sized_tree", "_run_in_processes"), ("large_tree", "_run_in_threads")],
)
def test_workers_chosen_by_average_file_size(
    request: pytest.FixtureRequest,
    tree: str,
    runner: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: Any,
) -> None:
    """Small files on average go to worker processes, large ones to threads; both show the
    bytes read (for processes, through the board file) with the rate."""
    root = request.getfixturevalue(tree)
    used: list[str] = []
    for name in ("_run_in_processes", "_run_in_threads"):
        real = getattr(alfcache._digest.schedule, name)

        def spy(*args: Any, real: Callable[..., None] = real, name: str = name) -> None:
            used.append(name)
            real(*args)

        monkeypatch.setattr(alfcache._digest.schedule, name, spy)
    monkeypatch.setattr(alfcache._digest.schedule, "_POLL", 0.0)
    every_update = functools.partial(ByteProgress, interval=0)
    monkeypatch.setattr(alfcache._digest.schedule, "ByteProgress", every_update)
    out = tmp_path / "out"
    report = index_quietly(root, out, hash_files=True, n_jobs=2, progress=True)
    assert used == [runner]
    ours = _by_path(out, "hash")
    assert _md5sum(root, sorted(ours)) == ours
    err = capfd.readouterr().err
    assert f"of {megabytes(report.bytes, report.bytes)} MB" in err
    assert "MB/s" in err


@pytest.mark.usefixtures("ctrl_c_raises")
def test_interrupted_threads_stop_at_the_next_block(
    large_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C must not wait for threads to finish reading a 50 GB file."""
    real_md5 = alfcache._digest.read._NEW["md5"]
    blocks: list[int] = []

    class Slow:
        def __init__(self) -> None:
            self.inner = real_md5()

        def update(self, data: memoryview) -> None:
            blocks.append(1)
            time.sleep(0.02)  # reading the tree would take about 2 s
            self.inner.update(data)

        def hexdigest(self) -> str:
            return self.inner.hexdigest()

    monkeypatch.setitem(alfcache._digest.read._NEW, "md5", Slow)
    paths = sorted(p.relative_to(large_tree).as_posix() for p in large_tree.rglob("*.cbin"))
    sizes = [(large_tree / p).stat().st_size for p in paths]
    start = time.perf_counter()
    ctrl_c = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    ctrl_c.start()
    with pytest.raises(KeyboardInterrupt):
        alfcache._digest.schedule.digest_files(str(large_tree), paths, sizes, ("md5",), n_jobs=2)
    assert time.perf_counter() - start < 0.5
    assert len(blocks) < sum(sizes) // BLOCK_SIZE // 4


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_while_a_reader_finishes_a_task_leaves_no_future_locked() -> None:
    # A KeyboardInterrupt raised while the main thread held a future's lock (taken in
    # concurrent.futures.wait, or add_done_callback, when a reading thread let go of it) left
    # it locked for good: the thread finishing that task, and the pools' shutdown after the
    # Ctrl-C, waited forever (a CI hang).
    futures: list[Future[ReadResult]] = [Future() for _ in range(4)]
    held = threading.Event()

    def reader_inside_set_result() -> None:
        with max(futures, key=id)._condition:  # type: ignore[attr-defined]
            held.set()
            time.sleep(0.5)

    def ctrl_c() -> None:
        # Taken by this thread, as a terminal's Ctrl-C may be by any: the main thread is not
        # woken from the lock it waits for, and raises KeyboardInterrupt once it holds it.
        time.sleep(0.1)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    threading.Thread(target=reader_inside_set_result).start()
    held.wait()
    threading.Thread(target=ctrl_c).start()
    with pytest.raises(KeyboardInterrupt):
        alfcache._digest.schedule._collect(
            lambda slot, rows: futures[slot],
            [np.array([i]) for i in range(4)],
            window=4,
            bytes_read=lambda: 0,
            bar=ByteProgress(4, enabled=False),
            out=Digests.empty(4, ("md5",)),
        )
    time.sleep(0.6)  # the reader lets go
    finishing = [threading.Thread(target=f.set_result, args=(None,), daemon=True) for f in futures]
    for thread in finishing:
        thread.start()
        thread.join(2.0)
        assert not thread.is_alive(), "a future stayed locked after the Ctrl-C"


# --------------------------------------------------------------------------------------------
# files that move under us, files that cannot be read
# --------------------------------------------------------------------------------------------


def test_file_that_moves_once_is_read_again(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_files(tmp_path / "data", [f"{SESSION}/alf/spikes.times.npy"])
    target = root / SESSION / "alf/spikes.times.npy"
    reads = grow_on_read(monkeypatch, target, times=1)
    out = tmp_path / "out"
    report = index_quietly(root, out, hash_files=True, n_jobs=1)
    assert len(reads) == 2
    assert not report.skipped
    row = _datasets(out).to_pylist()[0]
    final = target.read_bytes()
    assert row["hash"] == hashlib.md5(final).hexdigest()
    assert row["file_size"] == len(final)  # the size of what was digested
    assert row["mtime_ns"] == target.stat().st_mtime_ns


def test_file_rewritten_in_place_at_the_same_size_is_read_again(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # same size, new bytes, a later mtime: the first digest mixes old and new content
    root = make_files(tmp_path / "data", [f"{SESSION}/alf/spikes.times.npy"])
    target = root / SESSION / "alf/spikes.times.npy"
    size = target.stat().st_size
    reads = change_on_read(monkeypatch, target, times=1, change=rewrite_in_place)
    out = tmp_path / "out"
    report = index_quietly(root, out, hash_files=True, n_jobs=1)
    assert len(reads) == 2 and not report.skipped and not report.notices
    row = _datasets(out).to_pylist()[0]
    assert target.stat().st_size == size
    assert row["hash"] == hashlib.md5(target.read_bytes()).hexdigest()
    assert row["mtime_ns"] == target.stat().st_mtime_ns


def test_file_that_keeps_moving_is_reported_without_hash(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_files(tmp_path / "data", [f"{SESSION}/alf/spikes.times.npy"])
    target = root / SESSION / "alf/spikes.times.npy"
    reads = grow_on_read(monkeypatch, target, times=2)
    out = tmp_path / "out"
    report = index_quietly(root, out, hash_files=True, n_jobs=1)
    assert len(reads) == 2  # read again once, not more
    assert not report.skipped  # indexed without a digest: a notice
    assert [(s.path, s.reason) for s in report.notices] == [
        (f"{SESSION}/alf/spikes.times.npy", "changing")
    ]
    rows = _datasets(out).to_pylist()
    assert len(rows) == 1 and rows[0]["hash"] is None  # still indexed, without a hash

    # Once it holds still, an update hashes it.
    monkeypatch.undo()
    report = index_quietly(root, out, update=True, n_jobs=1)
    assert not report.skipped
    assert _datasets(out)["hash"].to_pylist() == [hashlib.md5(target.read_bytes()).hexdigest()]


def test_unreadable_file_is_reported_and_the_run_goes_on(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [f"{SESSION}/alf/spikes.times.npy", f"{SESSION}/alf/spikes.amps.npy"]
    root = make_files(tmp_path / "data", files)
    locked = str(root / files[0])
    real_open = os.open

    def refusing_open(path: Any, *args: Any, dir_fd: int | None = None, **kwargs: Any) -> int:
        if _opened(path, dir_fd) == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(alfcache._digest.read.os, "open", refusing_open)
    out = tmp_path / "out"
    report = index_quietly(root, out, hash_files=True, n_jobs=1)
    assert not report.skipped  # indexed without a digest: a notice
    assert [(s.path, s.reason) for s in report.notices] == [(files[0], "unreadable")]
    assert "Permission denied" in report.notices[0].message
    table = _datasets(out)
    hashes = dict(zip(table["rel_path"].to_pylist(), table["hash"].to_pylist(), strict=True))
    assert hashes == {
        "alf/spikes.times.npy": None,
        "alf/spikes.amps.npy": hashlib.md5(b"0123456789").hexdigest(),
    }


def test_file_gone_before_it_is_read_is_dropped(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [f"{SESSION}/alf/spikes.times.npy", f"{SESSION}/alf/spikes.amps.npy"]
    root = make_files(tmp_path / "data", files)
    real_digest_files = alfcache._digest.schedule.digest_files

    def delete_then_digest(*args: Any, **kwargs: Any) -> Any:
        (root / files[0]).unlink()  # after the walk, before the read
        return real_digest_files(*args, **kwargs)

    monkeypatch.setattr("alfcache._digest.checkpoint.digest_files", delete_then_digest)
    out = tmp_path / "out"
    report = index_quietly(root, out, hash_files=True, n_jobs=1)
    assert [(s.path, s.reason) for s in report.skipped] == [(files[0], "vanished")]
    assert _datasets(out)["rel_path"].to_pylist() == ["alf/spikes.amps.npy"]
    assert report.datasets == 1
    assert report.hashing is not None and report.hashing.files == 1  # hashed, not planned


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the indexer as an unprivileged user",
)
def test_unreadable_file_as_another_user(world_readable_dir: Path, make_files: MakeFiles) -> None:
    """Real permissions: root reads everything, so the indexer runs as ``nobody``."""
    files = [f"{SESSION}/alf/spikes.times.npy", f"{SESSION}/alf/spikes.amps.npy"]
    root = make_files(world_readable_dir / "data", files)
    for folder in [root, *root.rglob("*")]:
        folder.chmod(0o755 if folder.is_dir() else 0o644)
    (root / files[0]).chmod(0)
    out = world_readable_dir / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    proc = subprocess.run(
        [
            *("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"),
            *(sys.executable, "-m", "alfcache", "index", str(root), "--out-dir", str(out)),
            *("--hash", "md5", "--jobs", "1", "--json"),
        ],
        env=python_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["skipped"] == []  # indexed without a digest: a notice
    assert [(s["path"], s["reason"]) for s in summary["notices"]] == [(files[0], "unreadable")]
    assert "Permission denied" in summary["notices"][0]["message"]
    assert f"notice {files[0]}: unreadable" in proc.stderr
    assert summary["datasets"] == 2
