"""The budget gate's arithmetic: a request's worst case, and which period a reservation is in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from application.gateway import CatalogModel, GatewayCaller
from interfaces.gateway.admission import Admitting
from interfaces.gateway.budgets import BudgetGate, Price, Rule, worst_case

PRICE = Price(
    context_length=8192, input_eur_per_mtok=Decimal("1.10"), output_eur_per_mtok=Decimal(4)
)


def admitting(prompt: int, max_tokens: int | None, kind: str = "chat/completions") -> Admitting:
    caller = GatewayCaller(tenant_id=uuid.uuid4(), key_id=uuid.uuid4())
    model = CatalogModel(slug="m", serveable=False, vendor="openai", created=0)
    return Admitting(caller, model, kind, prompt, max_tokens, {})


def test_the_worst_case_is_the_prompt_and_max_tokens_at_the_models_prices_exactly():
    assert worst_case(admitting(10, 20), PRICE) == (10 * Decimal("1.10") + 20 * 4) / 10**6


def test_without_max_tokens_the_worst_case_answer_is_the_whole_context():
    assert worst_case(admitting(10, None), PRICE) == worst_case(admitting(10, 8192), PRICE)


def test_max_tokens_beyond_the_context_or_not_above_zero_count_as_the_whole_context():
    whole = worst_case(admitting(10, 8192), PRICE)
    assert worst_case(admitting(10, 100_000), PRICE) == whole
    assert worst_case(admitting(10, 0), PRICE) == whole
    assert worst_case(admitting(10, -5), PRICE) == whole


def test_an_embedding_costs_at_worst_its_input():
    assert worst_case(admitting(10, None, "embeddings"), PRICE) == 10 * Decimal("1.10") / 10**6


def gate() -> BudgetGate:
    none: Any = None  # subjects need no database
    return BudgetGate(none, none)


def test_a_daily_budget_reserves_in_a_new_period_from_midnight_utc():
    g, tenant = gate(), uuid.uuid4()
    rule = Rule(uuid.uuid4(), None, Decimal(5), "daily")
    before = g._held_for(tenant, rule, datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC))
    after = g._held_for(tenant, rule, datetime(2026, 3, 2, 0, 0, 0, tzinfo=UTC))
    assert before is not after
    assert after.scope.start == datetime(2026, 3, 2, tzinfo=UTC)
    assert after.scope.end == datetime(2026, 3, 3, tzinfo=UTC)


def test_a_monthly_budget_keeps_one_reservation_for_the_whole_month():
    g, tenant = gate(), uuid.uuid4()
    rule = Rule(uuid.uuid4(), uuid.uuid4(), Decimal(5), "monthly")
    first = g._held_for(tenant, rule, datetime(2026, 3, 1, tzinfo=UTC))
    assert g._held_for(tenant, rule, datetime(2026, 3, 31, 23, 59, tzinfo=UTC)) is first
    assert first.scope.key_id == rule.key_id


def test_credits_are_one_reservation_for_all_time():
    g, tenant = gate(), uuid.uuid4()
    rule = Rule(None, None, None, "total")
    held = g._held_for(tenant, rule, datetime(2026, 3, 1, tzinfo=UTC))
    assert (held.scope.start, held.scope.end) == (None, None)
    assert g._held_for(tenant, rule, datetime(2030, 1, 1, tzinfo=UTC)) is held
