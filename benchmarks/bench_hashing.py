"""Hashing and update benchmarks: alfcache against parallel md5sum, XXH3 against MD5, updates.

    python benchmarks/bench_hashing.py [--root bench-data] [--runs 3] [--only update,noop]

Three measurements, each on its own generated tree below ``--root`` (made once, then reused):

* **throughput**: eight 256 MiB files and 2,000 files of 20 KiB (eight sessions of one
  recording and 250 small files each). alfcache ``--hash md5`` and ``--hash xxh3`` against the
  best parallel ``md5sum`` a shell user can run: big files one per ``md5sum`` and small ones 64
  at a time (``xargs -n 1`` / ``-n 64``, ``-P <cores>``), and ``xargs -n 1`` for every file.
  Targets: MD5 at least 0.9x the best md5sum, XXH3 at least 3x MD5.
* **update**: 512 sessions of one 16 MiB file and 30 small ones (about 8 GiB), hashed with MD5.
  Each run gives 1% of the files new content (same size, newer time), then times
  ``--update`` against a full hashed re-index and checks that both write the same tables.
  Target: the update at least 10x faster.
* **noop**: the 5,000-session walk benchmark tree (``bench_index.py``); ``--update`` with nothing
  changed, of plain and of MD5-hashed tables, against a plain index. Target: within 1.3x.

Every command is a fresh process, so interpreter start, imports and reading the old tables
count. Runs of the tools being compared are interleaved, after one warm-up round (warm page
cache). Sizes are options, to smoke-test small. Targets are reported, never asserted: the
machines are shared and noisy; the load average is printed with each table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from _measure import Summary, measure
from _trees import available_cores, make_tree
from bench_index import ensure_tree

MIB = 1 << 20
KIB = 1 << 10
BIG_FILE = "raw_ephys_data/probe00/_spikeglx_ephysData_g0_t0.imec0.lf.cbin"


@dataclass
class Tool:
    """A command to time; ``json`` collects alfcache's ``--json`` summary of each run."""

    name: str
    cmd: list[str]
    json: Path | None = None
    summaries: list[dict[str, object]] = field(default_factory=list)


def alfcache(root: Path, out: Path, *args: str) -> list[str]:
    """An alfcache run into ``out``, without progress or summary."""
    index = [sys.executable, "-m", "alfcache", "index", str(root)]
    return [*index, "--out-dir", str(out), "--quiet", *args]


def with_json(cmd: list[str], path: Path) -> list[str]:
    """``cmd`` with ``--json``, its stdout sent to ``path`` (measure() discards stdout)."""
    return ["sh", "-c", 'exec "$@" > "$0"', str(path), *cmd, "--json"]


def timed(tool: Tool, summary: Summary) -> None:
    """Run ``tool`` once, add the run to ``summary`` and keep its ``--json`` summary."""
    run = measure(tool.cmd)
    if run.returncode != 0:
        raise SystemExit(f"{tool.name} failed with exit code {run.returncode}")
    summary.runs.append(run)
    if tool.json:
        tool.summaries.append(json.loads(tool.json.read_text()))
    print(f"  {tool.name}: {run.seconds:.2f} s", file=sys.stderr)


def time_tools(tools: list[Tool], runs: int) -> dict[str, Summary]:
    """One warm-up round (page cache, bytecode), then ``runs`` rounds of every tool in turn."""
    for tool in tools:
        measure(tool.cmd)
    results = {t.name: Summary(t.name, []) for t in tools}
    for i in range(runs):
        print(f"run {i + 1} of {runs}", file=sys.stderr)
        for tool in tools:
            timed(tool, results[tool.name])
    return results


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def runs_text(summary: Summary) -> str:
    return ", ".join(f"{r.seconds:.2f}" for r in summary.runs)


def hashing_rate(tool: Tool) -> float:
    """Median bytes per second of alfcache's hashing phase (from ``--json``)."""
    rates = [s["hashing"]["bytes"] / s["hashing"]["seconds"] for s in tool.summaries]
    return float(np.median(rates))


def targets(rows: list[tuple[str, float, float, str]]) -> None:
    print("\n| target | measured | goal | met |\n|---|---|---|---|")
    for label, value, goal, op in rows:
        met = value <= goal if op == "<=" else value >= goal
        print(f"| {label} | {value:.2f}x | {op} {goal}x | {'yes' if met else 'NO'} |")


# --------------------------------------------------------------------------------------------
# throughput
# --------------------------------------------------------------------------------------------


def throughput_tree(root: Path, big: int, big_size: int, small: int, small_size: int) -> None:
    """Sessions as a rig writes them: one raw recording each, the small files spread over them."""
    stamp = root / f".bench-{big}x{big_size}-{small}x{small_size}"
    if stamp.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    block = rng.bytes(min(big_size, 64 * MIB))
    sessions = [root / f"lab/Subjects/SW{i:03d}/2024-01-01/001" for i in range(max(big, 1))]
    for i, session in zip(range(big), sessions, strict=False):
        folder = session / "raw_ephys_data"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "_spikeglx_ephysData_g0_t0.imec0.ap.cbin", "wb") as f:
            f.write(i.to_bytes(8, "little"))  # files differ, so do their digests
            for offset in range(8, big_size, len(block)):
                f.write(block[: big_size - offset])
    for j in range(small):
        folder = sessions[j % len(sessions)] / "alf"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"block{j:05d}.values.npy").write_bytes(rng.bytes(small_size))
    stamp.touch()


def bench_throughput(args: argparse.Namespace, out: Path, cores: int) -> None:
    root = (args.root / "hashing").resolve()
    big, small = args.big_mib * MIB, args.small_kib * KIB
    throughput_tree(root, args.big_files, big, args.small_files, small)
    total = args.big_files * big + args.small_files * small
    cut = f"{(big + small) // 2 // KIB}k"  # find -size: between the two file sizes
    find = f"find {root} -type f -name '*.*.*'"
    split = (
        f"{find} -size +{cut} -print0 | xargs -0 -n 1 -P {cores} md5sum > /dev/null && "
        f"{find} -size -{cut} -print0 | xargs -0 -n 64 -P {cores} md5sum > /dev/null"
    )
    each = f"{find} -print0 | xargs -0 -n 1 -P {cores} md5sum > /dev/null"
    md5_json, xxh3_json = out / "md5.json", out / "xxh3.json"
    tools = [
        Tool(f"md5sum: xargs -n 1 (big) and -n 64 (small), -P {cores}", ["sh", "-c", split]),
        Tool(f"md5sum: xargs -n 1 -P {cores}", ["sh", "-c", each]),
        Tool(
            "alfcache --hash md5",
            with_json(alfcache(root, out / "md5", "--hash", "md5"), md5_json),
            md5_json,
        ),
        Tool(
            "alfcache --hash xxh3",
            with_json(alfcache(root, out / "xxh3", "--hash", "xxh3"), xxh3_json),
            xxh3_json,
        ),
    ]
    results = time_tools(tools, args.runs)
    best = min(results[t.name].median for t in tools[:2])
    md5, xxh3 = results[tools[2].name], results[tools[3].name]
    print(
        f"\n### Hashing throughput: {args.big_files} x {args.big_mib} MiB + {args.small_files} "
        f"x {args.small_kib} KiB ({total / 1e9:.2f} GB), {cores} cores, median of {args.runs}, "
        f"warm page cache, {load()}\n"
    )
    print(
        "| tool | median wall (s) | runs (s) | MB/s, whole command | MB/s, hashing phase "
        "| speed vs best md5sum |\n|---|---|---|---|---|---|"
    )
    for tool in tools:
        s = results[tool.name]
        phase = f"{hashing_rate(tool) / 1e6:,.0f}" if tool.json else ""
        print(
            f"| {s.name} | {s.median:.2f} | {runs_text(s)} | {total / s.median / 1e6:,.0f} | "
            f"{phase} | {best / s.median:.2f}x |"
        )
    targets(
        [
            ("alfcache MD5 vs best parallel md5sum (whole command)", best / md5.median, 0.9, ">="),
            (
                "XXH3 vs MD5 (hashing phase)",
                hashing_rate(tools[3]) / hashing_rate(tools[2]),
                3,
                ">=",
            ),
            ("XXH3 vs MD5 (whole command)", md5.median / xxh3.median, 3, ">="),
        ]
    )


# --------------------------------------------------------------------------------------------
# update after a 1% change
# --------------------------------------------------------------------------------------------


def update_tree(root: Path, sessions: int, big_size: int) -> list[Path]:
    """The tree (made once) and its dataset files, sorted."""
    stamp = root / f".bench-{sessions}x{big_size}"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        tree = make_tree(root, sessions, empty_every=0)
        block = np.random.default_rng(1).bytes(big_size)
        sessions_found = sorted(p.parent for p in root.rglob("_ibl_experiment.description.yaml"))
        for i, session in enumerate(sessions_found):
            (session / BIG_FILE).write_bytes(i.to_bytes(8, "little") + block[8:])
        print(f"generated {tree.sessions} sessions in {root}", file=sys.stderr)
        stamp.touch()
    return sorted(p for p in root.rglob("*.*.*") if p.is_file())


def change_one_percent(files: list[Path], round_: int) -> None:
    """New bytes, same size, newer modification time, for every 100th file."""
    for path in files[round_ % 100 :: 100]:
        data = bytearray(path.read_bytes())
        if data:
            data[0] ^= 1 + round_ % 255
        path.write_bytes(bytes(data))
        later = path.stat().st_mtime_ns + 10**9
        os.utime(path, ns=(later, later))


def same_tables(a: Path, b: Path) -> bool:
    return all(
        pq.read_table(a / n).replace_schema_metadata(None)
        == pq.read_table(b / n).replace_schema_metadata(None)
        for n in ("sessions.pqt", "datasets.pqt")
    )


def bench_update(args: argparse.Namespace, out: Path) -> None:
    root = (args.root / f"update{args.update_sessions}").resolve()
    files = update_tree(root, args.update_sessions, args.update_big_mib * MIB)
    total = sum(p.stat().st_size for p in files)
    full, base = out / "full", out / "base"
    subprocess.run(alfcache(root, base, "--hash", "md5"), check=True)  # also warms the cache
    # --jobs 1 walks in this process: it shows what the worker pool's start costs an update.
    updates = {"--update (1% of files changed)": (), "--update --jobs 1": ("--jobs", "1")}
    tools = [Tool("full re-index, --hash md5", alfcache(root, full, "--hash", "md5"))]
    for i, (name, extra) in enumerate(updates.items()):
        summary = out / f"update{i}.json"
        cmd = alfcache(root, out / f"update{i}", "--update", *extra)
        tools.append(Tool(name, with_json(cmd, summary), summary))
    results = {t.name: Summary(t.name, []) for t in tools}
    identical = []
    for i in range(args.runs):
        print(f"run {i + 1} of {args.runs}", file=sys.stderr)
        # Every run starts from the tables of the tree as it was, then 1% of it changes.
        for k in range(len(updates)):
            shutil.copytree(base, out / f"update{k}", dirs_exist_ok=True)
        change_one_percent(files, i)
        for tool in reversed(tools):
            timed(tool, results[tool.name])
        identical += [same_tables(full, out / f"update{k}") for k in range(len(updates))]
        shutil.copytree(full, base, dirs_exist_ok=True)
    reads = [s["hashing"]["files"] for t in tools[1:] for s in t.summaries]
    print(
        f"\n### --update after changing 1% of files: {args.update_sessions} sessions x (one "
        f"{args.update_big_mib} MiB + 30 small files), {len(files)} files, {total / 1e9:.2f} GB, "
        f"median of {args.runs}, warm page cache, {load()}\n"
    )
    full_s = results[tools[0].name]
    print("| run | median wall (s) | runs (s) | peak RSS, all processes (MiB) | speed-up |")
    print("|---|---|---|---|---|")
    for tool in tools:
        s = results[tool.name]
        print(
            f"| {s.name} | {s.median:.2f} | {runs_text(s)} | {s.peak_rss / MIB:.0f} | "
            f"{full_s.median / s.median:.1f}x |"
        )
    print(
        f"\nFiles read by each update: {min(reads)} to {max(reads)} of {len(files)}; "
        f"update tables identical to the full re-index: {'yes' if all(identical) else 'NO'}"
    )
    targets(
        [
            (f"full re-index vs {t.name}", full_s.median / results[t.name].median, 10, ">=")
            for t in tools[1:]
        ]
    )


# --------------------------------------------------------------------------------------------
# update with nothing changed
# --------------------------------------------------------------------------------------------


def bench_noop(args: argparse.Namespace, out: Path) -> None:
    root = (args.root / f"tree{args.noop_sessions}").resolve()
    ensure_tree(root, args.noop_sessions)
    plain, md5 = out / "plain", out / "md5"
    subprocess.run(alfcache(root, plain), check=True)
    subprocess.run(alfcache(root, md5, "--hash", "md5"), check=True)
    tools = [
        Tool("plain index", alfcache(root, out / "index")),
        Tool("--update, nothing changed (plain tables)", alfcache(root, plain, "--update")),
        Tool("--update, nothing changed (MD5 tables)", alfcache(root, md5, "--update")),
    ]
    results = time_tools(tools, args.runs)
    base = results[tools[0].name].median
    print(
        f"\n### --update with nothing changed: {args.noop_sessions} sessions, median of "
        f"{args.runs}, warm page cache, {load()}\n"
    )
    print("| run | median wall (s) | runs (s) | peak RSS, all processes (MiB) | vs plain index |")
    print("|---|---|---|---|---|")
    for tool in tools:
        s = results[tool.name]
        print(
            f"| {s.name} | {s.median:.2f} | {runs_text(s)} | {s.peak_rss / MIB:.0f} | "
            f"{s.median / base:.2f}x |"
        )
    targets(
        [
            (tools[i].name + " vs plain index", results[tools[i].name].median / base, 1.3, "<=")
            for i in (1, 2)
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("bench-data"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="throughput,update,noop")
    parser.add_argument("--big-files", type=int, default=8)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--small-kib", type=int, default=20)
    parser.add_argument("--update-sessions", type=int, default=512)
    parser.add_argument("--update-big-mib", type=int, default=16)
    parser.add_argument("--noop-sessions", type=int, default=5000)
    args = parser.parse_args()

    cores = available_cores()
    print(
        f"{platform.node()}, {cores} cores, Python {platform.python_version()}, "
        f"{shutil.which('md5sum')}, {load()}"
    )
    benches = {
        "throughput": lambda out: bench_throughput(args, out, cores),
        "update": lambda out: bench_update(args, out),
        "noop": lambda out: bench_noop(args, out),
    }
    for name in args.only.split(","):
        out = Path(tempfile.mkdtemp(prefix=f"alfcache-bench-{name}-"))
        try:
            benches[name](out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
