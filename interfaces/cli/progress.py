"""Progress of the long CLI commands (rebuild, export, reconcile, catalog import) on stderr.

On a terminal, a tqdm bar with the count, the rate and the time left. Anywhere else (a log
file, a CI job, ``2>&1 | tee``), a bar's carriage returns would be noise: plain lines instead,
one at the start with the total, one every few seconds, and a last one with the count reached
and the time it took, so a log says how far a job got and how fast.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

LINE_EVERY_SECONDS = 5.0


class Progress:
    """Counts work done of a total. ``advance`` adds to the count; ``reach`` sets it (and the
    total, for work whose end moves while it runs, as a rebuild's log head does)."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "items",
        stream: TextIO | None = None,
        every_seconds: float = LINE_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = sys.stderr if stream is None else stream
        self.every_seconds = every_seconds
        self.clock = clock
        self.done = 0
        self.started = self.written = clock()
        self.closed = False
        self.bar: tqdm | None = None
        if self.stream.isatty():
            self.bar = tqdm(
                total=total,
                desc=label,
                unit=f" {unit}",
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.1,
            )
        else:
            self._line(f"{self.done:,}/{self.total:,} {unit}")

    def advance(self, n: int = 1) -> None:
        self.reach(self.done + n)

    def reach(self, done: int, total: int | None = None) -> None:
        if self.closed:
            return
        if total is not None:
            self.total = total
        step, self.done = done - self.done, done
        if self.bar is not None:
            if total is not None:
                self.bar.total = total
            self.bar.update(step)
            return
        now = self.clock()
        if now - self.written >= self.every_seconds:
            self.written = now
            share = self.done / self.total if self.total else 1.0
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else None
            eta = tqdm.format_interval(left) if left is not None else "?"
            self._line(
                f"{self.done:,}/{self.total:,} {self.unit} ({share:.0%}),"
                f" {rate_text(rate)} {self.unit}/s, ETA {eta}"
            )

    def close(self) -> None:
        """The last line: the count reached and how long it took (once)."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
            return
        elapsed = self.clock() - self.started
        rate = self.done / max(elapsed, 1e-9)
        self._line(
            f"{self.done:,}/{self.total:,} {self.unit} in {tqdm.format_interval(elapsed)}"
            f" ({rate_text(rate)} {self.unit}/s)"
        )

    def _line(self, text: str) -> None:
        self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def rate_text(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}"
