"""Plots and tables from a results file of ``benchmarks/suite.py``.

    python benchmarks/plots.py [RESULTS.json | FOLDER] [--out DIR] [--readme README.md]

Without a file, the newest one in ``benchmarks/results/`` is used (the newest in FOLDER when
a folder is given). Writes three PNG plots (wall time against files, speed-up against
``--jobs`` and ``--io-depth``, memory against files) and ``table.md`` into ``--out`` (default:
the results folder's ``reference/``), and with ``--readme`` replaces the README's text between
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` with the table. Needs matplotlib (the
``bench`` extra) for the plots; the tables need nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIB = 2**20
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
NOISE = 1.05
""""No slower than the baseline, within noise": at most 5% slower, median against median."""

Row = dict[str, Any]
Test = Callable[[Row], bool]


def median(row: Row) -> float:
    return statistics.median(s["seconds"] for s in row["samples"])


def peak(row: Row) -> float:
    return max(s["peak_rss"] for s in row["samples"]) / MIB


def n_runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _groups(report: dict[str, Any]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in report["results"]:
        groups.setdefault((row["group"], row["size"]), []).append(row)
    return groups


def _find(rows: list[Row], test: Test) -> Row | None:
    return next((r for r in rows if test(r)), None)


def default(r: Row) -> bool:
    return bool(r["default"])


def kind(name: str) -> Test:
    return lambda r: r["kind"] == name


def jobs(n: int) -> Test:
    return lambda r: r["kind"] == "alfcache" and r["jobs"] == n


def depth(n: int) -> Test:
    return lambda r: r["kind"] == "alfcache" and r["io_depth"] == n


@dataclass(frozen=True)
class Target:
    """``numerator / denominator`` (medians), or the numerator's peak MiB without one."""

    label: str
    group: str
    size: str | None
    """None: every size of ``group`` that was measured."""
    numerator: Test
    denominator: Test | None
    op: str
    goal: float
    how: str = ""
    """What measures it when the results lack it."""

    def value(self, rows: list[Row]) -> float | None:
        top = _find(rows, self.numerator)
        if top is None:
            return None
        if self.denominator is None:
            return peak(top)
        bottom = _find(rows, self.denominator)
        return None if bottom is None else median(top) / median(bottom)


TARGETS = [
    # issue 21: a warm local disk at ~1M files, 5,000 sessions, and what must still hold
    Target("default / find -printf", "local", "1M", default, kind("find"), "<=", 1.3, "--large"),
    Target("default / --io-depth 1", "local", "1M", default, depth(1), "<=", 1.05, "--large"),
    Target("--jobs 1 / default", "local", "1M", jobs(1), default, ">=", 1.6, "--large"),
    Target("peak MiB, all processes", "local", "1M", default, None, "<=", 500, "--large"),
    Target("one-api 3.0.0 / default", "local", "175k", kind("one-api"), default, ">=", 25),
    Target(
        "default / bare 64-thread walker", "network", "70k", default, kind("walker"), "<=", 0.9
    ),
    Target("default / find -printf", "cold", "100k", default, kind("find"), "<=", 0.9),
    Target(
        "parallel md5sum / alfcache --hash md5 (8 GiB with --large)",
        "hashing",
        None,
        kind("md5sum"),
        default,
        ">=",
        0.9,
    ),
    # issue 10: network storage against find
    Target("find -printf / default", "network", "10k", kind("find"), default, ">=", 20),
]


def _line(label: str, value: float | None, op: str, goal: float, hint: str) -> tuple[str, ...]:
    """A row of the targets table: measured and met, or why it was not measured."""
    if value is None:
        return label, "not measured", f"{op} {goal:g}", hint
    met = value <= goal if op == "<=" else value >= goal
    return label, f"{value:.2f}", f"{op} {goal:g}", "yes" if met else "NO"


def _targets(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """(target, measured, goal, met) for every target; measured or not, so none is forgotten."""
    groups = _groups(report)
    lines = []
    for t in TARGETS:
        sizes = [t.size] if t.size else [s for (g, s) in groups if g == t.group]
        for size in sizes or [None]:
            rows = groups.get((t.group, size), []) if size else []
            where = f"{t.group}, {size}" if size else t.group
            hint = f"needs {t.how or 'the ' + where + ' group'}"
            lines.append(_line(f"{where}: {t.label}", t.value(rows), t.op, t.goal, hint))
    # issue 21: every group no slower than the previous release
    base = report.get("baseline")
    if not base:
        label = "every group: default no slower than the baseline"
        lines.append(_line(label, None, "<=", NOISE, "needs --baseline REF"))
    for (group, size), rows in groups.items() if base else ():
        value = Target("", group, size, default, kind("baseline"), "<=", NOISE).value(rows)
        label = f"{group}, {size}: default / {base['ref']} (no slower, within 5%)"
        lines.append(_line(label, value, "<=", NOISE, "the baseline lacks the option"))
    big = _find(groups.get(("local", "1M"), []), default)
    mid = _find(groups.get(("local", "100k"), []), default)
    value = median(big) / median(mid) if big and mid else None
    lines.append(_line("local: 1M-file time / 100k-file time", value, "<=", 11, "needs --large"))
    # issue 21: tables identical for every --jobs, --io-depth and storage
    compared = report.get("identical", [])
    label = "tables identical to the default's for every --jobs, --io-depth and storage"
    if runs := sum(c["compared"] for c in compared):
        differ = [
            f"{c['group']} {c['size']}: {', '.join(c['differ'])}" for c in compared if c["differ"]
        ]
        lines.append(
            (
                f"{label} ({n_runs(runs)} compared)",
                "; ".join(differ) + " differ" if differ else "identical",
                "identical",
                "NO" if differ else "yes",
            )
        )
    elif compared:  # a group ran only the default: nothing to compare it with
        lines.append(
            (
                label,
                "not measured",
                "identical",
                "needs a run with --jobs or --io-depth options (--sweep)",
            )
        )
    return lines


def tables(report: dict[str, Any]) -> str:
    """Markdown: one table per group and size, then the targets."""
    machine = report["machine"]
    base = report.get("baseline")
    lines = [
        f"Run of {report['started']} on {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB; Python {report['versions']['python']}, median of "
        f"{report['runs']}, every tool a fresh process, interleaved. Load average at the start "
        f"{report['load_at_start'][0]:.2f}, at the end {report['load_at_end'][0]:.2f}.",
        "",
    ]
    if tree := report.get("working_tree"):
        lines += [
            f"alfcache: {tree['version']}, commit {tree['commit'][:10]}"
            f"{' with changes to src/' if tree['changed'] else ''} ({tree['module']}).",
            "",
        ]
    if base:
        lines += [
            f"Baseline: {base['version']} at {base['ref']} (commit {base['commit'][:10]}), "
            f"its own venv{'' if base['constrained'] else ' with its own dependency versions'}"
            f" ({base['python']}).",
            "",
        ]
    identical = {(c["group"], c["size"]): c for c in report.get("identical", [])}
    for (group, size), rows in _groups(report).items():
        first = _find(rows, lambda r: r["kind"] in ("find", "md5sum")) or _find(
            rows, kind("walker")
        )
        baseline = _find(rows, kind("baseline"))
        files = rows[0]["files"]
        loads = [s["load"] for r in rows for s in r["samples"]]
        what = {
            "local": "warm local disk",
            "cold": "cold local disk (page cache dropped)",
            "network": f"network storage ({report['delay_ms']:g} ms per metadata call)",
            "hashing": "hashing",
        }[group]
        columns = ["tool", "median (s)", "runs (s)", "peak RSS, all processes (MiB)"]
        columns += [f"vs {first['tool']}"] if first else []
        columns += ["vs baseline"] if baseline else []
        lines += [
            f"**{what}, {size} ({files:,} files)**, load {min(loads):.1f}-{max(loads):.1f}",
            "",
            f"| {' | '.join(columns)} |",
            "|---" * len(columns) + "|",
        ]
        for row in rows:
            runs = ", ".join(f"{s['seconds']:.2f}" for s in row["samples"])
            cells = [row["tool"], f"{median(row):.2f}", runs, f"{peak(row):.0f}"]
            cells += [f"{median(row) / median(first):.2f}x"] if first else []
            cells += [f"{median(row) / median(baseline):.2f}x"] if baseline else []
            lines.append(f"| {' | '.join(cells)} |")
        if same := identical.get((group, size)):
            verdict = f"NO: {', '.join(same['differ'])} differ" if same["differ"] else "yes"
            lines += [
                "",
                f"Tables identical to the default's ({n_runs(same['compared'])}): {verdict}.",
            ]
        lines.append("")
    lines += ["| target | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(cells)} |" for cells in _targets(report)]
    if report["skipped"]:
        lines += ["", *(f"Not measured: {s}." for s in report["skipped"])]
    return "\n".join(lines) + "\n"


def _sweep_panels(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The swept groups, local first; for results without sweeps, the largest local group."""
    groups = _groups(report)
    swept = [(s["group"], s["size"]) for s in report.get("sweeps", [])]
    swept = [k for k in swept if k in groups]
    if not swept:
        local = [k for k in groups if k[0] == "local"]
        swept = [max(local, key=lambda k: groups[k][0]["files"])] if local else []
        swept += [k for k in groups if k[0] == "network"][:1]
    return sorted(swept, key=lambda k: k[0] != "local")


def _speedup_panel(ax: Any, rows: list[Row], knob: str, title: str, cores: int) -> None:
    """Speed-up over ``knob`` = 1 as a curve, the ideal line and the other tools as levels."""
    points = sorted((r[knob], median(r)) for r in rows if r["kind"] == "alfcache" and r[knob])
    one = next((t for n, t in points if n == 1), None)
    if one is None or len(points) < 2:
        ax.text(
            0.5, 0.5, f"no {knob.replace('_', '-')} sweep", ha="center", transform=ax.transAxes
        )
        ax.set_title(title)
        return
    xs = [n for n, _ in points]
    ax.plot(xs, xs, color="grey", ls=":", lw=1, label="ideal (speed-up = value)")
    if knob == "jobs":
        ax.plot(
            xs,
            [min(n, cores) for n in xs],
            color="grey",
            ls="--",
            lw=0.8,
            label=f"ideal on {cores} cores",
        )
    ax.plot(
        xs,
        [one / t for _, t in points],
        marker="o",
        color="tab:blue",
        lw=2,
        label=f"alfcache --{knob.replace('_', '-')} N",
    )
    levels = [
        (default, "alfcache (default)", "tab:green"),
        (kind("baseline"), "baseline", "tab:orange"),
        (kind("walker"), "bare 64-thread walker", "tab:purple"),
        (kind("find"), "find -printf", "black"),
    ]
    shown = [one / t for _, t in points]
    for test, name, color in levels:
        if (row := _find(rows, test)) is not None:
            label = row["tool"] if name == "baseline" else name
            shown.append(one / median(row))
            ax.axhline(
                shown[-1], color=color, ls="-.", lw=1.2, label=f"{label}: {median(row):.2f} s"
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(xs, [str(n) for n in xs])
    ax.yaxis.set_major_formatter(lambda value, _: f"{value:g}")
    # The ideal line may leave the top: the measured curve and levels keep the scale.
    ax.set_ylim(min(shown) / 1.5, max(2.0, *shown) * 1.5)
    ax.set(
        xlabel=f"--{knob.replace('_', '-')}",
        ylabel=f"speed-up over --{knob.replace('_', '-')} 1 ({one:.2f} s)",
        title=title,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    groups = _groups(report)
    local = [row for (group, _), rows in groups.items() if group == "local" for row in rows]
    # A tool measured at one size only (a sweep's setting) is left out, unless all are.
    sizes_of: dict[str, int] = {}
    for row in local:
        sizes_of[row["tool"]] = sizes_of.get(row["tool"], 0) + 1
    lines = [tool for tool, n in sizes_of.items() if n > 1] or list(sizes_of)

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    for tool in lines:
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

    panels = _sweep_panels(report)
    if panels:
        fig, axes = plt.subplots(
            2, len(panels), figsize=(6.4 * len(panels), 8.4), dpi=90, squeeze=False
        )
        for column, key in enumerate(panels):
            rows = groups[key]
            where = (
                "warm local disk" if key[0] == "local" else f"network, {report['delay_ms']:g} ms"
            )
            title = f"{where}, {rows[0]['files']:,} files"
            cores = report["machine"]["cores"]
            _speedup_panel(axes[0][column], rows, "jobs", f"{title}: --jobs", cores)
            _speedup_panel(axes[1][column], rows, "io_depth", f"{title}: --io-depth", cores)
        written.append(_save(fig, out / "speedup.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    for tool in lines:
        rows = sorted((r for r in local if r["tool"] == tool), key=lambda r: r["files"])
        if rows[0]["kind"] in ("alfcache", "baseline", "one-api"):
            ax.plot([r["files"] for r in rows], [peak(r) for r in rows], marker="o", label=tool)
    ax.axhline(500, color="red", lw=0.8, ls="--", label="target at 1M files: 500 MiB")
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
    path = args.results or HERE / "results"
    if path.is_dir():
        path = max(path.glob("*.json"), default=None)
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
