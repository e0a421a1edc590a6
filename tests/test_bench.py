"""The benchmark tooling (benchmarks/): what it runs and how it reports, never how fast.

The suite's numbers are made up here; what is checked is which commands a group runs (the
baseline isolated from the working tree, the sweeps) and that the tables and targets show
the ratios those numbers give.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import plots
import suite
from _baseline import Baseline


def sample(seconds: float, mib: float = 100) -> dict[str, float]:
    return {"seconds": seconds, "peak_rss": mib * 2**20, "load": 0.5}


def row(group: str, size: str, tool: str, kind: str, seconds: float, **extra: Any) -> dict:
    fields = {"jobs": None, "io_depth": None, "default": False, "mib": 100.0} | extra
    return {
        "group": group,
        "size": size,
        "files": 1_050_000,
        "tool": tool,
        "kind": kind,
        "jobs": fields["jobs"],
        "io_depth": fields["io_depth"],
        "default": fields["default"],
        "samples": [sample(seconds, fields["mib"])],
    }


def report(rows: list[dict], baseline: bool) -> dict[str, Any]:
    return {
        "started": "2026-12-06T20:00:00+00:00",
        "machine": {"cpu": "test", "cores": 2, "memory_gib": 1.0},
        "versions": {"python": "3.11"},
        "baseline": (
            {
                "ref": "v0.1.0",
                "commit": "1f4e1b2645c2",
                "python": "/venv/bin/python",
                "version": "alfcache 0.1.0",
                "constrained": True,
            }
            if baseline
            else None
        ),
        "load_at_start": [0.5],
        "load_at_end": [0.5],
        "runs": 1,
        "delay_ms": 1.0,
        "skipped": [],
        "identical": [{"group": "local", "size": "1M", "compared": 3, "differ": []}],
        "results": rows,
    }


def one_million(baseline: bool) -> list[dict]:
    rows = [
        row("local", "1M", "find -printf", "find", 4.0),
        row("local", "1M", "alfcache (default)", "alfcache", 5.0, default=True, mib=480),
        row("local", "1M", "alfcache --jobs 1", "alfcache", 8.0, jobs=1),
        row("local", "1M", "alfcache --io-depth 1", "alfcache", 5.0, io_depth=1),
    ]
    if baseline:
        rows.insert(2, row("local", "1M", "alfcache v0.1.0 (default)", "baseline", 4.0))
    return rows


def target(table: str, label: str) -> list[str]:
    """The cells of the targets table's row that starts with ``label``."""
    line = next(line for line in table.splitlines() if line.startswith(f"| {label}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_baseline_adds_a_column_and_a_target_line_per_group() -> None:
    table = plots.tables(report(one_million(baseline=True), baseline=True))
    assert "| vs find -printf | vs baseline |" in table
    # the working tree took 5.0 s where the baseline took 4.0 s: 1.25 times as long
    assert "| alfcache (default) | 5.00 | 5.00 | 480 | 1.25x | 1.25x |" in table
    assert target(table, "local, 1M: default / v0.1.0") == [
        "local, 1M: default / v0.1.0 (no slower, within 5%)",
        "1.25",
        "<= 1.05",
        "NO",
    ]


def test_without_a_baseline_the_tables_have_no_baseline_column() -> None:
    table = plots.tables(report(one_million(baseline=False), baseline=False))
    assert "vs baseline" not in table
    assert target(table, "every group")[1:] == ["not measured", "<= 1.05", "needs --baseline REF"]


def test_issue_21_targets_at_a_million_files_come_from_the_rows() -> None:
    table = plots.tables(report(one_million(baseline=False), baseline=False))
    assert target(table, "local, 1M: default / find")[1:] == ["1.25", "<= 1.3", "yes"]
    assert target(table, "local, 1M: default / --io-depth 1")[1:] == ["1.00", "<= 1.05", "yes"]
    assert target(table, "local, 1M: --jobs 1 / default")[1:] == ["1.60", ">= 1.6", "yes"]
    assert target(table, "local, 1M: peak MiB")[1:] == ["480.00", "<= 500", "yes"]
    # a target whose group did not run is listed, with what would measure it
    assert target(table, "local, 175k: one-api")[1:] == [
        "not measured",
        ">= 25",
        "needs the local, 175k group",
    ]


def setup(baseline: Baseline | None = None) -> suite.Setup:
    return suite.Setup(
        cores=2,
        options={"--quiet", "--jobs", "--io-depth", "--hash"},
        depths=[1, 64],
        jobs_sweep=[1, 2, 4, 8],
        depth_sweep=[1, 2, 4, 8, 16, 32, 64, 128, 256],
        baseline=baseline,
    )


def released(help_text: str = "--out-dir --quiet --hash") -> Baseline:
    return Baseline("v0.1.0", "1f4e1b2", "/venv/bin/python", "alfcache 0.1.0", "", help_text, True)


def test_the_baseline_runs_from_its_venv_without_the_working_tree_on_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/work/src")
    tools = suite.walk_tools(tmp_path, 10, tmp_path / "out", setup(released()))
    base = next(t for t in tools if t.kind == "baseline")
    assert base.name == "alfcache v0.1.0 (default)"
    assert base.cmd[:4] == ["/venv/bin/python", "-I", "-m", "alfcache"]
    assert base.env is not None and "PYTHONPATH" not in base.env
    # interleaved right after the working tree's default run
    names = [t.name for t in tools]
    assert names.index(base.name) == names.index("alfcache (default)") + 1


def test_a_baseline_without_an_option_is_left_out_of_that_group(tmp_path: Path) -> None:
    old = setup(released(help_text="--out-dir --quiet"))
    tools = suite.hashing_tools(tmp_path, tmp_path / "out", old, cut="1k")
    assert [t.kind for t in tools if t.kind == "baseline"] == []


def test_no_baseline_no_baseline_tool(tmp_path: Path) -> None:
    tools = suite.walk_tools(tmp_path, 10, tmp_path / "out", setup())
    assert all(t.kind != "baseline" for t in tools)


def test_a_swept_group_runs_every_jobs_and_io_depth_value(tmp_path: Path) -> None:
    swept = suite.walk_tools(tmp_path, 10, tmp_path / "out", setup(), sweep=True)
    assert [t.jobs for t in swept if t.jobs] == [1, 2, 4, 8]
    assert [t.io_depth for t in swept if t.io_depth] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    plain = suite.walk_tools(tmp_path, 10, tmp_path / "out", setup())
    assert [t.jobs for t in plain if t.jobs] == [1, 2]
    assert [t.io_depth for t in plain if t.io_depth] == [1, 64]


def test_tables_never_compared_are_not_reported_identical() -> None:
    # A group run with the default alone (--sweep none) writes tables but compares none.
    data = report(one_million(baseline=False), baseline=False)
    data["identical"] = [{"group": "network", "size": "70k", "compared": 0, "differ": []}]
    row = target(plots.tables(data), "tables identical")
    assert row[1] == "not measured", row
    data["identical"][0]["compared"] = 2
    assert target(plots.tables(data), "tables identical")[1:] == ["identical", "identical", "yes"]


@pytest.mark.parametrize("n", [9, 19])
def test_each_round_puts_every_tool_after_another(n: int) -> None:
    """No tool runs after the same tool twice in three rounds (the bare walker's aftermath fell
    on the default in every round when the order was fixed)."""
    orders = [suite.round_order(n, r) for r in range(3)]
    assert all(sorted(order) == list(range(n)) for order in orders)
    for tool in range(n):
        before = [order[order.index(tool) - 1] for order in orders if order.index(tool)]
        assert len(before) == len(set(before)), (tool, orders)
