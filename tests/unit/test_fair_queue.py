"""Weighted fair order of waiting requests (interfaces/gateway/fairqueue.py), and the places of
the scheduler (interfaces/gateway/scheduler.py) without a database: cap, queue bounds, leaving."""

from __future__ import annotations

import asyncio
from collections import Counter
from uuid import uuid4

import pytest

from application.gateway import GatewayCaller, GatewayRefusal
from interfaces.gateway.fairqueue import FairQueue
from interfaces.gateway.scheduler import FairShareScheduler


def backlogged(queue: FairQueue, tenants: list[str], each: int) -> None:
    for n in range(each):
        for t in tenants:
            queue.push(t, (t, n))


def served(queue: FairQueue, n: int) -> Counter[str]:
    out: Counter[str] = Counter()
    for _ in range(n):
        popped = queue.pop()
        assert popped is not None
        out[popped[0]] += 1
    return out


def test_two_backlogged_tenants_are_served_in_the_ratio_of_their_weights():
    q = FairQueue()
    q.place("a", ("tenant", "a"), 1, 1)
    q.place("b", ("tenant", "b"), 3, 3)
    backlogged(q, ["a", "b"], 1000)
    assert served(q, 400) == {"a": 100, "b": 300}


def test_every_window_of_the_order_is_within_one_request_of_the_weights():
    q = FairQueue()
    q.place("a", ("tenant", "a"), 1, 1)
    q.place("b", ("tenant", "b"), 3, 3)
    backlogged(q, ["a", "b"], 100)
    for _ in range(20):
        window = served(q, 4)
        assert abs(window["a"] - 1) <= 1 and abs(window["b"] - 3) <= 1


def test_groups_share_by_group_weight_whatever_their_number_of_tenants():
    q = FairQueue()
    q.place("solo", ("group", "x"), 100, 50)
    for t in ("p", "q", "r"):
        q.place(t, ("group", "y"), 100, 50)
    backlogged(q, ["solo", "p", "q", "r"], 500)
    got = served(q, 600)
    assert got["solo"] == 300
    assert got["p"] == got["q"] == got["r"] == 100


def test_within_a_group_tenants_share_by_their_own_weights():
    q = FairQueue()
    q.place("small", ("group", "g"), 1, 10)
    q.place("big", ("group", "g"), 2, 10)
    q.place("other", ("tenant", "other"), 10, 10)
    backlogged(q, ["small", "big", "other"], 500)
    got = served(q, 600)
    assert got["other"] == 300 and got["small"] == 100 and got["big"] == 200


def test_a_tenant_idle_for_a_while_banks_no_credit():
    q = FairQueue()
    q.place("busy", ("tenant", "busy"), 1, 1)
    q.place("late", ("tenant", "late"), 1, 1)
    backlogged(q, ["busy"], 100)
    served(q, 100)  # alone: nobody else wanted anything
    backlogged(q, ["busy", "late"], 50)
    got = served(q, 40)
    assert abs(got["busy"] - got["late"]) <= 1


def test_a_request_taken_out_is_never_served_and_its_tenant_stops_waiting():
    q = FairQueue()
    q.place("a", ("tenant", "a"), 1, 1)
    q.place("b", ("tenant", "b"), 1, 1)
    q.push("a", "a1")
    q.push("b", "b1")
    assert q.remove("a", "a1") and not q.remove("a", "a1")
    assert q.length == 1
    assert q.pop() == ("b", "b1") and q.pop() is None


def test_a_weight_changed_while_waiting_applies_to_what_follows():
    q = FairQueue()
    q.place("a", ("tenant", "a"), 1, 1)
    q.place("b", ("tenant", "b"), 1, 1)
    backlogged(q, ["a", "b"], 500)
    served(q, 10)
    q.place("b", ("tenant", "b"), 4, 4)
    got = served(q, 500)
    assert 95 <= got["a"] <= 105


def test_a_tenant_moved_to_a_group_takes_its_waiting_requests_along():
    q = FairQueue()
    q.place("a", ("tenant", "a"), 1, 1)
    q.push("a", "a1")
    q.place("a", ("group", "g"), 1, 5)
    assert q.pop() == ("a", "a1")
    q.forget("a")
    assert not q.tenants and not q.groups


# -- the scheduler's places (no database: weights given, no refresh) --------------------------


def scheduler(cap: int, max_queue: int = 100, max_wait: float = 5.0) -> FairShareScheduler:
    def no_pool():
        raise AssertionError("no database in these tests")

    return FairShareScheduler(no_pool, cap, max_queue, max_wait)


def caller(tenant=None) -> GatewayCaller:
    return GatewayCaller(tenant_id=tenant or uuid4(), key_id=uuid4())


def run(coro):
    return asyncio.run(coro)


def test_beyond_the_cap_a_request_waits_until_a_place_frees():
    async def scenario():
        s = scheduler(1)
        a, b = caller(), caller()
        s._place(b.tenant_id, 100, None)
        order = []

        async def hold(c, name, release):
            async with s.slot(c):
                order.append(name)
                await release.wait()

        first, second = asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(hold(a, "a", first))
        await asyncio.sleep(0)
        t2 = asyncio.create_task(hold(b, "b", second))
        await asyncio.sleep(0.01)
        assert order == ["a"] and s.in_flight == 1 and s.queue.length == 1
        first.set()
        await asyncio.sleep(0.01)
        assert order == ["a", "b"] and s.in_flight == 1 and s.queue.length == 0
        second.set()
        await asyncio.gather(t1, t2)
        assert s.in_flight == 0

    run(scenario())


def test_a_full_queue_refuses_429_and_a_long_wait_503():
    async def scenario():
        s = scheduler(1, max_queue=1, max_wait=0.05)
        holder, waiter, third = caller(), caller(), caller()
        for c in (waiter, third):
            s._place(c.tenant_id, 100, None)
        release = asyncio.Event()

        async def hold():
            async with s.slot(holder):
                await release.wait()

        task = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiting = asyncio.create_task(s.slot(waiter).__aenter__())
        await asyncio.sleep(0.01)
        with pytest.raises(GatewayRefusal) as full:
            await s.slot(third).__aenter__()
        assert (full.value.status, full.value.code) == (429, "queue_full")
        with pytest.raises(GatewayRefusal) as late:
            await waiting
        assert (late.value.status, late.value.code) == (503, "queue_timeout")
        assert s.queue.length == 0 and s.loads[waiter.tenant_id].queued == 0
        release.set()
        await task
        assert s.in_flight == 0

    run(scenario())


def test_a_cancelled_waiter_leaves_the_queue_and_leaks_no_place():
    async def scenario():
        s = scheduler(1)
        holder, waiter, next_ = caller(), caller(), caller()
        for c in (waiter, next_):
            s._place(c.tenant_id, 100, None)
        release = asyncio.Event()

        async def hold(c):
            async with s.slot(c):
                await release.wait()

        held = asyncio.create_task(hold(holder))
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(hold(waiter))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await asyncio.sleep(0.01)
        assert s.queue.length == 0
        release.set()
        await held
        assert s.in_flight == 0
        # Admitted, then cancelled before it ran: the place comes back.
        release.clear()
        held = asyncio.create_task(hold(holder))
        await asyncio.sleep(0)
        late = asyncio.create_task(hold(waiter))
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.sleep(0)  # the holder leaves and admits the waiter...
        late.cancel()  # ...which is cancelled before it resumes
        await asyncio.gather(held, late, return_exceptions=True)
        assert s.in_flight == 0
        async with s.slot(next_):
            assert s.in_flight == 1

    run(scenario())


def test_raising_the_cap_starts_waiting_requests_at_once_and_lowering_lets_running_finish():
    async def scenario():
        s = scheduler(1)
        release = asyncio.Event()
        callers = [caller() for _ in range(4)]
        for c in callers:
            s._place(c.tenant_id, 100, None)

        async def hold(c):
            async with s.slot(c):
                await release.wait()

        tasks = [asyncio.create_task(hold(c)) for c in callers]
        await asyncio.sleep(0.01)
        assert (s.in_flight, s.queue.length) == (1, 3)
        s.set_max_in_flight(3)
        assert (s.in_flight, s.queue.length) == (3, 1)
        s.set_max_in_flight(1)
        assert s.in_flight == 3  # running ones are not stopped
        release.set()
        await asyncio.gather(*tasks)
        assert (s.in_flight, s.queue.length) == (0, 0)

    run(scenario())


# -- what /fairshare/live and /stats show (interfaces/gateway/loadview.py) ----------------------


def process(pid: int, tenants: dict, in_flight: int = 0, queued: int = 0) -> dict:
    return {
        "process": uuid4(),
        "hostname": "h",
        "pid": pid,
        "in_flight": in_flight,
        "queued": queued,
        "max_in_flight": 4,
        "tenants": tenants,
        "updated_at": None,
    }


def tenant_load(weight, group=None, group_weight=None, in_flight=0, queued=0, admitted=0):
    return {
        "weight": weight,
        "group": group,
        "group_weight": group_weight or weight,
        "in_flight": in_flight,
        "queued": queued,
        "admitted_last_minute": admitted,
    }


def test_the_live_view_sums_processes_and_shares_among_the_active_only():
    from interfaces.gateway import loadview

    a, b, c, idle = (str(uuid4()) for _ in range(4))
    processes = [
        process(1, {a: tenant_load(10, "g", 30, in_flight=2), b: tenant_load(30, "g", 30, 0, 1)}),
        process(2, {a: tenant_load(10, "g", 30, queued=3, admitted=5), c: tenant_load(10)}),
        process(3, {c: tenant_load(10, in_flight=1), idle: tenant_load(50)}),
    ]
    view = loadview.fair_share(processes)
    groups = {g["group"] or g["tenants"][0]["tenant_id"]: g for g in view["groups"]}
    g = groups["g"]
    assert (g["weight"], g["in_flight"], g["queued"], g["admitted_last_minute"]) == (30, 2, 4, 5)
    assert g["share"] == pytest.approx(30 / 40) and groups[c]["share"] == pytest.approx(10 / 40)
    shares = {t["tenant_id"]: t["share"] for t in g["tenants"]}
    assert shares == {a: pytest.approx(0.75 * 10 / 40), b: pytest.approx(0.75 * 30 / 40)}
    assert groups[idle]["share"] == 0 and groups[idle]["tenants"][0]["share"] == 0
    assert view["groups"][0]["group"] == "g"  # named groups first
    totals = loadview.stats([process(1, {}, 3, 2), process(2, {}, 1, 0)])
    assert (totals["in_flight"], totals["queued"], totals["max_in_flight"]) == (4, 2, 8)
    assert [p["pid"] for p in totals["processes"]] == [1, 2]
