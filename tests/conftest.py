"""Shared fixtures: every test builds its own ALF tree under ``tmp_path``."""

from __future__ import annotations

import shutil
import signal
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from _helpers import write_file

from alfcache.synth import TreeSummary, make_tree

MakeFiles = Callable[[Path, Iterable[str]], Path]


def _make_files(root: Path, rel_paths: Iterable[str], content: bytes = b"0123456789") -> Path:
    """Create each POSIX path below ``root`` (parents too) holding ``content``; returns root."""
    for rel in rel_paths:
        write_file(root, rel, content)
    return root


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in this process during the test, whatever an earlier
    test left (a command line run in-process ignores a Ctrl-C once its run is done)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def make_files() -> MakeFiles:
    """``make_files(root, ["lab/Subjects/s/2021-01-01/001/alf/spikes.times.npy", ...])``."""
    return _make_files


@pytest.fixture
def small_tree(tmp_path: Path) -> TreeSummary:
    """24 sessions with and without labs, collections, revisions, an empty session, junk."""
    return make_tree(tmp_path / "data", 24, empty_every=10, no_lab_every=2)


@pytest.fixture(scope="session")
def parity_tree(tmp_path_factory: pytest.TempPathFactory) -> TreeSummary:
    """A 240-session tree shared by the (read-only) reference-parity tests."""
    return make_tree(tmp_path_factory.mktemp("parity") / "data", 240, empty_every=0)


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A folder another user can walk (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="alfcache-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def one_api_tables(tmp_path: Path) -> tuple[Path, Path]:
    """A 3-session tree (``data``) and the tables one-api's own ``make_parquet_db`` writes of it
    (``tables``): random ids, no digests, no provenance."""
    import one.alf.cache as reference  # imported here: most tests do not load one-api

    root, tables = tmp_path / "data", tmp_path / "tables"
    make_tree(root, 3, empty_every=0, max_file_size=64)
    tables.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference.make_parquet_db(root, tables)
    return root, tables
