"""The benchmark suite: serial against parallel, local and network storage, 10k to 1M files.

    python benchmarks/suite.py [--large] [--runs 3] [--only local,cold,network,hashing]
                               [--baseline REF] [--sweep local:100k,network:10k] [--quick]

``scripts/bench`` runs this with everything it needs installed. Trees are generated once below
``--data`` (deterministic: ``alfcache.synth.make_tree`` through ``_trees.py``, 35 files a
session, no empty sessions, which one-api 3.0.0 cannot index) and reused. Every alfcache is
measured through its command line only (``python -m alfcache index``, its options read from its
``--help``), every tool a fresh process; in each group the tools run in turn, ``--runs`` rounds,
after one warm-up round, so that noise from the rest of the machine falls on all of them alike
(each round in another order, :func:`round_order`).
For every run the wall time, the peak memory of the whole process tree and the load average are
kept.

Groups:

* ``local``: warm page cache, every size of ``--sizes``: ``find -printf``, ``fdfind`` when
  installed, the bare 64-thread walker, alfcache by default, with ``--jobs`` 1 .. all cores
  and (when the engine has the knob) ``--depths`` as ``--io-depth``, and one-api's
  ``make_parquet_db`` up to 175 thousand files (5,000 sessions).
* ``cold``: the same tools at one size with the page cache dropped before every run (needs
  write access to ``/proc/sys/vm/drop_caches``; skipped, and said so, without it).
* ``network``: each of ``--network-sizes`` through ``benchmarks/slowfs`` (a FUSE passthrough
  that waits ``--delay-ms`` on every metadata call, kernel caches off): the bare walker and
  alfcache by default, ``find`` up to 20 thousand files; skipped, and said so, when FUSE is
  not available.
* ``hashing``: MD5 and XXH3 against the best parallel ``md5sum`` (``bench_hashing.py``'s
  tree: 8 files of ``--hash-mib`` and 2,000 of 20 KiB).

The sweeps (``--sweep``, by default the local 100k and the network 10k group) add ``--jobs``
1, 2, 4, 8 and ``--io-depth`` 1, 2, 4, ... 256 to their group, for the speed-up plots.
``--baseline REF`` installs a git tag or commit into its own venv (``_baseline.py``) and runs
it as ``alfcache REF (default)`` right after ``alfcache (default)`` in every group.

Writes ``<results>/<time>.json`` (machine, versions, both alfcaches, every sample) and prints
the Markdown tables; ``benchmarks/plots.py`` turns a results file into PNG plots and the
tables. Targets are reported, never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _baseline import Baseline, clean_env, install
from _measure import measure
from _trees import available_cores, make_tree

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FILES_PER_SESSION = 35
"""30 datasets and 5 non-ALF files: what ``make_tree`` writes into a session."""

SIZES = {"1k": 30, "10k": 300, "70k": 2_000, "100k": 3_000, "175k": 5_000, "1M": 30_000}
"""Tree sizes, named by files (35 a session), in sessions: 1k for smoke tests, 70k the network
tree of issue 21's targets (2,000 sessions), 175k its 5,000 sessions against one-api."""

REFERENCE_MAX_FILES = 180_000
"""one-api takes minutes beyond this; it is measured up to the 5,000-session tree."""

NETWORK_FIND_MAX_FILES = 20_000
"""``find`` waits on every call in turn: about a minute a run at 10k files, six at 70k."""

REFERENCE = "from one.alf.cache import make_parquet_db; import sys; make_parquet_db(*sys.argv[1:])"

DROP_CACHES = Path("/proc/sys/vm/drop_caches")

LARGE_HASH_MIB = 1024
"""With ``--large``, the 8 big hashing files make 8 GiB: issue 21's MD5 target."""

PROFILES = {
    "full": {
        "sizes": "10k,100k,175k",
        "cold_size": "100k",
        "network_sizes": "10k,70k",
        "sweep": "local:100k,network:10k",
        "hash_mib": 64,
        "small_files": 2000,
        "runs": 3,
        "results": HERE / "results",
    },
    "quick": {
        "sizes": "10k",
        "cold_size": "10k",
        "network_sizes": "1k",
        "sweep": "local:10k,network:1k",
        "hash_mib": 4,
        "small_files": 200,
        "runs": 1,
        "results": REPO / "bench-data" / "quick",
    },
}
"""Defaults of the options left unset: a full run, or ``--quick``'s smoke test (about 300
sessions, one round, results kept out of ``benchmarks/results``). ``--large`` adds the 1M tree
and makes the hashing files 1 GiB each (8 GiB in all)."""


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
    """``find``, ``fdfind``, ``walker``, ``md5sum``, ``alfcache`` (the working tree),
    ``baseline`` (``--baseline``) or ``one-api``."""
    jobs: int | None = None
    io_depth: int | None = None
    default: bool = False
    """The working tree's alfcache with default arguments (``--hash md5`` when hashing)."""
    samples: list[Sample] = field(default_factory=list)


@dataclass
class Tool:
    name: str
    kind: str
    cmd: list[str]
    jobs: int | None = None
    io_depth: int | None = None
    default: bool = False
    env: dict[str, str] | None = None
    """The environment to run in; None: this process's."""
    out: Path | None = None
    """Where an alfcache run writes its tables."""


@dataclass
class Setup:
    """What every group's tools are made of."""

    cores: int
    options: set[str]
    """Options of the working tree's ``alfcache index``."""
    depths: list[int]
    """``--io-depth`` values of a group that is not swept."""
    jobs_sweep: list[int]
    depth_sweep: list[int]
    baseline: Baseline | None = None


def options(help_text: str) -> set[str]:
    """The long options a ``--help`` text names."""
    return set(re.findall(r"--[a-z][a-z0-9-]*", help_text))


def index_help(cmd: list[str], env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        [*cmd, "index", "--help"], capture_output=True, text=True, check=False, env=env
    ).stdout


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


def ours(root: Path, out: Path, setup: Setup, *args: str) -> list[str]:
    """The working tree's ``alfcache index`` of ``root`` into ``out``."""
    quiet = ["--quiet"] if "--quiet" in setup.options else []
    return [
        sys.executable,
        "-m",
        "alfcache",
        "index",
        str(root),
        *quiet,
        "--out-dir",
        str(out),
        *args,
    ]


def baseline_tool(
    baseline: Baseline, root: Path, out: Path, label: str, *args: str
) -> Tool | None:
    """The baseline's ``alfcache index`` with ``args``, or None when it lacks one of them."""
    have = options(baseline.help)
    if any(a.startswith("--") and a not in have for a in args):
        print(f"baseline {baseline.ref} has no {' '.join(args)}; not measured", file=sys.stderr)
        return None
    quiet = ["--quiet"] if "--quiet" in have else []
    cmd = baseline.command("index", str(root), *quiet, "--out-dir", str(out), *args)
    return Tool(f"alfcache {baseline.ref} {label}", "baseline", cmd, env=clean_env(), out=out)


def bare_walker(root: Path) -> Tool:
    """``bare_walker.py``: 64 threads that only list and stat, what a walk costs at least."""
    return Tool(
        "bare 64-thread walker",
        "walker",
        [sys.executable, str(HERE / "bare_walker.py"), str(root), "--threads", "64"],
    )


def walk_tools(
    root: Path,
    files: int,
    out: Path,
    setup: Setup,
    *,
    sweep: bool = False,
    knobs: bool = True,
    find: bool = True,
    reference: bool = False,
    dask: bool = False,
) -> list[Tool]:
    """Every tool measured on ``root``; alfcache writes below ``out``.

    ``knobs``: alfcache with ``--jobs`` 1 .. all cores and ``setup.depths`` as ``--io-depth``;
    ``sweep``: also ``setup.jobs_sweep`` and ``setup.depth_sweep``. With ``dask`` (and the
    ``dask`` extra installed), also ``--backend dask --scheduler local``: the whole command,
    the start of its ``LocalCluster`` included, as a user runs it.
    """
    tools = []
    if find:
        tools.append(
            Tool("find -printf", "find", ["find", str(root), "-type", "f", "-printf", "%s %p\n"])
        )
        if shutil.which("fdfind"):
            tools.append(
                Tool(
                    "fdfind",
                    "fdfind",
                    ["fdfind", "--type", "f", "--hidden", "--no-ignore", ".", str(root)],
                )
            )
    tools.append(bare_walker(root))
    tools.append(
        Tool(
            "alfcache (default)",
            "alfcache",
            ours(root, out / "default", setup),
            default=True,
            out=out / "default",
        )
    )
    if setup.baseline and (base := baseline_tool(setup.baseline, root, out / "base", "(default)")):
        tools.append(base)
    jobs = list(range(1, setup.cores + 1)) if knobs else []
    depths = setup.depths if knobs and "--io-depth" in setup.options else []
    if sweep:
        jobs = sorted({*jobs, *setup.jobs_sweep})
        depths = sorted({*depths, *setup.depth_sweep}) if "--io-depth" in setup.options else []
    for n in jobs:
        where = out / f"j{n}"
        cmd = ours(root, where, setup, "--jobs", str(n))
        tools.append(Tool(f"alfcache --jobs {n}", "alfcache", cmd, jobs=n, out=where))
    for depth in depths:
        where = out / f"d{depth}"
        cmd = ours(root, where, setup, "--io-depth", str(depth))
        tools.append(
            Tool(f"alfcache --io-depth {depth}", "alfcache", cmd, io_depth=depth, out=where)
        )
    if dask and "--backend" in setup.options and importlib.util.find_spec("distributed"):
        where = out / "dask"
        cmd = ours(root, where, setup, "--backend", "dask", "--scheduler", "local")
        tools.append(Tool("alfcache --backend dask --scheduler local", "alfcache", cmd, out=where))
    if reference and files <= REFERENCE_MAX_FILES:
        (out / "ref").mkdir(parents=True, exist_ok=True)
        tools.append(
            Tool(
                "one-api 3.0.0 make_parquet_db",
                "one-api",
                [sys.executable, "-c", REFERENCE, str(root), str(out / "ref")],
            )
        )
    return tools


def drop_caches() -> None:
    os.sync()
    DROP_CACHES.write_text("3\n")


def round_order(n: int, round_: int) -> list[int]:
    """The order of ``n`` tools in round ``round_`` (from 0): every ``step``-th tool, where the
    step is the round's own number prime to ``n``, so that each tool follows another tool in
    each round (while ``n`` has such numbers: 6 for 9 tools); the first round is in order.

    A tool run after another pays for what that one left behind: on a 2-core VM whose system
    calls are slow, the bare 64-thread walker took 70 s at 1M files and the default, always
    run next, was 8% slower than ``--jobs 2``, the same setting, in all three rounds. Now such
    a penalty falls on another tool each round, and a median of 3 drops it.
    """
    steps = [s for s in range(1, n) if math.gcd(s, n) == 1] or [1]
    step = steps[round_ % len(steps)]
    return [(round_ + k * step) % n for k in range(n)] if n else []


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
            measure(tool.cmd, env=tool.env)
    for i in range(runs):
        for at in round_order(len(tools), i):
            tool, result = tools[at], results[at]
            if cold:
                drop_caches()
            load = os.getloadavg()[0]
            run = measure(tool.cmd, env=tool.env)
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


def same_tables(tools: list[Tool], reference: Path | None = None) -> dict[str, object]:
    """Whether every working-tree alfcache of ``tools`` wrote the tables the default wrote.

    ``reference``: the default's tables of the same tree on another storage, compared too.
    Schema metadata (the writer's version and such) is left out; rows, their order and types
    count. The baseline is left out: a release may write other columns by design.
    """
    import pyarrow.parquet as pq

    def read(folder: Path) -> list[object]:
        return [
            pq.read_table(folder / name).replace_schema_metadata(None)
            for name in ("sessions.pqt", "datasets.pqt")
        ]

    written = {t.name: t.out for t in tools if t.kind == "alfcache" and t.out is not None}
    default = next(t.name for t in tools if t.default)
    expected = read(written.pop(default))
    if reference is not None and (reference / "datasets.pqt").exists():
        written["the same tree on local disk"] = reference
    differ = [name for name, out in written.items() if read(out) != expected]
    return {"compared": len(written), "differ": differ}


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


def hashing_tools(root: Path, out: Path, setup: Setup, cut: str) -> list[Tool]:
    """Parallel md5sum (files above ``cut`` one a process, the rest 64 a process), alfcache."""
    find = f"find {root} -type f -name '*.*.*'"
    cores = setup.cores
    split = (
        f"{find} -size +{cut} -print0 | xargs -0 -n 1 -P {cores} md5sum > /dev/null && "
        f"{find} -size -{cut} -print0 | xargs -0 -n 64 -P {cores} md5sum > /dev/null"
    )
    tools = [
        Tool(f"md5sum, xargs -P {cores}", "md5sum", ["sh", "-c", split]),
        Tool(
            "alfcache --hash md5",
            "alfcache",
            ours(root, out / "md5", setup, "--hash", "md5"),
            default=True,
        ),
    ]
    if setup.baseline and (
        base := baseline_tool(setup.baseline, root, out / "base", "--hash md5", "--hash", "md5")
    ):
        tools.append(base)
    tools.append(
        Tool("alfcache --hash xxh3", "alfcache", ours(root, out / "xxh3", setup, "--hash", "xxh3"))
    )
    return tools


def hashing_group(
    data: Path, out: Path, runs: int, setup: Setup, big_mib: int, n_small: int
) -> list[Result]:
    """MD5 and XXH3 against the best parallel md5sum, on bench_hashing's mixed tree."""
    from bench_hashing import KIB, MIB, throughput_tree

    big, small, n_big = big_mib * MIB, 20 * KIB, 8
    root = (data / f"hashing-{n_big}x{big_mib}M-{n_small}x20K").resolve()
    throughput_tree(root, n_big, big, n_small, small)
    tools = hashing_tools(root, out, setup, cut=f"{(big + small) // 2 // KIB}k")
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


COMPILE = (
    "import alfcache, compileall, pathlib; "
    "print(compileall.compile_dir(pathlib.Path(alfcache.__file__).parent, quiet=1))"
)


def working_tree() -> dict[str, object]:
    """The alfcache measured as ``alfcache (default)``: where it is imported from, its commit."""

    def out(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()

    py = sys.executable
    # Byte code as an install has it (pip compiles it): an editable checkout run with
    # PYTHONDONTWRITEBYTECODE set compiles every module on every run, 60 ms of a small run.
    compiled = out(py, "-c", COMPILE) == "True"
    return {
        "python": py,
        "compiled": compiled,
        "version": out(py, "-m", "alfcache", "--version"),
        "module": out(py, "-c", "import alfcache; print(alfcache.__file__)"),
        "commit": out("git", "-C", str(REPO), "rev-parse", "HEAD"),
        "changed": bool(out("git", "-C", str(REPO), "status", "--porcelain", "--", "src")),
    }


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


def numbers(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n]


def parse_args() -> argparse.Namespace:
    full = PROFILES["full"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("bench-data/suite"))
    parser.add_argument(
        "--results", type=Path, help=f"folder for the results file (default: {full['results']})"
    )
    parser.add_argument(
        "--runs", type=int, help=f"rounds of every group (default: {full['runs']})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 300-session trees (30 on the network), one round, small hashing "
        "files, results in bench-data/quick; options given still count",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="also the 1-million-file tree (about 4 GB of disk, minutes to make) and 8 GiB of "
        "hashing",
    )
    parser.add_argument("--only", default="local,cold,network,hashing")
    parser.add_argument(
        "--sizes",
        help=f"local-disk tree sizes, of {', '.join(SIZES)} (default: {full['sizes']}; "
        "--large adds 1M)",
    )
    parser.add_argument(
        "--depths",
        default="1,64",
        help="--io-depth values of the local and cold groups not swept, when the engine has it",
    )
    parser.add_argument(
        "--sweep",
        help="groups that also run --jobs-sweep and --depth-sweep, as GROUP:SIZE,... "
        f"(default: {full['sweep']}; 'none' for none)",
    )
    parser.add_argument("--jobs-sweep", default="1,2,4,8")
    parser.add_argument("--depth-sweep", default="1,2,4,8,16,32,64,128,256")
    parser.add_argument("--cold-size", help=f"default: {full['cold_size']}")
    parser.add_argument("--network-sizes", help=f"default: {full['network_sizes']}")
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument(
        "--hash-mib",
        type=int,
        help=f"MiB of each of the 8 big hashing files (default: {full['hash_mib']}, "
        f"{LARGE_HASH_MIB} with --large)",
    )
    parser.add_argument(
        "--small-files", type=int, help=f"small hashing files (default: {full['small_files']})"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip one-api (slow)")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run this git tag or commit, installed into bench-data/venv-baseline-REF, "
        "in every group",
    )
    args = parser.parse_args()
    if args.large and args.hash_mib is None:
        args.hash_mib = LARGE_HASH_MIB
    for key, value in PROFILES["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.large and "1M" not in args.sizes.split(","):
        args.sizes += ",1M"
    sweeps = [s.partition(":") for s in args.sweep.split(",") if s not in ("", "none")]
    if bad := [f"{g}{c}{s}" for g, c, s in sweeps if g not in ("local", "network") or not c]:
        parser.error(f"--sweep {', '.join(bad)}: use local:SIZE or network:SIZE")
    for name in [
        *args.sizes.split(","),
        args.cold_size,
        *args.network_sizes.split(","),
        *(s for _, _, s in sweeps),
    ]:
        if name not in SIZES:
            parser.error(f"unknown size {name!r}; use {', '.join(SIZES)}")
    return args


def main() -> int:
    args = parse_args()
    groups = set(args.only.split(","))
    sweeps = {tuple(s.split(":", 1)) for s in args.sweep.split(",") if s not in ("", "none")}
    baseline = install(args.baseline, REPO, REPO / "bench-data") if args.baseline else None
    setup = Setup(
        cores=available_cores(),
        options=options(index_help([sys.executable, "-m", "alfcache"])),
        depths=numbers(args.depths),
        jobs_sweep=numbers(args.jobs_sweep),
        depth_sweep=numbers(args.depth_sweep),
        baseline=baseline,
    )
    started = dt.datetime.now().astimezone()
    report: dict[str, object] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "working_tree": working_tree(),
        "baseline": baseline.record() if baseline else None,
        "load_at_start": os.getloadavg(),
        "runs": args.runs,
        "delay_ms": args.delay_ms,
        "sweeps": [{"group": g, "size": s} for g, s in sorted(sweeps)],
        "skipped": [],
        "identical": [],
        "results": [],
    }
    results: list[Result] = []
    skipped: list[str] = report["skipped"]  # type: ignore[assignment]
    identical: list[dict[str, object]] = report["identical"]  # type: ignore[assignment]

    def measured(
        group: str, size: str, tools: list[Tool], new: list[Result], reference: Path | None = None
    ) -> None:
        """Keep a group's results and whether its alfcache runs wrote the same tables."""
        results.extend(new)
        identical.append({"group": group, "size": size, **same_tables(tools, reference)})

    out = Path(tempfile.mkdtemp(prefix="alfcache-suite-"))
    try:
        if "local" in groups:
            for size in args.sizes.split(","):
                root, files = tree(args.data, size)
                tools = walk_tools(
                    root,
                    files,
                    out / size,
                    setup,
                    sweep=("local", size) in sweeps,
                    reference=not args.no_reference,
                    dask=True,
                )
                measured("local", size, tools, run_group("local", size, files, tools, args.runs))
        if "cold" in groups:
            if os.access(DROP_CACHES, os.W_OK):
                size = args.cold_size
                root, files = tree(args.data, size)
                tools = walk_tools(root, files, out / "cold", setup)
                new = run_group("cold", size, files, tools, args.runs, cold=True)
                measured("cold", size, tools, new)
            else:
                skipped.append(f"cold: {DROP_CACHES} is not writable (run as root)")
        if "network" in groups:
            for size in args.network_sizes.split(","):
                root, files = tree(args.data, size)
                with network_mount(root, args.delay_ms) as mnt:
                    if mnt is None:
                        skipped.append("network: FUSE or slowfs is not available (see stderr)")
                        break
                    # One --io-depth 1 run takes minutes beyond the sweep's tree: the knobs
                    # are measured where swept, the targets need only the default.
                    tools = walk_tools(
                        mnt,
                        files,
                        out / f"net{size}",
                        setup,
                        sweep=("network", size) in sweeps,
                        knobs=False,
                        find=files <= NETWORK_FIND_MAX_FILES,
                    )
                    # slowfs caches nothing: a warm-up round would only add minutes of find.
                    new = run_group("network", size, files, tools, args.runs, warm_up=False)
                    measured("network", size, tools, new, reference=out / size / "default")
        if "hashing" in groups:
            results += hashing_group(
                args.data, out / "hash", args.runs, setup, args.hash_mib, args.small_files
            )
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
