"""The lease ledger against real PostgreSQL: processes sharing one limit never exceed it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from interfaces.gateway.ledger import Allowance, Ledger, Window


def window() -> Window:
    start = datetime.now(UTC).replace(microsecond=0)
    return Window(start, start + timedelta(minutes=1))


async def with_ledgers(container: Any, n: int, run: Any) -> Any:
    """``run(ledgers)`` with ``n`` ledgers, each on a pool of its own (as processes are)."""
    pools = [container.async_pool() for _ in range(n)]
    for pool in pools:
        await pool.open()
    try:
        return await run([Ledger(lambda p=pool: p) for pool in pools])
    finally:
        for pool in pools:
            await pool.close()


def test_two_ledgers_on_one_database_never_grant_more_than_the_limit_together(container):
    subject, w, limit = f"test:{uuid4()}", window(), 1_000

    async def run(ledgers: list[Ledger]) -> list[int]:
        leases = [ledger.lease(subject, w, limit, 37) for _ in range(40) for ledger in ledgers]
        return [g.amount for g in await asyncio.gather(*leases)]

    granted = asyncio.run(with_ledgers(container, 2, run))
    assert sum(granted) == limit  # 80 leases of 37 asked for 2,960: exactly the limit given
    assert all(0 <= g <= 37 for g in granted)


def test_a_lease_is_cut_to_what_is_left_and_a_new_window_starts_from_zero(container):
    subject, w = f"test:{uuid4()}", window()
    later = Window(w.end, w.end + timedelta(minutes=1))

    async def run(ledgers: list[Ledger]) -> list[tuple[int, int]]:
        (ledger,) = ledgers
        return [
            tuple(await ledger.lease(subject, w, 100, 70)),
            tuple(await ledger.lease(subject, w, 100, 70)),
            tuple(await ledger.lease(subject, w, 100, 70)),
            tuple(await ledger.lease(subject, later, 100, 70)),
        ]

    assert asyncio.run(with_ledgers(container, 1, run)) == [(70, 70), (30, 100), (0, 100), (70, 70)]


def test_units_given_back_can_be_leased_again(container):
    subject, w = f"test:{uuid4()}", window()

    async def run(ledgers: list[Ledger]) -> int:
        (ledger,) = ledgers
        await ledger.lease(subject, w, 100, 100)
        await ledger.give_back(subject, w, 40)
        return (await ledger.lease(subject, w, 100, 100)).amount

    assert asyncio.run(with_ledgers(container, 1, run)) == 40


def test_allowances_of_two_processes_spend_exactly_the_limit_with_one_fetch_at_a_time(container):
    subject, w, limit = f"test:{uuid4()}", window(), 640

    async def run(ledgers: list[Ledger]) -> int:
        allowances = [Allowance(ledger, lambda limit: limit // 64) for ledger in ledgers]
        takes = [a.take(subject, w, limit, 3) for _ in range(150) for a in allowances]
        return sum(3 for t in await asyncio.gather(*takes) if t.ok)

    spent = asyncio.run(with_ledgers(container, 2, run))
    # Never above the limit; below it by at most the remainders (< one request) left in each
    # process's last lease.
    assert limit - 2 * 3 < spent <= limit


def test_a_debt_is_repaid_from_the_next_lease(container):
    subject, w = f"test:{uuid4()}", window()

    async def run(ledgers: list[Ledger]) -> list[bool]:
        allowance = Allowance(ledgers[0], lambda limit: 10)
        first = await allowance.take(subject, w, 100, 10)
        allowance.correct(subject, 85)  # the request used 95, not 10
        # 95 of 100 used: a request of 5 fits, one more does not.
        return [
            first.ok,
            (await allowance.take(subject, w, 100, 5)).ok,
            (await allowance.take(subject, w, 100, 1)).ok,
        ]

    assert asyncio.run(with_ledgers(container, 1, run)) == [True, True, False]


def test_a_request_larger_than_the_whole_limit_is_refused_and_leaves_the_window_to_others(
    container,
):
    subject, w = f"test:{uuid4()}", window()

    async def run(ledgers: list[Ledger]) -> list[bool]:
        mine, theirs = (Allowance(ledger, lambda limit: 1) for ledger in ledgers)
        return [
            (await mine.take(subject, w, 100, 101)).ok,
            (await theirs.take(subject, w, 100, 100)).ok,
        ]

    assert asyncio.run(with_ledgers(container, 2, run)) == [False, True]


def test_a_request_that_waited_across_a_windows_end_is_counted_in_the_new_window(container):
    subject, old = f"test:{uuid4()}", window()
    new = Window(old.end, old.end + timedelta(minutes=1))

    async def run(ledgers: list[Ledger]) -> list[tuple[bool, Window, int]]:
        allowance = Allowance(ledgers[0], lambda limit: 10)
        seen = []
        for w in (new, old, new):  # the second was decided late: it is the new window's
            taken = await allowance.take(subject, w, 100, 1)
            seen.append((taken.ok, taken.account.window, taken.account.balance))
        return seen

    # One lease of 10 in the new window serves all three; the old window is not touched.
    assert asyncio.run(with_ledgers(container, 1, run)) == [
        (True, new, 9),
        (True, new, 8),
        (True, new, 7),
    ]
