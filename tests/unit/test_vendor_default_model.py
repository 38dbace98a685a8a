"""A request that names a vendor (seed 003's ``{"vendor": "anthropic", ...}``) but no model."""

from __future__ import annotations

from application.catalog import DEFAULT_MODELS, DEFAULT_VENDORS
from application.gateway import VENDOR_DEFAULT_MODELS, default_model
from domain.instance import UPSTREAMS


def test_every_byok_vendor_has_a_default_model_of_its_own_in_the_default_catalog():
    slugs = {m[0] for m in DEFAULT_MODELS}
    assert VENDOR_DEFAULT_MODELS.keys() == set(UPSTREAMS)
    for vendor, model in VENDOR_DEFAULT_MODELS.items():
        assert model in slugs and DEFAULT_VENDORS[model] == vendor


def test_the_default_is_the_vendors_first_model_in_seed_003s_list():
    assert default_model("openai") == "gpt-4o"
    assert default_model("anthropic") == "claude-sonnet-4-5"
    assert default_model("minimax") == "minimax-m3"


def test_no_vendor_or_an_unknown_one_implies_no_model():
    assert default_model(None) is None
    assert default_model("acme") is None
    assert default_model(["openai"]) is None
