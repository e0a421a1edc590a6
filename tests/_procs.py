"""Processes of a run, read from /proc: what a test needs to prove that none outlived it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest


def finish_or_dump(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``proc.communicate(timeout=timeout)``; when it times out, fail with the stacks of the
    process's threads (printed on SIGABRT by a process run with ``PYTHONFAULTHANDLER=1``, as
    :func:`_helpers.python_env` sets it), so that a hang seen once shows where it was."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=timeout)
        pytest.fail(f"the command line hung for {timeout} s; its threads' stacks:\n{err}")


def restore_sigint() -> None:
    """A ``preexec_fn`` that gives a command line SIGINT's default disposition, as a terminal
    does: a shell that starts jobs in the background hands them SIGINT ignored, and so does
    this process once an in-process ``alfcache._cli.main.main`` has finished a run (it ignores a
    late Ctrl-C); Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stat_fields(pid: int | str) -> list[str]:
    """``/proc/PID/stat`` after the command name: state, ppid, pgrp, ... ([] when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and len(fields := _stat_fields(entry)) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``: a child that left the run's tree
    (its parent died) is still found here."""
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit()
        and len(fields := _stat_fields(entry)) > 2
        and fields[0] != "Z"
        and int(fields[2]) == pgid
    ]


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def comm(pid: int) -> str:
    """A process's name ('' when gone); a walk worker names itself alfcache-walk."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def wait_all_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive; the ones still alive after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while any(map(alive, pids)) and time.monotonic() < end:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# loky's resource tracker, a helper process that shares the command line's stderr, may warn
# after an interrupted parallel run that a semaphore "leaked", then that it is already gone
# (FileNotFoundError): a race in loky's own exit, between a queue thread's clean-up and the
# process's end. Seen about once in 40 Ctrl-Cs on a loaded machine; nothing is left behind.
_LOKY_TRACKER_NOISE = re.compile(
    r"^\S*loky/backend/resource_tracker\.py:\d+: UserWarning: resource_tracker: .*\n"
    r"(?:[ \t]+warnings\.warn\(.*\n)?",
    re.MULTILINE,
)


def without_loky_tracker_noise(stderr: str) -> str:
    """``stderr`` without those warnings, stripped."""
    return _LOKY_TRACKER_NOISE.sub("", stderr + "\n").strip()
