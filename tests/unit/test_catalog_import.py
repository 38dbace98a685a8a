"""Reading price lists (no database): shapes, conversions and what is skipped."""

from __future__ import annotations

from decimal import Decimal

import pytest

from application.catalog_import import (
    LITELLM_VENDORS,
    OPENROUTER_VENDORS,
    CatalogFormatError,
    read_price_list,
    to_eur_per_mtok,
)
from domain.instance import UPSTREAMS


def test_every_mapped_provider_is_one_of_hostplanes_byok_vendors():
    assert set(LITELLM_VENDORS.values()) <= set(UPSTREAMS)
    assert set(OPENROUTER_VENDORS.values()) <= set(UPSTREAMS)


@pytest.mark.parametrize(
    ("usd_per_token", "rate", "eur", "rounded"),
    [
        ("2.5E-6", "0.92", "2.3", False),
        ("0.000015", "0.9", "13.5", False),
        ("1E-5", "1", "10", False),
        ("0", "0.92", "0", False),
        ("1.23456789E-7", "1", "0.123457", True),
    ],
)
def test_usd_per_token_becomes_eur_per_million_tokens_exactly(usd_per_token, rate, eur, rounded):
    value, was_rounded = to_eur_per_mtok(Decimal(usd_per_token), Decimal(rate))

    assert (value, was_rounded) == (Decimal(eur), rounded)
    assert value.as_tuple().exponent >= -6  # what the price book takes


def test_a_json_number_is_never_read_as_a_float():
    prices = read_price_list(
        b'{"m": {"mode": "chat", "max_tokens": 8, "input_cost_per_token": 1.1e-07,'
        b' "output_cost_per_token": 3.3e-07, "litellm_provider": "x"}}',
        Decimal("1"),
    )

    (entry,) = prices.entries
    # Through a float, 1.1e-07 * 1e6 is 0.10999999999999999.
    assert (entry.input_eur_per_mtok, entry.output_eur_per_mtok) == (
        Decimal("0.11"),
        Decimal("0.33"),
    )
    assert not entry.rounded


def test_the_same_model_listed_twice_is_taken_once():
    prices = read_price_list(
        b'{"mistral/m": {"mode": "chat", "max_tokens": 8, "input_cost_per_token": 1e-6,'
        b' "output_cost_per_token": 1e-6, "litellm_provider": "mistral"},'
        b' "m": {"mode": "chat", "max_tokens": 8, "input_cost_per_token": 2e-6,'
        b' "output_cost_per_token": 2e-6, "litellm_provider": "mistral"}}',
        Decimal("1"),
    )

    assert [(e.slug, e.input_eur_per_mtok) for e in prices.entries] == [("m", Decimal(1))]
    assert [s.why for s in prices.skipped] == ["listed twice; the first entry was taken"]


@pytest.mark.parametrize("text", [b"[]", b'{"data": 1}', b"{}", b"not json"])
def test_a_file_of_neither_shape_is_refused(text):
    with pytest.raises(CatalogFormatError):
        read_price_list(text, Decimal("0.92"))
