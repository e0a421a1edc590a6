"""A released alfcache (a git tag or commit) in its own venv, to run beside the working tree.

``install(ref, repo, into)`` exports ``ref`` with ``git archive`` into ``into/baseline-REF`` and
installs it into ``into/venv-baseline-REF``, a venv of the interpreter running this, with the
dependency versions of this environment as constraints: the two versions then differ only in
alfcache's own code, not in Polars or PyArrow. The venv is reused while ``ref`` names the same
commit and those versions are the same. No ``git worktree`` is added: the repository's
worktree list is shared with others.

The baseline is only ever run through its command line, ``PYTHON -I -m alfcache``, in an
environment without ``PYTHONPATH``: a working tree put on ``PYTHONPATH`` would otherwise be the
one imported, by the command and by the workers it starts.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

STAMP = ".alfcache-baseline"
"""File in the venv naming the commit, interpreter and dependency versions it was installed for."""

VERSION = "import importlib.metadata as m; print(m.version('alfcache'))"

_PATH_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")


@dataclass
class Baseline:
    ref: str
    commit: str
    python: str
    """The baseline venv's interpreter."""
    version: str
    """``alfcache X.Y.Z``, from the installed package's metadata."""
    module: str
    """Where the baseline's ``alfcache`` package was imported from (inside its venv)."""
    help: str
    """``alfcache index --help`` of the baseline: which options it has."""
    constrained: bool
    """True when installed with this environment's dependency versions as constraints."""

    def command(self, *args: str) -> list[str]:
        """``alfcache ARGS`` of the baseline."""
        return [self.python, "-I", "-m", "alfcache", *args]

    def record(self) -> dict[str, object]:
        """What the results file keeps about the baseline."""
        kept = asdict(self)
        del kept["help"]
        return kept


def clean_env() -> dict[str, str]:
    """This process's environment without the variables that choose which code Python imports."""
    return {k: v for k, v in os.environ.items() if k not in _PATH_VARIABLES}


def slug(ref: str) -> str:
    """``ref`` as a folder name: ``v0.1.0`` stays, ``origin/main`` becomes ``origin-main``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-") or "ref"


def resolve(ref: str, repo: Path) -> str:
    """The commit ``ref`` names in ``repo``; SystemExit with git's message when none."""
    found = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise SystemExit(
            f"--baseline {ref}: no such tag, branch or commit in {repo} (a clone may lack the "
            "release tags: `git fetch --tags`, or give the commit CHANGELOG.md names)"
        )
    return found.stdout.strip()


def constraints() -> str:
    """``name==version`` of every distribution here but alfcache, for pip's ``--constraint``."""
    pins = {
        dist.metadata["Name"].lower(): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower() != "alfcache"
    }
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def _export(commit: str, repo: Path, dest: Path) -> None:
    """``git archive`` of ``commit`` unpacked into ``dest`` (emptied first)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tempfile.TemporaryFile() as archive:
        subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", commit], stdout=archive, check=True
        )
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(dest, filter="data")


def _pip_install(python: Path, source: Path, pins: str | None) -> bool:
    """Install ``source`` with ``python``'s pip; with ``pins`` as constraints when given."""
    cmd = [str(python), "-m", "pip", "install", "--quiet", str(source)]
    env = {**clean_env(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if pins is None:
        return subprocess.run(cmd, env=env, check=False).returncode == 0
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write(pins)
        f.flush()
        return subprocess.run([*cmd, "--constraint", f.name], env=env, check=False).returncode == 0


def _ask(python: Path, *args: str) -> str:
    return subprocess.run(
        [str(python), "-I", *args], env=clean_env(), capture_output=True, text=True, check=True
    ).stdout.strip()


def install(ref: str, repo: Path, into: Path) -> Baseline:
    """``ref`` of ``repo`` installed below ``into`` (reused when already there for its commit)."""
    commit = resolve(ref, repo)
    source, venv = into / f"baseline-{slug(ref)}", into / f"venv-baseline-{slug(ref)}"
    python = venv / "bin" / "python"
    stamp = venv / STAMP
    pins = constraints()
    # A new commit, interpreter or dependency version here means a new install there.
    pinned = hashlib.sha256(pins.encode()).hexdigest()[:16]
    key = f"{commit} {sys.version.split()[0]} {pinned}\n"
    constrained = True
    if stamp.exists() and stamp.read_text().startswith(key) and python.exists():
        constrained = stamp.read_text() == key
        print(f"baseline {ref} ({commit[:10]}): reusing {venv}", file=sys.stderr)
    else:
        print(f"baseline {ref} ({commit[:10]}): installing into {venv}", file=sys.stderr)
        _export(commit, repo, source)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], env=clean_env(), check=True)
        if not _pip_install(python, source, pins):
            # The release may pin dependencies this environment has moved past.
            print(
                f"baseline {ref}: pip cannot install it with this environment's dependency "
                "versions; installing it with its own",
                file=sys.stderr,
            )
            constrained = False
            if not _pip_install(python, source, None):
                raise SystemExit(f"--baseline {ref}: pip could not install {source}")
        stamp.write_text(key if constrained else key + "unconstrained\n")
    module = _ask(python, "-c", "import alfcache; print(alfcache.__file__)")
    if not Path(module).resolve().is_relative_to(venv.resolve()):
        raise SystemExit(f"--baseline {ref}: {python} imports alfcache from {module}")
    return Baseline(
        ref=ref,
        commit=commit,
        python=str(python),
        # From the package's metadata: releases before 0.1.0 have no --version.
        version="alfcache " + _ask(python, "-c", VERSION),
        module=module,
        help=_ask(python, "-m", "alfcache", "index", "--help"),
        constrained=constrained,
    )
