"""Capacity and weighted fair share in the gateway, through the official ``openai`` SDK.

The module's server admits 4 upstream requests at once (``max_in_flight``), queues 24 more for
at most 3 seconds; the fake upstream answers each model as scripted (slowly, or stalled).
Tenants are told apart at the upstream by their BYOK keys: the order in which requests reach it
is the order the scheduler admitted them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway, GatewayTenant, wait_until

CAP = 4
QUEUE = 24
WAIT = 3.0


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    return {
        "max_in_flight": CAP,
        "queue_max_length": QUEUE,
        "queue_max_wait_seconds": WAIT,
        "rate_limit_per_minute": 1_000_000,
        "gateway_first_byte_timeout": 20.0,
        "gateway_total_timeout": 30.0,
    }


class Client:
    """A tenant with an OpenAI BYOK upstream and a router key."""

    def __init__(self, gateway: Gateway, **fields: Any) -> None:
        t = gateway.admin.new_tenant(**fields)
        _, secret = gateway.admin.new_key(t["id"], "management")
        self.tenant = GatewayTenant(gateway, t["id"], gateway.admin.as_token(secret))
        _, self.upstream_key = self.tenant.byok("openai")
        _, self.secret = self.tenant.router_key()
        self.id = t["id"]
        self.gateway = gateway

    def aclient(self, **kwargs: Any) -> openai.AsyncOpenAI:
        return self.gateway.async_client(self.secret, **kwargs)

    async def chat(self, client: openai.AsyncOpenAI, model: str) -> Any:
        return await client.chat.completions.create(model=model, messages=HELLO)


def slow_model(gateway: Gateway, seconds: float) -> str:
    model = gateway.model("openai")
    gateway.fake.script(model, stall=seconds)
    return model


def stats(gateway: Gateway) -> dict[str, Any]:
    r = gateway.admin.get("/stats")
    assert r.status_code == 200, r.text
    return r.json()


def live(gateway: Gateway) -> dict[str, Any]:
    r = gateway.admin.get("/fairshare/live")
    assert r.status_code == 200, r.text
    return r.json()


def set_capacity(gateway: Gateway, n: int) -> None:
    r = gateway.admin.put("/capacity", json={"max_in_flight": n})
    assert r.status_code == 200, r.text


async def saturate(clients: list[tuple[Client, int]], model: str, gateway: Gateway, n: int) -> None:
    """Keep every tenant backlogged (``per`` requests each, re-sent as soon as answered) until
    the upstream has received ``n`` requests for ``model``."""
    stop = asyncio.Event()

    async def loop(c: Client, api: openai.AsyncOpenAI) -> None:
        while not stop.is_set():
            await c.chat(api, model)

    async def watch() -> None:
        while len(gateway.fake.requests_for(model)) < n:
            await asyncio.sleep(0.02)
        stop.set()

    apis = [(c, c.aclient()) for c, _ in clients]
    tasks = [
        asyncio.create_task(loop(c, api))
        for (c, per), (_, api) in zip(clients, apis, strict=True)
        for _ in range(per)
    ]
    await asyncio.wait_for(watch(), 120)
    await asyncio.gather(*tasks)
    for _, api in apis:
        await api.close()


def admitted(gateway: Gateway, model: str, clients: list[Client], skip: int, n: int) -> Counter:
    """Per client, of the requests the upstream received from ``skip`` to ``skip + n``."""
    received = sorted(gateway.fake.requests_for(model), key=lambda r: r.at)[skip : skip + n]
    by_key = {c.upstream_key: c.id for c in clients}
    return Counter(by_key[r.bearer] for r in received)


def test_two_tenants_of_weights_1_and_3_saturating_the_capacity_get_places_1_to_3(gateway):
    light, heavy = Client(gateway, weight=1), Client(gateway, weight=3)
    model = slow_model(gateway, 0.05)
    # 8 requests each at all times: more than the cap, so both always wait (backlogged).
    asyncio.run(saturate([(light, 8), (heavy, 8)], model, gateway, 20 + 200))
    got = admitted(gateway, model, [light, heavy], skip=20, n=200)
    assert got[light.id] + got[heavy.id] == 200
    ratio = got[heavy.id] / got[light.id]
    assert 3 * 0.9 <= ratio <= 3 * 1.1, got


def test_groups_of_equal_weight_share_equally_whatever_their_number_of_tenants(gateway):
    solo_group, crowd_group = (f"g-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for name in (solo_group, crowd_group):
        r = gateway.admin.post("/fairshare/groups", json={"name": name, "weight": 50})
        assert r.status_code == 201, r.text
    solo = Client(gateway, group=solo_group)
    crowd = [Client(gateway, group=crowd_group) for _ in range(3)]
    model = slow_model(gateway, 0.05)
    # 300 admissions: with 200, a share off by 6% (94 to 106) was seen once on a loaded machine.
    asyncio.run(saturate([(solo, 6), *((c, 6) for c in crowd)], model, gateway, 20 + 300))
    got = admitted(gateway, model, [solo, *crowd], skip=20, n=300)
    crowd_total = sum(got[c.id] for c in crowd)
    assert 0.9 <= got[solo.id] / crowd_total <= 1.1, got
    # Within the crowd's group, its three tenants (of equal weights) share equally too.
    assert all(abs(got[c.id] - crowd_total / 3) <= 0.15 * crowd_total / 3 for c in crowd), got


async def hold_capacity(c: Client, model: str, n: int = CAP) -> list[asyncio.Task[Any]]:
    """``n`` requests that the stalled upstream holds (the process's places, when ``n=CAP``)."""
    api = c.aclient()
    return [asyncio.create_task(c.chat(api, model)) for _ in range(n)]


def test_past_the_queue_length_429_queue_full_and_past_the_wait_503_queue_timeout(gateway):
    c = Client(gateway)
    # The places stay held well past the queue's wait (and below the first-byte timeout, 20 s),
    # however long queueing the 24 takes on a loaded machine: no queued request can be admitted
    # before it times out.
    model = slow_model(gateway, WAIT + 15)

    async def scenario() -> None:
        held = await hold_capacity(c, model)
        # The places are taken once the upstream holds the four: on a loaded machine their
        # authentication can take seconds, and the 24 must not overtake them.
        reached = await asyncio.to_thread(
            wait_until, lambda: len(gateway.fake.requests_for(model)) == CAP, 60.0
        )
        assert reached, "the upstream did not receive the requests holding the places"
        queued = await hold_capacity(c, model, QUEUE)
        full_queue = await asyncio.to_thread(
            wait_until, lambda: stats(gateway)["queued"] == QUEUE, 60.0
        )
        assert full_queue, stats(gateway)
        with pytest.raises(openai.RateLimitError) as full:
            await c.chat(c.aclient(), model)
        assert full.value.code == "queue_full"
        assert full.value.body["type"] == "rate_limit_error"
        assert int(full.value.response.headers["retry-after"]) >= 1
        timed_out = await asyncio.gather(*queued, return_exceptions=True)
        answered = await asyncio.gather(*held, return_exceptions=True)
        # The places' holders are answered in the end (a failed one would have freed a place).
        assert all(isinstance(a, ChatCompletion) for a in answered), answered
        for outcome in timed_out:
            assert isinstance(outcome, openai.InternalServerError), outcome
            assert outcome.status_code == 503 and outcome.code == "queue_timeout"
            assert int(outcome.response.headers["retry-after"]) >= 1
        assert len(gateway.fake.requests_for(model)) == CAP  # no queued one reached it

    asyncio.run(scenario())
    assert wait_until(lambda: stats(gateway)["in_flight"] == 0 and stats(gateway)["queued"] == 0)


def test_raising_the_capacity_starts_queued_requests_at_once_without_a_restart(gateway):
    c = Client(gateway)
    model = slow_model(gateway, 6)

    async def scenario() -> None:
        held = await hold_capacity(c, model, CAP + 4)
        assert await asyncio.to_thread(wait_until, lambda: stats(gateway)["queued"] == 4)
        assert len(gateway.fake.requests_for(model)) == CAP  # the others wait
        await asyncio.to_thread(set_capacity, gateway, CAP + 4)
        try:
            # All of them at the upstream at once, before the first ones are answered.
            at_once = await asyncio.to_thread(
                wait_until,
                lambda: (
                    len(got := gateway.fake.requests_for(model)) == CAP + 4
                    and all(r.finished_at is None for r in got)
                ),
                5.0,
            )
            assert at_once
            assert stats(gateway)["max_in_flight"] == CAP + 4
            await asyncio.gather(*held)
        finally:
            await asyncio.to_thread(set_capacity, gateway, CAP)

    asyncio.run(scenario())
    assert wait_until(lambda: stats(gateway)["max_in_flight"] == CAP)


def test_stats_and_fairshare_live_show_what_runs_and_waits_during_a_load(gateway):
    group = f"g-{uuid.uuid4().hex[:8]}"
    r = gateway.admin.post("/fairshare/groups", json={"name": group, "weight": 70})
    assert r.status_code == 201, r.text
    busy, grouped = Client(gateway, weight=40), Client(gateway, group=group, weight=5)
    model = slow_model(gateway, 3)

    async def scenario() -> None:
        held = await hold_capacity(busy, model)
        assert await asyncio.to_thread(wait_until, lambda: stats(gateway)["in_flight"] == CAP)
        waiting = await hold_capacity(grouped, model, 2)
        now = await asyncio.to_thread(
            wait_until, lambda: (s := stats(gateway))["queued"] == 2 and s
        )
        assert (now["in_flight"], now["queued"], now["max_in_flight"]) == (CAP, 2, CAP)
        assert len(now["processes"]) == 1
        process = now["processes"][0]
        assert (process["in_flight"], process["queued"], process["max_in_flight"]) == (CAP, 2, CAP)
        snapshot = live(gateway)
        groups = {g["group"]: g for g in snapshot["groups"]}
        mine = groups[group]
        assert (mine["weight"], mine["in_flight"], mine["queued"]) == (70, 0, 2)
        assert mine["tenants"][0]["tenant_id"] == grouped.id
        assert (mine["tenants"][0]["weight"], mine["tenants"][0]["queued"]) == (5, 2)
        alone = next(g for g in snapshot["groups"] if g["tenants"][0]["tenant_id"] == busy.id)
        assert alone["group"] is None and alone["weight"] == 40
        assert (alone["in_flight"], alone["queued"], alone["admitted_last_minute"]) == (CAP, 0, CAP)
        assert alone["share"] == pytest.approx(40 / 110) and mine["share"] == pytest.approx(
            70 / 110
        )
        await asyncio.gather(*held, *waiting)

    asyncio.run(scenario())
    assert wait_until(lambda: stats(gateway)["in_flight"] == 0)


def test_a_tenant_management_key_cannot_read_the_live_load(gateway):
    c = Client(gateway)
    for path in ("/stats", "/fairshare/live"):
        assert c.tenant.api.get(path).status_code == 403


def test_a_client_that_leaves_while_queued_frees_its_place_in_the_queue(gateway):
    c = Client(gateway)
    model = slow_model(gateway, 3)

    async def scenario() -> None:
        held = await hold_capacity(c, model)
        assert await asyncio.to_thread(wait_until, lambda: stats(gateway)["in_flight"] == CAP)
        impatient = c.aclient().with_options(timeout=httpx.Timeout(0.5))
        with pytest.raises(openai.APITimeoutError):
            await c.chat(impatient, model)
        # It left the queue (not merely timed out later), and never reached the upstream.
        gone = await asyncio.to_thread(wait_until, lambda: stats(gateway)["queued"] == 0, 2.0)
        assert gone
        await asyncio.gather(*held)
        assert len(gateway.fake.requests_for(model)) == CAP

    asyncio.run(scenario())
    # No place leaked: the cap's worth of requests run at once again.
    assert wait_until(lambda: stats(gateway)["in_flight"] == 0)
    fast = slow_model(gateway, 1)

    async def again() -> None:
        await asyncio.gather(*(await hold_capacity(c, fast)))

    asyncio.run(again())
    got = gateway.fake.requests_for(fast)
    assert max(r.at for r in got) < min(r.finished_at for r in got)  # all four at once
    # Its record says the client left (a queue timeout would be an error).
    failed = [r for rs in c.tenant.records().values() for r in rs if not r["success"]]
    assert len(failed) == 1 and "cancelled" in failed[0]["extra"]


def test_a_weight_or_group_changed_through_the_api_is_used_without_a_restart(gateway):
    c = Client(gateway, weight=2)
    model = slow_model(gateway, 0)
    gateway.client(c.secret).chat.completions.create(model=model, messages=HELLO)
    group = f"g-{uuid.uuid4().hex[:8]}"
    assert gateway.admin.post("/fairshare/groups", json={"name": group, "weight": 9}).is_success
    assert gateway.admin.patch(f"/tenants/{c.id}/weight", json={"weight": 7}).is_success
    assert gateway.admin.patch(f"/tenants/{c.id}/group", json={"group": group}).is_success

    def placed() -> dict[str, Any] | None:
        for g in live(gateway)["groups"]:
            for t in g["tenants"]:
                if t["tenant_id"] == c.id and (g["group"], g["weight"], t["weight"]) == (
                    group,
                    9,
                    7,
                ):
                    return t
        return None

    seen = wait_until(placed)
    assert seen is not None and seen["admitted_last_minute"] == 1
