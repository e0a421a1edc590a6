"""Data safety: tables other users can read, updates and pruning that never lose what the
walk could not see, and no leftovers of dead runs.

Permission tests drop root's powers (``setpriv`` to ``nobody``, see ``test_faults.py``): as
root, ``chmod`` alone proves nothing.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_faults import ENV, User, public_tmp, unprivileged  # noqa: F401  (fixtures)

import alfcache
import alfcache._tables.store

SPIKES = "alf/spikes.times.npy"
TABLES = ("sessions.pqt", "datasets.pqt")


def _read_as(user: User, table: Path) -> subprocess.CompletedProcess[str]:
    """Read ``table`` with pyarrow as ``user``."""
    code = f"import pyarrow.parquet as pq; pq.read_table({str(table)!r})"
    return subprocess.run(
        [*user.python, "-c", code],
        env={**ENV, **user.env},
        capture_output=True,
        text=True,
        check=False,
    )


# --------------------------------------------------------------------------------------------
# item 1: table modes
# --------------------------------------------------------------------------------------------


def test_new_tables_take_the_umask_and_other_users_can_read_them(
    public_tmp: Path,  # noqa: F811
    make_files: Any,
    unprivileged: User,  # noqa: F811
) -> None:
    root = make_files(public_tmp / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    old = os.umask(0o022)
    try:
        alfcache.make_parquet_db(root, n_jobs=1)
    finally:
        os.umask(old)
    for name in TABLES:
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o644
        done = _read_as(unprivileged, root / name)
        assert done.returncode == 0, done.stderr
    os.umask(0o077)
    try:
        alfcache.make_parquet_db(public_tmp / "data", public_tmp / "private", n_jobs=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((public_tmp / "private" / TABLES[0]).stat().st_mode) == 0o600


def test_reindex_keeps_the_mode_and_group_of_the_tables_it_replaces(
    tmp_path: Path, make_files: Any
) -> None:
    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    alfcache.make_parquet_db(root, n_jobs=1)
    group = 4242 if os.geteuid() == 0 else os.getegid()
    for name in TABLES:
        os.chown(root / name, -1, group)
        (root / name).chmod(0o640)
    make_files(root, [f"s2/2021-01-01/001/{SPIKES}"])
    old = os.umask(0o077)
    try:
        alfcache.make_parquet_db(root, n_jobs=1)
    finally:
        os.umask(old)
    for name in TABLES:
        st = (root / name).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, group)
    assert pq.read_table(root / TABLES[0]).num_rows == 2


# --------------------------------------------------------------------------------------------
# item 2: an update never drops what it could not see
# --------------------------------------------------------------------------------------------

LAB_TREE = [
    *(f"cortexlab/Subjects/KS00{i}/2024-01-0{d}/001/{SPIKES}" for i in (1, 2) for d in (1, 2)),
    *(f"mainenlab/Subjects/ZM{i}/2024-01-01/001/{SPIKES}" for i in (1, 2, 3)),
    "mainenlab/Subjects/ZM1/2024-01-01/001/alf/spikes.clusters.npy",
    f"NL001/2024-01-01/001/{SPIKES}",
]


def _rows(out: Path) -> list[tuple[Any, ...]]:
    columns = ("rel_path", "exists", "hash")
    ses = {s["id"]: s for s in pq.read_table(out / "sessions.pqt").to_pylist()}
    return sorted(
        (*(ses[d["eid"]][c] for c in ("lab", "subject", "date")), *(d[c] for c in columns))
        for d in pq.read_table(out / "datasets.pqt").to_pylist()
    )


def _cli_as(user: User, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*user.python, "-m", "alfcache", "index", *map(str, args)],
        env={**ENV, **user.env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_update_carries_over_folders_it_could_not_list(
    public_tmp: Path,  # noqa: F811
    make_files: Any,
    unprivileged: User,  # noqa: F811
) -> None:
    import json

    root = make_files(public_tmp / "data", LAB_TREE)
    out = public_tmp / "out"
    out.mkdir()
    if os.geteuid() == 0:
        os.chown(out, unprivileged.uid, -1)
    first = _cli_as(unprivileged, root, "--out-dir", out, "--jobs", "1", "--hash-files", "-q")
    assert first.returncode == 0, first.stderr
    before = _rows(out)
    (root / "mainenlab").chmod(0o700)
    (root / "cortexlab/Subjects/KS002").chmod(0o700)
    # and a dataset that really went, in a folder that was listed
    (root / "cortexlab/Subjects/KS001/2024-01-02/001" / SPIKES).unlink()
    done = _cli_as(unprivileged, root, "--out-dir", out, "--jobs", "1", "--update", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert sorted((s["path"], s["reason"]) for s in summary["skipped"]) == [
        ("cortexlab/Subjects/KS002", "permission_denied"),
        ("mainenlab", "permission_denied"),
    ]
    # 'mainenlab' is a plain folder to the walk: it may hold any session, so nothing is
    # dropped while it cannot be listed, not even the file that really went
    assert (summary["update"]["vanished"], summary["update"]["carried_over"]) == (0, 7)
    assert "0 vanished (dropped), 7 carried over" in done.stderr
    assert _rows(out) == before and summary["sessions"] == 8
    # once the lab can be read again, only the subject folder's rows are carried over
    (root / "mainenlab").chmod(0o755)
    done = _cli_as(unprivileged, root, "--out-dir", out, "--jobs", "1", "--update", "--json")
    summary = json.loads(done.stdout)
    assert (summary["update"]["vanished"], summary["update"]["carried_over"]) == (1, 2)
    gone = [r for r in before if r[1] == "KS001" and str(r[2]) == "2024-01-02"]
    assert _rows(out) == [r for r in before if r not in gone] and len(gone) == 1
    assert summary["sessions"] == 8


def test_update_carries_over_a_link_not_followed(tmp_path: Path, make_files: Any) -> None:
    root = make_files(tmp_path / "data", LAB_TREE)
    out = tmp_path / "out"
    alfcache.make_parquet_db(root, out, n_jobs=1)
    before = _rows(out)
    # the lab moved to another disk and a link stands in its place; without --follow-symlinks
    # the update does not see it, and must not drop it
    (root / "mainenlab").rename(tmp_path / "mainenlab")
    (root / "mainenlab").symlink_to(tmp_path / "mainenlab")
    report = alfcache.index(root, out, n_jobs=1, update=True)
    assert [(s.path, s.reason) for s in report.skipped] == [("mainenlab", "symlink_not_followed")]
    assert report.changes is not None
    assert (report.changes.vanished, report.changes.carried_over) == (0, 4)
    assert _rows(out) == before


def test_update_carries_over_a_link_not_followed_in_an_unpadded_session(
    tmp_path: Path, make_files: Any
) -> None:
    # the rows' ALF path says 001, the folder (and the skip record) says 1
    session = "mainenlab/Subjects/ZM_1/2021-01-01/1"
    root = make_files(
        tmp_path / "data",
        [f"{session}/raw/a.raw.npy", f"{session}/raw/b.raw.npy", f"{session}/{SPIKES}"],
    )
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning, match="not_loadable"):  # ONE-api looks in .../001
        alfcache.make_parquet_db(root, out, n_jobs=1)
    before = _rows(out)
    (root / session / "raw").rename(tmp_path / "raw")
    (root / session / "raw").symlink_to(tmp_path / "raw")
    report = alfcache.index(root, out, n_jobs=1, update=True)
    assert [(s.path, s.reason) for s in report.skipped] == [
        (f"{session}/raw", "symlink_not_followed")
    ]
    assert report.changes is not None
    assert (report.changes.vanished, report.changes.carried_over) == (0, 2)
    assert _rows(out) == before


# --------------------------------------------------------------------------------------------
# item 3: remove_missing_datasets never deletes below a folder the indexer left out
# --------------------------------------------------------------------------------------------


def test_prune_leaves_alone_what_the_indexer_left_out(tmp_path: Path, make_files: Any) -> None:
    kept = "s1/2024-03-01/001"
    nested = "s1/2024-03-02/001/sub/s2/2024-03-02/001"
    root = make_files(
        tmp_path / "data",
        [
            f"{kept}/{SPIKES}",
            "s1/2024-03-01/1/alf/only_here.times.npy",  # clash: the indexer kept 001
            f"s1/2024-03-02/001/{SPIKES}",
            f"{nested}/{SPIKES}",
            f"s1/2024-02-30/001/{SPIKES}",  # invalid date
        ],
    )
    make_files(tmp_path / "elsewhere", [SPIKES])
    (root / "s4/2024-01-01/001").mkdir(parents=True)
    (root / "s4/2024-01-01/001/alf").symlink_to(tmp_path / "elsewhere/alf")
    with pytest.warns(RuntimeWarning, match="session_clash"):
        alfcache.make_parquet_db(root, n_jobs=1)
    # files that are in no table: only the first may go
    make_files(root, [f"{kept}/alf/stray.times.npy", f"{nested}/alf/late.times.npy"])
    flagged = alfcache.remove_missing_datasets(root, dry=False)
    assert flagged == [root / kept / "alf/stray.times.npy"]
    assert (root / "s1/2024-03-01/1/alf/only_here.times.npy").exists()
    assert (root / nested / "alf/late.times.npy").exists()
    assert (root / "s4/2024-01-01/001/alf").is_symlink()
    assert (tmp_path / "elsewhere" / SPIKES).exists()


def test_prune_leaves_alone_a_folder_it_cannot_list(
    public_tmp: Path,  # noqa: F811
    make_files: Any,
    unprivileged: User,  # noqa: F811
) -> None:
    root = make_files(public_tmp / "data", [f"s1/2024-03-01/001/{SPIKES}"])
    alfcache.make_parquet_db(root, n_jobs=1)
    # a session the tables do not know, whose only content this user cannot see
    make_files(root, [f"s2/2024-03-01/001/raw/{SPIKES}", "s1/2024-03-01/001/alf/x.times.npy"])
    (root / "s2/2024-03-01/001/raw").chmod(0o700)
    code = f"import alfcache; print(alfcache.remove_missing_datasets({str(root)!r}))"
    done = subprocess.run(
        [*unprivileged.python, "-c", code],
        env={**ENV, **unprivileged.env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    flagged = done.stdout.strip().splitlines()[-1]
    assert "x.times.npy" in flagged and "s2" not in flagged


def test_prune_leaves_alone_a_session_holding_a_link_not_followed(
    tmp_path: Path, make_files: Any
) -> None:
    # the same rule as above without another user: a session the tables do not know, whose
    # only content is a link to a folder the walk did not follow
    root = make_files(tmp_path / "data", [f"s1/2024-03-01/001/{SPIKES}"])
    alfcache.make_parquet_db(root, n_jobs=1)
    make_files(tmp_path / "elsewhere", [SPIKES])
    (root / "s2/2024-03-01/001").mkdir(parents=True)
    (root / "s2/2024-03-01/001/raw").symlink_to(tmp_path / "elsewhere")
    make_files(root, ["s1/2024-03-01/001/alf/x.times.npy"])
    flagged = alfcache.remove_missing_datasets(root, dry=False)
    assert flagged == [root / "s1/2024-03-01/001/alf/x.times.npy"]
    assert (root / "s2/2024-03-01/001/raw").is_symlink()
    assert (tmp_path / "elsewhere" / SPIKES).exists()


# --------------------------------------------------------------------------------------------
# item 4: leftovers
# --------------------------------------------------------------------------------------------


def test_temporary_files_of_dead_runs_are_removed_at_start(
    tmp_path: Path, make_files: Any
) -> None:
    import time

    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = alfcache._tables.store._HOST
    names = {
        "dead": f".sessions.pqt.{host}.{dead.pid}.k2j4.alfcache-tmp",
        "live": f".datasets.pqt.{host}.{live.pid}.x8d1.alfcache-tmp",
        "other_host": f".sessions.pqt.not-{host}.{dead.pid}.a1b2.alfcache-tmp",
        # the current release's names carry no PID: removed once they are an hour old
        "old_release": ".datasets.pqt.q1w2e3r4.alfcache-tmp",
        "recent_release": ".sessions.pqt.z9x8c7v6.alfcache-tmp",
        "not_ours": ".sessions.pqt.notes",
    }
    for name in names.values():
        (out / name).write_bytes(b"PAR1")
    hour_ago = time.time() - 3700
    os.utime(out / names["old_release"], (hour_ago, hour_ago))
    try:
        alfcache.make_parquet_db(root, out, n_jobs=1)
    finally:
        live.kill()
        live.wait()
    left = set(os.listdir(out)) - set(TABLES)
    assert left == {names[k] for k in ("live", "other_host", "recent_release", "not_ours")}


def test_temporary_files_of_another_users_live_run_are_kept(
    public_tmp: Path,  # noqa: F811
    make_files: Any,
    unprivileged: User,  # noqa: F811
) -> None:
    # a shared output folder: a run of one user must not take another user's live run for
    # dead because it may not signal it (kill(pid, 0) fails with EPERM, not ESRCH)
    holder = 1  # init: alive, and never this unprivileged user's
    if os.stat(f"/proc/{holder}").st_uid == unprivileged.uid:
        pytest.skip("PID 1 belongs to the user that runs the tool")
    root = make_files(public_tmp / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    out = public_tmp / "out"
    out.mkdir()
    if os.geteuid() == 0:
        os.chown(out, unprivileged.uid, -1)
    live = out / f".sessions.pqt.{alfcache._tables.store._HOST}.{holder}.k2j4.alfcache-tmp"
    live.write_bytes(b"PAR1")  # root's file, in a folder the other user owns: removable
    done = _cli_as(unprivileged, root, "--out-dir", out, "--jobs", "1", "-q")
    assert done.returncode == 0, done.stderr
    assert live.exists()


def test_write_names_its_temporary_files_after_host_and_pid(
    tmp_path: Path, make_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    seen: list[str] = []
    replace = Path.replace

    def spy(self: Path, target: Path) -> Path:
        seen.append(self.name)
        return replace(self, target)

    monkeypatch.setattr(alfcache._tables.store.Path, "replace", spy)
    alfcache.make_parquet_db(root, n_jobs=1)
    host = alfcache._tables.store._HOST
    assert [n.split(".")[1:5] for n in seen] == [
        [t, "pqt", host, str(os.getpid())] for t in ("sessions", "datasets")
    ]


def test_each_temporary_table_reaches_the_disk_before_its_rename(
    tmp_path: Path, make_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without an fsync before the rename, a power cut can leave the new name on an empty file
    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, Path.replace

    def spy_fsync(fd: int) -> None:
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        fsync(fd)

    def spy_replace(self: Path, target: Path) -> Path:
        events.append(("rename", self.name))
        return replace(self, target)

    monkeypatch.setattr(alfcache._tables.store.os, "fsync", spy_fsync)
    monkeypatch.setattr(alfcache._tables.store.Path, "replace", spy_replace)
    alfcache.make_parquet_db(root, n_jobs=1)
    renamed = [name for kind, name in events if kind == "rename"]
    assert len(renamed) == 2
    for name in renamed:
        assert ("fsync", name) in events[: events.index(("rename", name))]


def test_synth_refuses_a_folder_that_is_not_empty(
    tmp_path: Path, make_files: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from alfcache._cli.main import main

    lab = make_files(tmp_path / "lab", ["notes.txt"])
    assert main(["synth", str(lab), "--sessions", "2"]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--force" in err
    assert os.listdir(lab) == ["notes.txt"]
    assert main(["synth", str(lab), "--sessions", "2", "--force"]) == 0
    assert main(["synth", str(tmp_path / "new"), "--sessions", "2"]) == 0
    (tmp_path / "empty").mkdir()
    assert main(["synth", str(tmp_path / "empty"), "--sessions", "2"]) == 0


# --------------------------------------------------------------------------------------------
# items 7-10: options that contradict each other
# --------------------------------------------------------------------------------------------


def test_hash_files_with_xxh3_only_is_refused(
    tmp_path: Path, make_files: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from alfcache._cli.main import main

    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    with pytest.raises(alfcache.BadArgument, match=r"hash_files=True.*hash_algorithm='xxh3'"):
        alfcache.index(root, n_jobs=1, hash_files=True, hash_algorithm="xxh3")
    assert main(["index", str(root), "--hash-files", "--hash", "xxh3", "-j", "1"]) == 2
    err = capsys.readouterr().err
    assert "--hash-files" in err and "--hash xxh3" in err and "--hash both" in err
    assert "hash_files=" not in err
    assert not (root / "sessions.pqt").exists()
    # the combinations that do store an MD5 stay allowed
    for algorithm in ("md5", "both"):
        alfcache.index(root, n_jobs=1, hash_files=True, hash_algorithm=algorithm)


def test_update_with_another_digest_keeps_the_ones_it_has(tmp_path: Path, make_files: Any) -> None:
    import hashlib

    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    alfcache.index(root, n_jobs=1, hash_files=True)
    report = alfcache.index(root, n_jobs=1, update=True, hash_algorithm="xxh3")
    datasets = pq.read_table(root / "datasets.pqt")
    assert datasets["hash"].to_pylist() == [
        hashlib.md5((root / "s1/2021-01-01/001" / SPIKES).read_bytes()).hexdigest()
    ]
    assert datasets["xxh3_128"].null_count == 0
    assert report.hashing is not None and report.hashing.algorithms == ("md5", "xxh3")


def test_update_refuses_tables_of_another_folder(tmp_path: Path, make_files: Any) -> None:
    one = make_files(tmp_path / "one", [f"s1/2021-01-01/001/{SPIKES}"])
    other = make_files(tmp_path / "other", [f"s2/2021-01-01/001/{SPIKES}"])
    out = tmp_path / "out"
    alfcache.index(one, out, n_jobs=1)
    before = (out / "sessions.pqt").read_bytes()
    with pytest.raises(alfcache.BadArgument, match=f"made from {one}.*not {other}"):
        alfcache.index(other, out, n_jobs=1, update=True)
    assert (out / "sessions.pqt").read_bytes() == before


def test_update_counts_say_what_happened(tmp_path: Path, make_files: Any) -> None:
    from one.alf.cache import make_parquet_db

    files = [f"lab/Subjects/s{i}/2021-01-01/001/{SPIKES}" for i in range(3)]
    root = make_files(tmp_path / "data", [*files, f"lab/Subjects/s9/2021-01-01/1/{SPIKES}"])
    plain, theirs = tmp_path / "plain", tmp_path / "theirs"
    alfcache.index(root, plain, n_jobs=1)
    report = alfcache.index(root, plain, n_jobs=1, update=True)
    assert report.changes is not None
    assert (report.changes.changed, report.changes.unchanged) == (0, 4)
    theirs.mkdir()
    make_parquet_db(root, out_dir=theirs)
    report = alfcache.index(root, theirs, n_jobs=1, update=True)
    assert report.changes is not None
    changes = report.changes
    assert (changes.new, changes.changed, changes.unchanged, changes.vanished) == (0, 0, 4, 0)
    # with digests to compute, files with no recorded modification time are read: not
    # "unchanged", since nothing proves it, nor "changed"
    report = alfcache.index(root, theirs, n_jobs=1, update=True, hash_files=True)
    assert report.changes is not None
    assert (report.changes.changed, report.changes.unchanged, report.changes.unknown) == (0, 0, 4)


# --------------------------------------------------------------------------------------------
# polish
# --------------------------------------------------------------------------------------------


def test_missing_root_is_also_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        alfcache.index(tmp_path / "nowhere", n_jobs=1)
    assert isinstance(info.value, alfcache.BadRoot)
    assert isinstance(info.value, NotADirectoryError)  # as before: BadRoot's builtin
    (tmp_path / "file").write_text("x")
    with pytest.raises(alfcache.BadRoot) as info:
        alfcache.index(tmp_path / "file", n_jobs=1)
    assert not isinstance(info.value, FileNotFoundError)


def test_jobs_above_the_cap_are_refused(tmp_path: Path, make_files: Any) -> None:
    from alfcache._options import MAX_JOBS_PER_CORE, available_cores

    root = make_files(tmp_path / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    too_many = MAX_JOBS_PER_CORE * available_cores() + 1
    with pytest.raises(alfcache.BadArgument, match=f"n_jobs={too_many}.*at most"):
        alfcache.index(root, n_jobs=too_many)
    assert not (root / "sessions.pqt").exists()
    alfcache.index(root, n_jobs=too_many - 1 if too_many > 2 else 1)


def test_cli_jobs_above_the_cap_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from alfcache._cli.main import main
    from alfcache._options import MAX_JOBS_PER_CORE, available_cores

    with pytest.raises(SystemExit) as info:
        main(["index", str(tmp_path), "--jobs", str(MAX_JOBS_PER_CORE * available_cores() + 1)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--jobs" in err and "at most" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------
# issue 17 item 9: a link out of the root is indexed, never read for a digest unless asked
# --------------------------------------------------------------------------------------------


def test_a_link_to_a_file_outside_the_root_is_not_read(
    public_tmp: Path,  # noqa: F811
    tmp_path: Path,
    make_files: Any,
    unprivileged: User,  # noqa: F811
) -> None:
    import hashlib

    secret = tmp_path / "only" / "file"  # below root's private tmp_path: nobody cannot read it
    secret.parent.mkdir()
    secret.write_bytes(b"root's secret")
    secret.chmod(0o600)
    root = make_files(public_tmp / "data", [f"s1/2021-01-01/001/{SPIKES}"])
    alf = root / "s1/2021-01-01/001/alf"
    if os.geteuid() == 0:
        os.chown(alf, unprivileged.uid, -1)
    link = alf / "secret.pin.npy"
    # the other user plants the link, in a folder of theirs inside the tree
    code = f"import os; os.symlink({str(secret)!r}, {str(link)!r})"
    done = subprocess.run(
        [*unprivileged.python, "-c", code],
        env={**ENV, **unprivileged.env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and link.is_symlink(), done.stderr
    out = public_tmp / "out"
    report = alfcache.index(root, out, n_jobs=1, hash_algorithm="md5")
    rows = {r["rel_path"]: r for r in pq.read_table(out / "datasets.pqt").to_pylist()}
    md5 = hashlib.md5(secret.read_bytes()).hexdigest()
    # indexed as before (its size is the walk's), but never read
    assert rows["alf/secret.pin.npy"]["file_size"] == secret.stat().st_size
    assert rows["alf/secret.pin.npy"]["hash"] is None
    assert md5.encode() not in (out / "datasets.pqt").read_bytes()
    assert rows[SPIKES]["hash"] is not None
    [notice] = [n for n in report.notices if n.path.endswith("secret.pin.npy")]
    assert notice.reason == "symlink_outside_root" and str(secret) in notice.message
    # asked for: read
    alfcache.index(root, out, n_jobs=1, hash_algorithm="md5", follow_symlinks=True)
    rows = {r["rel_path"]: r for r in pq.read_table(out / "datasets.pqt").to_pylist()}
    assert rows["alf/secret.pin.npy"]["hash"] == md5
