"""Mount a folder as slow network storage: every metadata call waits a fixed time.

    python benchmarks/slowfs.py SOURCE MOUNTPOINT [--delay-ms 1]   # mounted until Ctrl-C

Builds ``benchmarks/slowfs/slowfs.c`` (a FUSE passthrough in C against libfuse3) with gcc into
``bench-data/`` when the binary is missing or older than its source, mounts it over SOURCE at
MOUNTPOINT and unmounts on exit. :func:`mounted` does the same for benchmark scripts. Every
lookup/getattr, opendir/readdir, readlink and open waits ``--delay-ms``; the kernel caches no
entries, attributes or misses, so each stat and each path component is a round trip. Tests
never need this; benchmarks do, and it says what is missing when FUSE is not available.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "slowfs" / "slowfs.c"
BINARY = HERE.parent / "bench-data" / "slowfs"
PACKAGES = "apt-get install -y fuse3 libfuse3-dev gcc pkg-config"

MAX_THREADS = 256
"""Daemon threads (libfuse's default is 10): a client with more calls in flight than this
would wait on the daemon rather than on the simulated round trip."""

_MOUNT_TIMEOUT = 10.0  # seconds to wait for the mount to appear


class FuseMissing(RuntimeError):
    """FUSE cannot be used here; the message says what is missing and how to get it."""


def missing() -> list[str]:
    """What this machine lacks to build and mount slowfs (empty when nothing is)."""
    lacks = []
    if not os.path.exists("/dev/fuse"):
        lacks.append(
            "/dev/fuse (load the fuse module, or run the container with "
            "--device /dev/fuse --cap-add SYS_ADMIN)"
        )
    for tool in ("fusermount3", "gcc", "pkg-config"):
        if shutil.which(tool) is None:
            lacks.append(f"{tool} (Debian: {PACKAGES})")
    if (
        shutil.which("pkg-config")
        and subprocess.run(["pkg-config", "--exists", "fuse3"], check=False).returncode != 0
    ):
        lacks.append(f"the libfuse3 headers (Debian: {PACKAGES})")
    return lacks


def build() -> Path:
    """Compile slowfs into ``bench-data/`` unless an up-to-date binary is there."""
    lacks = missing()
    if lacks:
        raise FuseMissing("slowfs cannot run here; missing: " + "; ".join(lacks))
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "fuse3"], check=True, capture_output=True, text=True
    ).stdout.split()
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(BINARY), str(SOURCE), *flags], check=True
    )
    return BINARY


def _unmount(mountpoint: Path) -> None:
    for _ in range(50):
        if not os.path.ismount(mountpoint):
            return
        if (
            subprocess.run(
                ["fusermount3", "-u", str(mountpoint)], check=False, stderr=subprocess.DEVNULL
            ).returncode
            == 0
        ):
            return
        time.sleep(0.1)  # busy: a process still has a file open there
    subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)


@contextlib.contextmanager
def mounted(source: Path, mountpoint: Path, delay_ms: float = 1.0) -> Iterator[Path]:
    """Mount ``source`` at ``mountpoint`` with ``delay_ms`` per metadata call, for the block.

    Raises
    ------
    FuseMissing
        /dev/fuse, fusermount3, gcc or the libfuse3 headers are missing.
    RuntimeError
        The mount did not appear (the daemon's stderr says why).
    """
    binary = build()
    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mountpoint):
        _unmount(mountpoint)  # left over from a run that was killed
    daemon = subprocess.Popen(
        [
            str(binary),
            str(source),
            str(mountpoint),
            "-f",
            "-o",
            f"delay_us={round(delay_ms * 1000)}",
            "-o",
            "ro",
            "-o",
            f"max_threads={MAX_THREADS}",
            "-o",
            f"max_idle_threads={MAX_THREADS}",
        ]
    )
    try:
        deadline = time.monotonic() + _MOUNT_TIMEOUT
        while not os.path.ismount(mountpoint):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"slowfs did not mount {source} at {mountpoint} "
                    f"(exit code {daemon.poll()}); see its message above"
                )
            time.sleep(0.05)
        yield mountpoint
    finally:
        _unmount(mountpoint)
        try:
            daemon.wait(timeout=5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=1.0,
        help="wait per metadata call, in milliseconds (default: 1)",
    )
    args = parser.parse_args()
    try:
        with mounted(args.source.resolve(), args.mountpoint.resolve(), args.delay_ms) as mnt:
            print(
                f"{args.source} mounted at {mnt}, {args.delay_ms} ms per metadata call; "
                "Ctrl-C unmounts",
                file=sys.stderr,
            )
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            while True:
                time.sleep(3600)
    except FuseMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
