"""Every reason code of docs/rules.md, each through the command line: ``--json`` and stderr.

``test_awkward.py::test_every_reason_in_cli_summary_and_json`` shows ten codes in one tree;
the others need a fault (a listing that fails, a file deleted or growing at the wrong moment),
another user or an option, so each has a tree of its own here. Each run must put its one
record, with a message, in the right list of ``--json``, print its ``alfcache: skipped ...``
or ``alfcache: notice ...`` line on stderr and count it in the last line.
``test_every_reason_code_is_exercised`` keeps the cases and the table of docs/rules.md equal,
so a code added to the table without a test fails.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _helpers import write_file
from _inject import grow_on_read
from test_awkward import ONE_TREE_NOTICES, ONE_TREE_SKIPPED
from test_faults import ENV, User, public_tmp, unprivileged  # noqa: F401  (fixtures)

import alfcache._digest.read
import alfcache._walk.scan
from alfcache._cli.main import main as cli_main
from alfcache._records import NOTICE, NOTICE_REASONS, Reason

RULES = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
SESSION = "s1/2021-01-01/001"
SPIKES = "alf/spikes.times.npy"


@dataclass
class Case:
    """One reason code: where its record is, and how to make the run that reports it."""

    reason: str
    listed: str
    """``skipped`` or ``notices``."""
    path: str
    """The record's path, relative to the root (a regular expression)."""
    make: Callable[[Path, pytest.MonkeyPatch], None]
    """Builds the tree below the root (and the fault, through ``monkeypatch``)."""
    args: list[str] = field(default_factory=list)
    """Options besides ``--jobs 1 --json``."""
    as_other_user: bool = False
    """Run as a user without root's powers (root may list every folder)."""


def _permission_denied(root: Path, _: pytest.MonkeyPatch) -> None:
    write_file(root, f"{SESSION}/{SPIKES}")
    write_file(root, f"{SESSION}/raw/{SPIKES}")
    (root / SESSION / "raw").chmod(0o000)


def _name_too_long(root: Path, _: pytest.MonkeyPatch) -> None:
    # Built one folder at a time through descriptors: the whole path is never given to the
    # system, which refuses it (ENAMETOOLONG) when the walk lists the last folder.
    session = write_file(root, f"{SESSION}/{SPIKES}").parents[1]
    fd = os.open(session, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(4200 // 201 + 1):
            os.mkdir("d" * 200, dir_fd=fd)
            child = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _unreadable_while_hashing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_file(root, f"{SESSION}/{SPIKES}")
    target = write_file(root, f"{SESSION}/alf/spikes.amps.npy")
    real_open = os.open

    def failing_open(path: Any, flags: int, *args: Any, dir_fd: int | None = None) -> int:
        # The reader opens a file by its name in its folder's descriptor.
        if path == target.name and dir_fd is not None:
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return real_open(path, flags, *args, dir_fd=dir_fd)

    monkeypatch.setattr(alfcache._digest.read.os, "open", failing_open)


def _vanished(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_file(root, f"{SESSION}/{SPIKES}")
    doomed = write_file(root, f"{SESSION}/alf/spikes.amps.npy")
    real_scandir = os.scandir

    def scandir_then_delete(path: Any = ".") -> Any:
        # The walk lists a folder through its descriptor, then stats each entry: the file
        # goes in between.
        if not isinstance(path, int):  # not the walk's: it lists folder descriptors
            return real_scandir(path)
        entries = list(real_scandir(path))
        if any(e.name == doomed.name for e in entries):
            doomed.unlink(missing_ok=True)
        return entries

    monkeypatch.setattr(alfcache._walk.scan.os, "scandir", scandir_then_delete)


def _changing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Changed during the read and again during the second one: left without a digest.
    grow_on_read(monkeypatch, write_file(root, f"{SESSION}/{SPIKES}"), times=2)


def _symlink_revisit(root: Path, _: pytest.MonkeyPatch) -> None:
    write_file(root, f"{SESSION}/{SPIKES}")
    (root / SESSION / "back").symlink_to(root)


def _fifo(root: Path, _: pytest.MonkeyPatch) -> None:
    write_file(root, f"{SESSION}/{SPIKES}")
    os.mkfifo(root / SESSION / "alf/spikes.amps.npy")


def _link_outside_root(root: Path, _: pytest.MonkeyPatch) -> None:
    write_file(root, f"{SESSION}/{SPIKES}")
    outside = write_file(root.parent, "elsewhere/spikes.amps.npy")
    (root / SESSION / "alf/spikes.amps.npy").symlink_to(outside)


def _near_miss(root: Path, _: pytest.MonkeyPatch) -> None:
    write_file(root, f"{SESSION}/{SPIKES}")
    write_file(root, f"s1/2021-1-5/001/{SPIKES}")


CASES = [
    Case(
        "permission_denied",
        "skipped",
        re.escape(f"{SESSION}/raw"),
        _permission_denied,
        as_other_user=True,
    ),
    # the folder the system refuses: how deep depends on the length of the root's path
    Case("unreadable", "skipped", f"{SESSION}(/d{{200}})+", _name_too_long),
    Case(
        "unreadable",
        "notices",
        re.escape(f"{SESSION}/alf/spikes.amps.npy"),
        _unreadable_while_hashing,
        ["--hash-files"],
    ),
    Case("vanished", "skipped", re.escape(f"{SESSION}/alf/spikes.amps.npy"), _vanished),
    Case("changing", "notices", re.escape(f"{SESSION}/{SPIKES}"), _changing, ["--hash-files"]),
    Case(
        "symlink_revisit",
        "skipped",
        re.escape(f"{SESSION}/back"),
        _symlink_revisit,
        ["--follow-symlinks"],
    ),
    Case("not_regular_file", "skipped", re.escape(f"{SESSION}/alf/spikes.amps.npy"), _fifo),
    Case("near_miss", "skipped", re.escape("s1/2021-1-5"), _near_miss),
    Case(
        "symlink_outside_root",
        "notices",
        re.escape(f"{SESSION}/alf/spikes.amps.npy"),
        _link_outside_root,
        ["--hash-files"],
    ),
]


def _run(args: list[str], user: User | None, capsys: pytest.CaptureFixture[str]) -> Any:
    """(exit code, stdout, stderr) of ``alfcache index ARGS``: in this process, or as ``user``."""
    if user is None:
        code = cli_main(["index", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    done = subprocess.run(
        [*user.python, "-m", "alfcache", "index", *args],
        env=user.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("case", CASES, ids=[f"{c.reason}-{c.listed}" for c in CASES])
def test_reason_in_cli_summary_and_json(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    user: User | None = None
    base = tmp_path
    if case.as_other_user:
        user = request.getfixturevalue("unprivileged")
        base = request.getfixturevalue("public_tmp")
    root = base / "data"
    root.mkdir()
    case.make(root, monkeypatch)
    out = base / "out"
    out.mkdir()
    if user is not None:
        os.chown(out, user.uid, -1)
    code, stdout, stderr = _run(
        [str(root), "--out-dir", str(out), "--jobs", "1", "--json", *case.args], user, capsys
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    other = "notices" if case.listed == "skipped" else "skipped"
    [record] = summary[case.listed]
    assert re.fullmatch(case.path, record["path"]), record
    assert record["reason"] == case.reason
    assert record["message"]
    assert summary[other] == []
    kind = "skipped" if case.listed == "skipped" else "notice"
    line = f"alfcache: {kind} {record['path']}: {case.reason}: {record['message']}"
    assert line in stderr.splitlines(), stderr
    counts = (
        "1 skipped (not indexed), 0 notices (indexed)"
        if kind == "skipped"
        else "0 skipped (not indexed), 1 notice (indexed)"
    )
    assert counts in stderr.splitlines()[-1], stderr


def _documented_codes() -> set[str]:
    """The codes of the "Reason codes" table of docs/rules.md: each row's first cell."""
    text = RULES.read_text()
    table = text.split("## Reason codes", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `(\w+)`", table, flags=re.MULTILINE))


def test_every_reason_code_is_exercised() -> None:
    exercised = {c.reason for c in CASES} | {
        reason for _, reason in [*ONE_TREE_SKIPPED, *ONE_TREE_NOTICES]
    }
    assert exercised == _documented_codes()


def test_the_rules_table_lists_exactly_the_registry() -> None:
    # alfcache._records.Reason is the one place reason strings live: a code added there and
    # not documented, or documented and not emitted, fails here.
    assert {r.value for r in Reason} == _documented_codes()
    assert {r for r in Reason if r.kind == NOTICE} == NOTICE_REASONS
    # Every notice of the walk (the indexed entries of docs/rules.md's "two lists") is a notice.
    assert {"nested_session", "empty_file", "not_loadable"} <= NOTICE_REASONS
