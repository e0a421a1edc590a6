"""The reference point for slow storage: a bare threaded walker that only lists and stats.

    python benchmarks/bare_walker.py ROOT [--threads 64] [--md5]

Threads share one queue of folders: each lists a folder with ``os.scandir``, queues its
subfolders for whichever thread is free and stats its files. ``os.scandir`` and ``stat``
release the GIL, so on storage where every call waits, the number of threads is the number of
calls in flight. With ``--md5`` the same number of threads then open, read and MD5 every file
found. No ALF rules, no tables: what a walk costs at least. Prints the files, bytes and the
seconds of each phase.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def walk(root: str, threads: int) -> list[tuple[str, int]]:
    """Every file below ``root`` with its size, listed and stat-ed by ``threads`` threads."""
    folders: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    folders.put(root)
    pending = 1  # folders queued or being listed; the walk ends when none are left
    lock = threading.Lock()
    files: list[tuple[str, int]] = []

    def work() -> None:
        nonlocal pending
        while (folder := folders.get()) is not None:
            found = 0
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            found += 1
                            with lock:
                                pending += 1
                            folders.put(entry.path)
                        else:
                            files.append((entry.path, entry.stat(follow_symlinks=False).st_size))
            except OSError as exc:
                print(f"{folder}: {exc}", file=sys.stderr)
            with lock:
                pending -= 1
                if pending == 0:
                    for _ in range(threads):
                        folders.put(None)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return files


def md5(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb", buffering=0) as f:
        while block := f.read(1 << 18):
            digest.update(block)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--md5", action="store_true", help="then open, read and MD5 every file")
    args = parser.parse_args()
    start = time.perf_counter()
    files = walk(args.root, args.threads)
    walked = time.perf_counter()
    line = f"{len(files)} files, {sum(s for _, s in files)} bytes, walk {walked - start:.2f} s"
    if args.md5:
        with ThreadPoolExecutor(args.threads) as pool:
            for _ in pool.map(md5, (p for p, _ in files), chunksize=16):
                pass
        line += f", md5 {time.perf_counter() - walked:.2f} s"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
