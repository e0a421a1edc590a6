"""Awkward entries on a lab server: each is indexed or skipped by a rule, and reported.

The rules and reason codes are listed in docs/rules.md. Every test names the entry, runs the
indexer in this process, and checks three things: the tables (what was indexed), the report
(path and reason code in ``IndexReport.skipped``) and that the rest of the tree was indexed.
Tests run with one process and with two; with two, the worker process starts at once (not
only once the walk has lasted ``LATE_START_SECONDS``) so that it can take part even in these
small walks.

Entries that need another user (a folder the indexer may not read) or a subprocess (FIFOs,
which would block a wrong implementation forever) are in test_faults.py.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import index_quietly, read_tables

import alfcache
import alfcache._walk.local
from alfcache._cli.main import main as cli_main

MakeFiles = Callable[[Path, Iterable[str]], Path]  # the conftest fixture
SPIKES = "alf/spikes.times.npy"


@pytest.fixture(params=[1, 2], ids=["1job", "2jobs"])
def n_jobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """1 or 2 processes; with 2, the worker starts at once."""
    if request.param > 1:
        monkeypatch.setattr(alfcache._walk.local, "LATE_START_SECONDS", 0.0)
    return request.param


def _index(root: Path, out: Path, **kwargs: Any) -> tuple[alfcache.IndexReport, Any, Any]:
    """Index with path ids (readable); returns the report and both tables."""
    kwargs.setdefault("hash_ids", False)
    report = index_quietly(root, out, **kwargs)
    return report, *read_tables(out)


def _reported(report: alfcache.IndexReport) -> list[tuple[str, str]]:
    return [(s.path, s.reason) for s in report.skipped]


def _noticed(report: alfcache.IndexReport) -> list[tuple[str, str]]:
    """Entries indexed but reported (never among the skipped ones)."""
    return [(s.path, s.reason) for s in report.notices]


def _datasets(table: Any) -> list[tuple[str, str]]:
    return sorted(zip(table["eid"].to_pylist(), table["rel_path"].to_pylist(), strict=True))


# --------------------------------------------------------------------------------------------
# session folders that are not quite sessions
# --------------------------------------------------------------------------------------------


def test_impossible_dates(tmp_path: Path, make_files: MakeFiles, n_jobs: int) -> None:
    root = make_files(
        tmp_path / "data",
        [
            f"s1/2021-02-30/001/{SPIKES}",
            f"s1/2021-13-01/001/{SPIKES}",
            f"lab/Subjects/s1/2021-00-10/002/{SPIKES}",
            f"s1/2021-02-28/001/{SPIKES}",
        ],
    )
    report, sessions, datasets = _index(root, tmp_path / "out", n_jobs=n_jobs)
    assert sessions["id"].to_pylist() == ["s1/2021-02-28/001"]
    assert _datasets(datasets) == [("s1/2021-02-28/001", SPIKES)]
    assert _reported(report) == [
        ("lab/Subjects/s1/2021-00-10/002", "invalid_date"),
        ("s1/2021-02-30/001", "invalid_date"),
        ("s1/2021-13-01/001", "invalid_date"),
    ]
    assert "2021-13-01 is not a calendar date" in report.skipped[2].message


def test_four_digit_session_number(tmp_path: Path, make_files: MakeFiles, n_jobs: int) -> None:
    root = make_files(
        tmp_path / "data",
        [
            f"s1/2021-01-01/0001/{SPIKES}",
            f"lab/Subjects/s1/2021-01-01/1000/{SPIKES}",
            f"s1/2021-01-01/001/{SPIKES}",
            # not a number at all: an ordinary folder, whose ALF-named file is a near miss
            f"s1/2021-01-01/abcd/{SPIKES}",
        ],
    )
    report, sessions, datasets = _index(root, tmp_path / "out", n_jobs=n_jobs)
    assert sessions["id"].to_pylist() == ["s1/2021-01-01/001"]
    assert _datasets(datasets) == [("s1/2021-01-01/001", SPIKES)]
    assert _reported(report) == [
        ("lab/Subjects/s1/2021-01-01/1000", "invalid_number"),
        ("s1/2021-01-01/0001", "invalid_number"),
        (f"s1/2021-01-01/abcd/{SPIKES}", "near_miss"),
    ]


def test_root_with_impossible_date_is_reported_as_dot(
    tmp_path: Path, make_files: MakeFiles
) -> None:
    root = make_files(tmp_path / "s1/2021-02-30/001", [SPIKES])
    report, sessions, _ = _index(root, tmp_path / "out", n_jobs=1)
    assert sessions.num_rows == 0
    assert _reported(report) == [(".", "invalid_date")]


@pytest.mark.parametrize(
    ("root_rel", "lab"),
    [
        ("mylab/Subjects/s1", "mylab"),  # a subject folder below a lab
        ("s1", ""),  # a subject folder without lab
        ("mylab/Subjects", "mylab"),
        ("mylab/Subjects/s1/2021-01-01", "mylab"),  # a date folder
        ("mylab/Subjects/s1/2021-01-01/002", "mylab"),  # the session itself
    ],
)
def test_root_inside_the_alf_layout(
    tmp_path: Path, make_files: MakeFiles, n_jobs: int, root_rel: str, lab: str
) -> None:
    # The folders above the root name the lab, subject and date: only the tree below the root
    # is walked, but session folders are recognised by their whole path.
    full = "mylab/Subjects/s1/2021-01-01/002" if lab else "s1/2021-01-01/002"
    make_files(tmp_path, [f"{full}/{SPIKES}", f"{full}/alf/probe00/spikes.amps.npy"])
    root = tmp_path / root_rel
    report, sessions, datasets = _index(root, tmp_path / "out", n_jobs=n_jobs)
    eid = f"{lab}/s1/2021-01-01/002" if lab else "s1/2021-01-01/002"
    assert list(
        zip(
            sessions["id"].to_pylist(),
            sessions["lab"].to_pylist(),
            sessions["subject"].to_pylist(),
            sessions["date"].to_pylist(),
            sessions["number"].to_pylist(),
            strict=True,
        )
    ) == [(eid, lab, "s1", datetime.date(2021, 1, 1), 2)]
    assert _datasets(datasets) == [(eid, "alf/probe00/spikes.amps.npy"), (eid, SPIKES)]
    assert report.skipped == []


@pytest.mark.parametrize("gap", ["sub", "a/b"])
def test_nested_session_is_reported(
    tmp_path: Path, make_files: MakeFiles, n_jobs: int, gap: str
) -> None:
    # With gap 'a/b' the inner session sits at depth 8, where the two-job planner cuts a deep
    # shard: the worker that starts there must still see the outer session.
    outer = "s1/2021-01-01/001"
    inner = f"{outer}/{gap}/s2/2021-02-02/002"
    root = make_files(
        tmp_path / "data",
        [f"{outer}/{SPIKES}", f"{outer}/{gap}/wheel.position.npy", f"{inner}/{SPIKES}"],
    )
    report, sessions, datasets = _index(root, tmp_path / "out", n_jobs=n_jobs)
    assert sorted(sessions["id"].to_pylist()) == ["s1/2021-01-01/001", "s2/2021-02-02/002"]
    assert _datasets(datasets) == sorted(
        [
            ("s1/2021-01-01/001", SPIKES),
            ("s1/2021-01-01/001", f"{gap}/wheel.position.npy"),
            ("s2/2021-02-02/002", SPIKES),
        ]
    )
    # ONE-api looks for the inner session at the top of the tree: it cannot load it
    assert _noticed(report) == [(inner, "nested_session"), (inner, "not_loadable")]
    assert _reported(report) == []
    assert outer in report.notices[0].message


def test_session_clash_in_the_warning(tmp_path: Path, make_files: MakeFiles) -> None:
    root = make_files(
        tmp_path / "data", [f"s1/2021-01-01/1/{SPIKES}", f"s1/2021-01-01/001/{SPIKES}"]
    )
    with pytest.warns(RuntimeWarning, match=r"s1/2021-01-01/1: session_clash"):
        alfcache.make_parquet_db(root, tmp_path / "out", n_jobs=1)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def test_empty_file_indexed_and_reported(
    tmp_path: Path, make_files: MakeFiles, n_jobs: int
) -> None:
    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    empty = root / "s1/2021-01-01/001/alf/spikes.amps.npy"
    empty.write_bytes(b"")
    report, _, datasets = _index(root, tmp_path / "out", n_jobs=n_jobs, hash_files=True)
    rows = sorted(
        zip(
            datasets["rel_path"].to_pylist(),
            datasets["file_size"].to_pylist(),
            datasets["hash"].to_pylist(),
            strict=True,
        )
    )
    assert rows == [
        ("alf/spikes.amps.npy", 0, hashlib.md5(b"").hexdigest()),
        (SPIKES, 10, hashlib.md5(b"0123456789").hexdigest()),
    ]
    assert _noticed(report) == [("s1/2021-01-01/001/alf/spikes.amps.npy", "empty_file")]
    assert _reported(report) == []


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses non-UTF-8 names")
def test_undecodable_names(tmp_path: Path, make_files: MakeFiles, n_jobs: int) -> None:
    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    session = os.fsencode(root / "s1/2021-01-01/001")
    # a folder at depth 4 (the two-job planner opens it and must not make it a shard) and a
    # file, both named like ALF apart from one byte that is not UTF-8
    os.makedirs(session + b"/al\xff/deeper")
    for name in (b"/al\xff/deeper/spikes.amps.npy", b"/alf/spikes.clu\xe9.npy"):
        with open(session + name, "wb") as f:
            f.write(b"x")
    report, _, datasets = _index(root, tmp_path / "out", n_jobs=n_jobs)
    assert _datasets(datasets) == [("s1/2021-01-01/001", SPIKES)]
    assert _reported(report) == sorted(
        [
            ("s1/2021-01-01/001/al\N{REPLACEMENT CHARACTER}", "not_utf8"),
            ("s1/2021-01-01/001/alf/spikes.clu\N{REPLACEMENT CHARACTER}.npy", "not_utf8"),
        ]
    )


def test_very_deep_tree(tmp_path: Path, n_jobs: int) -> None:
    # Deeper than Python's recursion limit: a recursive walk (or os.walk) would fail here.
    depth = sys.getrecursionlimit() + 50
    root = tmp_path / "data"
    session = root / "s1/2021-01-01/001"
    folder = session
    folder.mkdir(parents=True)
    for _ in range(depth):  # os.makedirs recurses once per missing parent
        folder = folder / "d"
        folder.mkdir()
    (folder / "spikes.times.npy").write_bytes(b"x")
    bottom = folder / "s2/2021-02-02/002"
    bottom.mkdir(parents=True)
    (bottom / "wheel.position.npy").write_bytes(b"x")
    try:
        report, sessions, datasets = _index(root, tmp_path / "out", n_jobs=n_jobs)
    finally:
        _remove_deep(root)
    deep_rel = "/".join(["d"] * depth)
    assert sorted(sessions["id"].to_pylist()) == ["s1/2021-01-01/001", "s2/2021-02-02/002"]
    assert _datasets(datasets) == [
        ("s1/2021-01-01/001", f"{deep_rel}/spikes.times.npy"),
        ("s2/2021-02-02/002", "wheel.position.npy"),
    ]
    inner = f"s1/2021-01-01/001/{deep_rel}/s2/2021-02-02/002"
    assert _noticed(report) == [(inner, "nested_session"), (inner, "not_loadable")]


def _remove_deep(root: Path) -> None:
    """Remove a tree too deep for shutil.rmtree (it recurses), deepest folder first."""
    for dirpath, _, filenames in _walk_bottom_up(root):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
        os.rmdir(dirpath)


def _walk_bottom_up(top: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    order: list[tuple[str, list[str], list[str]]] = []
    stack = [str(top)]
    while stack:
        path = stack.pop()
        entries = list(os.scandir(path))
        dirs = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        files = [e.name for e in entries if not e.is_dir(follow_symlinks=False)]
        order.append((path, dirs, files))
        stack.extend(os.path.join(path, d) for d in dirs)
    return reversed(order)


def test_unlistable_folder_on_a_listing_thread(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root nothing is unreadable: fake it for the listing threads of this process (a worker
    # process's side, run as an unprivileged user, is in test_faults.py). Several threads list
    # at once, so the report must not depend on which one met the folder.
    root = make_files(tmp_path / "data", [f"s{i}/2021-01-01/001/{SPIKES}" for i in range(8)])
    real_open = os.open

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        # The walk opens folders relative to the root's descriptor (or by full path).
        if isinstance(path, str) and (path == "s1" or path.endswith("/s1")):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    report, sessions, _ = _index(root, tmp_path / "out", n_jobs=1, io_depth=8)
    monkeypatch.undo()
    assert _reported(report) == [("s1", "permission_denied")]
    assert sorted(sessions["subject"].to_pylist()) == [f"s{i}" for i in range(8) if i != 1]


# --------------------------------------------------------------------------------------------
# entries that vanish while the scan runs
# --------------------------------------------------------------------------------------------


def test_entries_vanishing_between_listing_and_stat(
    tmp_path: Path, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = "s1/2021-01-01/001"
    root = make_files(
        tmp_path / "data",
        [
            f"{session}/{SPIKES}",
            f"{session}/alf/gone.times.npy",
            f"{session}/gonedir/wheel.position.npy",
        ],
    )
    (root / session / "alf/gonelink.times.npy").symlink_to(root / session / SPIKES)
    doomed = {
        "gone.times.npy": (root / session / "alf/gone.times.npy").unlink,
        "gonelink.times.npy": (root / session / "alf/gonelink.times.npy").unlink,
        "gonedir": lambda: _remove_deep(root / session / "gonedir"),  # rmtree uses scandir
    }
    real_scandir = os.scandir

    def scandir_then_delete(path: Any = ".") -> Any:
        # The scanner lists a folder through its descriptor, then stats each entry: delete the
        # doomed entries right after their folder was listed.
        if not isinstance(path, int):
            return real_scandir(path)
        entries = list(real_scandir(path))
        for entry in entries:
            if entry.name in doomed:
                doomed.pop(entry.name)()
        return entries

    monkeypatch.setattr(os, "scandir", scandir_then_delete)
    report, _, datasets = _index(root, tmp_path / "out", n_jobs=1)
    monkeypatch.undo()
    assert not doomed, "every doomed entry was listed, then deleted"
    assert _datasets(datasets) == [(session, SPIKES)]
    assert _reported(report) == [
        (f"{session}/alf/gone.times.npy", "vanished"),
        (f"{session}/alf/gonelink.times.npy", "vanished"),
        (f"{session}/gonedir", "vanished"),
    ]


# --------------------------------------------------------------------------------------------
# symbolic links
# --------------------------------------------------------------------------------------------


def test_broken_links_and_loops(tmp_path: Path, make_files: MakeFiles, n_jobs: int) -> None:
    session = "s1/2021-01-01/001"
    root = make_files(tmp_path / "data", [f"{session}/{SPIKES}"])
    alf = root / session / "alf"
    (alf / "broken.times.npy").symlink_to("missing.times.npy")
    (alf / "notdir.times.npy").symlink_to("spikes.times.npy/below")  # ENOTDIR, not ELOOP
    (alf / "self.times.npy").symlink_to("self.times.npy")
    (alf / "ping.times.npy").symlink_to("pong.times.npy")
    (alf / "pong.times.npy").symlink_to("ping.times.npy")
    (alf / "good.times.npy").symlink_to("spikes.times.npy")  # a link to a file is indexed
    report, _, datasets = _index(root, tmp_path / "out", n_jobs=n_jobs, follow_symlinks=True)
    assert _datasets(datasets) == [(session, "alf/good.times.npy"), (session, SPIKES)]
    assert _reported(report) == [
        (f"{session}/alf/broken.times.npy", "broken_symlink"),
        (f"{session}/alf/notdir.times.npy", "broken_symlink"),
        (f"{session}/alf/ping.times.npy", "symlink_loop"),
        (f"{session}/alf/pong.times.npy", "symlink_loop"),
        (f"{session}/alf/self.times.npy", "symlink_loop"),
    ]
    assert "'missing.times.npy' is missing" in report.skipped[0].message


@pytest.fixture
def linked(tmp_path: Path, make_files: MakeFiles) -> Path:
    """A root with links to a session inside it and to folders outside it.

    ``outside`` (not below the root) holds a session and a collection; inside the root,
    ``s2/2021-01-01/001`` links to the outside session, two sessions link to the same outside
    collection, one session links to another session of the root, and the outside collection
    links back up to its own parent (a loop once followed).
    """
    outside = make_files(
        tmp_path / "outside",
        ["session/alf/wheel.position.npy", "collection/probe.x.npy"],
    )
    (outside / "collection/up").symlink_to(outside)
    root = make_files(
        tmp_path / "data",
        [f"s1/2021-01-01/001/{SPIKES}", f"s3/2021-01-01/001/{SPIKES}"],
    )
    (root / "s2/2021-01-01").mkdir(parents=True)
    (root / "s2/2021-01-01/001").symlink_to(outside / "session")
    (root / "s1/2021-01-01/001/ext").symlink_to(outside / "collection")
    (root / "s3/2021-01-01/001/ext").symlink_to(outside / "collection")
    (root / "s3/2021-01-01/001/twin").symlink_to(root / "s1/2021-01-01/001")
    return root


def test_links_to_folders_not_followed_by_default(
    linked: Path, tmp_path: Path, n_jobs: int
) -> None:
    report, sessions, datasets = _index(linked, tmp_path / "out", n_jobs=n_jobs)
    assert sorted(sessions["id"].to_pylist()) == ["s1/2021-01-01/001", "s3/2021-01-01/001"]
    assert _datasets(datasets) == [("s1/2021-01-01/001", SPIKES), ("s3/2021-01-01/001", SPIKES)]
    assert _reported(report) == [
        ("s1/2021-01-01/001/ext", "symlink_not_followed"),
        ("s2/2021-01-01/001", "symlink_not_followed"),
        ("s3/2021-01-01/001/ext", "symlink_not_followed"),
        ("s3/2021-01-01/001/twin", "symlink_not_followed"),
    ]


def test_links_followed_once_per_folder(linked: Path, tmp_path: Path, n_jobs: int) -> None:
    report, sessions, datasets = _index(
        linked, tmp_path / "out", n_jobs=n_jobs, follow_symlinks=True
    )
    # the link named like a session is a session; the outside collection is indexed once,
    # through the first link in sorted order, whichever worker met which link first
    assert sorted(sessions["id"].to_pylist()) == [
        "s1/2021-01-01/001",
        "s2/2021-01-01/001",
        "s3/2021-01-01/001",
    ]
    assert _datasets(datasets) == [
        ("s1/2021-01-01/001", SPIKES),
        ("s1/2021-01-01/001", "ext/probe.x.npy"),
        ("s2/2021-01-01/001", "alf/wheel.position.npy"),
        ("s3/2021-01-01/001", SPIKES),
    ]
    assert _reported(report) == [
        ("s1/2021-01-01/001/ext/up", "symlink_revisit"),  # back up to its parent: a loop
        ("s3/2021-01-01/001/ext", "symlink_revisit"),  # same folder as s1's ext
        ("s3/2021-01-01/001/twin", "symlink_revisit"),  # inside the root: indexed in place
    ]
    assert "s1/2021-01-01/001/ext" in report.skipped[1].message
    assert "the indexed folder" in report.skipped[2].message


# --------------------------------------------------------------------------------------------
# the report: warning summary and --json
# --------------------------------------------------------------------------------------------


_SES = "s1/2021-01-01/001"
ONE_TREE_SKIPPED = sorted(
    [
        ("s1/2021-02-30/001", "invalid_date"),
        ("s1/2021-01-01/0001", "invalid_number"),
        ("s1/2021-01-01/1", "session_clash"),
        (f"{_SES}/alf/bad\N{REPLACEMENT CHARACTER}.times.npy", "not_utf8"),
        (f"{_SES}/alf/broken.times.npy", "broken_symlink"),
        (f"{_SES}/alf/loop.times.npy", "symlink_loop"),
        (f"{_SES}/linked", "symlink_not_followed"),
    ]
)
"""The skipped entries of the tree below, in ``--json``'s order (test_reasons.py counts the
codes shown here among those a test exercises)."""
ONE_TREE_NOTICES = [
    (f"{_SES}/alf/spikes.amps.npy", "empty_file"),
    (f"{_SES}/sub/s2/2021-01-02/001", "nested_session"),
    (f"{_SES}/sub/s2/2021-01-02/001", "not_loadable"),
]


def test_every_reason_in_cli_summary_and_json(
    tmp_path: Path, make_files: MakeFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    ses = _SES
    root = make_files(
        tmp_path / "data",
        [
            f"{ses}/{SPIKES}",
            f"s1/2021-02-30/001/{SPIKES}",
            f"s1/2021-01-01/0001/{SPIKES}",
            f"s1/2021-01-01/1/{SPIKES}",
            f"{ses}/sub/s2/2021-01-02/001/{SPIKES}",
        ],
    )
    (root / ses / "alf/spikes.amps.npy").write_bytes(b"")
    with open(os.fsencode(root / ses / "alf") + b"/bad\xff.times.npy", "wb") as f:
        f.write(b"x")
    (root / ses / "alf/broken.times.npy").symlink_to("missing.times.npy")
    (root / ses / "alf/loop.times.npy").symlink_to("loop.times.npy")
    (root / ses / "linked").symlink_to(tmp_path)
    out = tmp_path / "out"
    code = cli_main(["index", str(root), "--out-dir", str(out), "--jobs", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert [(s["path"], s["reason"]) for s in summary["skipped"]] == ONE_TREE_SKIPPED
    assert [(s["path"], s["reason"]) for s in summary["notices"]] == ONE_TREE_NOTICES
    assert all(s["message"] for s in summary["skipped"])
    # the warning summary on stderr: the first five, a pointer to the rest, the count
    shown = [line for line in captured.err.splitlines() if line.startswith("alfcache: skipped ")]
    assert shown == [
        f"alfcache: skipped {s['path']}: {s['reason']}: {s['message']}"
        for s in summary["skipped"][:5]
    ]
    assert "alfcache: ... 2 more skipped (all are listed with --json)" in captured.err
    assert "7 skipped (not indexed), 3 notices (indexed)" in captured.err
