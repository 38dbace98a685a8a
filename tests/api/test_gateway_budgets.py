"""Budgets and prepaid credits enforced before the money is spent (issue 19 §2): admission
reserves a request's worst case, settlement accounts its actual cost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import Gateway, GatewayTenant, new_model, token_cost
from tests.api.test_gateway_sigkill import Server, server_env
from tests.conftest import ADMIN_TOKEN, Api
from tests.fake_upstream import FakeUpstream

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


# -- across processes: ``hostplane serve --workers 2`` ----------------------------------------


@dataclass
class Workers:
    server: Server
    admin: Api
    fake: FakeUpstream

    def tenant(self, limit: Decimal) -> tuple[str, str, str, dict[str, Any]]:
        """A tenant with a BYOK upstream, a model at PRICE, a router key with a daily budget of
        ``limit``: (tenant id, model, router secret, router key)."""
        admin = self.admin
        tenant_id = admin.new_tenant()["id"]
        _, management = admin.new_key(tenant_id, "management")
        api = admin.as_token(management)
        r = api.post(
            "/byok",
            json={"name": "openai", "upstream": "openai", "external_key": "sk-" + "k" * 40},
        )
        assert r.status_code == 201, r.text
        model = new_model(admin, "openai", input_price=PRICE, output_price=PRICE)
        self.fake.script(model, words=WORDS)
        key, secret = admin.new_key(tenant_id, "router")
        body = {"key_id": key["id"], "limit_eur": str(limit), "period": "daily", "thresholds": []}
        r = api.post("/budgets", json=body)
        assert r.status_code == 201, r.text
        return tenant_id, model, secret, key

    def burst(self, secret: str, model: str, n: int) -> list[Any]:
        """``n`` requests at once, each on a connection of its own: handed to either process."""

        async def run() -> list[Any]:
            clients = [
                openai.AsyncOpenAI(base_url=self.server.url + "/v1", api_key=secret, max_retries=0)
                for _ in range(n)
            ]
            try:
                return await asyncio.gather(
                    *(
                        c.chat.completions.create(model=model, messages=PROMPT, max_tokens=WORDS)
                        for c in clients
                    ),
                    return_exceptions=True,
                )
            finally:
                for c in clients:
                    await c.close()

        answers = asyncio.run(run())
        unexpected = [a for a in answers if isinstance(a, Exception)]
        unexpected = [a for a in unexpected if not isinstance(a, openai.RateLimitError)]
        assert not unexpected, unexpected[:3]
        return answers

    def billing(self, tenant_id: str, requests: int) -> dict[str, Any]:
        """The tenant's billing once the read models count ``requests`` records."""
        today = datetime.now(UTC).date()
        path = f"/team-billing/summary/{tenant_id}/{today - timedelta(days=1)}/"
        path += str(today + timedelta(days=2))
        deadline = time.monotonic() + 20
        while True:
            r = self.admin.get(path)
            assert r.status_code == 200, r.text
            if r.json()["requests"] >= requests or time.monotonic() > deadline:
                return r.json()
            time.sleep(0.05)


@pytest.fixture(scope="module")
def workers(
    database_conninfo: str, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[Workers]:
    dbname = f"hostplane_budgets_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    server = Server(
        server_env(with_dbname(database_conninfo, dbname), tmp_path_factory.mktemp("w"), fake)
    )
    command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--port", str(server.port)]
    server.proc = subprocess.Popen(
        [*command, "--workers", "2"], env=server.env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the first process accepts connections once both are ready
            assert server.proc.poll() is None, "hostplane serve exited"
            try:
                if httpx.get(server.url + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "hostplane serve did not start"
            time.sleep(0.1)
        yield Workers(server, Api(server.url, ADMIN_TOKEN), fake)
    finally:
        server.stop()
        drop_database(database_conninfo, dbname)


def test_two_processes_together_admit_no_more_than_the_budget_has_room_for(workers: Workers):
    limit = 10 * WORST
    tenant_id, model, secret, _ = workers.tenant(limit)

    answers = workers.burst(secret, model, 64)

    admitted = [a for a in answers if not isinstance(a, Exception)]
    # Room one process holds is no other's: a process may refuse while the other still holds
    # room (at most a 64th of the limit, or one request's worst case), never admit beyond it.
    assert 8 <= len(admitted) <= 10
    bill = workers.billing(tenant_id, 64)
    assert bill["requests"] == 64
    assert Decimal(bill["token_cost"]) == len(admitted) * WORST <= limit


def test_every_process_refuses_within_a_second_of_usage_posted_that_exhausted_the_budget(
    workers: Workers,
):
    tenant_id, model, secret, key = workers.tenant(1000 * WORST)
    # Both processes hold leases with room to spare.
    assert not [a for a in workers.burst(secret, model, 16) if isinstance(a, Exception)]
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
    r = workers.admin.post("/usage/events", json={"records": [record]})
    assert r.status_code == 200, r.text
    workers.billing(tenant_id, 17)
    time.sleep(1.0)  # the bound: every process asks the ledger again within a second

    answers = workers.burst(secret, model, 16)

    assert all(isinstance(a, openai.RateLimitError) for a in answers)
    assert {a.code for a in answers} == {"budget_exceeded"}
