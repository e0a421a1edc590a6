"""Where a run's time goes: the phases of one ``alfcache index`` in this process, by hand.

    python benchmarks/profile_walk.py ROOT --out-dir OUT [any other ``index`` option]

Prints to stderr, for each process of the walk, its wall time, the time it waited for the
shared queue, the messages it took and its CPU time; then the batches that reached the
assembler and when the assembly and the write started and ended (seconds from the start, with
the main process's CPU time). Issue 21's before/after profile was taken with this.

A developer's tool, not part of the suite: it wraps private functions of the working tree
(``alfcache._walk.engine.serve``, ``alfcache._walk.local.assemble_walk``,
``alfcache._index.write_tables``), so it follows them when they move. The workers must be
forked (the default on Linux) for the wrapped ``serve`` to reach them.
"""

from __future__ import annotations

import os
import queue
import sys
import time
from typing import Any

import alfcache._index
import alfcache._walk.engine as engine
import alfcache._walk.local as local
from alfcache._cli.main import main

START = time.perf_counter()


def mark(what: str) -> None:
    elapsed = time.perf_counter() - START
    print(f"{elapsed:6.2f} s  {what} (main CPU {time.process_time():.2f} s)", file=sys.stderr)


def serve(lister: Any, tasks: Any, queued: Any, waiting: Any) -> None:
    """``engine.serve`` with its waits for the queue counted."""
    began, waited, messages = time.perf_counter(), 0.0, 0
    while lister.error is None:
        if not lister.hungry():
            lister.wait_hungry(engine.POLL_SECONDS)
            continue
        engine.add(waiting, 1)
        before = time.perf_counter()
        try:
            message = tasks.get(timeout=engine.POLL_SECONDS)
        except queue.Empty:
            continue
        finally:
            waited += time.perf_counter() - before
            engine.add(waiting, -1)
        if message is None:
            print(
                f"process {os.getpid()}: walked {time.perf_counter() - began:.2f} s, waited "
                f"{waited:.2f} s for the queue, took {messages} messages, CPU "
                f"{time.process_time():.2f} s",
                file=sys.stderr,
            )
            return
        messages += 1
        engine.add(queued, -1)
        lister.add(message, taken=1)


def timed(function: Any, label: str) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if label == "assemble":
            print(f"{len(args[0])} batches reached the assembler", file=sys.stderr)
        mark(f"{label} starts")
        result = function(*args, **kwargs)
        mark(f"{label} ends")
        return result

    return wrapper


if __name__ == "__main__":
    engine.serve = local.serve = serve  # type: ignore[assignment]
    local.assemble_walk = timed(local.assemble_walk, "assemble")  # type: ignore[assignment]
    alfcache._index.write_tables = timed(alfcache._index.write_tables, "write")  # type: ignore[assignment]
    code = main(["index", *sys.argv[1:]])
    mark("done")
    sys.exit(code)
