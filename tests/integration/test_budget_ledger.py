"""The budgets' money leases on real PostgreSQL: never more than what is left, across holders,
and a settled cost counted until the usage read model counts it, never twice."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from interfaces.gateway.budget_ledger import BudgetLedger, Scope, Settled

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
START, END = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
NOT_YET = 10**15  # a notification id the usage read model has not reached
LIMIT = Decimal(10)


def ledger(container: Any) -> BudgetLedger:
    return BudgetLedger(container.pool, uuid.uuid4(), expiry_seconds=60)


def subject() -> tuple[str, Scope]:
    """A budget of a tenant with no usage: everything spent is what the ledger holds."""
    return f"budget:{uuid.uuid4()}:daily:{START.isoformat()}", Scope(uuid.uuid4(), None, START, END)


def test_two_holders_are_never_given_more_than_the_limit_together(container: Any):
    a, b = ledger(container), ledger(container)
    s, scope = subject()
    assert a.hold(s, scope, LIMIT, Decimal(0), Decimal(6), Decimal(6), NOW).amount == 6
    refused = b.hold(s, scope, LIMIT, Decimal(0), Decimal(6), Decimal(6), NOW)
    assert (refused.amount, refused.remaining) == (0, 4)
    assert b.hold(s, scope, LIMIT, Decimal(0), Decimal(1), Decimal(6), NOW).amount == 4


def test_concurrent_holders_are_given_exactly_what_is_left(container: Any):
    s, scope = subject()
    holders = [ledger(container) for _ in range(20)]
    amounts: list[Decimal] = []

    def take(h: BudgetLedger) -> None:
        amounts.append(h.hold(s, scope, LIMIT, Decimal(0), Decimal(1), Decimal(1), NOW).amount)

    threads = [threading.Thread(target=take, args=(h,)) for h in holders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(amounts) == [0] * 10 + [1] * 10


def test_a_holder_keeps_its_requests_in_flight_even_when_nothing_is_left(container: Any):
    a, b = ledger(container), ledger(container)
    s, scope = subject()
    b.hold(s, scope, LIMIT, Decimal(0), Decimal(8), Decimal(8), NOW)
    # a had 5 in flight (granted before b took its 8): it keeps them, and gets nothing more.
    lease = a.hold(s, scope, LIMIT, Decimal(5), Decimal(1), Decimal(1), NOW)
    assert lease.amount == 5
    assert lease.remaining == 2


def test_a_settled_cost_counts_until_the_read_model_reaches_its_position(container: Any):
    a, b = ledger(container), ledger(container)
    s, scope = subject()
    a.hold(s, scope, LIMIT, Decimal(0), Decimal(4), Decimal(4), NOW)
    # One request of a's, reserved at 4, cost 3: written where the read model has not reached.
    a.settle(s, Decimal(0), [Settled(Decimal(3), NOT_YET)])
    assert b.hold(s, scope, LIMIT, Decimal(0), Decimal(1), Decimal(1), NOW).remaining == 7


def test_a_settled_cost_the_read_model_already_counts_is_not_counted_again(container: Any):
    a, b = ledger(container), ledger(container)
    s, scope = subject()
    a.hold(s, scope, LIMIT, Decimal(0), Decimal(4), Decimal(4), NOW)
    # At position 0 the read model counts it (here: nothing, this tenant has no usage stored).
    a.settle(s, Decimal(0), [Settled(Decimal(3), 0)])
    assert b.hold(s, scope, LIMIT, Decimal(0), Decimal(1), Decimal(1), NOW).remaining == LIMIT
