"""The HPC path on a real SLURM: what docs/scale-out.md tells users to run, through ``sbatch``.

``scripts/slurm-up`` brings up a one-node SLURM on this machine (``scripts/test`` runs it as
root, or through sudo without a password); without one every test here is skipped, which
fails ``scripts/test`` on CI. The commands are the page's: the ``export`` of the array-job
recipe names the variables (the tests give them their own values), and the ``bash
scripts/slurm-index.sbatch ...`` lines of its code blocks are run as they are; the Dask recipe
is the page's Python block with its sizes, paths and partition replaced. Jobs run in each
test's ``tmp_path`` (the submit folder, where their logs go), and those still queued at the end
are cancelled.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _helpers import SRC, python_env, with_sitecustomize
from _inject import READ_HOOKS
from test_shards import assert_same_tables

import alfcache
from alfcache._digest.checkpoint import CHECKPOINT_FILE
from alfcache._tables.lock import LOCK_FILE
from alfcache.synth import make_tree

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-index.sbatch"
RECIPES = (REPO / "docs" / "scale-out.md").read_text()
# States after which a job never runs again (scontrol's JobState).
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL"}
WAIT = 240.0  # seconds for jobs to end; only reached on failure
# What every task asks for here: one CPU (the node may have two), little memory.
SMALL = "--cpus-per-task=1 --mem=1G"


def _slurm_missing() -> str | None:
    """Why SLURM cannot run jobs here, or None."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH"
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 30 s (is slurmctld running?)"
    if done.returncode != 0 or not {"idle", "mixed", "allocated"} & set(done.stdout.split()):
        return f"sinfo shows no node up: {(done.stdout + done.stderr).strip() or 'nothing'}"
    return None


_MISSING = _slurm_missing()
# scripts/test allows this skip outside CI only: keep the two in step.
SKIP_REASON = "SLURM is not up (scripts/slurm-up brings it up as root)"


# --------------------------------------------------------------------------------------------
# the commands of docs/scale-out.md
# --------------------------------------------------------------------------------------------


def _recipe_lines(language: str) -> list[list[str]]:
    """The logical lines of the page's ``language`` code blocks, as words, comments dropped."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", RECIPES, flags=re.MULTILINE | re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [words for line in lines if (words := shlex.split(line, comments=True))]


def _recipe_variables() -> set[str]:
    """The variables the page's array-job recipe exports."""
    [export] = [w for w in _recipe_lines("bash") if w[0] == "export" and "SHARDS=32" in w]
    return {word.split("=", 1)[0] for word in export[1:]}


def _recipe_run(*first: str) -> list[str]:
    """The page's first ``bash scripts/slurm-index.sbatch FIRST...`` command, with this SCRIPT."""
    prefix = ["bash", "scripts/slurm-index.sbatch"]
    runs = [w for w in _recipe_lines("bash") if w[: 2 + len(first)] == [*prefix, *first]]
    assert runs, f"docs/scale-out.md runs no {shlex.join([*prefix, *first])}"
    return ["bash", str(SCRIPT), *runs[0][2:]]


def _recipe_resubmit(shard: int) -> list[str]:
    """The page's ``bash scripts/slurm-index.sbatch resubmit 7``, for ``shard``."""
    *command, example = _recipe_run("resubmit")
    assert example == "7", example
    return [*command, str(shard)]


def _variables(tmp_path: Path, root: Path, **values: str) -> dict[str, str]:
    """The page's variables with this test's values, and the environment to run them in."""
    values = {
        "ROOT": str(root),
        "OUT": str(tmp_path / "cache"),
        "ALFCACHE": f"{shlex.quote(sys.executable)} -m alfcache",
        "INDEX_OPTIONS": "--jobs 1 --hash md5 --quiet",
        "SUBMIT_OPTIONS": f"{SMALL} --time=00:10:00",
        **values,
    }
    assert set(values) - {"PYTHONPATH", "READ_LOG", "READ_DELAY"} == _recipe_variables()
    return python_env(**values)


def _submit(argv: list[str], tmp_path: Path, env: dict[str, str]) -> tuple[list[str], str]:
    """Run a submitting command; returns the ids of its index jobs and of its merge job."""
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    match = re.search(r"submitted \D+ ([\d ]+) \(.*\) and merge job (\d+) ", done.stdout)
    assert match, done.stdout
    return match[1].split(), match[2]


# --------------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------------


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[None]:
    """SLURM is up; jobs submitted from ``tmp_path`` still queued at the end are cancelled."""
    if _MISSING is not None:
        pytest.skip(f"{SKIP_REASON}: {_MISSING}")
    yield
    listed = subprocess.run(["squeue", "-h", "-o", "%A %Z"], capture_output=True, text=True)
    ours = [
        job
        for job, _, folder in (line.partition(" ") for line in listed.stdout.splitlines())
        if Path(folder) == tmp_path or tmp_path in Path(folder).parents
    ]
    if ours:
        subprocess.run(["scancel", *ours], check=False)


def _records(job: str) -> list[dict[str, str]]:
    """``scontrol show job``'s records of ``job``: one, or one per task of an array."""
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, check=True
    )
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.stdout.splitlines()]


def _wait(*jobs: str) -> dict[str, dict[str, str]]:
    """Wait until ``jobs`` ended or can never start; their records by id (``4001_2``: a task)."""
    deadline = time.monotonic() + WAIT
    while True:
        records = [r for job in jobs for r in _records(job)]
        # A job whose dependency can no longer be met would wait for ever: it ended too.
        if all(
            r["JobState"] in ENDED or r["Reason"] == "DependencyNeverSatisfied" for r in records
        ):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"jobs did not end: {[(r['JobId'], r['JobState']) for r in records]}")
        time.sleep(1)
    by_id = {}
    for r in records:
        task = r.get("ArrayTaskId")
        by_id[f"{r['ArrayJobId']}_{task}" if task else r["JobId"]] = r
    return by_id


def _states(records: dict[str, dict[str, str]]) -> dict[str, str]:
    return {job: r["JobState"] for job, r in records.items()}


def _assert_never_ran(merge: dict[str, str], tmp_path: Path) -> None:
    """The merge job was cancelled by its dependency and never started."""
    assert merge["JobState"] == "CANCELLED", merge
    assert merge["Reason"] == "DependencyNeverSatisfied", merge
    assert not (tmp_path / f"alfcache-merge-{merge['JobId']}.log").exists()
    assert not (tmp_path / "cache" / "sessions.pqt").exists()


# --------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("slurm")
def test_array_job_then_merge_equal_one_run(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", 30).root
    env = _variables(tmp_path, root, SHARDS="3")
    [array], merge = _submit(_recipe_run(), tmp_path, env)

    ended = _wait(array, merge)
    assert _states(ended) == {
        **{f"{array}_{k}": "COMPLETED" for k in range(3)},
        merge: "COMPLETED",
    }
    assert "merged 3 shards" in (tmp_path / f"alfcache-merge-{merge}.log").read_text()
    alfcache.index(root, tmp_path / "full", n_jobs=1, hash_algorithm="md5")  # as --hash md5
    assert_same_tables(tmp_path / "full", tmp_path / "cache")


@pytest.mark.usefixtures("slurm")
def test_failed_task_cancels_the_merge_and_the_resubmitted_shard_completes(
    tmp_path: Path,
) -> None:
    root = make_tree(tmp_path / "data", 30).root
    parts = tmp_path / "cache" / "parts"
    # Tables of shard 1 from an earlier state of the tree: merged, they would be wrong.
    alfcache.index(root, parts / "1", shard=(1, 3), n_jobs=1, hash_algorithm="md5")
    for path in root.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes() + b"changed")
    env = _variables(
        tmp_path, root, SHARDS="3", INDEX_OPTIONS="--jobs 1 --hash md5 --quiet --lock-timeout 1"
    )
    # Task 1 fails: its output folder is locked by another run for as long as it waits.
    with open(parts / "1" / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        [array], merge = _submit(_recipe_run(), tmp_path, env)
        ended = _wait(array, merge)
    assert _states(ended) == {
        f"{array}_0": "COMPLETED",
        f"{array}_1": "FAILED",
        f"{array}_2": "COMPLETED",
        merge: "CANCELLED",
    }
    assert (
        "being written by another alfcache run"
        in (tmp_path / f"alfcache-{array}_1.log").read_text()
    )
    _assert_never_ran(ended[merge], tmp_path)

    [again], merge = _submit(_recipe_resubmit(1), tmp_path, env)
    assert _states(_wait(again, merge)) == {again: "COMPLETED", merge: "COMPLETED"}
    alfcache.index(root, tmp_path / "full", n_jobs=1, hash_algorithm="md5")
    assert_same_tables(tmp_path / "full", tmp_path / "cache")


N_FILES = 30
# Seconds per file: N_FILES of them (3 minutes) outlast the 1-minute limit with a wide margin,
# as slurmctld checks limits only every 30 s and the task ends at SLURM's SIGTERM anyway.
READ_DELAY = 6


def _read(log: Path) -> set[str]:
    return set(log.read_text().splitlines()) if log.exists() else set()


@pytest.mark.usefixtures("slurm")
def test_time_limit_checkpoints_and_the_resubmitted_task_reads_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(N_FILES):
        path = root / f"mouse/2021-01-{1 + i % 10:02}/00{1 + i // 10}/alf/big{i}.times.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(8 << 20)  # sparse, and a reading task of its own
    hooks = with_sitecustomize(tmp_path, READ_HOOKS)
    first, second = tmp_path / "read1.log", tmp_path / "read2.log"
    env = _variables(
        tmp_path,
        root,
        SHARDS="1",
        SUBMIT_OPTIONS=f"{SMALL} --time=00:01:00",
        PYTHONPATH=f"{hooks}:{SRC}",
        READ_LOG=str(first),
        READ_DELAY=str(READ_DELAY),
    )
    [array], merge = _submit(_recipe_run(), tmp_path, env)
    ended = _wait(array, merge)
    assert _states(ended) == {f"{array}_0": "TIMEOUT", merge: "CANCELLED"}
    _assert_never_ran(ended[merge], tmp_path)
    log = (tmp_path / f"alfcache-{array}_0.log").read_text()
    assert "alfcache: error: terminated by SIGTERM (a job's time limit?)" in log, log
    checkpoint = tmp_path / "cache" / "parts" / "0" / CHECKPOINT_FILE
    saved = set(pq.read_table(checkpoint).column("path").to_pylist())
    read = {str(Path(p).relative_to(root)) for p in _read(first)}
    assert 0 < len(saved) < N_FILES and saved <= read, (saved, read)

    # The page's resubmission, with a longer limit and no slow reading.
    env |= {
        "SUBMIT_OPTIONS": f"{SMALL} --time=00:10:00",
        "READ_LOG": str(second),
        "READ_DELAY": "0",
    }
    [again], merge = _submit(_recipe_resubmit(0), tmp_path, env)
    assert _states(_wait(again, merge)) == {again: "COMPLETED", merge: "COMPLETED"}
    reread = {str(Path(p).relative_to(root)) for p in _read(second)}
    assert not reread & saved
    assert reread | saved == {str(p.relative_to(root)) for p in root.rglob("*.npy")}
    assert not checkpoint.exists()
    alfcache.index(root, tmp_path / "full", n_jobs=1, hash_algorithm="md5")
    assert_same_tables(tmp_path / "full", tmp_path / "cache")


@pytest.mark.usefixtures("slurm")
def test_request_larger_than_a_node_is_refused_at_submission(tmp_path: Path) -> None:
    cpus = max(int(c) for c in subprocess.check_output(["sinfo", "-h", "-o", "%c"]).split())
    env = _variables(
        tmp_path, tmp_path / "data", SHARDS="2", SUBMIT_OPTIONS=f"--cpus-per-task={cpus + 1}"
    )
    done = subprocess.run(
        _recipe_run(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{SCRIPT}: error: SLURM cannot run a task asking for "), line
    assert f"--cpus-per-task={cpus + 1} (" in line and f" {cpus} CPUs " in line, line
    assert line.endswith("nothing was submitted"), line
    listed = subprocess.run(["squeue", "-h", "-o", "%Z"], capture_output=True, text=True)
    assert str(tmp_path) not in listed.stdout.split()
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "shards", [[], ["x"], ["1", "2"]], ids=["none", "not-a-number", "too-big"]
)
def test_resubmit_takes_shards_of_the_array(tmp_path: Path, shards: list[str]) -> None:
    # Checked before anything is asked of SLURM: this runs without one.
    env = _variables(tmp_path, tmp_path / "data", SHARDS="2")
    done = subprocess.run(
        [*_recipe_resubmit(0)[:-1], *shards], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    got = shards[-1] if shards else "none"
    assert done.stderr == f"usage: {SCRIPT} resubmit K [K ...], K a shard of 0-1; got {got}\n"
    assert not (tmp_path / "cache").exists()


def _recipe_dask(**replace: str) -> str:
    """The page's SLURMCluster recipe with each ``old`` of ``replace`` (all there) replaced."""
    [code] = [
        block
        for block in re.findall(r"^```python\n(.*?)^```", RECIPES, flags=re.MULTILINE | re.DOTALL)
        if "SLURMCluster(" in block
    ]
    for old, new in replace.items():
        assert old in code, old
        code = code.replace(old, new)
    return code


@pytest.mark.usefixtures("slurm")
def test_slurmcluster_recipe_equals_the_default_backend(tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue", reason="the test extra installs dask-jobqueue")
    root = make_tree(tmp_path / "data", 30).root
    partition = subprocess.check_output(["sinfo", "-h", "-o", "%P"], text=True).split()[0]
    code = _recipe_dask(
        **{
            'cores=8, processes=8, memory="16GB"': 'cores=1, processes=1, memory="1GB"',
            'queue="cpu"': f"queue={partition.rstrip('*')!r}",
            'python="~/alfcache-venv/bin/python"': f"python={sys.executable!r}",
            "cluster.scale(jobs=4)": "cluster.scale(jobs=2)",
            "client.wait_for_workers(32)": "client.wait_for_workers(2)",
            '"/mnt/lab-data"': repr(str(root)),
            '"/mnt/cache"': repr(str(tmp_path / "cache")),
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # the workers' jobs are submitted from here
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    workers = list(tmp_path.glob("slurm-*.out"))
    assert len(workers) == 2, workers  # the workers ran as two SLURM jobs
    alfcache.index(root, tmp_path / "full", hash_algorithm="md5")
    assert_same_tables(tmp_path / "full", tmp_path / "cache", run_options=False)


def test_skipped_slurm_tests_fail_scripts_test_on_ci(tmp_path: Path) -> None:
    # scripts/test's ALLOWED_SKIPS and unexpected_skips, run on a log of these tests skipped.
    text = (REPO / "scripts" / "test").read_text()
    start = text.index("ALLOWED_SKIPS=(")
    end = text.index("\n}\n", text.index("unexpected_skips() {")) + 3
    log = tmp_path / "pytest.log"
    skipped = f"SKIPPED [5] tests/test_slurm.py:99: {SKIP_REASON}: no sbatch on PATH"
    log.write_text(f"{skipped}\n")
    found = {}
    for ci in ("true", ""):
        done = subprocess.run(
            ["bash", "-c", f'{text[start:end]}\nunexpected_skips "$1"', "-", str(log)],
            env={**os.environ, "CI": ci},
            capture_output=True,
            text=True,
            check=True,
        )
        found[ci] = done.stdout.strip()
    assert found == {"true": skipped, "": ""}
