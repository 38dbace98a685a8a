"""Budgets and prepaid credits enforced before the money is spent (issue 19 §2): admission
reserves a request's worst case, settlement accounts its actual cost."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import Gateway, GatewayTenant, token_cost

# 1 EUR per thousand tokens either way: a token costs 0.001 EUR.
PRICE = "1000"
# One word of 16 characters: the gateway estimates 4 prompt tokens (four characters a token)
# and the fake upstream counts 4 (3 a message, 1 a word): the worst case is exact.
PROMPT = [{"role": "user", "content": "x" * 16}]
WORDS = 20  # completion tokens the fake answers with
WORST = token_cost(4, WORDS, PRICE, PRICE)  # with max_tokens=WORDS: 0.024 EUR


def budget(t: GatewayTenant, limit: Decimal, key_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"limit_eur": str(limit), "period": "daily", "thresholds": []}
    if key_id is not None:
        body["key_id"] = key_id
    r = t.api.post("/budgets", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def setup(gateway: Gateway) -> tuple[GatewayTenant, str, dict[str, Any], str]:
    """A tenant with a BYOK upstream, a model at PRICE answering WORDS tokens, a router key."""
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai", input_price=PRICE, output_price=PRICE)
    gateway.fake.script(model, words=WORDS)
    key, secret = t.router_key()
    return t, model, key, secret


async def fire(gateway: Gateway, secret: str, model: str, n: int, **kwargs: Any) -> list[Any]:
    client = gateway.async_client(secret)
    try:
        return await asyncio.gather(
            *(
                client.chat.completions.create(model=model, messages=PROMPT, **kwargs)
                for _ in range(n)
            ),
            return_exceptions=True,
        )
    finally:
        await client.close()


def test_64_concurrent_requests_at_a_budget_with_room_for_ten_admit_ten(gateway: Gateway):
    t, model, key, secret = setup(gateway)
    limit = 10 * WORST
    budget(t, limit, key["id"])

    answers = asyncio.run(fire(gateway, secret, model, 64, max_tokens=WORDS))

    admitted = [a for a in answers if not isinstance(a, Exception)]
    refused = [a for a in answers if isinstance(a, openai.RateLimitError)]
    assert len(admitted) == 10
    assert len(refused) == 54
    assert {(e.code, e.body["type"]) for e in refused} == {
        ("budget_exceeded", "insufficient_quota")
    }
    bill = t.wait_billed(64)  # a refused request is a record too, of no tokens
    # The documented bound: what admitted requests used beyond their worst case (none here).
    assert Decimal(bill["token_cost"]) <= limit
    assert Decimal(bill["token_cost"]) == 10 * WORST


def test_a_request_after_the_budget_was_exhausted_through_usage_events_is_refused(
    gateway: Gateway,
):
    t, model, key, secret = setup(gateway)
    b = budget(t, 100 * WORST)
    client = gateway.client(secret)
    client.chat.completions.create(model=model, messages=PROMPT, max_tokens=WORDS)  # a lease

    record = {
        "request_id": uuid.uuid4().hex,
        "key_id": key["id"],
        "model": model,
        "prompt_tokens": 100_000,  # 100 EUR: far past the budget
        "completion_tokens": 0,
        "status": "success",
        "latency_ms": 10,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    r = gateway.admin.post("/usage/events", json={"records": [record]})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 15
    while Decimal(t.api.get(f"/budgets/{b['id']}").json()["spent"]) < 100:
        assert time.monotonic() < deadline, "the usage read model did not catch up"
        time.sleep(0.05)
    time.sleep(1.0)  # the bound: every process asks the ledger again within a second

    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=model, messages=PROMPT, max_tokens=WORDS)
    assert refused.value.code == "budget_exceeded"
    assert refused.value.body["type"] == "insufficient_quota"


def test_settlement_releases_what_a_request_did_not_spend(gateway: Gateway):
    t, model, key, secret = setup(gateway)
    big = 1000  # max_tokens: a worst case of 1.004 EUR; the answer uses 24 tokens (0.024 EUR)
    budget(t, Decimal("1.5"), key["id"])  # room for one such worst case, not two
    gateway.fake.script(model, words=WORDS, stall=0.5)  # the first stays in flight a while

    async def run() -> tuple[Any, Any]:
        client = gateway.async_client(secret)
        try:
            slow = asyncio.create_task(
                client.chat.completions.create(model=model, messages=PROMPT, max_tokens=big)
            )
            while not gateway.fake.requests_for(model):  # the first is in flight
                await asyncio.sleep(0.01)
            with pytest.raises(openai.RateLimitError) as meanwhile:
                await client.chat.completions.create(model=model, messages=PROMPT, max_tokens=big)
            await slow
            gateway.fake.script(model, words=WORDS)
            after = await client.chat.completions.create(
                model=model, messages=PROMPT, max_tokens=big
            )
            return meanwhile.value, after
        finally:
            await client.close()

    meanwhile, after = asyncio.run(run())
    assert meanwhile.code == "budget_exceeded"
    assert after.usage.completion_tokens == WORDS


def test_a_prepaid_tenant_is_refused_before_its_balance_would_go_below_zero(gateway: Gateway):
    t, model, key, secret = setup(gateway)
    r = gateway.admin.post(f"/tenants/{t.id}/credits", json={"amount_eur": "0.05"})
    assert r.status_code == 200, r.text
    client = gateway.client(secret)

    for _ in range(2):  # 0.024 EUR each
        client.chat.completions.create(model=model, messages=PROMPT, max_tokens=WORDS)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=model, messages=PROMPT, max_tokens=WORDS)

    assert refused.value.code == "credit_balance_exhausted"
    assert refused.value.body["type"] == "insufficient_quota"
    t.wait_billed(3)
    r = gateway.admin.get(f"/tenants/{t.id}/balance")
    assert Decimal(r.json()["current_balance"]) == Decimal("0.05") - 2 * WORST


def test_a_tenant_with_no_budget_and_no_credits_is_never_refused(gateway: Gateway):
    t, model, _, secret = setup(gateway)
    # Without max_tokens the worst case is the whole context (8,192 tokens: 8.196 EUR each).
    answers = asyncio.run(fire(gateway, secret, model, 32))
    assert not [a for a in answers if isinstance(a, Exception)]


def test_a_keys_budget_limits_that_key_only(gateway: Gateway):
    t, model, key, secret = setup(gateway)
    _, other = t.router_key()
    budget(t, WORST / 2, key["id"])

    with pytest.raises(openai.RateLimitError) as refused:
        gateway.client(secret).chat.completions.create(
            model=model, messages=PROMPT, max_tokens=WORDS
        )
    assert refused.value.code == "budget_exceeded"
    answer = gateway.client(other).chat.completions.create(
        model=model, messages=PROMPT, max_tokens=WORDS
    )
    assert answer.usage.completion_tokens == WORDS
