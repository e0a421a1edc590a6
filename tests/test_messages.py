"""What the command line's messages say: resolved paths, and one of a thing in the singular.

Every verb is run as a user runs it, in a subprocess from a working folder of its own, with
paths typed the way people type them (``../data``, ``./x/../y``, ``out/..``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest
from _helpers import python_env, run_alfcache, with_sitecustomize
from conftest import MakeFiles

from alfcache._cli.main import _parser
from alfcache._cli.main import main as cli_main

SESSION = "lab/Subjects/s1/2021-01-01/001"


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_alfcache(*args, cwd=cwd)


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    return done.stderr.strip().splitlines()[-1]


def test_paths_typed_relative_are_shown_resolved(tmp_path: Path, make_files: MakeFiles):
    data = make_files(tmp_path / "data", [f"{SESSION}/alf/spikes.times.npy"])
    cwd = tmp_path / "work"
    (cwd / "x").mkdir(parents=True)
    (cwd / "file").write_text("not a folder")

    done = _cli(cwd, "index", "../data", "--out-dir", "x/..", "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert _last_line(done).endswith(f"-> {cwd}"), done.stderr
    assert ".." not in done.stderr

    done = _cli(cwd, "index", "./x/../nothere")
    assert done.returncode == 2
    assert done.stderr == (
        f"alfcache: error: root folder {cwd}/nothere does not exist; pass the folder that "
        "holds the data\n"
    )
    done = _cli(cwd, "index", "../data", "--out-dir", "./x/../file")
    assert done.returncode == 2
    assert f"output folder {cwd}/file is a file" in done.stderr and ".." not in done.stderr

    done = _cli(cwd, "verify", "../data", "--tables", "x/..")
    assert done.returncode == 0, done.stderr
    assert f"the tables in {cwd} and {data} match" in done.stderr, done.stderr
    done = _cli(cwd, "prune", "./x/../../data", "--tables", "x/..")
    assert done.returncode == 0, done.stderr
    assert _last_line(done).endswith(f"in {data}") and ".." not in done.stderr
    done = _cli(cwd, "synth", "x/../../data")
    assert done.returncode == 2
    assert done.stderr.startswith(f"alfcache: error: {data} is not empty;"), done.stderr


def test_one_of_each_is_singular(tmp_path: Path, make_files: MakeFiles):
    # One session with one dataset, and one folder skipped (an impossible date).
    root = make_files(
        tmp_path / "data",
        [f"{SESSION}/alf/spikes.times.npy", "lab/Subjects/s1/2021-02-30/001/alf/x.times.npy"],
    )
    done = _cli(tmp_path, "index", str(root), "--jobs", "1", "--hash", "md5")
    assert done.returncode == 0, done.stderr
    assert "alfcache: hashed 1 file (" in done.stderr, done.stderr
    assert _last_line(done).startswith("alfcache: 1 session, 1 dataset (")
    assert "with 1 worker, 1 skipped (not indexed), 0 notices (indexed) ->" in _last_line(done)

    done = _cli(tmp_path, "verify", str(root), "--hashes", "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert "alfcache: 1 entry on disk could not be indexed (see --json)" in done.stderr
    assert "(1 session, 1 dataset, 1 digest checked, " in _last_line(done), done.stderr

    done = _cli(tmp_path, "info", str(root))
    assert done.returncode == 0, done.stderr
    assert "sessions  1 (1 subject; labs: lab)" in done.stdout, done.stdout

    part = tmp_path / "part"
    done = _cli(tmp_path, "index", str(root), "--shard", "0/1", "--out-dir", str(part))
    assert done.returncode == 0, done.stderr
    done = _cli(tmp_path, "merge", str(part), "--out-dir", str(tmp_path / "merged"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"alfcache: merged 1 shard of {root}: 1 session, 1 dataset ->")

    (root / SESSION / "alf/extra.times.npy").write_bytes(b"x")
    done = _cli(tmp_path, "prune", str(root))
    assert done.returncode == 0, done.stderr
    assert _last_line(done).startswith("alfcache: prune: 1 path would be removed (dry run;")

    done = _cli(tmp_path, "synth", str(tmp_path / "one"), "--sessions", "1")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("alfcache: wrote 1 session, 30 datasets and 5 non-ALF files")


def test_command_line_errors_name_the_options_not_the_parameters(
    tmp_path: Path, make_files: MakeFiles
):
    root = make_files(tmp_path / "data", [f"{SESSION}/alf/spikes.times.npy"])
    (tmp_path / "file").write_text("not a folder")
    runs = {
        "--keep-missing needs --update": ("--keep-missing",),
        "--hash-files": ("--hash-files", "--hash", "xxh3"),
        "--hash xxh3": ("--hash-files", "--hash", "xxh3"),
        "(--out-dir)": ("--out-dir", "file"),
    }
    for option, args in runs.items():
        done = _cli(tmp_path, "index", str(root), *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("alfcache: error: ") and option in done.stderr, done.stderr
        for parameter in ("keep_missing", "update=", "hash_files", "hash_algorithm"):
            assert parameter not in done.stderr, done.stderr
    done = _cli(tmp_path, "index", "--help")
    # ONE-api 3.0 and 3.6 both refuse path ids as eids: the option's help must say so.
    assert "rejects path ids" in " ".join(done.stdout.split()), done.stdout


def test_every_verb_takes_the_common_options(
    tmp_path: Path, make_files: MakeFiles, capsys: pytest.CaptureFixture[str]
):
    # A cron line written for one verb (--quiet --json) must work for every other verb: with
    # them, stderr stays empty and stdout is JSON. The verbs come from the parser, so a new
    # verb without the options fails here too.
    root = make_files(tmp_path / "data", [f"{SESSION}/alf/spikes.times.npy"])
    out, part = tmp_path / "out", tmp_path / "part"
    args = {
        "index": [str(root), "--out-dir", str(out), "--jobs", "1"],
        "info": [str(out)],
        "verify": [str(root), "--tables", str(out), "--jobs", "1"],
        "prune": [str(root), "--tables", str(out)],
        "merge": [str(part), "--out-dir", str(tmp_path / "merged")],
        "synth": [str(tmp_path / "synth"), "--sessions", "1", "--force"],
    }
    subparsers = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == set(args)
    assert cli_main(["index", str(root), "--out-dir", str(part), "--shard", "0/1", "-q"]) == 0
    capsys.readouterr()
    for verb, verb_args in args.items():
        for quiet in ("--quiet", "-q"):
            assert cli_main([verb, *verb_args, quiet, "--json", "--debug"]) == 0, verb
            done = capsys.readouterr()
            assert done.err == "", (verb, done.err)
            assert isinstance(json.loads(done.out), dict), verb


def test_bad_index_options_leave_the_callers_sigterm_handler(tmp_path: Path) -> None:
    # The index verb sets a SIGTERM handler that raises Terminated; when its options were bad
    # (checked by the verb, as --keep-missing without --update is) the handler stayed set, so an
    # in-process caller (a pytest run, once) could no longer be stopped by SIGTERM.
    import signal

    before = signal.getsignal(signal.SIGTERM)
    tmp_path.joinpath("data").mkdir()
    assert cli_main(["index", str(tmp_path / "data"), "--keep-missing", "-q"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_command_line_ends_after_exit_handlers_threads_and_output(
    tmp_path: Path, make_files: MakeFiles
) -> None:
    # The command skips the interpreter's teardown (alfcache.__main__._exit): what a normal
    # exit does for others still happens. A hook registers an exit handler and starts a
    # thread that finishes after the run; a large --json report reaches a pipe whole.
    root = tmp_path / "data"
    make_files(root, [f"s{i:03d}/2021-01-01/001/alf/spikes.times.npy" for i in range(300)])
    handler, thread = tmp_path / "handler-ran", tmp_path / "thread-ended"
    # Only in the command's own process: the variable is gone before any other Python starts
    # (a fork server would run the hook too, and end normally).
    hooks = with_sitecustomize(
        tmp_path,
        f"""
import atexit, os, pathlib, threading, time
if os.environ.pop("EXIT_HOOKS", None):
    atexit.register(pathlib.Path({str(handler)!r}).write_text, "ran")
    def _late():
        time.sleep(1.0)
        pathlib.Path({str(thread)!r}).write_text("ended")
    threading.Thread(target=_late).start()
""",
    )
    env = python_env(hooks, EXIT_HOOKS="1")
    done = run_alfcache("index", root, "--out-dir", tmp_path / "out", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sessions"] == 300
    assert handler.read_text() == "ran"
    assert thread.read_text() == "ended"
