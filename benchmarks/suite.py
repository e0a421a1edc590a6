"""The benchmark suite: serial against parallel, local and network storage, 10k to 1M files.

    python benchmarks/suite.py [--large] [--runs 3] [--only local,cold,network,hashing]

``scripts/bench`` runs this with everything it needs installed. Trees are generated once below
``--data`` (deterministic: ``alfcache._synth.make_tree``, 35 files a session, no empty
sessions, which one-api 3.0.0 cannot index) and reused. Every tool is a fresh process; in each
group the tools run in turn, ``--runs`` rounds, after one warm-up round, so that noise from the
rest of the machine falls on all of them alike. For every run the wall time, the peak memory of
the whole process tree and the load average are kept.

Groups:

* ``local``: warm page cache, every size: ``find -printf``, ``fdfind`` when installed,
  alfcache by default, with ``--jobs`` 1 .. all cores and (when the engine has the knob) a few
  ``--io-depth`` values, and one-api's ``make_parquet_db`` up to 100 thousand files.
* ``cold``: the same tools at one size with the page cache dropped before every run (needs
  write access to ``/proc/sys/vm/drop_caches``; skipped, and said so, without it).
* ``network``: the 10-thousand-file tree through ``benchmarks/slowfs`` (a FUSE passthrough
  that waits ``--delay-ms`` on every metadata call, kernel caches off); skipped, and said so,
  when FUSE is not available.
* ``hashing``: MD5 and XXH3 against the best parallel ``md5sum`` (``bench_hashing.py``'s tree).

Writes ``benchmarks/results/<time>.json`` (machine, versions, every sample) and prints the
Markdown tables; ``benchmarks/plots.py`` turns a results file into PNG plots and the table the
README includes. Targets are reported, never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _measure import measure

from alfcache._index import available_cores
from alfcache._synth import make_tree

HERE = Path(__file__).resolve().parent
FILES_PER_SESSION = 35
"""30 datasets and 5 non-ALF files: what ``make_tree`` writes into a session."""

SIZES = {"10k": 300, "100k": 3_000, "1M": 30_000}
"""Tree sizes (about 10.5 thousand, 105 thousand and 1.05 million files), in sessions."""

REFERENCE_MAX_FILES = 110_000
"""one-api takes minutes beyond this; it is measured up to the 100-thousand-file tree."""

REFERENCE = "from one.alf.cache import make_parquet_db; import sys; make_parquet_db(*sys.argv[1:])"

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


@dataclass
class Sample:
    seconds: float
    peak_rss: int
    load: float
    """One-minute load average when the run started."""


@dataclass
class Result:
    group: str
    size: str
    files: int
    tool: str
    kind: str
    """``find``, ``fdfind``, ``walker``, ``alfcache`` or ``one-api``."""
    jobs: int | None = None
    io_depth: int | None = None
    default: bool = False
    """alfcache with default arguments."""
    samples: list[Sample] = field(default_factory=list)


@dataclass
class Tool:
    name: str
    kind: str
    cmd: list[str]
    jobs: int | None = None
    io_depth: int | None = None
    default: bool = False


def tree(data: Path, size: str) -> tuple[Path, int]:
    """The tree of ``size`` below ``data`` (made once) and its number of files."""
    sessions = SIZES[size]
    root = (data / f"tree-{size}").resolve()
    stamp = root / f".alfcache-suite-{sessions}"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"generating the {size}-file tree ({sessions} sessions) in {root}", file=sys.stderr)
        make_tree(root, sessions, empty_every=0)
        stamp.touch()
    return root, sessions * FILES_PER_SESSION


def has_io_depth(python: str) -> bool:
    """True when this checkout's command line has ``--io-depth`` (the adaptive engine)."""
    help_text = subprocess.run(
        [python, "-m", "alfcache", "index", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return "--io-depth" in help_text


def tools_for(
    root: Path,
    files: int,
    out: Path,
    cores: int,
    depths: list[int],
    reference: bool,
    dask: bool = False,
) -> list[Tool]:
    """Every tool measured on ``root``; alfcache writes below ``out``.

    With ``dask`` (and the ``dask`` extra installed), also ``--backend dask --scheduler local``:
    the whole command, the start of its ``LocalCluster`` included, as a user runs it.
    """
    py = sys.executable
    ours = [py, "-m", "alfcache", "index", str(root), "--quiet", "--out-dir"]
    tools = [Tool("find -printf", "find", ["find", str(root), "-type", "f", "-printf", "%s %p\n"])]
    if shutil.which("fdfind"):
        tools.append(
            Tool(
                "fdfind",
                "fdfind",
                ["fdfind", "--type", "f", "--hidden", "--no-ignore", ".", str(root)],
            )
        )
    tools.append(
        Tool("alfcache (default)", "alfcache", [*ours, str(out / "default")], default=True)
    )
    for jobs in range(1, cores + 1):
        tools.append(
            Tool(
                f"alfcache --jobs {jobs}",
                "alfcache",
                [*ours, str(out / f"j{jobs}"), "--jobs", str(jobs)],
                jobs=jobs,
            )
        )
    for depth in depths:
        tools.append(
            Tool(
                f"alfcache --io-depth {depth}",
                "alfcache",
                [*ours, str(out / f"d{depth}"), "--io-depth", str(depth)],
                io_depth=depth,
            )
        )
    if dask and importlib.util.find_spec("distributed") is not None:
        tools.append(
            Tool(
                "alfcache --backend dask --scheduler local",
                "alfcache",
                [*ours, str(out / "dask"), "--backend", "dask", "--scheduler", "local"],
            )
        )
    if reference and files <= REFERENCE_MAX_FILES:
        (out / "ref").mkdir(parents=True, exist_ok=True)
        tools.append(
            Tool(
                "one-api 3.0.0 make_parquet_db",
                "one-api",
                [py, "-c", REFERENCE, str(root), str(out / "ref")],
            )
        )
    return tools


def drop_caches() -> None:
    os.sync()
    DROP_CACHES.write_text("3\n")


def run_group(
    group: str,
    size: str,
    files: int,
    tools: list[Tool],
    runs: int,
    cold: bool = False,
    warm_up: bool = True,
) -> list[Result]:
    """A warm-up round (not when cold, or caching nothing), then ``runs`` rounds of ``tools``."""
    results = [
        Result(group, size, files, t.name, t.kind, t.jobs, t.io_depth, t.default) for t in tools
    ]
    if warm_up and not cold:
        for tool in tools:
            measure(tool.cmd)
    for i in range(runs):
        for tool, result in zip(tools, results, strict=True):
            if cold:
                drop_caches()
            load = os.getloadavg()[0]
            run = measure(tool.cmd)
            if run.returncode != 0:
                raise SystemExit(
                    f"{group} {size}: {tool.name} failed with exit code "
                    f"{run.returncode}: {' '.join(tool.cmd)}"
                )
            result.samples.append(Sample(run.seconds, run.peak_rss, load))
            print(
                f"{group} {size} run {i + 1}/{runs}: {tool.name}: {run.seconds:.2f} s, "
                f"{run.peak_rss / 2**20:.0f} MiB (load {load:.2f})",
                file=sys.stderr,
            )
    return results


def bare_walker(root: Path) -> Tool:
    """``bench_network.py``'s 64-thread list-and-stat walker, when that script has one."""
    return Tool(
        "bare 64-thread walker",
        "walker",
        [sys.executable, str(HERE / "bare_walker.py"), str(root), "--threads", "64"],
    )


@contextlib.contextmanager
def network_mount(source: Path, delay_ms: float) -> Iterator[Path | None]:
    """``source`` through slowfs, or None (with the reason on stderr) when FUSE is missing."""
    try:
        from slowfs import FuseMissing, mounted
    except ImportError:
        print("network: benchmarks/slowfs.py is missing; skipped", file=sys.stderr)
        yield None
        return
    mountpoint = Path(tempfile.mkdtemp(prefix="alfcache-slowfs-"))
    try:
        with mounted(source, mountpoint, delay_ms) as mnt:
            yield mnt
    except FuseMissing as exc:
        print(f"network: skipped: {exc}", file=sys.stderr)
        yield None
    finally:
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def hashing_group(data: Path, out: Path, runs: int, cores: int) -> list[Result]:
    """MD5 and XXH3 against the best parallel md5sum, on bench_hashing's mixed tree."""
    from bench_hashing import KIB, MIB, alfcache, throughput_tree

    root = (data / "hashing-suite").resolve()
    big, small, n_big, n_small = 64 * MIB, 20 * KIB, 8, 2000
    throughput_tree(root, n_big, big, n_small, small)
    cut = f"{(big + small) // 2 // KIB}k"
    find = f"find {root} -type f -name '*.*.*'"
    split = (
        f"{find} -size +{cut} -print0 | xargs -0 -n 1 -P {cores} md5sum > /dev/null && "
        f"{find} -size -{cut} -print0 | xargs -0 -n 64 -P {cores} md5sum > /dev/null"
    )
    tools = [
        Tool(f"md5sum, xargs -P {cores}", "md5sum", ["sh", "-c", split]),
        Tool(
            "alfcache --hash md5",
            "alfcache",
            alfcache(root, out / "md5", "--hash", "md5"),
            default=True,
        ),
        Tool("alfcache --hash xxh3", "alfcache", alfcache(root, out / "xxh3", "--hash", "xxh3")),
    ]
    size = f"{(n_big * big + n_small * small) / 1e9:.2f} GB"
    return run_group("hashing", size, n_big + n_small, tools, runs)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("alfcache", "one-api", "polars", "pyarrow", "pandas", "joblib"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    for tool in ("find", "fdfind", "md5sum"):
        path = shutil.which(tool)
        if path:
            first = subprocess.run(
                [path, "--version"], capture_output=True, text=True, check=False
            ).stdout.splitlines()
            found[tool] = first[0] if first else path
    return found


def machine() -> dict[str, object]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "node": platform.node(),
        "cpu": cpu,
        "cores": available_cores(),
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("bench-data/suite"))
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--large",
        action="store_true",
        help="also the 1-million-file tree (about 4 GB of disk, minutes to make)",
    )
    parser.add_argument("--only", default="local,cold,network,hashing")
    parser.add_argument(
        "--sizes",
        default="10k,100k",
        help=f"local-disk tree sizes, of {', '.join(SIZES)} (--large adds 1M)",
    )
    parser.add_argument(
        "--depths",
        default="1,64",
        help="--io-depth values to measure when the engine has the knob",
    )
    parser.add_argument("--cold-size", default="100k")
    parser.add_argument("--network-size", default="10k")
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument("--no-reference", action="store_true", help="skip one-api (slow)")
    args = parser.parse_args()

    groups = set(args.only.split(","))
    cores = available_cores()
    depths = [int(d) for d in args.depths.split(",")] if has_io_depth(sys.executable) else []
    sizes = args.sizes.split(",") + (["1M"] if args.large and "1M" not in args.sizes else [])
    if unknown := set(sizes) - set(SIZES):
        parser.error(f"unknown size {', '.join(sorted(unknown))}; use {', '.join(SIZES)}")
    started = dt.datetime.now().astimezone()
    report: dict[str, object] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "load_at_start": os.getloadavg(),
        "runs": args.runs,
        "delay_ms": args.delay_ms,
        "skipped": [],
        "results": [],
    }
    results: list[Result] = []
    skipped: list[str] = report["skipped"]  # type: ignore[assignment]
    out = Path(tempfile.mkdtemp(prefix="alfcache-suite-"))
    try:
        if "local" in groups:
            for size in sizes:
                root, files = tree(args.data, size)
                tools = tools_for(
                    root, files, out / size, cores, depths, not args.no_reference, dask=True
                )
                results += run_group("local", size, files, tools, args.runs)
        if "cold" in groups:
            if os.access(DROP_CACHES, os.W_OK):
                root, files = tree(args.data, args.cold_size)
                tools = tools_for(root, files, out / "cold", cores, depths, reference=False)
                results += run_group("cold", args.cold_size, files, tools, args.runs, cold=True)
            else:
                skipped.append(f"cold: {DROP_CACHES} is not writable (run as root)")
        if "network" in groups:
            root, files = tree(args.data, args.network_size)
            with network_mount(root, args.delay_ms) as mnt:
                if mnt is None:
                    skipped.append("network: FUSE or slowfs is not available (see stderr)")
                else:
                    tools = tools_for(mnt, files, out / "net", cores, depths, reference=False)
                    if (HERE / "bare_walker.py").exists():
                        tools.insert(1, bare_walker(mnt))
                    # slowfs caches nothing: a warm-up round would only add minutes of find.
                    results += run_group(
                        "network", args.network_size, files, tools, args.runs, warm_up=False
                    )
        if "hashing" in groups:
            results += hashing_group(args.data, out / "hash", args.runs, cores)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)

    report["results"] = [asdict(r) for r in results]
    report["load_at_end"] = os.getloadavg()
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"{started:%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"results: {path}", file=sys.stderr)
    from plots import tables

    print(tables(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
