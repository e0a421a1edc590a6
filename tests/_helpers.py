"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import alfcache
import alfcache._walk.scan
from alfcache._cli.main import main as cli_main


def index_quietly(
    root_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, **kwargs: Any
) -> alfcache.IndexReport:
    """``alfcache.index`` with its RuntimeWarnings silenced (tests that check warnings do so
    directly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return alfcache.index(root_dir, out_dir, **kwargs)


SRC = Path(__file__).resolve().parents[1] / "src"
"""This checkout's package, first on a subprocess's ``PYTHONPATH`` so that it runs this code."""


def python_env(*first: str | os.PathLike[str], **variables: str) -> dict[str, str]:
    """This process's environment with ``PYTHONPATH`` set to ``first``'s folders then
    :data:`SRC`, and ``variables`` added: for a command line run as a subprocess.

    ``PYTHONFAULTHANDLER`` is on: a SIGABRT makes the process print every thread's stack, which
    :func:`_procs.finish_or_dump` sends to one that hangs.
    """
    path = os.pathsep.join(map(str, (*first, SRC)))
    return {**os.environ, "PYTHONPATH": path, "PYTHONFAULTHANDLER": "1", **variables}


def with_sitecustomize(tmp_path: Path, code: str) -> Path:
    """``tmp_path/hooks`` holding ``code`` as its ``sitecustomize.py``: every Python process
    started with that folder on ``PYTHONPATH`` (:func:`python_env`) runs it first."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(code)
    return hooks


def run_alfcache(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m alfcache ARGS`` as a subprocess, its output captured as text (a failed run
    raises nothing: the test reads its exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "alfcache", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def exit_code(argv: Sequence[str]) -> int | str | None:
    """The command line's exit code, run in this process, also when argparse exits."""
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return exc.code


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file in ``out`` with its bytes (so a temporary file left behind shows too)."""
    return {p.name: p.read_bytes() for p in out.iterdir()}


def spikes_tree(root: Path, subjects: int, per_subject: int = 1) -> Path:
    """``subjects`` subjects below ``root``, each with ``per_subject`` sessions of one small
    file (of its own content); returns ``root``."""
    for s in range(subjects):
        for d in range(per_subject):
            path = root / f"s{s:02d}/2021-01-{d + 1:02d}/001/alf/spikes.times.npy"
            path.parent.mkdir(parents=True)
            path.write_bytes(f"{s}-{d}".encode())
    return root


def assert_same_rows(out1: Path, out2: Path) -> None:
    """Both tables in ``out1`` hold rows, and equal those in ``out2`` (metadata aside)."""
    for name in ("sessions.pqt", "datasets.pqt"):
        one, two = pq.read_table(out1 / name), pq.read_table(out2 / name)
        assert one.num_rows > 0, name
        assert one.equals(two), name


def write_file(root: Path, rel: str, content: bytes = b"0123456789") -> Path:
    """Create the POSIX path ``rel`` below ``root`` (parents too) holding ``content``."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def read_tables(out: Path) -> tuple[pa.Table, pa.Table]:
    """``sessions.pqt`` and ``datasets.pqt`` of the folder ``out``, as written."""
    return pq.read_table(out / "sessions.pqt"), pq.read_table(out / "datasets.pqt")


def _no_uuids(*args: object) -> NoReturn:
    raise AssertionError("the walk computed UUID ids, which this run does not use")


def forbid_uuids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the walk fail if it hashes an id: in this process and in the threads of a Dask
    ``LocalCluster(processes=False)`` (not in workers started from a fork server)."""
    monkeypatch.setattr(alfcache._walk.scan, "uuid3_strings", _no_uuids)
    monkeypatch.setattr(alfcache._walk.scan, "uuid3_joined", _no_uuids)
