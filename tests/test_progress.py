"""Progress while the walk and the reading run, on storage slow enough to watch it.

The command line runs as a subprocess in batch mode (stderr a pipe); a ``sitecustomize`` on its
``PYTHONPATH`` shortens the interval between progress lines to every look, logs each line, and
holds one listing of the walk until a line counts a file found: with counts that move only
when the walk ends, the hold gives up (after ``HOLD_SECONDS``) and says so.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import python_env, with_sitecustomize

import alfcache._digest.read
import alfcache._digest.schedule
from alfcache._digest.schedule import FileBoard

DEADLINE = 120.0
HOLD_SECONDS = 10.0  # only waited out when the fix is missing

HOOKS = """
import os, pathlib, re, time
if os.environ.get("PROGRESS_LOG"):
    import alfcache._progress
    alfcache._progress.INTERVAL = 0.0
    _log = pathlib.Path(os.environ["PROGRESS_LOG"])
    _print = alfcache._progress._Display._print
    def _logged(self, text):
        _print(self, text)
        with open(_log, "a") as f:
            f.write(text + "\\n")
    alfcache._progress._Display._print = _logged

    def _counted(pattern):
        text = _log.read_text() if _log.exists() else ""
        return any(float(n.replace(",", "")) for n in re.findall(pattern, text))

    def hold_until(pattern, verdict):
        deadline = time.monotonic() + float(os.environ["HOLD_SECONDS"])
        while not _counted(pattern) and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(verdict, "w") as f:
            f.write("seen" if _counted(pattern) else "not seen")

    if os.environ.get("HOLD_LISTING"):
        _scandir = os.scandir
        _listings = [0]
        def _held_scandir(*args, **kwargs):
            if args and isinstance(args[0], int):  # the walk lists folders by descriptor
                _listings[0] += 1
                if _listings[0] == int(os.environ["HOLD_LISTING"]):
                    hold_until(r"sessions, ([\\d,]+) files", os.environ["VERDICT"])
            return _scandir(*args, **kwargs)
        os.scandir = _held_scandir

    if os.environ.get("HOLD_READ"):
        import alfcache._digest.read
        _read = alfcache._digest.read._read
        def _held_read(folder, name, *args):
            if name == os.environ["HOLD_READ"]:
                hold_until(r"hashed ([\\d,.]+) of", os.environ["VERDICT"])
            return _read(folder, name, *args)
        alfcache._digest.read._read = _held_read
"""


def _tree(root: Path, sessions: int, size: int = 100) -> Path:
    for s in range(sessions):
        path = root / f"s{s:02d}/2021-01-01/001/alf/spikes{s:02d}.times.npy"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * size)
    return root


def _index(tmp_path: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    hooks = with_sitecustomize(tmp_path, HOOKS)
    return subprocess.run(
        [sys.executable, "-m", "alfcache", "index", *args],
        env=python_env(
            hooks,
            PROGRESS_LOG=str(tmp_path / "progress.log"),
            HOLD_SECONDS=str(HOLD_SECONDS),
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_batch_progress_counts_files_before_the_walk_ends(tmp_path: Path) -> None:
    # One listing thread in one process: the 12th listing comes after at least two sessions'
    # alf folders were listed, and the walk goes no further until a line counts their files.
    root = _tree(tmp_path / "data", 20)
    verdict = tmp_path / "verdict"
    args = [str(root), "--out-dir", str(tmp_path / "out"), "--jobs", "1", "--io-depth", "1"]
    done = _index(tmp_path, args, HOLD_LISTING="12", VERDICT=str(verdict))
    assert done.returncode == 0, done.stderr
    assert verdict.read_text() == "seen", done.stderr
    counts = [int(n) for n in re.findall(r"alfcache: \d+ sessions, (\d+) files", done.stderr)]
    assert any(0 < n < 20 for n in counts), done.stderr


def test_hashing_progress_shows_the_bytes_of_small_files_as_they_are_read(tmp_path: Path) -> None:
    # 20 files of 10 kB, read in two worker processes (small files), one task each: the read
    # of one waits until a line shows bytes read, which the other files' tasks give. Whole
    # megabytes showed "hashed 0 of 0 MB, 0 MB/s" all along.
    root = _tree(tmp_path / "data", 20, size=10_000)
    verdict = tmp_path / "verdict"
    args = [str(root), "--out-dir", str(tmp_path / "out"), "--jobs", "2", "--hash", "md5"]
    done = _index(tmp_path, args, HOLD_READ="spikes19.times.npy", VERDICT=str(verdict))
    assert done.returncode == 0, done.stderr
    assert verdict.read_text() == "seen", done.stderr
    assert re.search(r"alfcache: hashed 0\.\d*[1-9]\d* of 0\.200 MB, ", done.stderr), done.stderr


def test_file_board_shows_small_files_as_they_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's task of small files never reaches the 16 MB between two writes by bytes: its
    # counter is also written when a look (_POLL) has passed since the last write.
    path = tmp_path / "board"
    path.write_bytes(bytes(8 * 2))
    board = FileBoard(str(path), 1)
    monkeypatch.setattr(alfcache._digest.schedule, "_POLL", 0.0)
    for n in (5, 7):
        board.add(n)
    assert np.frombuffer(path.read_bytes(), "<i8").tolist() == [0, 12]
    board.close()
