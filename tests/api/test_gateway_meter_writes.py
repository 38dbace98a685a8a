"""The meter writes usage from the event loop; whatever it can't write there (its connection
lost, a price changed since the model was rated, a key not in memory yet) goes through the
thread, de-duplicated: every answered request is billed once, at the price in force."""

from __future__ import annotations

from decimal import Decimal

import openai
import psycopg

from interfaces.gateway.meter import METER_APPLICATION_NAME
from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway, GatewayTenant, token_cost

IN, OUT = "1.10", "4.40"
NEW_IN, NEW_OUT = "3.30", "8.80"


def tenant_client(gateway: Gateway) -> tuple[GatewayTenant, openai.OpenAI, str]:
    """A tenant with a BYOK upstream, a router key's client, and a model the fake answers."""
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai", input_price=IN, output_price=OUT)
    gateway.fake.script(model, words=5)
    _, secret = t.router_key()
    return t, gateway.client(secret), model


def end_meter_connections(gateway: Gateway) -> int:
    """Terminate the meter's own connection (as a failover or an operator would)."""
    with psycopg.connect(gateway.container.database.conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (METER_APPLICATION_NAME,),
        ).fetchall()
    return len(rows)


def test_requests_after_the_meters_connection_was_lost_are_each_billed_once(gateway: Gateway):
    t, client, model = tenant_client(gateway)
    ids = [client.chat.completions.create(model=model, messages=HELLO).id for _ in range(3)]
    assert end_meter_connections(gateway) >= 1  # the loop wrote the later ones

    for _ in range(4):
        ids.append(client.chat.completions.create(model=model, messages=HELLO).id)
        stream = client.chat.completions.create(model=model, messages=HELLO, stream=True)
        ids.append(next(iter(stream)).id)
        list(stream)

    answered = [r for r in gateway.fake.requests_for(model) if r.status == 200]
    prompt = sum(r.usage["prompt_tokens"] for r in answered)
    completion = sum(r.usage["completion_tokens"] for r in answered)
    bill = t.wait_billed(len(ids))
    assert bill["requests"] == len(ids) == len(answered)
    assert (bill["prompt_tokens"], bill["completion_tokens"]) == (prompt, completion)
    records = t.records()
    assert sorted(records) == sorted(ids)
    assert all(len(kept) == 1 for kept in records.values())


def test_a_price_changed_between_two_requests_bills_the_second_at_the_new_price(gateway: Gateway):
    t, client, model = tenant_client(gateway)
    for _ in range(2):  # the model is in memory now, at its first prices
        client.chat.completions.create(model=model, messages=HELLO)
    body = gateway.admin.get(f"/models/{model}").json()
    update = {k: body[k] for k in ("display_name", "modality", "context_length", "serveable")}
    r = gateway.admin.put(
        f"/models/{model}",
        json={**update, "input_eur_per_mtok": NEW_IN, "output_eur_per_mtok": NEW_OUT},
    )
    assert r.status_code == 200, r.text

    for _ in range(2):
        client.chat.completions.create(model=model, messages=HELLO)

    answered = [r.usage for r in gateway.fake.requests_for(model) if r.status == 200]
    first, then = answered[:2], answered[2:]
    bill = t.wait_billed(4)
    assert bill["requests"] == 4
    expected = token_cost(
        sum(u["prompt_tokens"] for u in first),
        sum(u["completion_tokens"] for u in first),
        IN,
        OUT,
    ) + token_cost(
        sum(u["prompt_tokens"] for u in then),
        sum(u["completion_tokens"] for u in then),
        NEW_IN,
        NEW_OUT,
    )
    assert Decimal(bill["token_cost"]) == expected
