"""How long the disk takes to make one small write durable: the floor of durable metering.

A gateway answer is released only once its usage record is committed, and a PostgreSQL commit
waits for its WAL to reach the disk (``fdatasync``, Linux's default ``wal_sync_method``). At one
client nothing can be grouped, so every answer pays one such flush: no gateway with durable
metering can add less latency than this, on this disk. Measured like PostgreSQL's own
``pg_test_fsync`` ("one 8kB write" with ``fdatasync``), in the directory the database lives in.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path


def fdatasync_ms(directory: Path, seconds: float = 2.0) -> tuple[float, float]:
    """The p50 and p99 milliseconds of an 8 kB write followed by ``fdatasync`` in ``directory``."""
    path = directory / "bench-fsync.tmp"
    block = os.urandom(8192)
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline or len(times) < 20:
            started = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(len(times) * 0.99))]


if __name__ == "__main__":
    import sys

    p50, p99 = fdatasync_ms(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    print(f"fdatasync of 8 kB: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
