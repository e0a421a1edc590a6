"""Walk benchmark: alfcache against `find`, against itself on one core, and against ONE-api.

    python benchmarks/bench_index.py [--root DIR] [--sessions 5000] [--runs 3]

Generates (once) a tree of ``--sessions`` sessions with 30 datasets each, warms the page cache,
then runs every tool ``--runs`` times, interleaved so that noise from other work on the machine
falls on all of them alike. Wall time and the peak memory of each tool's whole process tree are
measured; the table is printed in Markdown with ratios taken from the same run. The targets are
reported, never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from _measure import Summary, measure
from _trees import available_cores, make_tree

REFERENCE = (
    "from one.alf.cache import make_parquet_db; import sys; make_parquet_db(sys.argv[1], {})"
)


def ensure_tree(root: Path, sessions: int) -> None:
    stamp = root / f".alfcache-bench-{sessions}"
    if stamp.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    # No empty sessions: ONE-api 3.0.0's make_parquet_db fails on them with hash_ids=True.
    tree = make_tree(root, sessions, empty_every=0)
    print(
        f"generated {tree.sessions} sessions, {tree.datasets} datasets, "
        f"{tree.non_alf_files} non-ALF files in {root}",
        file=sys.stderr,
    )
    stamp.touch()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("bench-data/tree5000"))
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip ONE-api (minutes)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    root = args.root.resolve()
    ensure_tree(root, args.sessions)
    out = Path(tempfile.mkdtemp(prefix="alfcache-bench-"))
    ours = [sys.executable, "-m", "alfcache", "index", str(root), "--quiet", "--out-dir"]
    tools = {
        "find -printf '%s %p'": ["find", str(root), "-type", "f", "-printf", "%s %p\n"],
        "alfcache --jobs 1": [*ours, str(out / "j1"), "--jobs", "1"],
        f"alfcache --jobs {available_cores()} (all cores)": [*ours, str(out / "jn")],
    }
    if not args.no_reference:
        (out / "ref").mkdir()
        code = REFERENCE.format(repr(str(out / "ref")))
        tools["one-api 3.0.0 make_parquet_db"] = [sys.executable, "-c", code, str(root)]

    measure(tools["find -printf '%s %p'"])  # warm the page cache
    results = {name: Summary(name, []) for name in tools}
    for i in range(args.runs):
        for name, cmd in tools.items():
            run = measure(cmd)
            if run.returncode != 0:
                print(f"{name} failed with exit code {run.returncode}", file=sys.stderr)
                return 1
            results[name].runs.append(run)
            print(
                f"run {i + 1}: {name}: {run.seconds:.2f} s, {run.peak_rss / 2**20:.0f} MiB",
                file=sys.stderr,
            )
    shutil.rmtree(out, ignore_errors=True)

    names = list(tools)
    find, serial, parallel = (results[n] for n in names[:3])
    reference = results.get(names[3]) if len(names) > 3 else None
    print(
        f"\n{args.sessions} sessions, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, median of {args.runs}, warm page cache\n"
    )
    print("| tool | median wall (s) | runs (s) | peak RSS, all processes (MiB) | vs find |")
    print("|---|---|---|---|---|")
    for s in results.values():
        runs = ", ".join(f"{r.seconds:.2f}" for r in s.runs)
        print(
            f"| {s.name} | {s.median:.2f} | {runs} | {s.peak_rss / 2**20:.0f} | "
            f"{s.median / find.median:.2f}x |"
        )
    checks = [
        ("all cores within 1.5x of find", parallel.median / find.median, 1.5, "<="),
        ("all cores vs --jobs 1 speed-up", serial.median / parallel.median, 1.4, ">="),
    ]
    if reference:
        checks += [
            ("speed-up over one-api", reference.median / parallel.median, 30, ">="),
            ("peak memory vs one-api", parallel.peak_rss / reference.peak_rss, 1.0, "<="),
        ]
    print("\n| target | measured | goal | met |\n|---|---|---|---|")
    for label, value, goal, op in checks:
        met = value <= goal if op == "<=" else value >= goal
        print(f"| {label} | {value:.2f} | {op} {goal} | {'yes' if met else 'NO'} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    s.name: {
                        "median_s": s.median,
                        "runs_s": [r.seconds for r in s.runs],
                        "peak_rss_bytes": s.peak_rss,
                    }
                    for s in results.values()
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
