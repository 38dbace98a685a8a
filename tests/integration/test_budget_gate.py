"""The budget gate's leases on real PostgreSQL: a lease in use is renewed while requests go on
being admitted from it, and the ledger holds every one of them (none lost, none counted twice)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from interfaces.gateway.admission import Actual
from interfaces.gateway.budget_ledger import BudgetLedger, Lease
from interfaces.gateway.budgets import (
    CHUNK,
    RENEW_SECONDS,
    BudgetGate,
    BudgetGrant,
    Held,
    Price,
    Rule,
)

NOW = datetime.now(UTC)
LIMIT = Decimal(64)  # a chunk (the room a lease tops up to) is 1 EUR
# A cent a token either way: a request's worst case here is 30 tokens (0.30 EUR).
PRICE = Price(100, input_eur_per_mtok=Decimal(10_000), output_eur_per_mtok=Decimal(10_000))
WORST = Decimal("0.30")
NOT_YET = 10**15  # a notification id the usage read model has not reached


class Ledger(BudgetLedger):
    """The real ledger, whose leases can be held back at the door (to admit meanwhile) or fail."""

    def __init__(self, pool: Any) -> None:
        super().__init__(pool, uuid.uuid4(), expiry_seconds=60)
        self.door = threading.Event()
        self.door.set()
        self.knocked = threading.Event()

    def hold(self, *args: Any, **kwargs: Any) -> Lease:
        self.knocked.set()
        assert self.door.wait(10)
        return super().hold(*args, **kwargs)


def setup(container: Any) -> tuple[BudgetGate, Ledger, Held]:
    """A gate on a daily budget of a tenant with no usage: all it spent is in the ledger."""
    ledger = Ledger(container.pool)
    gate = BudgetGate(container.pool, ledger)
    held = gate._held_for(uuid.uuid4(), Rule(uuid.uuid4(), None, LIMIT, "daily"), NOW)
    return gate, ledger, held


def left_for_others(container: Any, held: Held) -> Decimal:
    """What another process is told is left (it takes nothing)."""
    other = BudgetLedger(container.pool, uuid.uuid4(), expiry_seconds=60)
    zero = Decimal(0)
    return other.hold(held.subject, held.scope, LIMIT, zero, zero, zero, NOW).remaining


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached in 5 s")


def written(held: Held) -> Any:
    """Whether what was settled and given back is written to the ledger."""
    return lambda: not (held.flushing or held.unsettled or held.lock.locked())


async def two_requests(gate: BudgetGate, held: Held) -> None:
    """Two requests in flight: the first lease is the first request's worst case (the process
    learns the limit from it); the second request asks again, for a chunk more."""
    assert await gate._reserve(held, WORST, NOW)
    assert await gate._reserve(held, WORST, NOW)
    assert (held.in_flight, held.written) == (2 * WORST, WORST + LIMIT / CHUNK)


def test_requests_are_admitted_while_a_lease_is_renewed_and_the_ledger_holds_all_of_them(
    container: Any,
):
    gate, ledger, held = setup(container)

    async def scenario() -> None:
        await two_requests(gate, held)
        held.asked_at -= RENEW_SECONDS  # the lease is half its life old
        ledger.door.clear()
        ledger.knocked.clear()
        assert await gate._reserve(held, WORST, NOW)
        # That request started a renewal, which is now at the ledger's door ...
        assert await asyncio.to_thread(ledger.knocked.wait, 5)
        assert held.renewing
        # ... and requests go on being admitted from the lease meanwhile.
        assert await asyncio.wait_for(gate._reserve(held, WORST, NOW), 5)
        assert held.in_flight == 4 * WORST
        ledger.door.set()
        await until(lambda: not held.renewing)

        # The renewal kept all that was held (1.30 EUR: the room the fourth request came from
        # included) and topped the room up to a chunk as it was when it asked (three requests in
        # flight: 0.60 EUR more). The ledger holds that for this process; others get the rest.
        assert held.written == held.amount == Decimal("1.90")
        assert held.amount - held.in_flight == Decimal("0.70")
        assert left_for_others(container, held) == LIMIT - held.written

        # Each is settled at its actual cost (10 prompt and 5 completion tokens: 0.15 EUR).
        grant = BudgetGrant(gate, [held], WORST, PRICE)
        for position in range(4):
            gate.settle(grant, Actual("success", 10, 5, position=NOT_YET + position))
        await until(written(held))
        assert held.in_flight == 0
        # Nothing lost, nothing counted twice: the four costs are settled, the lease keeps a
        # chunk of room, and the rest is left.
        assert held.written == LIMIT / CHUNK
        assert left_for_others(container, held) == LIMIT - 4 * Decimal("0.15") - LIMIT / CHUNK

    asyncio.run(scenario())


def test_a_renewal_that_finds_the_room_spent_elsewhere_keeps_only_what_is_in_flight(
    container: Any,
):
    gate, ledger, held = setup(container)

    async def scenario() -> None:
        await two_requests(gate, held)
        # Another process had requests in flight beyond what was left: all but one worst case
        # of the budget is held by it now.
        other = BudgetLedger(container.pool, uuid.uuid4(), expiry_seconds=60)
        zero = Decimal(0)
        other.hold(held.subject, held.scope, LIMIT, LIMIT - WORST, zero, zero, NOW)

        held.asked_at -= RENEW_SECONDS
        assert await gate._reserve(held, WORST, NOW)  # from the lease (fresh), and renews it
        await until(lambda: not held.renewing)
        # The room it held is not left: it keeps its three requests in flight and no more ...
        assert held.amount == held.in_flight == 3 * WORST
        # ... so the next request asks the ledger, and is refused.
        assert not await gate._reserve(held, WORST, NOW)
        # What the ledger held beyond the requests in flight is given back.
        await until(written(held))
        assert held.written == 3 * WORST

    asyncio.run(scenario())
