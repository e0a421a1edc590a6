"""Progress on stderr: a tqdm bar on a terminal, a timed log line in batch jobs.

A SLURM log full of carriage-return bar redraws is unreadable, so when stderr is not a terminal
a plain line is written at most every ``interval`` seconds instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

INTERVAL = 5.0
"""Seconds between two progress lines in a batch job (stderr not a terminal)."""


class _Display:
    """What both displays share: the stream, the clock of the timed lines, the optional bar."""

    def __init__(
        self, enabled: bool, stream: TextIO | None, interval: float | None, **bar: Any
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = INTERVAL if interval is None else interval
        self.start = time.perf_counter()
        self._last_line = self.start
        self._bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(file=self.stream, leave=False, **bar)

    def _line_due(self) -> float | None:
        """Seconds since the start when a timed line is due now, else None."""
        now = time.perf_counter()
        if now - self._last_line < self.interval:
            return None
        self._last_line = now
        return max(now - self.start, 1e-9)

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Progress(_Display):
    """Counts the sessions and files the walk has found and shows them."""

    def __init__(
        self,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float | None = None,
        start: float | None = None,
    ) -> None:
        super().__init__(enabled, stream, interval, unit=" files", desc="alfcache")
        if start is not None:  # the walk began before its progress is shown: rate it whole
            self.start = start
        self.sessions = 0
        self.files = 0

    def show(self, sessions: int, files: int) -> None:
        """Show that ``sessions`` and ``files`` have been found so far.

        Called as often as the caller looks (not only when counts change): in a batch job a
        line is then due every ``interval`` seconds even while a slow listing finds nothing.
        """
        step, self.sessions, self.files = files - self.files, sessions, files
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.sessions} sessions", refresh=False)
            self._bar.update(step)
            return
        if (elapsed := self._line_due()) is not None:
            rate = self.files / elapsed
            self._print(
                f"alfcache: {self.sessions} sessions, {self.files} files, {rate:,.0f} files/s"
            )


class ByteProgress(_Display):
    """Bytes read while hashing, with the rate and an estimate of the time left.

    Hashing is bounded by bytes, not files: one 50 GB recording takes as long as a million small
    files, so the rate is in MB/s and the time left is estimated from the bytes still to read.
    """

    def __init__(
        self,
        total: int,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        super().__init__(
            enabled,
            stream,
            interval,
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            desc="alfcache: hashing",
        )
        self.total = total
        self.done = 0

    def update_to(self, done: int) -> None:
        """Show that ``done`` bytes have been read so far."""
        # A file read a second time (it changed while read) counts twice; never show more than all.
        done = min(done, self.total)
        step, self.done = done - self.done, done
        if not self.enabled or step <= 0:
            return
        if self._bar is not None:
            self._bar.update(step)
            return
        if (elapsed := self._line_due()) is not None:
            rate = done / elapsed
            left = (self.total - done) / rate if rate else float("inf")
            self._print(
                f"alfcache: hashed {megabytes(done, self.total)} of "
                f"{megabytes(self.total, self.total)} MB, {megabytes(rate, rate)} MB/s, "
                f"about {left:,.0f} s left"
            )


def megabytes(n: float, scale: float) -> str:
    """``n`` bytes in MB, with the decimals that give ``scale`` three digits (three at most).

    Whole megabytes said ``hashed 0 of 1 MB, 0 MB/s`` of a run of small files that was moving.
    """
    mb = scale / 1e6
    decimals = 0 if mb >= 100 else 1 if mb >= 10 else 2 if mb >= 1 else 3
    return f"{n / 1e6:,.{decimals}f}"
