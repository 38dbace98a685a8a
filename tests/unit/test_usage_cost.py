"""The usage fold's integer cost sums are the very Decimals that summing token_cost gives."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from domain.pricing import token_cost
from projections.readmodels.usage import UsageProjection
from projections.readmodels.usage_cost import add_cost, cost_of, rate, zero

# Prices as check_price accepts them (at most 6 decimals), in any spelling Decimal allows,
# plus a few finer ones, which the fold sums as Decimals.
_prices = st.one_of(
    st.decimals(min_value=0, max_value=1_000_000, places=6, allow_nan=False),
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False),
    st.sampled_from(["0", "0.0", "1E+1", "2.50", "0.000001", "1E+3", "3"]).map(Decimal),
    st.decimals(min_value=0, max_value=1, places=9, allow_nan=False),
)
_tokens = st.one_of(st.integers(0, 10), st.integers(0, 5_000_000), st.sampled_from([0, 10, 100]))
_records = st.lists(st.tuples(_tokens, _tokens, _prices, _prices), min_size=0, max_size=30)


def summed(records: list[tuple[int, int, Decimal, Decimal]]) -> Decimal:
    total = Decimal(0)
    for prompt, completion, i, o in records:
        total += token_cost(prompt, completion, i, o)
    return total


@given(_records)
def test_a_buckets_cost_is_the_sum_of_its_records_token_costs_digit_for_digit(records):
    sums = zero()
    for prompt, completion, i, o in records:
        add_cost(sums, prompt, completion, rate("m", str(i), str(o)))

    expected = summed(records)

    assert str(cost_of(sums)) == str(expected)


@given(_records)
def test_the_projections_fold_rates_records_exactly_like_token_cost(records):
    projection = UsageProjection()
    projection.begin("s")
    rates = [["m", str(i), str(o)] for _, _, i, o in records]
    stored = [
        ["r", "k", n, prompt, completion, 0, True, 1, 3_600_000_000, None]
        for n, (prompt, completion, _, _) in enumerate(records)
    ]
    event = SimpleNamespace(tenant_id=uuid4(), rates=rates, records=stored)

    projection.recorded(None, SimpleNamespace(schema="s", event=event))

    buckets = list(projection._raw["s"].values())
    assert [str(cost_of(b)) for b in buckets] == ([str(summed(records))] if records else [])
