"""Plots and tables from a results file of ``benchmarks/suite.py``.

    python benchmarks/plots.py [RESULTS.json] [--out DIR] [--readme README.md]

Without a file, the newest one in ``benchmarks/results/`` is used. Writes three PNG plots
(wall time against files, speed-up against workers and depth, memory against files) and
``table.md`` into ``--out`` (default: the results folder's ``reference/``), and with
``--readme`` replaces the README's text between ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` with the table. Needs matplotlib (the ``bench`` extra) for the plots;
the tables need nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIB = 2**20
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

Row = dict[str, Any]


def median(row: Row) -> float:
    return statistics.median(s["seconds"] for s in row["samples"])


def peak(row: Row) -> float:
    return max(s["peak_rss"] for s in row["samples"]) / MIB


def _groups(report: dict[str, Any]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in report["results"]:
        groups.setdefault((row["group"], row["size"]), []).append(row)
    return groups


def _find(rows: list[Row], test: Callable[[Row], bool]) -> Row | None:
    return next((r for r in rows if test(r)), None)


def _ratio_rows(report: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    """(target, measured, goal, '<=' or '>=') for every target the results can speak to."""
    checks: list[tuple[str, float, float, str]] = []
    groups = _groups(report)
    for (group, size), rows in groups.items():
        default = _find(rows, lambda r: r["default"])
        find = _find(rows, lambda r: r["kind"] == "find")
        serial = _find(rows, lambda r: r["jobs"] == 1)
        reference = _find(rows, lambda r: r["kind"] == "one-api")
        walker = _find(rows, lambda r: r["kind"] == "walker")
        md5sum = _find(rows, lambda r: r["kind"] == "md5sum")
        if default is None:
            continue
        where = f"{group}, {size}"
        if group in ("local", "cold") and find and serial:
            checks.append((f"{where}: default vs find", median(default) / median(find), 1.3, "<="))
            checks.append(
                (f"{where}: --jobs 1 / default", median(serial) / median(default), 1.4, ">=")
            )
        if reference:
            checks.append(
                (f"{where}: one-api / default", median(reference) / median(default), 25, ">=")
            )
        if group == "network" and find:
            checks.append((f"{where}: find / default", median(find) / median(default), 20, ">="))
        if group == "network" and walker:
            checks.append(
                (
                    f"{where}: default vs bare 64-thread walker",
                    median(default) / median(walker),
                    1.2,
                    "<=",
                )
            )
        if md5sum:
            checks.append(
                (
                    f"{where}: alfcache MD5 speed vs parallel md5sum",
                    median(md5sum) / median(default),
                    0.9,
                    ">=",
                )
            )
    big = _find(groups.get(("local", "1M"), []), lambda r: r["default"])
    mid = _find(groups.get(("local", "100k"), []), lambda r: r["default"])
    if big and mid:
        checks.append(
            ("local: 1M-file time / 100k-file time", median(big) / median(mid), 11, "<=")
        )
    if big:
        checks.append(("local, 1M: peak memory of all processes (MiB)", peak(big), 600, "<="))
    return checks


def tables(report: dict[str, Any]) -> str:
    """Markdown: one table per group and size, then the targets."""
    machine = report["machine"]
    lines = [
        f"Run of {report['started']} on {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB; Python {report['versions']['python']}, median of "
        f"{report['runs']}, every tool a fresh process, interleaved. Load average at the start "
        f"{report['load_at_start'][0]:.2f}, at the end {report['load_at_end'][0]:.2f}.",
        "",
    ]
    for (group, size), rows in _groups(report).items():
        find = _find(rows, lambda r: r["kind"] in ("find", "md5sum"))
        base = median(find) if find else None
        files = rows[0]["files"]
        loads = [s["load"] for r in rows for s in r["samples"]]
        what = {
            "local": "warm local disk",
            "cold": "cold local disk (page cache dropped)",
            "network": f"network storage ({report['delay_ms']:g} ms per metadata call)",
            "hashing": "hashing",
        }[group]
        lines += [
            f"**{what}, {size} ({files:,} files)**, load {min(loads):.1f}-{max(loads):.1f}",
            "",
            f"| tool | median (s) | runs (s) | peak RSS, all processes (MiB) | "
            f"vs {find['tool'] if find else 'first'} |",
            "|---|---|---|---|---|",
        ]
        for row in rows:
            runs = ", ".join(f"{s['seconds']:.2f}" for s in row["samples"])
            ratio = f"{median(row) / base:.2f}x" if base else ""
            lines.append(
                f"| {row['tool']} | {median(row):.2f} | {runs} | {peak(row):.0f} | {ratio} |"
            )
        lines.append("")
    lines += ["| target | measured | goal | met |", "|---|---|---|---|"]
    for label, value, goal, op in _ratio_rows(report):
        met = value <= goal if op == "<=" else value >= goal
        lines.append(f"| {label} | {value:.2f} | {op} {goal:g} | {'yes' if met else 'NO'} |")
    if report["skipped"]:
        lines += ["", *(f"Not measured: {s}." for s in report["skipped"])]
    return "\n".join(lines) + "\n"


def plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    groups = _groups(report)
    local = [row for (group, _), rows in groups.items() if group == "local" for row in rows]

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    for tool in dict.fromkeys(r["tool"] for r in local):
        rows = sorted((r for r in local if r["tool"] == tool), key=lambda r: r["files"])
        ax.plot([r["files"] for r in rows], [median(r) for r in rows], marker="o", label=tool)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="files in the tree",
        ylabel="wall time (s)",
        title="Warm local disk: time against tree size",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "wall_vs_files.png"))

    panels = [(g, s) for (g, s) in groups if g in ("local", "network")]
    panels = [
        max(
            (p for p in panels if p[0] == "local"),
            default=None,
            key=lambda p: groups[p][0]["files"],
        ),
        next((p for p in panels if p[0] == "network"), None),
    ]
    panels = [p for p in panels if p is not None]
    if panels:
        fig, axes = plt.subplots(
            1, len(panels), figsize=(6.4 * len(panels), 4.2), dpi=90, squeeze=False
        )
        for ax, key in zip(axes[0], panels, strict=True):
            rows = [r for r in groups[key] if r["kind"] == "alfcache"]
            serial = _find(rows, lambda r: r["jobs"] == 1)
            if serial is None:
                continue
            names = [r["tool"].removeprefix("alfcache ") for r in rows]
            ax.bar(names, [median(serial) / median(r) for r in rows], color="tab:blue")
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set(ylabel="speed-up over --jobs 1", title=f"{key[0]} storage, {key[1]} files")
            ax.tick_params(axis="x", rotation=30, labelsize=8)
        written.append(_save(fig, out / "speedup.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    for tool in dict.fromkeys(r["tool"] for r in local if r["kind"] in ("alfcache", "one-api")):
        rows = sorted((r for r in local if r["tool"] == tool), key=lambda r: r["files"])
        ax.plot([r["files"] for r in rows], [peak(r) for r in rows], marker="o", label=tool)
    ax.axhline(600, color="red", lw=0.8, ls="--", label="target at 1M files: 600 MiB")
    ax.set(
        xscale="log",
        xlabel="files in the tree",
        ylabel="peak RSS, all processes (MiB)",
        title="Memory against tree size",
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "memory_vs_files.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} block to replace")
    readme.write_text(pattern.sub(lambda _: f"{BEGIN}\n{table}{END}", text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reference")
    parser.add_argument("--readme", type=Path, help="replace the table in this README")
    args = parser.parse_args()
    path = args.results or max((HERE / "results").glob("*.json"), default=None)
    if path is None:
        raise SystemExit("no results file: run benchmarks/suite.py (or scripts/bench) first")
    report = json.loads(path.read_text())
    table = tables(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table)
    for png in plots(report, args.out):
        print(f"wrote {png}", file=sys.stderr)
    if args.readme:
        update_readme(args.readme, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
