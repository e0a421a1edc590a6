"""Near misses: folders and files that look like ALF but are not, reported instead of dropped
without a word (``near_miss`` among the skipped entries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _helpers import index_quietly

SPIKES = "alf/spikes.times.npy"
TREE = [
    f"KS001/2024-01-05/001/{SPIKES}",  # a session
    f"KS001/2024-1-5/001/{SPIKES}",  # date not written YYYY-MM-DD
    f"KS 005/2024-01-05/001/{SPIKES}",  # subject with a space
    "KS001/_ibl_subjectTrials.table.pqt",  # ALF name, outside any session
    "KS001/notes.txt",  # not ALF: not a near miss
    f"KS001/2024-01-05/001/2024-1-6/{SPIKES}",  # inside a session: a collection, indexed
]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_near_misses_are_reported(tmp_path: Path, make_files: Any, n_jobs: int) -> None:
    root = make_files(tmp_path / "data", TREE)
    report = index_quietly(root, tmp_path / "out", n_jobs=n_jobs)
    misses = {s.path: s.message for s in report.skipped if s.reason == "near_miss"}
    assert sorted(misses) == [
        "KS 005/2024-01-05/001",
        "KS001/2024-1-5",
        "KS001/_ibl_subjectTrials.table.pqt",
    ]
    assert "2024-01-05" in misses["KS001/2024-1-5"]
    assert "'KS 005'" in misses["KS 005/2024-01-05/001"]
    assert "not inside a session" in misses["KS001/_ibl_subjectTrials.table.pqt"]
    assert (report.sessions, report.datasets) == (1, 2)


def test_near_misses_do_not_stop_an_update_from_dropping(tmp_path: Path, make_files: Any) -> None:
    # they were seen, unlike a folder that could not be listed: nothing to carry over for them
    root = make_files(tmp_path / "data", TREE)
    out = tmp_path / "out"
    index_quietly(root, out, n_jobs=1)
    (root / "KS001/2024-01-05/001/2024-1-6" / SPIKES).unlink()
    report = index_quietly(root, out, n_jobs=1, update=True)
    assert report.changes is not None
    assert (report.changes.vanished, report.changes.carried_over) == (1, 0)
