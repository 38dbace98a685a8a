"""The response cache (issue 19 §4): a tenant's identical non-streamed request, within the
model's TTL, is answered without reaching the upstream, metered with the tokens of the answer it
repeats and billed at zero token cost."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import Gateway, GatewayTenant, token_cost

IN, OUT = "1.10", "4.40"
ASK = [{"role": "user", "content": "what is the capital of France"}]


def cached_model(
    gateway: Gateway, ttl: int = 600, enabled: bool = True, modality: str = "chat"
) -> str:
    """A model of OpenAI's with its response cache set (and seen by the read models)."""
    slug = gateway.model("openai", input_price=IN, output_price=OUT, modality=modality)
    r = gateway.admin.put(f"/models/{slug}/cache", json={"enabled": enabled, "ttl_seconds": ttl})
    assert r.status_code == 200, r.text
    assert r.json()["cache"] == {"enabled": enabled, "ttl_seconds": ttl}
    return slug


def byok_tenant(gateway: Gateway) -> tuple[GatewayTenant, Any]:
    t = gateway.new_tenant()
    t.byok("openai")
    _, secret = t.router_key()
    return t, gateway.client(secret)


def chat(client: Any, model: str, **fields: Any) -> tuple[Any, str | None]:
    """The answer and its ``x-hostplane-cache`` header."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=fields.pop("messages", ASK), **fields
    )
    return raw.parse(), raw.headers.get("x-hostplane-cache")


def upstream_calls(gateway: Gateway, model: str) -> int:
    return len(gateway.fake.requests_for(model))


def cache_stats(api: Any, **params: Any) -> dict[tuple[str, str], dict[str, Any]]:
    r = api.get("/usage/cache", params=params)
    assert r.status_code == 200, r.text
    return {(row["tenant_id"], row["model"]): row for row in r.json()["data"]}


def test_an_identical_request_is_answered_from_the_cache_and_billed_zero(gateway: Gateway):
    model = cached_model(gateway)
    gateway.fake.script(model, words=9)
    t, client = byok_tenant(gateway)

    first, first_cache = chat(client, model)
    second, second_cache = chat(client, model)

    assert (first_cache, second_cache) == ("miss", "hit")
    assert upstream_calls(gateway, model) == 1  # the second never reached the upstream
    assert second.id != first.id  # a fresh id: the second request's own
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage.total_tokens == first.usage.total_tokens
    bill = t.wait_billed(2)
    usage = first.usage
    # Both requests are in the usage, with their tokens; only the first one costs.
    assert bill["requests"] == 2
    assert bill["prompt_tokens"] == 2 * usage.prompt_tokens
    assert bill["completion_tokens"] == 2 * usage.completion_tokens
    expected = token_cost(usage.prompt_tokens, usage.completion_tokens, IN, OUT)
    assert Decimal(bill["token_cost"]) == expected


def test_fields_that_do_not_change_the_answer_do_not_keep_it_from_the_cache(gateway: Gateway):
    model = cached_model(gateway)
    _, client = byok_tenant(gateway)

    chat(client, model, user="alice")
    _, cache = chat(client, model, user="bob", stream=False)

    assert cache == "hit"
    assert upstream_calls(gateway, model) == 1


def test_a_request_with_another_temperature_is_not_answered_from_the_cache(gateway: Gateway):
    model = cached_model(gateway)
    _, client = byok_tenant(gateway)

    chat(client, model, temperature=0.2)
    _, cache = chat(client, model, temperature=0.9)
    _, again = chat(client, model, temperature=0.2)

    assert (cache, again) == ("miss", "hit")
    assert upstream_calls(gateway, model) == 2


def test_one_tenant_never_receives_another_tenants_cached_answer(gateway: Gateway):
    model = cached_model(gateway)
    _, client = byok_tenant(gateway)
    _, other = byok_tenant(gateway)

    chat(client, model)
    answer, cache = chat(other, model)

    assert cache == "miss"
    assert upstream_calls(gateway, model) == 2
    # The other tenant's answer came from its own upstream call, with its own BYOK key.
    bearers = {r.bearer for r in gateway.fake.requests_for(model)}
    assert len(bearers) == 2


def test_an_answer_is_served_from_the_cache_only_within_the_models_ttl(gateway: Gateway):
    model = cached_model(gateway, ttl=1)
    _, client = byok_tenant(gateway)

    chat(client, model)
    _, within = chat(client, model)
    time.sleep(1.2)
    _, after = chat(client, model)

    assert (within, after) == ("hit", "miss")
    assert upstream_calls(gateway, model) == 2


def test_streamed_requests_are_never_answered_from_the_cache(gateway: Gateway):
    model = cached_model(gateway)
    _, client = byok_tenant(gateway)
    chat(client, model)  # a non-streamed answer is in the cache

    for _ in range(2):
        chunks = list(client.chat.completions.create(model=model, messages=ASK, stream=True))
        assert chunks

    assert upstream_calls(gateway, model) == 3


def test_a_model_whose_cache_is_off_is_never_answered_from_the_cache(gateway: Gateway):
    model = cached_model(gateway, enabled=False)
    _, client = byok_tenant(gateway)

    _, first = chat(client, model)
    _, second = chat(client, model)

    assert (first, second) == (None, None)
    assert upstream_calls(gateway, model) == 2


def test_embeddings_are_answered_from_the_cache(gateway: Gateway):
    model = cached_model(gateway, modality="embedding")
    _, client = byok_tenant(gateway)

    first = client.embeddings.with_raw_response.create(model=model, input=["a b c", "d"])
    second = client.embeddings.with_raw_response.create(model=model, input=["a b c", "d"])

    assert first.headers["x-hostplane-cache"] == "miss"
    assert second.headers["x-hostplane-cache"] == "hit"
    assert second.parse().data[0].embedding == first.parse().data[0].embedding
    assert upstream_calls(gateway, model) == 1


def test_usage_cache_counts_hits_misses_and_tokens_saved_per_tenant_and_model(
    gateway: Gateway,
):
    today = datetime.now(UTC).date()  # before the requests: they are all in [today, +2 days)
    model = cached_model(gateway)
    plain = cached_model(gateway, enabled=False)
    gateway.fake.script(model, words=4)
    t, client = byok_tenant(gateway)
    other, other_client = byok_tenant(gateway)

    first, _ = chat(client, model)
    for _ in range(3):
        chat(client, model)
    chat(client, model, temperature=0.5)  # a second miss
    chat(client, plain)  # not a cache-enabled model: neither
    chat(other_client, model)
    t.wait_billed(6)
    other.wait_billed(1)

    mine = cache_stats(t.api)
    assert set(mine) == {(t.id, model)}  # its own figures only; the plain model has none
    row = mine[(t.id, model)]
    saved = 3 * (first.usage.prompt_tokens + first.usage.completion_tokens)
    assert (row["hits"], row["misses"], row["hit_ratio"]) == (3, 2, 0.6)
    assert row["prompt_tokens_saved"] == 3 * first.usage.prompt_tokens
    assert row["tokens_saved"] == saved
    everyone = cache_stats(gateway.admin)
    assert everyone[(t.id, model)] == row
    assert everyone[(other.id, model)]["hits"] == 0
    assert everyone[(other.id, model)]["misses"] == 1
    assert set(cache_stats(gateway.admin, tenant_id=other.id)) == {(other.id, model)}
    assert cache_stats(t.api, tenant_id=other.id) == {}  # another tenant's: nothing
    assert cache_stats(t.api, **{"from": today, "to": today + timedelta(days=2)}) == mine
    assert cache_stats(t.api, **{"from": today - timedelta(days=1), "to": today}) == {}


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    return {"cache_max_entries": 1000, "cache_max_bytes": 1_000_000}
