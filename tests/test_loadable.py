"""Sessions ONE-api cannot load: found in one folder, looked for in another.

ONE-api rebuilds a session's folder from the table as ``cache_dir/lab/Subjects/subject/date/NNN``
(the number zero-padded, no ``lab/Subjects`` without a lab). Where the folder a session was found
in differs, every load fails with ``ALFObjectNotFound``; the indexer says so, and when the root
is the cause, which folder to index instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _helpers import index_quietly

import alfcache

SPIKES = "alf/spikes.times.npy"


def _index(root: Path, **kwargs: Any) -> tuple[alfcache.IndexReport, str]:
    """Index ``root``; the report and its summary line on loadability."""
    report = index_quietly(root, n_jobs=1, **kwargs)
    return report, report.loadability


def _not_loadable(report: alfcache.IndexReport) -> list[tuple[str, str]]:
    return [(n.path, n.message) for n in report.notices if n.reason == "not_loadable"]


def test_loadable_tree_has_no_notice(tmp_path: Path, make_files: Any) -> None:
    root = make_files(
        tmp_path / "data",
        [f"cortexlab/Subjects/KS001/2024-01-10/001/{SPIKES}", f"NL001/2024-01-10/002/{SPIKES}"],
    )
    report, summary = _index(root)
    assert _not_loadable(report) == [] and summary == ""
    # tables in a parent folder of the root: ONE-api, pointed there, finds every session
    lab = root / "cortexlab"
    report, summary = _index(lab, out_dir=root)
    assert _not_loadable(report) == [] and summary == ""


def test_root_is_a_lab_folder(tmp_path: Path, make_files: Any) -> None:
    labroot = make_files(
        tmp_path / "labroot", [f"cortexlab/Subjects/KS001/2024-01-10/001/{SPIKES}"]
    )
    root = labroot / "cortexlab"
    report, summary = _index(root)
    ((path, message),) = _not_loadable(report)
    assert path == "Subjects/KS001/2024-01-10/001"
    assert f"{root}/cortexlab/Subjects/KS001/2024-01-10/001" in message
    assert f"index {labroot} instead" in message
    assert "1 of 1 session" in summary and f"index {labroot} instead" in summary


def test_root_is_a_subjects_or_subject_folder(tmp_path: Path, make_files: Any) -> None:
    labroot = make_files(
        tmp_path / "labroot", [f"cortexlab/Subjects/KS001/2024-01-10/001/{SPIKES}"]
    )
    for root in (labroot / "cortexlab/Subjects", labroot / "cortexlab/Subjects/KS001"):
        report, _ = _index(root)
        ((_, message),) = _not_loadable(report)
        assert f"index {labroot} instead" in message, root


def test_lab_less_server_folder_becomes_a_lab(tmp_path: Path, make_files: Any) -> None:
    # server/Subjects/NL001/...: the root's own name is taken for the lab
    server = make_files(tmp_path / "server", [f"Subjects/NL001/2024-01-10/001/{SPIKES}"])
    report, _ = _index(server)
    ((path, message),) = _not_loadable(report)
    assert path == "Subjects/NL001/2024-01-10/001"
    assert f"{server}/server/Subjects/NL001/2024-01-10/001" in message
    assert f"index {tmp_path} instead" in message


def test_unpadded_nested_and_odd_lab_folders(tmp_path: Path, make_files: Any) -> None:
    root = make_files(
        tmp_path / "data",
        [
            f"KS001/2024-01-10/1/{SPIKES}",
            f"KS001/2024-01-11/12/{SPIKES}",
            f"my-lab/Subjects/ML001/2024-01-10/001/{SPIKES}",
            f"KS001/2024-01-12/001/odd/KS001/2024-01-10/002/{SPIKES}",
            f"KS001/2024-01-13/001/{SPIKES}",  # loadable
        ],
    )
    report, summary = _index(root)
    found = dict(_not_loadable(report))
    assert sorted(found) == [
        "KS001/2024-01-10/1",
        "KS001/2024-01-11/12",
        "KS001/2024-01-12/001/odd/KS001/2024-01-10/002",
        "my-lab/Subjects/ML001/2024-01-10/001",
    ]
    assert f"{root}/KS001/2024-01-10/001" in found["KS001/2024-01-10/1"]
    assert f"{root}/KS001/2024-01-11/012" in found["KS001/2024-01-11/12"]
    assert f"{root}/ML001/2024-01-10/001" in found["my-lab/Subjects/ML001/2024-01-10/001"]
    assert "instead" not in "".join(found.values())  # not the root's fault
    assert "4 of 6 sessions" in summary


@pytest.mark.one
def test_one_cannot_load_what_is_reported(tmp_path: Path, make_files: Any) -> None:
    """The report is right: ONE-api fails on the reported session and loads the other."""
    from one.alf.exceptions import ALFObjectNotFound
    from one.api import ONE

    root = make_files(
        tmp_path / "data", [f"KS001/2024-01-10/1/{SPIKES}", f"KS001/2024-01-11/001/{SPIKES}"]
    )
    report, _ = _index(root)
    assert [p for p, _ in _not_loadable(report)] == ["KS001/2024-01-10/1"]
    one = ONE(cache_dir=root, mode="local")
    ok, bad = (one.path2eid(root / f"KS001/2024-01-1{d}/001") for d in (1, 0))
    assert one.load_dataset(ok, "spikes.times.npy", download_only=True).exists()
    with pytest.raises(ALFObjectNotFound):
        one.load_dataset(bad, "spikes.times.npy", download_only=True)


def test_cli_summary_and_json_tell_the_folder_to_index(
    tmp_path: Path, make_files: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from alfcache._cli.main import main

    labroot = make_files(
        tmp_path / "labroot",
        [f"cortexlab/Subjects/KS00{i}/2024-01-10/001/{SPIKES}" for i in (1, 2)],
    )
    assert main(["index", str(labroot / "cortexlab"), "-j", "1", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert [n["reason"] for n in summary["notices"]] == ["not_loadable"] * 2
    assert f"index {labroot} instead" in summary["loadability"]
    assert "alfcache: 2 of 2 sessions cannot be loaded by ONE-api" in captured.err
