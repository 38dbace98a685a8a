"""A lease ledger: limits per (subject, window) shared by every process through PostgreSQL.

A process does not count each request in the database. It takes a *lease* of units (tokens,
requests, micro-euros) from the window's row with one conditional statement, which never
grants beyond the limit (``least(want, limit - granted)``), and spends the lease in memory.
When the lease runs out it takes another; concurrent requests of one process wait on one
fetch. Corrections (what a request really used, minus what it took) are taken from or given
back to the local lease; a debt is repaid first from the next lease, and carried into the next
window, so that over many windows nothing is lost.

What can go past a limit: corrections of the requests admitted before the window's last lease
was spent (their debts). What can go unused: each process's unspent lease at a window's end,
at most one lease (``lease_size``) per process and subject. Rows of past windows are pruned.

``Ledger`` is the shared part (one statement per lease); ``Allowance`` the per-process part
(the local leases). Both are generic: a subject is any string, a window any [start, end).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from psycopg_pool import AsyncConnectionPool, ConnectionPool

LEDGER_TABLE = "hostplane_ledger"
CREATE_LEDGER = f"""CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    subject text NOT NULL, window_start timestamptz NOT NULL, window_end timestamptz NOT NULL,
    granted bigint NOT NULL, last_grant bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, window_start))"""
# One conditional statement: the row's lock orders concurrent leases, and ``last_grant`` is what
# this statement granted (RETURNING sees the row as this statement wrote it).
LEASE = f"""
INSERT INTO {LEDGER_TABLE} AS l (subject, window_start, window_end, granted, last_grant)
VALUES (%(subject)s, %(start)s, %(end)s, least(%(want)s, %(limit)s), least(%(want)s, %(limit)s))
ON CONFLICT (subject, window_start) DO UPDATE
SET last_grant = least(%(want)s, greatest(0, %(limit)s - l.granted)),
    granted = l.granted + least(%(want)s, greatest(0, %(limit)s - l.granted))
RETURNING last_grant, granted"""
GIVE_BACK = f"""
UPDATE {LEDGER_TABLE} SET granted = greatest(0, granted - %(amount)s)
WHERE subject = %(subject)s AND window_start = %(start)s"""
PRUNE_LEDGER = f"DELETE FROM {LEDGER_TABLE} WHERE window_end < %s"
PRUNE_AFTER = timedelta(minutes=5)  # a window's row is kept this long past its end


class Window(NamedTuple):
    """A window [start, end) of a limit; a subject's windows do not overlap."""

    start: datetime
    end: datetime


class Granted(NamedTuple):
    amount: int  # granted by this lease, 0 to want
    total: int  # granted in the window so far, by every process, this lease included


class Ledger:
    """The shared part: a row per (subject, window), on the event loop's pool."""

    def __init__(self, pool: Callable[[], AsyncConnectionPool[Any]]) -> None:
        self._pool = pool

    async def lease(self, subject: str, window: Window, limit: int, want: int) -> Granted:
        """Take up to ``want`` units, never more than the window's ``limit`` in all."""
        args = {
            "subject": subject,
            "start": window.start,
            "end": window.end,
            "limit": max(0, limit),
            "want": max(0, want),
        }
        async with self._pool().connection() as conn:
            cursor = await conn.execute(LEASE, args)
            row = await cursor.fetchone()
        assert row is not None
        return Granted(int(row["last_grant"]), int(row["granted"]))

    async def give_back(self, subject: str, window: Window, amount: int) -> None:
        """Return units taken and not spent (the window's total never goes below zero)."""
        if amount <= 0:
            return
        args = {"subject": subject, "start": window.start, "amount": amount}
        async with self._pool().connection() as conn:
            await conn.execute(GIVE_BACK, args)


def create_ledger(pool: ConnectionPool[Any]) -> None:
    """Create the table if missing (as ``interfaces/db/stores.py`` creates its own)."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('hostplane-schema'))")
        conn.execute(CREATE_LEDGER)


def prune_ledger(pool: ConnectionPool[Any], now: datetime) -> None:
    """Forget the windows that ended more than ``PRUNE_AFTER`` ago."""
    with pool.connection() as conn:
        conn.execute(PRUNE_LEDGER, (now - PRUNE_AFTER,))


@dataclass(slots=True)
class Account:
    """A subject's local lease in the current window."""

    window: Window
    limit: int
    balance: int = 0  # units leased and not spent; below zero, a debt
    total: int = 0  # the window's granted total as of this process's last lease
    exhausted: bool = False  # the ledger granted everything: no lease until the window ends
    fetching: asyncio.Future[None] | None = None

    @property
    def remaining(self) -> int:
        """What is left in the window as far as this process knows (others' leases spent)."""
        return max(0, min(self.limit, self.limit - self.total + self.balance))


class Taken(NamedTuple):
    ok: bool  # the units were taken
    account: Account  # the subject's account after it (its remaining, its window)


MAX_SUBJECTS = 100_000


class Allowance:
    """The per-process part: a local lease per subject, refilled from the ``Ledger``.

    ``lease_size(limit)`` is how many units one lease asks for beyond what a request needs:
    larger leases cost fewer statements, smaller ones leave less unused at a window's end.
    """

    def __init__(self, ledger: Ledger, lease_size: Callable[[int], int]) -> None:
        self.ledger = ledger
        self.lease_size = lease_size
        self._accounts: dict[str, Account] = {}

    def account(self, subject: str, window: Window, limit: int) -> Account:
        """The subject's account in ``window``, or in a later one if the subject has moved on
        (a request that waited across a window's end is counted in the window it ends in)."""
        account = self._accounts.get(subject)
        if account is None or account.window.start < window.start:
            # A new window: what was left of the old lease is lost, a debt is carried over.
            debt = min(0, account.balance) if account is not None else 0
            if len(self._accounts) >= MAX_SUBJECTS:
                self._accounts.clear()
            account = Account(window, limit, balance=debt)
            self._accounts[subject] = account
        elif account.limit != limit:
            account.limit = limit
            account.exhausted = False  # a raised limit may grant again
        return account

    async def take(self, subject: str, window: Window, limit: int, cost: int) -> Taken:
        """Spend ``cost`` units of the subject's window, leasing more if needed."""
        while True:
            account = self.account(subject, window, limit)
            if account.balance >= cost:
                account.balance -= cost
                return Taken(True, account)
            if account.exhausted or cost > limit:  # a request larger than the limit never fits
                return Taken(False, account)
            if account.fetching is not None:
                await asyncio.shield(account.fetching)
                continue
            account.fetching = asyncio.get_running_loop().create_future()
            try:
                want = max(cost - account.balance, self.lease_size(limit))
                granted = await self.ledger.lease(subject, account.window, limit, want)
                account.balance += granted.amount
                account.total = granted.total
                account.exhausted = granted.total >= limit
            finally:
                account.fetching.set_result(None)
                account.fetching = None

    def correct(self, subject: str, amount: int) -> None:
        """A request used ``amount`` units more (below zero: fewer) than it took: taken from
        (or given back to) the subject's current lease, whichever window that now is."""
        account = self._accounts.get(subject)
        if account is not None:
            account.balance -= amount
