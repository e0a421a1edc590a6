"""Update by path: a session added to a large cache, ``--update --only SESSION`` vs ``--update``.

    python benchmarks/bench_only.py [--sessions 5000] [--net-sessions 2000] [--delay-ms 1]
                                    [--runs 3] [--python PY] [--src DIR] [--no-net]

Generates (once) ``alfcache synth --sessions N`` trees under ``bench-data/`` (35 files a
session), indexes each once, then copies one session to a new date (what a transfer script
does) and times, interleaved, every command a fresh process, median of ``--runs``, the
previous tables put back before each run:

* on the local disk (warm page cache): ``--update --only NEW_SESSION``, ``--update
  --only-from`` a file of 1,000 session folders, and a full ``--update`` of ``--sessions``
  sessions;
* on slow network storage (``benchmarks/slowfs.py``: every metadata call waits ``--delay-ms``)
  the same of ``--net-sessions`` sessions, unless ``--no-net``.

Issue 22's targets (>= 5x local, >= 10x network) are printed as met / missed, never asserted;
the machine is shared, so the load average is printed with each table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _measure import Summary, measure
from bench_network import Target, ensure_tree, load, table, targets
from slowfs import FuseMissing, mounted

HERE = Path(__file__).resolve().parent
NEW_DATE = "2030-01-01"
"""The date of the session the benchmark adds: none of ``synth``'s sessions has it."""
MANY = 1000
"""Sessions given at once (``--only-from``): each previous session is checked against them."""


def _first_session(root: Path) -> Path:
    """A session folder of the tree with files in it (``lab/Subjects/subject/date/number``)."""
    for folder, dirs, _ in os.walk(root):
        rel = Path(folder).relative_to(root).parts
        if len(rel) == 5 and rel[1] == "Subjects" and any(Path(folder).rglob("*.npy")):
            return Path(folder)
        dirs.sort()
    raise SystemExit(f"no session with files in {root}")


def add_session(root: Path) -> str:
    """Copy a session to a new date, as a transfer would; its path relative to ``root``."""
    first = _first_session(root)
    new = first.parent.parent / NEW_DATE / first.name
    if not new.exists():
        shutil.copytree(first, new)
    return new.relative_to(root).as_posix()


def sessions_file(root: Path, n: int, path: Path) -> str:
    """``path`` listing the first ``n`` session folders of ``root``, relative to it: what
    ``find -newer`` gives ``--only-from`` after a large transfer."""
    folders = sorted(p.relative_to(root).as_posix() for p in root.glob("*/Subjects/*/*/*"))
    path.write_text("".join(f"{folder}\n" for folder in folders[:n]))
    return str(path)


def remove_session(root: Path) -> None:
    """Undo :func:`add_session`, so that the tree is the one ``synth`` made."""
    for date in root.glob(f"*/Subjects/*/{NEW_DATE}"):
        shutil.rmtree(date)


def run_reset(
    tools: dict[str, list[str]], runs: int, env: dict[str, str], out: Path, saved: Path
) -> dict[str, Summary]:
    """Every tool ``runs`` times, interleaved, each from the tables saved in ``saved``."""
    results = {name: Summary(name, []) for name in tools}
    for i in range(runs):
        for name, cmd in tools.items():
            for table_file in saved.iterdir():
                shutil.copy2(table_file, out / table_file.name)
            run = measure(cmd, env=env)
            if run.returncode != 0:
                raise SystemExit(f"{name} failed with exit code {run.returncode}: {cmd}")
            results[name].runs.append(run)
            print(f"run {i + 1}: {name}: {run.seconds:.2f} s (load {load()})", file=sys.stderr)
    return results


@contextmanager
def indexed(root: Path, py: str, env: dict[str, str]) -> Iterator[tuple[Path, Path]]:
    """Tables of ``root``: an output folder and a copy of them."""
    out = Path(tempfile.mkdtemp(prefix="alfcache-bench-only-"))
    try:
        subprocess.run(
            [py, "-m", "alfcache", "index", str(root), "--out-dir", str(out / "tables"), "-q"],
            check=True,
            env=env,
        )
        shutil.copytree(out / "tables", out / "saved")
        yield out / "tables", out / "saved"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def compare(
    root: Path, source: Path, py: str, env: dict[str, str], runs: int, header: str
) -> tuple[dict[str, Summary], float]:
    """Time ``--update --only NEW`` against ``--update`` over ``root``; the ratio of medians.

    ``source`` is where the tree is written: ``root`` itself, or what slowfs mounts there.
    """
    remove_session(source)
    with indexed(root, py, env) as (out, saved):
        new = add_session(source)
        many = sessions_file(source, MANY, out.parent / "many.txt")
        index = [py, "-m", "alfcache", "index", str(root), "--out-dir", str(out), "-q"]
        tools = {
            "--update --only NEW_SESSION": [*index, "--update", "--only", new],
            f"--update --only-from ({MANY:,} sessions)": [*index, "--update", "--only-from", many],
            "--update (full)": [*index, "--update"],
        }
        print(f"load before: {load()}", file=sys.stderr)
        results = run_reset(tools, runs, env, out, saved)
    remove_session(source)
    table(results, "--update --only NEW_SESSION", f"{header}, load average {load()}")
    ratio = results["--update (full)"].median / results["--update --only NEW_SESSION"].median
    return results, ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = HERE.parent / "bench-data"
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--net-sessions", type=int, default=2000)
    parser.add_argument("--mountpoint", type=Path, default=data / "mnt-only")
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=sys.executable, help="interpreter to run alfcache")
    parser.add_argument("--src", type=Path, help="put this alfcache source first on PYTHONPATH")
    parser.add_argument("--no-net", action="store_true", help="skip the slowfs table")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(args.src.resolve()), env.get("PYTHONPATH")])
        )
    py = args.python
    checks = []
    local = (data / f"only{args.sessions}").resolve()
    ensure_tree(local, args.sessions, py, env)
    files = args.sessions * 35
    _, ratio = compare(
        local,
        local,
        py,
        env,
        args.runs,
        f"A new session, local disk (warm): {args.sessions} sessions (~{files:,} files)",
    )
    checks.append(Target(f"local, {args.sessions} sessions: --update / --only", ratio, 5, ">="))
    if not args.no_net:
        source = (data / f"only{args.net_sessions}").resolve()
        ensure_tree(source, args.net_sessions, py, env)
        args.mountpoint.mkdir(parents=True, exist_ok=True)
        try:
            with mounted(source, args.mountpoint.resolve(), args.delay_ms) as mount:
                _, ratio = compare(
                    mount,
                    source,
                    py,
                    env,
                    args.runs,
                    f"A new session, slowfs {args.delay_ms:g} ms a call: {args.net_sessions} "
                    "sessions",
                )
            label = f"slowfs, {args.net_sessions} sessions: --update / --only"
            checks.append(Target(label, ratio, 10, ">="))
        except FuseMissing as exc:
            print(f"slowfs table skipped: {exc}", file=sys.stderr)
    targets(checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
