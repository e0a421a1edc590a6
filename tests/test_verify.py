"""``alfcache verify``: each kind of difference on a changed tree, none on an untouched one.

The verb runs as a user runs it (``alfcache._cli.main.main`` with the arguments of a command line);
exit codes, stderr and ``--json`` are checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import test_faults
import xxhash
from _helpers import exit_code, forbid_uuids, index_quietly
from test_faults import ENV, User

import alfcache
import alfcache._maintain.verify
from alfcache._cli.main import main as cli_main
from alfcache.synth import DATASET_FILES, make_tree

SESSION = "cortexlab/Subjects/SW0000/2024-01-01/001"  # the first session make_tree writes
OTHER = "cortexlab/Subjects/SW0000/2024-01-01/002"
FILE = f"{SESSION}/alf/licks.times.npy"

# The permission fixtures of test_faults: a user without root's powers, a folder it can reach.
unprivileged = test_faults.unprivileged
public_tmp = test_faults.public_tmp


def _index(root: Path, out: Path | None = None, **kwargs: Any) -> None:
    index_quietly(root, out, n_jobs=1, **kwargs)


def _verify(
    capsys: pytest.CaptureFixture[str], root: Path, *args: str
) -> tuple[int, dict[str, Any], str]:
    """Run ``alfcache verify ROOT ARGS --json``: exit code, the JSON, stderr."""
    code = cli_main(["verify", str(root), "--jobs", "1", "--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def _found(report: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    return [(d["path"], d["kind"], d["expected"], d["found"]) for d in report["differences"]]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Four sessions with a lab (no empty session), hashed with MD5 and XXH3."""
    root = tmp_path / "data"
    make_tree(root, 4, empty_every=0, no_lab_every=0, max_file_size=512)
    _index(root, hash_algorithm="both")
    return root


@pytest.mark.parametrize("extra", [[], ["--hashes"], ["--jobs", "2", "--hashes"]])
def test_untouched_tree_matches(
    tree: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    code, report, err = _verify(capsys, tree, *extra)
    assert (code, report["ok"], report["differences"]) == (0, True, [])
    assert report["datasets"] == 4 * len(DATASET_FILES)
    assert report["digests_checked"] == (report["datasets"] if extra else 0)
    assert report["algorithms"] == (["md5", "xxh3"] if extra else [])
    assert err.splitlines()[-1].startswith(f"alfcache: verify: the tables in {tree}")
    assert " match (" in err


def _size(root: Path, rel: str) -> int:
    return (root / rel).stat().st_size


def _flip_bytes(path: Path) -> tuple[str, str]:
    """Rewrite ``path`` with other bytes of the same size; returns its new MD5 and XXH3."""
    data = bytes(b ^ 0xFF for b in path.read_bytes())
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest(), xxhash.xxh3_128_hexdigest(data)


def test_missing_file(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = _size(tree, FILE)
    (tree / FILE).unlink()
    code, report, err = _verify(capsys, tree)
    assert code == 1
    assert _found(report) == [(FILE, "missing_file", size, None)]
    assert f"alfcache: differs {FILE}: missing_file ({size} bytes in the tables, no file" in err
    assert "differ: 1 missing_file" in err.splitlines()[-1]


def test_the_walk_hashes_no_ids(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows are compared by identity, never by id: the walk's ids only tie its own datasets to
    # its sessions, which path ids do as well, with no MD5.
    forbid_uuids(monkeypatch)
    size = _size(tree, FILE)
    (tree / FILE).unlink()
    code, report, _ = _verify(capsys, tree, "--hashes")
    assert code == 1
    assert _found(report) == [(FILE, "missing_file", size, None)]
    assert report["digests_checked"] == report["datasets"] - 1


def test_file_gone_before_its_digest_is_read_is_missing(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the walk of verify sees the file; it is deleted before the reading starts
    size = _size(tree, FILE)
    real = alfcache._maintain.verify.digest_files

    def delete_then_read(*args: Any, **kwargs: Any) -> Any:
        (tree / FILE).unlink()
        return real(*args, **kwargs)

    monkeypatch.setattr(alfcache._maintain.verify, "digest_files", delete_then_read)
    code, report, _ = _verify(capsys, tree, "--hashes")
    assert code == 1
    assert _found(report) == [(FILE, "missing_file", size, None)]


def test_missing_session_is_said_in_words(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A session has no size or digest to show: its line once read "expected None, found None".
    shutil.rmtree(tree / OTHER)
    code, _, err = _verify(capsys, tree)
    assert code == 1
    assert f"alfcache: differs {OTHER}: missing_session (in the tables, no folder on disk)" in err
    assert "None" not in err, err


def test_size_mismatch(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = _size(tree, FILE)
    with (tree / FILE).open("ab") as f:
        f.write(b"more")
    code, report, _ = _verify(capsys, tree, "--hashes")
    assert code == 1
    # A file of another size is not read again: its digests differ of course.
    assert _found(report) == [(FILE, "size_mismatch", size, size + 4)]
    assert report["digests_checked"] == report["datasets"] - 1


def test_digest_mismatch_only_with_hashes(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    row = pq.read_table(tree / "datasets.pqt").filter(
        pa.compute.equal(pq.read_table(tree / "datasets.pqt")["rel_path"], "alf/licks.times.npy")
    )
    old_md5, old_xxh3 = row["hash"][0].as_py(), row["xxh3_128"][0].as_py()
    md5, xxh3 = _flip_bytes(tree / FILE)
    code, report, _ = _verify(capsys, tree)
    assert (code, report["differences"]) == (0, [])  # same size: only the digests tell
    code, report, _ = _verify(capsys, tree, "--hashes")
    assert code == 1
    assert _found(report) == [
        (FILE, "md5_mismatch", old_md5, md5),
        (FILE, "xxh3_mismatch", old_xxh3, xxh3),
    ]


def test_xxh3_alone_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    make_tree(root, 2, empty_every=0, no_lab_every=0, max_file_size=512)
    _index(root, hash_algorithm="xxh3")
    _, xxh3 = _flip_bytes(root / FILE)
    code, report, _ = _verify(capsys, root, "--hashes")
    assert code == 1 and report["algorithms"] == ["xxh3"]
    assert [(d["kind"], d["found"]) for d in report["differences"]] == [("xxh3_mismatch", xxh3)]


def test_extra_file_and_session(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = f"{SESSION}/alf/new.thing.npy"
    (tree / new).write_bytes(b"12345")
    (tree / SESSION / "alf/notes.txt").write_text("not ALF: never a difference")
    new_session = "cortexlab/Subjects/SW0000/2024-03-01/001"
    (tree / new_session).mkdir(parents=True)
    code, report, _ = _verify(capsys, tree)
    assert code == 1
    assert _found(report) == [
        (new, "extra_file", None, 5),
        (new_session, "extra_session", None, None),
    ]


def test_missing_session(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [f"{OTHER}/{c}/{n}" if c else f"{OTHER}/{n}" for c, n in DATASET_FILES]
    sizes = {path: _size(tree, path) for path in paths}
    shutil.rmtree(tree / OTHER)
    code, report, _ = _verify(capsys, tree)
    assert code == 1
    assert _found(report) == sorted(
        [(OTHER, "missing_session", None, None)]
        + [(path, "missing_file", size, None) for path, size in sizes.items()]
    )


def test_rows_kept_as_missing(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A row with exists=False matches a missing file and differs from a present one."""
    data = (tree / FILE).read_bytes()
    (tree / FILE).unlink()
    _index(tree, update=True, keep_missing=True)
    code, report, _ = _verify(capsys, tree)
    assert (code, report["differences"]) == (0, [])
    (tree / FILE).write_bytes(data)
    code, report, _ = _verify(capsys, tree)
    assert code == 1
    assert _found(report) == [(FILE, "exists_mismatch", False, len(data))]


def test_orphan_dataset(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = pq.read_table(tree / "datasets.pqt")
    eids = table["eid"].to_pylist()
    eids[0] = "00000000-0000-4000-8000-000000000000"
    index = table.schema.get_field_index("eid")
    pq.write_table(table.set_column(index, "eid", pa.array(eids, pa.string())), tree / "d.tmp")
    os.replace(tree / "d.tmp", tree / "datasets.pqt")
    code, report, _ = _verify(capsys, tree)
    assert code == 1
    kinds = sorted(d["kind"] for d in report["differences"])
    rel_path = table["rel_path"][0].as_py()
    assert kinds == ["extra_file", "orphan_dataset"]  # its file is now one the tables lack
    orphan = next(d for d in report["differences"] if d["kind"] == "orphan_dataset")
    assert orphan["path"] == f"{eids[0]}/{rel_path}" and orphan["expected"] == eids[0]


def test_tables_of_one_api_match_by_identity(
    one_api_tables: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    """one-api's ids are random: rows are matched by lab, subject, date, number, rel_path."""
    root, tables = one_api_tables
    code, report, err = _verify(capsys, root, "--tables", str(tables), "--hashes")
    assert (code, report["differences"]) == (0, [])
    assert report["algorithms"] == []  # one-api writes '' for "not hashed"
    assert "the tables hold no digests; --hashes compared none" in err
    (root / FILE).unlink()
    code, report, _ = _verify(capsys, root, "--tables", str(tables))
    assert code == 1 and [d["kind"] for d in report["differences"]] == ["missing_file"]


def test_lab_of_the_index_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    make_tree(root, 4, empty_every=0, no_lab_every=1, max_file_size=64)  # no lab folders
    _index(root, lab="mylab")
    code, report, _ = _verify(capsys, root)
    assert (code, report["differences"]) == (0, [])
    code, report, _ = _verify(capsys, root, "--lab", "otherlab")
    assert code == 1
    assert {d["kind"] for d in report["differences"]} == {
        "missing_session",
        "missing_file",
        "extra_session",
        "extra_file",
    }


def test_first_differences_on_stderr(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(tree / OTHER)
    code, report, err = _verify(capsys, tree)
    lines = err.splitlines()
    assert code == 1 and len(report["differences"]) == len(DATASET_FILES) + 1
    assert sum(line.startswith("alfcache: differs ") for line in lines) == 10
    more = len(DATASET_FILES) + 1 - 10
    assert f"alfcache: ... {more} more differences (all are listed with --json)" in lines
    assert set(report["differences"][0]) == {"path", "kind", "expected", "found"}


BadInput = Callable[[Path], list[str]]


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t: [str(t / "nowhere")], "does not exist"),
        (lambda t: [str(t / "data"), "--tables", str(t / "empty")], "no table"),
        (lambda t: [str(t / "data"), "--jobs", "0"], "workers"),
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_args: BadInput, message: str
) -> None:
    make_tree(tmp_path / "data", 1, empty_every=0)
    (tmp_path / "empty").mkdir()
    assert exit_code(["verify", *make_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("alfcache: error: ") and message in err


def test_command_line_exit_codes(tree: Path) -> None:
    """The installed entry point, as a user runs it."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alfcache", "verify", str(tree), "--jobs", "1", *args],
            capture_output=True,
            text=True,
            check=False,
        )

    assert run("--quiet").returncode == 0
    (tree / FILE).unlink()
    done = run("--quiet", "--json")
    assert done.returncode == 1 and done.stderr == ""
    assert [d["path"] for d in json.loads(done.stdout)["differences"]] == [FILE]


def test_unreadable_file_with_hashes(unprivileged: User, public_tmp: Path) -> None:
    """As a user who may not read one file: reported as unreadable, the run goes on."""
    root = public_tmp / "data"
    make_tree(root, 2, empty_every=0, no_lab_every=0, max_file_size=256)
    _index(root, hash_files=True)
    for table in ("sessions.pqt", "datasets.pqt"):
        (root / table).chmod(0o644)
    (root / FILE).chmod(0o000)
    verify = ["verify", str(root), "--hashes", "--jobs", "1", "--json", "--quiet"]
    done = subprocess.run(
        [*unprivileged.python, "-m", "alfcache", *verify],
        env={**ENV, **unprivileged.env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(d["path"], d["kind"]) for d in report["differences"]] == [(FILE, "unreadable")]
    assert "Permission denied" in report["differences"][0]["found"]
    assert report["digests_checked"] == report["datasets"]


def test_links_followed_as_indexed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tables indexed with --follow-symlinks verify clean: the walk follows links as recorded."""
    root, archive = tmp_path / "data", tmp_path / "archive"
    make_tree(root, 2, empty_every=0, no_lab_every=0, max_file_size=64)
    (archive / "alf").mkdir(parents=True)
    (archive / "alf/linked.thing.npy").write_bytes(b"abc")
    (root / "cortexlab/Subjects/LINKED/2024-01-01").mkdir(parents=True)
    (root / "cortexlab/Subjects/LINKED/2024-01-01/001").symlink_to(archive)
    _index(root, follow_symlinks=True)
    code, report, _ = _verify(capsys, root)
    assert (code, report["differences"]) == (0, [])
    _index(root)
    code, report, _ = _verify(capsys, root, "--follow-symlinks")
    assert code == 1
    assert {d["kind"] for d in report["differences"]} == {"extra_session", "extra_file"}
