"""The report: entries not indexed (``skipped``) and entries indexed but worth a look
(``notices``) are told apart in ``IndexReport``, ``--json``, the command line's summary and
``make_parquet_db``'s warning.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import alfcache
from alfcache._cli.main import main as cli_main

SPIKES = "alf/spikes.times.npy"
SES = "s1/2021-01-01/001"
NOTICES = ["empty_file", "nested_session", "not_loadable"]  # of mixed_tree: all indexed


@pytest.fixture
def mixed_tree(tmp_path: Path, make_files: Any) -> Path:
    root = make_files(
        tmp_path / "data",
        [
            f"{SES}/{SPIKES}",
            f"s1/2021-02-30/001/{SPIKES}",
            f"{SES}/sub/s2/2021-01-02/001/{SPIKES}",
        ],
    )
    (root / SES / "alf/spikes.amps.npy").write_bytes(b"")
    return root


def test_indexed_entries_are_notices_not_skips(mixed_tree: Path, tmp_path: Path) -> None:
    report = alfcache.index(mixed_tree, tmp_path / "out", n_jobs=1)
    assert [(s.path, s.reason) for s in report.skipped] == [("s1/2021-02-30/001", "invalid_date")]
    assert [(s.path, s.reason) for s in report.notices] == [
        (f"{SES}/alf/spikes.amps.npy", "empty_file"),
        (f"{SES}/sub/s2/2021-01-02/001", "nested_session"),
        (f"{SES}/sub/s2/2021-01-02/001", "not_loadable"),
    ]
    summary = report.as_dict()
    assert [s["reason"] for s in summary["skipped"]] == ["invalid_date"]  # type: ignore[union-attr]
    assert [s["reason"] for s in summary["notices"]] == NOTICES  # type: ignore[union-attr]


def test_cli_summary_and_json_say_which_is_which(
    mixed_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(
        ["index", str(mixed_tree), "--out-dir", str(tmp_path / "o"), "-j", "1", "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert [s["reason"] for s in summary["skipped"]] == ["invalid_date"]
    assert [s["reason"] for s in summary["notices"]] == NOTICES
    assert "alfcache: skipped s1/2021-02-30/001: invalid_date:" in captured.err
    assert f"alfcache: notice {SES}/alf/spikes.amps.npy: empty_file: indexed" in captured.err
    assert "alfcache: skipped " + SES not in captured.err
    assert re.search(r"1 skipped \(not indexed\), 3 notices \(indexed\)", captured.err)


def test_make_parquet_db_does_not_call_an_indexed_file_skipped(
    tmp_path: Path, make_files: Any
) -> None:
    root = make_files(tmp_path / "data", [f"{SES}/{SPIKES}"])
    (root / SES / "alf/spikes.amps.npy").write_bytes(b"")
    with pytest.warns(RuntimeWarning) as caught:
        alfcache.make_parquet_db(root, n_jobs=1)
    (message,) = [str(w.message) for w in caught]
    assert "skipped" not in message
    assert f"1 entry indexed but worth a look: {SES}/alf/spikes.amps.npy: empty_file" in message
    assert ".notices" in message and "--json" in message


def test_make_parquet_db_warning_says_where_the_full_list_is(
    mixed_tree: Path, tmp_path: Path
) -> None:
    with pytest.warns(RuntimeWarning) as caught:
        alfcache.make_parquet_db(mixed_tree, tmp_path / "out", n_jobs=1)
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("1 entry skipped (not indexed): s1/2021-02-30/001: invalid_date")
    assert "3 entries indexed but worth a look" in message
    assert "alfcache.index(...).skipped" in message and "--json" in message
