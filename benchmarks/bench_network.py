"""Network-storage benchmark: the walk and MD5 hashing when every metadata call waits.

    python benchmarks/bench_network.py [--sessions 300] [--delay-ms 1] [--runs 3]
                                       [--python PY] [--src DIR] [--depths 8,64,256]

Generates (once) ``alfcache synth --sessions N`` under ``bench-data/``, mounts it through
``slowfs`` (``benchmarks/slowfs.py``: every lookup/getattr, readdir, readlink and open waits
``--delay-ms``, kernel caches off) and times, interleaved, every command a fresh process,
median of ``--runs``:

* the walk: ``find -printf '%s %p\\n'``, the bare 64-thread walker (``bare_walker.py``),
  alfcache with default arguments, ``--jobs 1`` and each of ``--depths`` as ``--io-depth``
  (only when the alfcache measured has that option: read from its ``--help``);
* hashing: alfcache ``--hash md5`` against the bare walker with ``--md5`` (its 64 threads then
  open, read and MD5 every file).

``--python`` and ``--src`` choose the alfcache measured (``--src`` goes first on
``PYTHONPATH``), so one script measures any checkout: ``--src /work/wt-issue10/src``. The
targets of issue 10 are printed as met / missed, never asserted; the machine is shared, so the
load average is printed before and after each table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _measure import Summary, measure
from slowfs import FuseMissing, mounted

HERE = Path(__file__).resolve().parent


@dataclass
class Target:
    label: str
    value: float
    goal: float
    op: str  # "<=" or ">="

    @property
    def met(self) -> bool:
        return self.value <= self.goal if self.op == "<=" else self.value >= self.goal


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def ensure_tree(root: Path, sessions: int, python: str, env: dict[str, str]) -> None:
    stamp = root / f".alfcache-bench-{sessions}"
    if stamp.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(
        [python, "-m", "alfcache", "synth", str(root), "--sessions", str(sessions)],
        check=True,
        env=env,
    )
    stamp.touch()


def run_all(tools: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, Summary]:
    """Every tool ``runs`` times, interleaved so that load from elsewhere falls on all alike."""
    results = {name: Summary(name, []) for name in tools}
    for i in range(runs):
        for name, cmd in tools.items():
            run = measure(cmd, env=env)
            if run.returncode != 0:
                raise SystemExit(f"{name} failed with exit code {run.returncode}: {cmd}")
            results[name].runs.append(run)
            print(f"run {i + 1}: {name}: {run.seconds:.2f} s (load {load()})", file=sys.stderr)
    return results


def table(results: dict[str, Summary], base: str, header: str) -> None:
    base_median = results[base].median
    print(f"\n#### {header}\n")
    print(f"| tool | median wall (s) | runs (s) | peak RSS, all processes (MiB) | vs {base} |")
    print("|---|---|---|---|---|")
    for s in results.values():
        runs = ", ".join(f"{r.seconds:.2f}" for r in s.runs)
        print(
            f"| {s.name} | {s.median:.2f} | {runs} | {s.peak_rss / 2**20:.0f} | "
            f"{s.median / base_median:.2f}x |"
        )


def targets(checks: list[Target]) -> None:
    print("\n| target | measured | goal | met |\n|---|---|---|---|")
    for t in checks:
        print(f"| {t.label} | {t.value:.2f}x | {t.op} {t.goal}x | {'yes' if t.met else 'NO'} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE.parent / "bench-data" / "net300")
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--mountpoint", type=Path, default=HERE.parent / "bench-data" / "mnt")
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=sys.executable, help="interpreter to run alfcache")
    parser.add_argument("--src", type=Path, help="put this alfcache source first on PYTHONPATH")
    parser.add_argument("--depths", default="8,64,256", help="--io-depth values, if supported")
    parser.add_argument("--only", choices=["walk", "hash"], help="one of the two tables")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(args.src.resolve()), env.get("PYTHONPATH")])
        )
    py = args.python
    where = subprocess.run(
        [py, "-c", "import alfcache; print(alfcache.__file__)"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    helptext = subprocess.run(
        [py, "-m", "alfcache", "index", "--help"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    depths = [int(d) for d in args.depths.split(",") if d] if "--io-depth" in helptext else []
    root = args.root.resolve()
    ensure_tree(root, args.sessions, py, env)
    entries = sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))
    out = Path(tempfile.mkdtemp(prefix="alfcache-bench-net-"))
    try:
        with mounted(root, args.mountpoint.resolve(), args.delay_ms) as mnt:
            ours = [py, "-m", "alfcache", "index", str(mnt), "--quiet", "--out-dir"]
            bare = [sys.executable, str(HERE / "bare_walker.py"), str(mnt), "--threads", "64"]
            print(
                f"alfcache from {where}; {args.sessions} sessions, {entries} entries, "
                f"{args.delay_ms} ms per metadata call; {platform.node()}, "
                f"{os.cpu_count()} cores; median of {args.runs}, fresh processes, "
                f"interleaved{'' if depths else '; this alfcache has no --io-depth'}"
            )
            if args.only != "hash":
                walk_tools = {
                    "find -printf '%s %p\\n'": ["find", str(mnt), "-printf", "%s %p\n"],
                    "bare walker, 64 threads": bare,
                    "alfcache (default)": [*ours, str(out / "default")],
                    "alfcache --jobs 1": [*ours, str(out / "j1"), "--jobs", "1"],
                }
                for d in depths:
                    walk_tools[f"alfcache --io-depth {d}"] = [
                        *ours,
                        str(out / f"d{d}"),
                        "--io-depth",
                        str(d),
                    ]
                before = load()
                walked = run_all(walk_tools, args.runs, env)
                table(
                    walked,
                    "bare walker, 64 threads",
                    f"Walk, {args.delay_ms} ms per metadata call, {args.sessions} sessions "
                    f"({entries} entries), load average {before} before, {load()} after",
                )
                default = walked["alfcache (default)"].median
                targets(
                    [
                        Target(
                            "default vs find (speed-up)",
                            walked["find -printf '%s %p\\n'"].median / default,
                            20,
                            ">=",
                        ),
                        Target(
                            "default vs bare 64-thread walker (time)",
                            default / walked["bare walker, 64 threads"].median,
                            1.2,
                            "<=",
                        ),
                    ]
                )
            if args.only != "walk":
                hash_tools = {
                    "bare walker + 64 threads MD5": [*bare, "--md5"],
                    "alfcache --hash md5 (default)": [*ours, str(out / "md5"), "--hash", "md5"],
                }
                before = load()
                hashed = run_all(hash_tools, args.runs, env)
                table(
                    hashed,
                    "bare walker + 64 threads MD5",
                    f"MD5, {args.delay_ms} ms per metadata call, {args.sessions} sessions, "
                    f"load average {before} before, {load()} after",
                )
                targets(
                    [
                        Target(
                            "--hash md5 vs bare walk + 64-thread MD5 (time)",
                            hashed["alfcache --hash md5 (default)"].median
                            / hashed["bare walker + 64 threads MD5"].median,
                            1.5,
                            "<=",
                        )
                    ]
                )
    except FuseMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
