"""How long the disk takes to make one small write durable: the floor of durable metering.

A gateway answer is released only once its usage record is committed, and a PostgreSQL commit
waits for its WAL to reach the disk (``fdatasync``, Linux's default ``wal_sync_method``). At one
client nothing can be grouped, so every answer pays one such flush: no gateway with durable
metering can add less latency than this, on this disk. Measured like PostgreSQL's own
``pg_test_fsync`` ("one 8kB write" with ``fdatasync``), in the directory the database lives in.

The flushes are paced (one per ``interval``, as commits come at a paced load) for long enough
to see the disk's periodic stalls: on the VMs measured here a flush took ~0.1–0.3 ms, and every
few seconds one took 15–70 ms (the file system's journal commit or the host's write-back, with
nothing else running). Every answer whose record is being committed then waits as long: at
500 answers/s a 30 ms stall holds ~15 of them, which is all of a 3 s run's 1%.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

STALL_MS = 10.0  # a flush this slow is a stall


@dataclass(frozen=True)
class Flushes:
    p50_ms: float
    p99_ms: float
    max_ms: float
    stalls: int  # flushes of STALL_MS or longer
    seconds: float

    def summary(self) -> str:
        return (
            f"8 kB write + fdatasync, one per 2 ms for {self.seconds:g} s: p50"
            f" {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, longest {self.max_ms:.1f} ms,"
            f" {self.stalls} of {STALL_MS:g} ms or more"
        )


def fdatasyncs(directory: Path, seconds: float = 10.0, interval: float = 0.002) -> Flushes:
    """An 8 kB write and ``fdatasync`` in ``directory`` every ``interval`` for ``seconds``."""
    path = directory / "bench-fsync.tmp"
    block = os.urandom(8192)
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, block, 0)
        os.fdatasync(fd)  # the block exists: later writes overwrite it, as WAL's do
        due = time.perf_counter()
        deadline = due + seconds
        while due < deadline or len(times) < 20:
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            started = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1000)
            due = max(due + interval, time.perf_counter())
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    times.sort()
    return Flushes(
        p50_ms=statistics.median(times),
        p99_ms=times[min(len(times) - 1, round(len(times) * 0.99))],
        max_ms=times[-1],
        stalls=sum(1 for t in times if t >= STALL_MS),
        seconds=seconds,
    )


if __name__ == "__main__":
    import sys

    print(fdatasyncs(Path(sys.argv[1] if len(sys.argv) > 1 else ".")).summary())
