"""Array shards (``--shard K/N``) and their merge: N partial runs make the tables of one run.

Every test compares against a full run of the same tree, read back from disk: the merged
tables must be equal row for row and type for type, ids included, with the same metadata but
``date_created``. The trees hold what could split a session across shards if the split were
careless: ``1`` and ``001`` of one day, the same ALF path below two parent folders, a session
without a lab folder that ``lab=`` makes equal to one with it, and a nested session.

``scripts/slurm-index.sbatch`` is tested at the end without SLURM (tests/test_slurm.py submits
it to a real one): its index step
runs once per array task with the ``SLURM_ARRAY_*`` variables an array job ``--array=1-3``
sets, then its merge step, and the result must be the tables of one full run. Its submit step
runs against a stand-in ``sbatch`` on ``PATH`` that records its arguments, to check that the
merge job waits for the whole array (``afterok``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from _helpers import SRC, python_env, run_alfcache

import alfcache
from alfcache import BadArgument, MergeFailed
from alfcache._alf.sharding import METADATA_KEY, ArrayShard, session_shard, shard_from_env
from alfcache._maintain.merge import merge_parts
from alfcache._walk.scan import Rules, Start, scan_folders
from alfcache.synth import make_tree

TABLES = ("sessions.pqt", "datasets.pqt")
SPIKES = "alf/spikes.times.npy"
AWKWARD = [
    "s1/2021-01-01/1/alf/from.unpadded.npy",  # clashes with 001 of the same day
    "s1/2021-01-01/001/alf/from.padded.npy",
    "a/s2/2021-02-01/001/alf/first.parent.npy",  # one ALF path below two parent folders
    "b/s2/2021-02-01/001/alf/second.parent.npy",
    "cortexlab/Subjects/s3/2021-03-01/001/alf/with.lab.npy",  # one session given lab=cortexlab
    "s3/2021-03-01/001/alf/without.lab.npy",
    "s4/2021-04-01/001/alf/outer.times.npy",  # a session inside a session
    "s4/2021-04-01/001/raw/s5/2021-05-01/002/alf/inner.times.npy",
]


@pytest.fixture
def tree(tmp_path: Path, make_files: Any) -> Path:
    root = make_tree(tmp_path / "data", 36, empty_every=7, no_lab_every=3).root
    return make_files(root, AWKWARD)


def _cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_alfcache(*args, env=python_env(**(env or {})))


def _metadata(path: Path, run_options: bool) -> dict[bytes, object]:
    meta = dict(pq.read_schema(path).metadata)
    one = json.loads(meta.pop(b"one_metadata"))
    del one["date_created"]
    record = json.loads(meta.pop(b"alfcache"))
    del record["run"]  # each write's own id
    if not run_options:
        del record["options"]
    return {**meta, b"one_metadata": one, b"alfcache": record}


def assert_same_tables(expected: Path, actual: Path, run_options: bool = True) -> None:
    """The tables in ``actual`` are those in ``expected``, ``date_created`` aside.

    ``run_options=False`` ignores the options of the run recorded in alfcache's provenance
    (how the tables were made, e.g. ``update``), not what the tables hold.
    """
    for name in TABLES:
        want, got = pq.read_table(expected / name), pq.read_table(actual / name)
        assert got.schema.equals(want.schema), (name, got.schema, want.schema)
        assert got.equals(want), name
        want_meta = _metadata(expected / name, run_options)
        assert _metadata(actual / name, run_options) == want_meta, name


def _index_shards(root: Path, parts: Path, n: int, **kwargs: Any) -> list[alfcache.IndexReport]:
    return [alfcache.index(root, parts / str(k), shard=(k, n), **kwargs) for k in range(n)]


@pytest.mark.parametrize(
    "options",
    [
        {"n_jobs": 1},
        {"n_jobs": 2, "hash_algorithm": "both"},
        {"n_jobs": 2, "hash_ids": False, "lab": "cortexlab"},
    ],
    ids=["one-worker", "hashed", "path-ids-and-lab"],
)
def test_three_shards_merged_equal_the_full_run(
    tree: Path, tmp_path: Path, options: dict[str, Any]
) -> None:
    if "lab" in options:  # lab= conflicts with the other labs' folders: keep one lab
        for subjects in tree.glob("*/Subjects"):
            if subjects.parent.name != "cortexlab":
                subjects.parent.rename(tmp_path / subjects.parent.name)
    full = alfcache.index(tree, tmp_path / "full", **options)
    reports = _index_shards(tree, tmp_path / "parts", 3, **options)
    merged = merge_parts([tmp_path / "parts" / str(k) for k in range(3)], tmp_path / "merged")

    assert_same_tables(tmp_path / "full", tmp_path / "merged")
    assert (merged.sessions, merged.datasets, merged.shards) == (full.sessions, full.datasets, 3)
    assert all(0 < r.sessions < full.sessions for r in reports), [r.sessions for r in reports]
    assert sum(r.sessions for r in reports) == full.sessions
    # Each clash is resolved inside one shard, and reported once, as in the full run.
    clashes = sorted(s for r in reports for s in r.skipped if s.reason == "session_clash")
    assert clashes == sorted(s for s in full.skipped if s.reason == "session_clash")
    assert len(clashes) == (3 if "lab" in options else 2)
    assert METADATA_KEY.encode() not in pq.read_schema(tmp_path / "merged" / TABLES[0]).metadata


def test_partial_tables_record_shard_origin_and_options(tree: Path, tmp_path: Path) -> None:
    report = alfcache.index(tree, tmp_path / "p", shard=(1, 4), n_jobs=1, hash_files=True)
    infos = [
        json.loads(pq.read_schema(p).metadata[METADATA_KEY.encode()])
        for p in (report.sessions_table, report.datasets_table)
    ]
    assert infos[0] == infos[1]
    run = infos[0].pop("run")
    assert len(run) == 32
    assert infos[0] == {
        "shard": 1,
        "of": 4,
        "origin": str(tree.resolve()),
        "options": {
            "hash_ids": "uuid3",
            "lab": None,
            "hash": ["md5"],
            "follow_symlinks": False,
            "keep_missing": False,
        },
    }
    assert report.as_dict()["shard"] == "1/4"


def test_walk_does_not_enter_sessions_of_other_shards(tmp_path: Path, make_files: Any) -> None:
    # A broken link in every session: a shard that listed a session folder would report it.
    root = make_files(tmp_path / "data", [f"m{i}/2021-01-01/001/{SPIKES}" for i in range(12)])
    for i in range(12):
        (root / f"m{i}/2021-01-01/001/alf/broken.link.npy").symlink_to("/nowhere")
    for k in range(3):
        result = scan_folders(Rules(str(root), array_shard=ArrayShard(k, 3)), [Start("", True)])
        mine = {f"m{i}" for i in range(12) if session_shard(f"m{i}", "2021-01-01", "1", 3) == k}
        assert mine, "each shard should hold some of the 12 subjects"
        assert {s.path.split("/")[0] for s in result.skipped} == mine
        assert set(result.sessions.column("subject").to_pylist()) == mine
    # A planner's shard that starts inside a foreign session is not walked either.
    other = next(i for i in range(12) if session_shard(f"m{i}", "2021-01-01", "1", 3) != 0)
    result = scan_folders(
        Rules(str(root), array_shard=ArrayShard(0, 3)),
        [Start(f"m{other}/2021-01-01/001/alf", True)],
    )
    assert (result.datasets.num_rows, result.skipped) == (0, [])


def test_nested_session_clashing_across_shards_fails_the_merge(
    tmp_path: Path, make_files: Any
) -> None:
    # outer/2021-01-01/001 holds a session equal (for ONE-api) to a top-level one; put the two
    # in different shards: the merge must refuse rather than write two rows for one session.
    inner = "y/2021-01-05/001"
    outer = next(
        f"x{i}/2021-01-01/001"
        for i in range(100)
        if session_shard(f"x{i}", "2021-01-01", "001", 2)
        != session_shard("y", "2021-01-05", "1", 2)
    )
    root = make_files(
        tmp_path / "data",
        [f"{outer}/{SPIKES}", f"{outer}/sub/{inner}/{SPIKES}", f"{inner}/{SPIKES}"],
    )
    _index_shards(root, tmp_path / "parts", 2, n_jobs=1)
    with pytest.raises(MergeFailed, match=r"sessions in more than one shard: y/2021-01-05/1"):
        merge_parts([tmp_path / "parts/0", tmp_path / "parts/1"], tmp_path / "merged")
    assert not (tmp_path / "merged" / "sessions.pqt").exists()


def test_missing_doubled_and_mismatched_parts(tree: Path, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    _index_shards(tree, parts, 3, n_jobs=1)
    out = tmp_path / "merged"
    with pytest.raises(MergeFailed, match=r"shards missing: 1/3 \(have 2 of 3\)"):
        merge_parts([parts / "0", parts / "2"], out)
    # the first and the last shard are as easy to miss as a middle one
    with pytest.raises(MergeFailed, match=r"shards missing: 0/3 \(have 2 of 3\)"):
        merge_parts([parts / "1", parts / "2"], out)
    with pytest.raises(MergeFailed, match=r"shards missing: 2/3 \(have 2 of 3\)"):
        merge_parts([parts / "0", parts / "1"], out)
    with pytest.raises(MergeFailed, match=r"more than once: shard 2/3 in .*parts/2, .*parts/2"):
        merge_parts([parts / "0", parts / "1", parts / "2", parts / "2"], out)
    alfcache.index(tree, tmp_path / "hashed", shard=(1, 3), n_jobs=1, hash_files=True)
    with pytest.raises(MergeFailed, match=r"not of one array job: .*\"hash\": \[\].* but .*md5"):
        merge_parts([parts / "0", tmp_path / "hashed", parts / "2"], out)
    alfcache.index(tree, tmp_path / "of4", shard=(1, 4), n_jobs=1)
    with pytest.raises(MergeFailed, match=r"shard 1/4 of"):
        merge_parts([parts / "0", tmp_path / "of4", parts / "2"], out)
    alfcache.index(tree, tmp_path / "whole", n_jobs=1)
    with pytest.raises(MergeFailed, match=r"whole holds tables that are not partial"):
        merge_parts([parts / "0", tmp_path / "whole", parts / "2"], out)
    with pytest.raises(MergeFailed, match=r"nothing holds no sessions.pqt"):
        merge_parts([parts / "0", tmp_path / "nothing", parts / "2"], out)
    # One shard folder with the sessions.pqt of one run and the datasets.pqt of another.
    alfcache.index(tree, tmp_path / "again", shard=(1, 3), n_jobs=1)
    (tmp_path / "again/datasets.pqt").replace(parts / "1/datasets.pqt")
    with pytest.raises(MergeFailed, match=r"parts/1 holds the sessions.pqt of one run"):
        merge_parts([parts / "0", parts / "1", parts / "2"], out)
    assert not out.exists() or not any(out.iterdir())


def test_merge_command_line(tree: Path, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    _index_shards(tree, parts, 2, n_jobs=1)
    done = _cli("merge", parts / "0", parts / "1", "--out-dir", tmp_path / "m", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["shards"] == 2 and summary["origin"] == str(tree.resolve())
    assert done.stderr.startswith("alfcache: merged 2 shards of ")
    missing = _cli("merge", parts / "0", "--out-dir", tmp_path / "m2")
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"alfcache: error: shards missing: 1/2 (have 1 of 2); index them (alfcache index "
        f"{tree.resolve()} --shard K/2) and merge again"
    ]


def test_hashing_and_update_per_shard(tree: Path, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    _index_shards(tree, parts, 3, n_jobs=1, hash_files=True)
    changed = tree / "s1/2021-01-01/001/alf/from.padded.npy"
    changed.write_bytes(b"new content, new size")
    (tree / "s1/2021-01-01/001/alf/added.times.npy").write_bytes(b"added")
    updates = _index_shards(tree, parts, 3, n_jobs=1, update=True)
    owner = session_shard("s1", "2021-01-01", "001", 3)
    for k, report in enumerate(updates):
        assert report.changes is not None and report.hashing is not None
        touched = (report.changes.new, report.changes.changed, report.hashing.files)
        assert touched == ((1, 1, 2) if k == owner else (0, 0, 0)), k
    merge_parts([parts / str(k) for k in range(3)], tmp_path / "merged")
    alfcache.index(tree, tmp_path / "full", n_jobs=1, hash_files=True)
    # The parts record update=True, the full run hash_files=True: same digests, same rows.
    assert_same_tables(tmp_path / "full", tmp_path / "merged", run_options=False)


def test_update_refuses_tables_of_another_shard(tree: Path, tmp_path: Path) -> None:
    alfcache.index(tree, tmp_path / "p", shard=(0, 3), n_jobs=1)
    with pytest.raises(BadArgument, match=r"--update --shard 1/3: .* are shard 0/3;"):
        alfcache.index(tree, tmp_path / "p", shard=(1, 3), n_jobs=1, update=True)
    alfcache.index(tree, tmp_path / "whole", n_jobs=1)
    with pytest.raises(BadArgument, match=r"are not partial tables"):
        alfcache.index(tree, tmp_path / "whole", shard=(0, 3), n_jobs=1, update=True)


@pytest.mark.parametrize("bad", [(3, 3), (-1, 2), (0, 0), (1,), [0, 2], (True, 2), "0/2"])
def test_bad_shard_argument(tree: Path, tmp_path: Path, bad: object) -> None:
    with pytest.raises(BadArgument, match=r"shard=.* is not a shard; pass \(k, n\)"):
        alfcache.index(tree, tmp_path / "out", shard=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("3/3", "shard 3/3: K must be 0 to N-1"),
        ("two/3", "'two/3' is not K/N"),
        ("1", "'1' is not K/N"),
    ],
)
def test_cli_bad_shard(tmp_path: Path, arg: str, message: str) -> None:
    done = _cli("index", tmp_path, "--shard", arg)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("alfcache: error: argument --shard: ") and message in line, line


def test_shard_from_slurm_variables() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_env(env) == ArrayShard(2, 4)
    assert shard_from_env({"SLURM_JOB_ID": "12"}) is None
    with pytest.raises(BadArgument, match="SLURM_ARRAY_TASK_MIN=None"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"})
    with pytest.raises(BadArgument, match="contiguous array"):  # --array=0-12:4 has 4 tasks
        shard_from_env({**env, "SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "0"})


def test_cli_takes_the_shard_from_slurm(tree: Path, tmp_path: Path) -> None:
    env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"}
    done = _cli("index", tree, "--out-dir", tmp_path / "p", "-j", "1", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["shard"] == "1/3"
    assert "alfcache: indexing shard 1/3 of a SLURM array job" in done.stderr
    # --shard wins over the array's variables (0/1: the whole tree, inside an array task).
    done = _cli("index", tree, "--out-dir", tmp_path / "w", "-j", "1", "--shard", "0/1", env=env)
    assert done.returncode == 0, done.stderr
    full = alfcache.index(tree, tmp_path / "full", n_jobs=1)
    assert pq.read_table(tmp_path / "w/sessions.pqt").num_rows == full.sessions


# --------------------------------------------------------------------------------------------
# scripts/slurm-index.sbatch
# --------------------------------------------------------------------------------------------

SCRIPT = SRC.parent / "scripts" / "slurm-index.sbatch"

FAKE_SBATCH = """#!/usr/bin/env bash
[[ $1 == --test-only ]] && exit 0  # the check that the tasks fit a node: they do
echo "$*" >> "$SBATCH_LOG"
n=$(wc -l < "$SBATCH_LOG")
echo "$((4000 + n));cluster1"
"""


def _step(step: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), step], env=env, capture_output=True, text=True, timeout=300
    )


def _options(tmp_path: Path, root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "ROOT": str(root),
        "OUT": str(tmp_path / "cache"),
        "PARTS": str(tmp_path / "parts"),
        "SHARDS": "3",
        "INDEX_OPTIONS": "--jobs 1 --hash md5 --quiet",
        "ALFCACHE": f"{shlex.quote(sys.executable)} -m alfcache",
    }


def test_array_tasks_then_merge_equal_one_run(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", 30).root
    env = _options(tmp_path, root)
    for task in (1, 2, 3):  # as --array=1-3 numbers its tasks
        slurm = {
            "SLURM_ARRAY_JOB_ID": "4001",
            "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_ARRAY_TASK_MIN": "1",
            "SLURM_ARRAY_TASK_MAX": "3",
            "SLURM_ARRAY_TASK_COUNT": "3",
        }
        done = _step("index", {**env, **slurm})
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "parts" / str(task - 1) / "datasets.pqt").is_file()
    done = _step("merge", env)
    assert done.returncode == 0, done.stderr
    assert "merged 3 shards" in done.stderr
    alfcache.index(root, tmp_path / "full", n_jobs=1, hash_algorithm="md5")  # as --hash md5
    assert_same_tables(tmp_path / "full", tmp_path / "cache")


def test_merge_step_fails_when_a_task_left_no_part(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", 6).root
    env = _options(tmp_path, root)
    slurm = {
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_TASK_COUNT": "3",
    }
    assert _step("index", {**env, **slurm}).returncode == 0
    done = _step("merge", env)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(f"alfcache: error: {tmp_path}/parts/1 holds no")


def test_index_step_outside_an_array_job_fails(tmp_path: Path) -> None:
    env = {k: v for k, v in _options(tmp_path, tmp_path).items() if not k.startswith("SLURM_")}
    done = _step("index", env)
    assert done.returncode != 0
    assert "the index step runs as a task of an array job" in done.stderr


def test_submit_chains_the_merge_after_the_array(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    log = tmp_path / "sbatch.log"
    env = {
        **_options(tmp_path, tmp_path / "data"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SBATCH_LOG": str(log),
        "SUBMIT_OPTIONS": "--partition=cpu",
    }
    done = _step("submit", env)
    assert done.returncode == 0, done.stderr
    array, merge = log.read_text().splitlines()
    assert array == f"--parsable --array=0-2 --partition=cpu {SCRIPT} index"
    assert merge.startswith("--parsable --dependency=afterok:4001 --cpus-per-task=1 ")
    assert merge.endswith(f"--partition=cpu {SCRIPT} merge")
    assert "array job 4001" in done.stdout and "merge job 4002" in done.stdout
    # sbatch reads its options only from the #SBATCH lines before the first command.
    header = SCRIPT.read_text().splitlines()[1:]
    first_command = next(i for i, line in enumerate(header) if not line.startswith("#"))
    assert sum(line.startswith("#SBATCH ") for line in header[:first_command]) == 5
