"""The scheduler's own cost per request, in process (no network, no database): what capacity
and fair share add to a request, apart from the wait itself.

- **a place at once**: ``async with slot(caller)`` with a free place and nobody waiting;
- **through the queue**: 32 tasks of 8 tenants (weights 1 to 8, two groups) looping over a cap
  of 16, each holding its place for one event-loop turn: every request waits, is admitted in
  fair order and frees its place; per request, less the same loop with no scheduler.
"""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

from application.gateway import GatewayCaller
from bench.report import Figure
from interfaces.gateway.scheduler import FairShareScheduler

REQUESTS = 200_000
TASKS, TENANTS, CAP = 32, 8, 16


def _scheduler(cap: int) -> FairShareScheduler:
    def no_pool() -> None:
        raise RuntimeError("no database in this bench")

    return FairShareScheduler(no_pool, cap, 10_000, 60.0)  # type: ignore[arg-type]


async def _at_once(n: int) -> float:
    s = _scheduler(1_000)
    caller = GatewayCaller(tenant_id=uuid4(), key_id=uuid4())
    s._place(caller.tenant_id, 100, None)
    started = time.perf_counter()
    for _ in range(n):
        async with s.slot(caller):
            pass
    return (time.perf_counter() - started) / n


async def _queued(n: int, scheduled: bool) -> float:
    s = _scheduler(CAP)
    callers = [GatewayCaller(tenant_id=uuid4(), key_id=uuid4()) for _ in range(TENANTS)]
    for i, c in enumerate(callers):
        s.groups = {"a": 50, "b": 50}
        s._place(c.tenant_id, i + 1, "a" if i % 2 else "b")
    left = n

    async def loop(caller: GatewayCaller) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if scheduled:
                async with s.slot(caller):
                    await asyncio.sleep(0)
            else:
                await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(*(loop(callers[i % TENANTS]) for i in range(TASKS)))
    return (time.perf_counter() - started) / n


def scheduler_figures() -> list[Figure]:
    at_once = asyncio.run(_at_once(REQUESTS))
    queued = asyncio.run(_queued(REQUESTS, True)) - asyncio.run(_queued(REQUESTS, False))
    return [
        Figure(
            "gateway",
            "scheduler: cost of a place at once (capacity free)",
            at_once * 1e6,
            "µs",
            higher_is_better=False,
            notes=f"{REQUESTS:,} requests in process, no network",
        ),
        Figure(
            "gateway",
            f"scheduler: cost of a request through the queue ({TASKS} tasks, cap {CAP})",
            queued * 1e6,
            "µs",
            higher_is_better=False,
            notes=f"{TENANTS} tenants of weights 1-{TENANTS} in 2 groups; less the same loop"
            " without the scheduler",
        ),
    ]


if __name__ == "__main__":
    for f in scheduler_figures():
        print(f"{f.label}: {f.measured:.2f} {f.unit}")
