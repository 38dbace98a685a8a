"""The budget gate: budgets and prepaid credits enforced before the money is spent.

At admission a request's *worst case* (its estimated prompt tokens plus ``max_tokens``, or the
model's context length, at the model's current prices) is reserved against every budget that
applies to it (its key's and its tenant's, for the current period) and, for a prepaid tenant,
against its balance; its settlement releases the reservation and accounts the actual cost.

The money is held through ``BudgetLedger`` leases that every process sees (README "Budgets
enforced at request time"): a process asks the ledger for room (at least the request's worst
case, up to a 64th of the limit) and admits from it in memory while it is less than
``LEASE_SECONDS`` old; older, it asks again, so spend recorded elsewhere (another process,
``POST /usage/events``) refuses the next request within a second. A lease in use is renewed in
the background once it is ``RENEW_SECONDS`` old, holding everything the process holds while it
asks, so that requests go on being admitted from it meanwhile instead of waiting for the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from psycopg_pool import ConnectionPool

from application.gateway import GatewayRefusal
from domain.pricing import token_cost
from domain.timewindow import period_window
from interfaces.gateway.admission import Actual, Admitting, Headers
from interfaces.gateway.budget_ledger import BudgetLedger, Lease, Scope, Settled
from interfaces.gateway.kept import Kept
from projections.readmodels.budgets import SCHEMA as BUDGETS
from projections.readmodels.costs import SCHEMA as COSTS
from projections.readmodels.pricebook import SCHEMA as PRICEBOOK

log = logging.getLogger("hostplane.gateway")

ZERO = Decimal(0)
LEASE_SECONDS = 0.5  # how long a process admits from a lease without asking the ledger again
RENEW_SECONDS = LEASE_SECONDS / 2  # a lease in use is renewed in the background from this age
CHUNK = 64  # a lease gives up to limit / CHUNK beyond the request's worst case
FLUSH_SECONDS = 0.05  # settlements gathered into one ledger write (meanwhile it holds more)
PRUNE_SECONDS = 60.0
LEASE_MARGIN_SECONDS = 60.0  # a lease lives this much longer than a request may last
MAX_KEPT = 10_000

SELECT_RULES = f"""
SELECT id, key_id, limit_eur, period FROM {BUDGETS}.budgets WHERE tenant_id = %s AND NOT deleted"""
SELECT_CREDITS = f"SELECT credits FROM {COSTS}.credits WHERE tenant_id = %s"
# The price in effect now (as ``Model.price_at``): the latest change effective by now.
SELECT_PRICE = f"""
SELECT m.context_length, p.input_eur_per_mtok, p.output_eur_per_mtok
FROM {PRICEBOOK}.models m
JOIN LATERAL (
    SELECT input_eur_per_mtok, output_eur_per_mtok FROM {PRICEBOOK}.prices
    WHERE model = m.id AND (effective_from IS NULL OR effective_from <= now())
    ORDER BY effective_from DESC NULLS LAST, version DESC LIMIT 1
) p ON true
WHERE m.id = %s"""


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit on a tenant's spend: a budget (``budget_id``) or its credits (None)."""

    budget_id: UUID | None
    key_id: UUID | None
    limit: Decimal | None  # None: the credits, read with the spend
    period: str


@dataclass(frozen=True, slots=True)
class Price:
    context_length: int
    input_eur_per_mtok: Decimal
    output_eur_per_mtok: Decimal


@dataclass(slots=True)
class Held:
    """This process's lease on one subject, and the worst cases of its requests in flight."""

    subject: str
    scope: Scope
    rule: Rule
    amount: Decimal = ZERO  # what this process holds (its requests in flight included)
    in_flight: Decimal = ZERO
    written: Decimal = ZERO  # the amount the ledger holds for it (more, until a flush)
    unsettled: list[Settled] = field(default_factory=list)  # costs not yet in the ledger
    flushing: bool = False
    renewing: bool = False  # a renewal is under way (requests are admitted from the lease)
    asking: bool = False  # the lease is replaced from ``in_flight``: nobody is admitted meanwhile
    asked_at: float = -LEASE_SECONDS  # time.monotonic() of the last lease
    limit: Decimal = ZERO  # as the last lease read it
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def cap(self) -> Decimal:
        """The most this process keeps beyond its requests in flight."""
        return self.limit / CHUNK

    def room(self, now: float) -> Decimal:
        return self.amount - self.in_flight if now - self.asked_at <= LEASE_SECONDS else ZERO


@dataclass
class BudgetGrant:
    """The subjects a request holds its worst case on, until it is settled."""

    gate: BudgetGate
    held: list[Held]
    worst: Decimal
    price: Price
    headers: Headers = field(default_factory=list)

    async def settle(self, actual: Actual | None) -> None:
        self.gate.settle(self, actual)


class NoBudget:
    """The grant of a request that no budget or balance limits."""

    headers: Headers = []

    async def settle(self, actual: Actual | None) -> None:
        return None


NO_BUDGET = NoBudget()


class BudgetGate:
    """Implements ``Gate``: one per serving process, on the process's sync connection pool."""

    def __init__(self, pool: ConnectionPool[Any], ledger: BudgetLedger) -> None:
        self.pool = pool
        self.ledger = ledger
        self._rules: Kept[UUID, list[Rule]] = Kept("budgets")
        self._prices: Kept[str, Price | None] = Kept("prices")
        self._held: dict[str, Held] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pruned_at = time.monotonic()

    # -- what applies ---------------------------------------------------------------------

    def _load_rules(self, tenant_id: UUID) -> list[Rule]:
        with self.pool.connection() as conn:
            rows = conn.execute(SELECT_RULES, (tenant_id,)).fetchall()
            credits = conn.execute(SELECT_CREDITS, (tenant_id,)).fetchone()
        rules = [Rule(r["id"], r["key_id"], r["limit_eur"], r["period"]) for r in rows]
        if credits is not None:  # a prepaid tenant: credits were added to it
            rules.append(Rule(None, None, None, "total"))
        return rules

    def _load_price(self, slug: str) -> Price | None:
        with self.pool.connection() as conn:
            row = conn.execute(SELECT_PRICE, (slug,)).fetchone()
        if row is None:
            return None
        return Price(row["context_length"], row["input_eur_per_mtok"], row["output_eur_per_mtok"])

    def _held_for(self, tenant_id: UUID, rule: Rule, now: datetime) -> Held:
        if rule.budget_id is None:
            subject = f"credits:{tenant_id}"
            scope = Scope(tenant_id, None, None, None)
        else:
            start, end = period_window(rule.period, now)
            subject = f"budget:{rule.budget_id}:{rule.period}:{start.isoformat()}"
            scope = Scope(tenant_id, rule.key_id, start, end)
        held = self._held.get(subject)
        if held is None:
            if len(self._held) >= MAX_KEPT:
                self._forget_idle()
            held = self._held[subject] = Held(subject, scope, rule)
        elif held.rule != rule:  # its limit changed: ask the ledger again
            held.rule, held.asked_at = rule, -LEASE_SECONDS
        return held

    def _forget_idle(self) -> None:
        for subject, held in list(self._held.items()):
            busy = held.lock.locked() or held.unsettled or held.flushing or held.renewing
            if held.in_flight == 0 and not busy:
                del self._held[subject]

    # -- admission ------------------------------------------------------------------------

    async def admit(self, request: Admitting) -> BudgetGrant | NoBudget:
        caller = request.caller
        slug = request.model.slug
        try:
            rules = await self._rules.get(
                caller.tenant_id, lambda: asyncio.to_thread(self._load_rules, caller.tenant_id)
            )
            rules = [r for r in rules if r.key_id is None or r.key_id == caller.key_id]
            if not rules:
                return NO_BUDGET
            price = await self._prices.get(slug, lambda: asyncio.to_thread(self._load_price, slug))
        except Exception:  # noqa: BLE001 - the database is unreachable: never admitted unchecked
            log.exception("reading budgets failed")
            raise unavailable() from None
        if price is None:
            return NO_BUDGET  # a model deleted a moment ago: routing refuses it
        worst = worst_case(request, price)
        now = datetime.now(UTC)
        taken: list[Held] = []
        try:
            for rule in rules:
                held = self._held_for(caller.tenant_id, rule, now)
                if not await self._reserve(held, worst, now):
                    raise refusal(held, worst)
                taken.append(held)
        except BaseException:
            for held in taken:
                held.in_flight -= worst
            raise
        finally:
            self._maybe_prune()
        return BudgetGrant(self, taken, worst, price)

    async def _reserve(self, held: Held, worst: Decimal, now: datetime) -> bool:
        # In memory while the lease is fresh and nobody replaces it from what is in flight (a
        # renewal or a flush keeps everything the process holds, so they don't stop it).
        at = time.monotonic()
        if not held.asking and held.room(at) >= worst:
            held.in_flight += worst
            if at - held.asked_at >= RENEW_SECONDS and not held.renewing:
                held.renewing = True
                self._background(self._renew(held))
            return True
        async with held.lock:
            for _ in range(2):
                if held.room(time.monotonic()) >= worst:
                    held.in_flight += worst
                    return True
                in_flight = held.in_flight
                await self._ask(held, worst, now)
                if held.room(time.monotonic()) >= worst:
                    held.in_flight += worst
                    return True
                # A request answered this instant may be counted by the read model already
                # and still be in flight here: once it is settled, ask again (once).
                await asyncio.sleep(0)
                if held.in_flight >= in_flight:
                    return False
            return False

    async def _ask(self, held: Held, worst: Decimal, now: datetime) -> None:
        """Take a lease on the subject (its lock held), writing what was settled: what is in
        flight, and at least ``worst`` more or nothing more."""
        held.asking = True
        try:
            await self._hold(held, held.in_flight, worst, max(worst, held.cap), now)
        except Exception:  # noqa: BLE001 - answered as a 503: the ledger is unreachable
            log.exception("taking a budget lease failed")
            raise unavailable() from None
        finally:
            held.asking = False

    async def _renew(self, held: Held) -> None:
        """Renew a lease in use before it expires, while requests are admitted from it.

        The ledger is asked to keep everything this process holds (its requests in flight and
        the room they are admitted from meanwhile) and to top the room up to a chunk. If what is
        left for this process is less than what it holds (spent elsewhere), it keeps only its
        requests in flight: the next request asks, and is refused if nothing is left.
        """
        try:
            async with held.lock:
                if time.monotonic() - held.asked_at < RENEW_SECONDS:
                    return  # a request asked meanwhile
                base = held.amount
                want = max(ZERO, held.cap - (base - held.in_flight))
                try:
                    lease = await self._hold(held, base, ZERO, want, datetime.now(UTC))
                except Exception:  # noqa: BLE001 - the lease expires; the next request asks
                    log.exception("renewing a budget lease failed")
                    return
                if lease.remaining < base:
                    held.amount = held.in_flight
                    self._flush_soon(held)
        finally:
            held.renewing = False

    async def _hold(
        self, held: Held, base: Decimal, need: Decimal, want: Decimal, now: datetime
    ) -> Lease:
        """Ask the ledger to hold ``base`` (and ``need``..``want`` more), with the lock held."""
        asked = time.monotonic()
        before = held.amount
        taken, held.unsettled = held.unsettled, []
        try:
            lease = await asyncio.to_thread(
                self.ledger.hold,
                held.subject,
                held.scope,
                held.rule.limit,
                base,
                need,
                want,
                now,
                taken,
            )
        except Exception:
            held.unsettled = taken + held.unsettled
            raise
        # Requests settled while it was asked left the lease after the answer was written.
        held.amount = lease.amount + (held.amount - before)
        held.written, held.limit, held.asked_at = lease.amount, lease.limit, asked
        return lease

    # -- settlement -----------------------------------------------------------------------

    def settle(self, grant: BudgetGrant, actual: Actual | None) -> None:
        """Release the worst case; the actual cost leaves the lease for a settled row.

        In memory at once; written to the ledger by the next lease this process takes on the
        subject, or by a flush in the background (the answer does not wait for it). Until it
        is written, the ledger counts the request's whole worst case: more, never less.
        """
        settled = None
        if actual is not None and not actual.cache_hit and actual.position is not None:
            price = grant.price
            cost = token_cost(
                actual.prompt_tokens,
                actual.completion_tokens,
                price.input_eur_per_mtok,
                price.output_eur_per_mtok,
            )
            if cost > 0:
                settled = Settled(cost, actual.position)
        for held in grant.held:
            held.in_flight -= grant.worst
            if settled is not None:
                held.amount -= settled.cost
                held.unsettled.append(settled)
            if held.amount - held.in_flight > held.cap:  # give the room beyond a chunk back
                held.amount = held.in_flight + held.cap
            self._flush_soon(held)

    def _flush_soon(self, held: Held) -> None:
        if (held.unsettled or held.amount < held.written) and not held.flushing:
            held.flushing = True
            self._background(self._flush(held))

    async def _flush(self, held: Held) -> None:
        await asyncio.sleep(FLUSH_SECONDS)  # one write for the settlements of a moment
        async with held.lock:
            held.flushing = False
            if not held.unsettled and held.amount >= held.written:
                return  # a lease taken meanwhile wrote it
            taken, held.unsettled = held.unsettled, []
            amount = held.amount
            try:
                await asyncio.to_thread(self.ledger.settle, held.subject, amount, taken)
            except Exception:  # noqa: BLE001 - kept for the next write (the ledger holds more)
                log.exception("settling budget leases failed")
                held.unsettled = taken + held.unsettled
                return
            held.written = amount

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_SECONDS:
            return
        self._pruned_at = time.monotonic()
        self._background(asyncio.to_thread(self.ledger.prune))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def worst_case(request: Admitting, price: Price) -> Decimal:
    """The most a request can cost: its prompt and its longest possible answer."""
    if request.kind == "embeddings":
        completion = 0
    elif request.max_tokens is not None and request.max_tokens > 0:
        completion = min(request.max_tokens, price.context_length)
    else:  # none (or one an upstream may not honour): as long as the context allows
        completion = price.context_length
    return token_cost(
        max(0, request.prompt_tokens),
        completion,
        price.input_eur_per_mtok,
        price.output_eur_per_mtok,
    )


def budget_gate(pool: ConnectionPool[Any], total_timeout: float) -> BudgetGate:
    """The gate of one serving process: its leases outlive its longest request."""
    return BudgetGate(pool, BudgetLedger(pool, uuid4(), total_timeout + LEASE_MARGIN_SECONDS))


def unavailable() -> GatewayRefusal:
    return GatewayRefusal(
        503,
        "budget_unavailable",
        "the budget could not be checked; retry",
        "service_unavailable",
        retry_after=2,
    )


def refusal(held: Held, worst: Decimal) -> GatewayRefusal:
    rule = held.rule
    if rule.budget_id is None:
        return GatewayRefusal(
            429,
            "credit_balance_exhausted",
            f"the prepaid credit balance has no room for this request (at most {worst} EUR);"
            " add credits to continue",
            "insufficient_quota",
        )
    whose = "key's" if rule.key_id is not None else "tenant's"
    return GatewayRefusal(
        429,
        "budget_exceeded",
        f"the {whose} {rule.period} budget of {rule.limit} EUR has no room for this request"
        f" (at most {worst} EUR); it renews with its period",
        "insufficient_quota",
    )
