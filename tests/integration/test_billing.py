"""Billing by date range on real PostgreSQL: midnight boundaries, GPU time, prices, replay."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.rows import tuple_row

from domain.base import Actor
from domain.usage import UsageBatch
from projections.engine.runner import ProjectionRunner
from projections.readmodels.usage import UsageProjection
from tests.helpers import new_model as shared_new_model
from tests.helpers import usage_record as record

D = "2025-10-30"
D1 = "2025-10-31"
D2 = "2025-11-01"

# -- helpers -------------------------------------------------------------------------------


def new_model(admin: Any, input_price: str = "1.00", output_price: str = "2.00") -> str:
    return shared_new_model(admin, input_price, output_price, prefix="billing-test")


def change_price(
    admin: Any, slug: str, input_price: str, output_price: str, effective: str
) -> None:
    r = admin.put(
        f"/models/{slug}",
        json={
            "display_name": slug,
            "modality": "chat",
            "context_length": 8192,
            "input_eur_per_mtok": input_price,
            "output_eur_per_mtok": output_price,
            "effective_from": effective,
        },
    )
    assert r.status_code == 200, r.text


def ingest(api: Any, *records: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/usage/events", json={"records": list(records)})
    assert r.status_code == 200, r.text
    return r.json()


def summary(api: Any, tenant_id: str, start: str, end: str) -> dict[str, Any]:
    r = api.get(f"/team-billing/summary/{tenant_id}/{start}/{end}")
    assert r.status_code == 200, r.text
    return r.json()


def totals(s: dict[str, Any]) -> tuple[Any, ...]:
    return (
        s["requests"],
        s["prompt_tokens"],
        s["completion_tokens"],
        s["token_cost"],
        s["gpu_cost"],
        s["total_cost"],
    )


def day_row(s: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(d["date"], d["requests"], d["token_cost"], d["gpu_cost"]) for d in s["by_day"]]


def assert_error(r: Any, status: int, param: str | None = None) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert {"message", "type", "code"} <= error.keys()
    if param is not None:
        assert error["param"] == param


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def deploy(api: Any, container: Any, **fields: Any) -> str:
    """An instance deployed over HTTP, on a GPU rated 0.85 EUR per hour."""
    r = api.post("/instances", json={"model_id": "llama-3.1-8b", **fields})
    assert r.status_code == 201, r.text
    instance_id = r.json()["id"]
    rate = container.store.repository.get(uuid.UUID(instance_id)).hourly_rate_eur
    assert rate == Decimal("0.85"), "these tests expect the default text/EU rate of 0.85 EUR/h"
    return instance_id


def transition(container: Any, instance_id: str, status: str, when: datetime | str) -> None:
    """A lifecycle step recorded at exactly ``when`` (the event's time comes from the clock).

    The clock is frozen only around this one write, so nothing else waits on it.
    """
    with freeze_time(when):
        container.instances.transition_instance(uuid.UUID(instance_id), status, Actor.system())


def caught_up(container: Any, *names: str) -> None:
    target = container.runner.max_notification_id()
    assert container.runner.wait_for(names, target, 10.0), container.runner.status()


def rows_of(container: Any, schema: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of a table, ordered by all its columns, with its text form (exact digits)."""
    with container.pool.connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
        curs.execute(f"SELECT * FROM {schema}.{table} LIMIT 0")
        order = ", ".join(str(i) for i in range(1, len(curs.description) + 1))
        return curs.execute(
            f"SELECT t.*, t::text FROM {schema}.{table} AS t ORDER BY {order}"
        ).fetchall()


@pytest.fixture
def model(admin: Any) -> str:
    return new_model(admin)


# -- midnight boundaries (seed 001) --------------------------------------------------------


@pytest.fixture
def midnight(tenant: Any, model: str) -> Any:
    """One request a millisecond before midnight, and one exactly at midnight."""
    ingest(
        tenant.api,
        record(tenant.key["id"], model, "2025-10-30T23:59:59.999Z"),
        record(
            tenant.key["id"],
            model,
            "2025-10-31T00:00:00.000Z",
            prompt_tokens=3000,
            completion_tokens=1000,
        ),
    )
    return tenant


def test_usage_at_23_59_59_999_counts_in_that_day(midnight):
    s = summary(midnight.api, midnight.id, D, D1)

    assert totals(s) == (1, 1000, 500, "0.002", "0.00", "0.002")
    assert day_row(s) == [(D, 1, "0.002", "0.00")]


def test_usage_at_00_00_00_000_counts_in_the_next_day(midnight):
    s = summary(midnight.api, midnight.id, D1, D2)

    assert totals(s) == (1, 3000, 1000, "0.005", "0.00", "0.005")
    assert day_row(s) == [(D1, 1, "0.005", "0.00")]


def test_a_two_day_range_lists_each_day_with_its_own_usage(midnight):
    s = summary(midnight.api, midnight.id, D, D2)

    assert totals(s) == (2, 4000, 1500, "0.007", "0.00", "0.007")
    assert day_row(s) == [(D, 1, "0.002", "0.00"), (D1, 1, "0.005", "0.00")]


def test_the_summary_states_its_half_open_range_and_currency(midnight):
    s = summary(midnight.api, midnight.id, D, D1)

    assert s["currency"] == "EUR"
    assert (s["start"], s["end"]) == ("2025-10-30T00:00:00Z", "2025-10-31T00:00:00Z")
    assert s["tenant_id"] == midnight.id


def test_the_same_date_twice_is_an_empty_range_with_zero_totals(midnight):
    s = summary(midnight.api, midnight.id, D1, D1)

    assert totals(s) == (0, 0, 0, "0.00", "0.00", "0.00")
    assert (s["by_day"], s["by_model"], s["by_key"], s["by_instance"]) == ([], [], [], [])


def test_an_end_before_the_start_is_a_400(midnight):
    r = midnight.api.get(f"/team-billing/summary/{midnight.id}/{D1}/{D}")

    assert_error(r, 400, "end")


@pytest.mark.parametrize("bad", ["2025-13-01", "2025-1-1", "yesterday", "2025-10-30T00:00:00"])
def test_a_malformed_start_date_is_a_400(tenant, bad):
    assert_error(tenant.api.get(f"/team-billing/summary/{tenant.id}/{bad}/{D1}"), 400, "start")


@pytest.mark.parametrize("bad", ["2025-13-01", "2025-1-1", "yesterday", "2025-02-30"])
def test_a_malformed_end_date_is_a_400(tenant, bad):
    assert_error(tenant.api.get(f"/team-billing/summary/{tenant.id}/{D}/{bad}"), 400, "end")


def test_the_summary_breaks_usage_down_by_model_and_key(admin, tenant):
    cheap, dear = new_model(admin, "1.00", "2.00"), new_model(admin, "10.00", "20.00")
    router, _ = admin.new_key(tenant.id, "router")
    ingest(
        tenant.api,
        record(tenant.key["id"], cheap, "2025-10-30T08:00:00Z"),
        record(router["id"], cheap, "2025-10-30T09:00:00Z"),
        record(router["id"], dear, "2025-10-30T10:00:00Z"),
    )

    s = summary(tenant.api, tenant.id, D, D1)

    assert {m["model"]: (m["requests"], m["token_cost"]) for m in s["by_model"]} == {
        cheap: (2, "0.004"),
        dear: (1, "0.02"),
    }
    assert {k["key_id"]: (k["requests"], k["total_cost"]) for k in s["by_key"]} == {
        tenant.key["id"]: (1, "0.002"),
        router["id"]: (2, "0.022"),
    }
    assert s["total_cost"] == "0.024"


# -- GPU time across midnight --------------------------------------------------------------


@pytest.fixture
def overnight(container: Any, tenant: Any) -> tuple[Any, str]:
    """An instance running from 22:00 on the 30th to 02:00 on the 31st."""
    instance_id = deploy(tenant.api, container)
    transition(container, instance_id, "deploying", "2025-10-30T21:55:00Z")
    transition(container, instance_id, "running", "2025-10-30T22:00:00Z")
    transition(container, instance_id, "stopped", "2025-10-31T02:00:00Z")
    return tenant, instance_id


def test_an_instance_running_22_00_to_02_00_is_billed_two_hours_on_the_first_day(overnight):
    tenant, instance_id = overnight

    s = summary(tenant.api, tenant.id, D, D1)

    assert totals(s) == (0, 0, 0, "0.00", "1.70", "1.70")
    assert day_row(s) == [(D, 0, "0.00", "1.70")]
    assert [(i["instance_id"], i["gpu_seconds"], i["gpu_cost"]) for i in s["by_instance"]] == [
        (instance_id, "7200.00", "1.70")
    ]


def test_an_instance_running_22_00_to_02_00_is_billed_two_hours_on_the_second_day(overnight):
    tenant, instance_id = overnight

    s = summary(tenant.api, tenant.id, D1, D2)

    assert totals(s) == (0, 0, 0, "0.00", "1.70", "1.70")
    assert day_row(s) == [(D1, 0, "0.00", "1.70")]
    assert [(i["instance_id"], i["gpu_seconds"], i["gpu_cost"]) for i in s["by_instance"]] == [
        (instance_id, "7200.00", "1.70")
    ]


def test_an_instance_running_across_midnight_is_billed_four_hours_over_both_days(overnight):
    tenant, instance_id = overnight

    s = summary(tenant.api, tenant.id, D, D2)

    assert totals(s) == (0, 0, 0, "0.00", "3.40", "3.40")
    assert day_row(s) == [(D, 0, "0.00", "1.70"), (D1, 0, "0.00", "1.70")]
    assert [(i["gpu_seconds"], i["total_cost"]) for i in s["by_instance"]] == [("14400.00", "3.40")]


def test_gpu_time_is_kept_in_whole_hour_buckets_split_at_midnight(container, overnight):
    tenant, instance_id = overnight
    caught_up(container, "costs")

    with container.pool.connection() as conn:
        rows = conn.execute(
            "SELECT at, microseconds, cost FROM rm_costs.gpu_hourly WHERE instance_id = %s"
            " ORDER BY at",
            (uuid.UUID(instance_id),),
        ).fetchall()

    assert [(r["at"].astimezone(UTC).hour, r["microseconds"], r["cost"]) for r in rows] == [
        (hour, 3_600_000_000, Decimal("0.8500000000")) for hour in (22, 23, 0, 1)
    ]


def test_gpu_time_of_a_run_ending_mid_hour_is_billed_to_the_microsecond(container, tenant):
    instance_id = deploy(tenant.api, container)
    transition(container, instance_id, "deploying", "2025-10-30T23:00:00Z")
    transition(container, instance_id, "running", "2025-10-30T23:45:00Z")
    transition(container, instance_id, "failed", "2025-10-31T00:20:00.5Z")

    first, second = summary(tenant.api, tenant.id, D, D1), summary(tenant.api, tenant.id, D1, D2)

    # 15 min and 20 min 0.5 s at 0.85 EUR/h
    assert [(i["gpu_seconds"], i["gpu_cost"]) for i in first["by_instance"]] == [
        ("900.00", "0.2125")
    ]
    assert [(i["gpu_seconds"], i["gpu_cost"]) for i in second["by_instance"]] == [
        ("1200.50", "0.2834513889")
    ]


# -- late usage and price changes ----------------------------------------------------------


def test_late_usage_lands_in_the_day_it_occurred_at_the_price_then_in_effect(admin, tenant):
    slug = new_model(admin, "1.00", "2.00")
    now = datetime.now(UTC)
    change_price(admin, slug, "5.00", "6.00", iso(now - timedelta(days=2)))
    three_days_ago = (now - timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    day = three_days_ago.date()
    past = (day.isoformat(), (day + timedelta(days=1)).isoformat())
    before = summary(tenant.api, tenant.id, *past)

    ingest(tenant.api, record(tenant.key["id"], slug, iso(three_days_ago)))

    after = summary(tenant.api, tenant.id, *past)
    assert totals(before) == (0, 0, 0, "0.00", "0.00", "0.00")
    assert totals(after) == (1, 1000, 500, "0.002", "0.00", "0.002")
    assert day_row(after) == [(day.isoformat(), 1, "0.002", "0.00")]


def test_usage_after_a_price_change_is_rated_at_the_new_price(admin, tenant):
    slug = new_model(admin, "1.00", "2.00")
    now = datetime.now(UTC)
    change_price(admin, slug, "5.00", "6.00", iso(now - timedelta(days=2)))
    when = now - timedelta(seconds=30)
    day = when.date()

    ingest(tenant.api, record(tenant.key["id"], slug, iso(when)))

    s = summary(tenant.api, tenant.id, day.isoformat(), (day + timedelta(days=1)).isoformat())
    assert totals(s) == (1, 1000, 500, "0.008", "0.00", "0.008")


def test_a_price_change_applies_to_the_next_batch_of_a_model_already_in_use(admin, tenant):
    slug = new_model(admin, "1.00", "2.00")
    when = datetime.now(UTC) - timedelta(seconds=30)
    day = (when.date().isoformat(), (when.date() + timedelta(days=1)).isoformat())
    ingest(tenant.api, record(tenant.key["id"], slug, iso(when)))
    change_price(admin, slug, "5.00", "6.00", iso(when - timedelta(minutes=1)))

    ingest(tenant.api, record(tenant.key["id"], slug, iso(when)))

    # 0.002 at the old price, then 0.008 at the new one.
    assert totals(summary(tenant.api, tenant.id, *day))[:4] == (2, 2000, 1000, "0.01")


@pytest.fixture
def repriced(admin: Any, tenant: Any) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
    """A model repriced at 12:00 on the 30th, after a request at 13:00 was already recorded.

    Returns the tenant, the model, and the billing of the 30th before and after the change.
    """
    slug = new_model(admin, "1.00", "2.00")
    ingest(tenant.api, record(tenant.key["id"], slug, "2025-10-30T13:00:00Z"))
    before = summary(tenant.api, tenant.id, D, D1)
    change_price(admin, slug, "3.00", "4.00", "2025-10-30T12:00:00Z")
    after = summary(tenant.api, tenant.id, D, D1)
    return tenant, slug, before, after


def test_a_price_change_never_re_rates_usage_recorded_before_it(repriced):
    _, _, before, after = repriced

    assert totals(before) == (1, 1000, 500, "0.002", "0.00", "0.002")
    assert after == before


def test_usage_at_11_59_59_999_keeps_the_old_price_and_at_12_00_gets_the_new_one(repriced):
    tenant, slug, _, _ = repriced
    key = tenant.key["id"]

    ingest(
        tenant.api,
        record(key, slug, "2025-10-30T11:59:59.999Z"),
        record(key, slug, "2025-10-30T12:00:00.000Z"),
    )

    series = tenant.api.get(
        "/usage/series", params={"interval": "hour", "from": D, "to": D1}
    ).json()["data"]
    assert [(row["requests"], row["cost"]) for row in series] == [
        (1, "0.002"),  # 11:00 — old price
        (1, "0.005"),  # 12:00 — new price
        (1, "0.002"),  # 13:00 — recorded before the change, old price kept
    ]
    s = summary(tenant.api, tenant.id, D, D1)
    assert totals(s) == (3, 3000, 1500, "0.009", "0.00", "0.009")
    assert [(m["model"], m["requests"], m["token_cost"]) for m in s["by_model"]] == [
        (slug, 3, "0.009")
    ]


def test_the_price_book_shows_the_new_price_and_when_it_took_effect(admin, repriced):
    _, slug, _, _ = repriced

    model = admin.get(f"/models/{slug}").json()

    assert (Decimal(model["input_eur_per_mtok"]), Decimal(model["output_eur_per_mtok"])) == (
        Decimal("3.00"),
        Decimal("4.00"),
    )
    assert model["price_effective_from"] == "2025-10-30T12:00:00Z"


# -- balance -------------------------------------------------------------------------------


def test_credits_added_by_the_admin_raise_the_balance(admin, tenant):
    r = admin.post(f"/tenants/{tenant.id}/credits", json={"amount_eur": "25.50"})

    assert r.status_code == 200, r.text
    assert r.json() == {"current_balance": "25.50", "currency": "EUR"}
    assert tenant.api.get(f"/tenants/{tenant.id}/balance").json() == r.json()


def test_the_balance_is_credits_minus_token_and_gpu_spend(admin, container, tenant, model):
    admin.post(f"/tenants/{tenant.id}/credits", json={"amount_eur": "10"})
    admin.post(f"/tenants/{tenant.id}/credits", json={"amount_eur": "0.5"})
    ingest(tenant.api, record(tenant.key["id"], model, "2025-10-30T10:00:00Z"))
    instance_id = deploy(tenant.api, container)
    transition(container, instance_id, "deploying", "2025-10-30T09:00:00Z")
    transition(container, instance_id, "running", "2025-10-30T10:00:00Z")
    transition(container, instance_id, "stopped", "2025-10-30T11:00:00Z")

    r = tenant.api.get(f"/tenants/{tenant.id}/balance")

    assert r.status_code == 200, r.text
    assert r.json() == {"current_balance": "9.648", "currency": "EUR"}


def test_a_tenant_without_credits_has_a_negative_balance_once_it_spends(tenant, model):
    ingest(tenant.api, record(tenant.key["id"], model, "2025-10-30T10:00:00Z"))

    r = tenant.api.get(f"/tenants/{tenant.id}/balance")

    assert r.json() == {"current_balance": "-0.002", "currency": "EUR"}


def test_a_management_key_may_not_add_credits(tenant):
    r = tenant.api.post(f"/tenants/{tenant.id}/credits", json={"amount_eur": "100"})

    assert_error(r, 403)
    assert tenant.api.get(f"/tenants/{tenant.id}/balance").json()["current_balance"] == "0.00"


@pytest.mark.parametrize("amount", ["0", "-5", "1.0000001"])
def test_credits_must_be_a_positive_amount_with_at_most_six_decimals(admin, tenant, amount):
    r = admin.post(f"/tenants/{tenant.id}/credits", json={"amount_eur": amount})

    assert_error(r, 400)


def test_a_management_key_never_sees_another_tenants_billing_or_balance(tenant, other_tenant):
    assert_error(tenant.api.get(f"/team-billing/summary/{other_tenant.id}/{D}/{D1}"), 404)
    assert_error(tenant.api.get(f"/tenants/{other_tenant.id}/balance"), 404)


# -- splitting a range never changes its totals (hypothesis) -------------------------------

D0 = datetime(2025, 9, 1, tzinfo=UTC)
SPREAD_DAYS = 10
PRICES = {"in": ("0.37", "1.47"), "out": ("2.30", "9.20")}
RUNS = [  # (deploying, running, stopped or failed) — each crosses hour and midnight boundaries
    ("2025-09-02T20:00:00Z", "2025-09-02T21:17:13.5Z", "2025-09-04T04:42:00.25Z"),
    ("2025-09-06T23:00:00Z", "2025-09-06T23:30:00Z", "2025-09-07T00:45:00.000001Z"),
]


def expected_gpu_cost(rate: Decimal, start: datetime, end: datetime) -> Decimal:
    """Independent of the product: GPU time per UTC hour, each hour rounded to 1e-10 EUR."""
    total, t = Decimal(0), start
    while t < end:
        stop = min(t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1), end)
        us = (stop - t) // timedelta(microseconds=1)
        total += (rate * us / Decimal(3_600_000_000)).quantize(Decimal("1e-10"))
        t = stop
    return total


# How a request went (issue 18 §6), as a gateway says it: kept in the vendor buckets too.
DETAILS: list[dict[str, Any]] = [
    {},
    {"vendor": "openai"},
    {"vendor": "mistral", "streamed": True, "ttft_ms": 7, "estimated": True},
    {"vendor": "openai", "cache_hit": True},
    {"streamed": True},
]


@pytest.fixture(scope="module")
def spread(admin: Any, container: Any) -> dict[str, Any]:
    """Usage spread over ten days (generated once, with boundary times) and two GPU runs."""
    tenant = admin.new_tenant()
    keys = [admin.new_key(tenant["id"], kind)[0]["id"] for kind in ("management", "router")]
    models = {slug: new_model(admin, *p) for slug, p in PRICES.items()}
    rng = random.Random(20250901)
    details = random.Random(18)  # apart, so that the records' other values stay as they were
    span_us = SPREAD_DAYS * 86_400_000_000
    times = [D0 + timedelta(microseconds=rng.randrange(span_us)) for _ in range(400)]
    times += [D0 + timedelta(days=k) for k in range(SPREAD_DAYS)]
    times += [D0 + timedelta(days=k, microseconds=-1) for k in range(1, SPREAD_DAYS + 1)]
    records, expected_cost = [], Decimal(0)
    for i, t in enumerate(times):
        which = rng.choice(list(models))
        prompt, completion = rng.randrange(0, 50_000), rng.randrange(0, 5_000)
        records.append(
            record(
                rng.choice(keys),
                models[which],
                iso(t),
                request_id=f"spread-{i}",
                prompt_tokens=prompt,
                completion_tokens=completion,
                status=rng.choice(["success", "success", "error"]),
                **details.choice(DETAILS),
            )
        )
        price_in, price_out = (Decimal(p) for p in PRICES[which])
        expected_cost += (prompt * price_in + completion * price_out) / Decimal(1_000_000)
    assert ingest(admin, *records)["accepted"] == len(records)
    instance_id = deploy(admin, container, tenant_id=tenant["id"])
    expected_gpu = Decimal(0)
    for deploying, running, stopped in RUNS:
        transition(container, instance_id, "deploying", deploying)
        transition(container, instance_id, "running", running)
        transition(container, instance_id, "stopped", stopped)
        expected_gpu += expected_gpu_cost(
            Decimal("0.85"),
            datetime.fromisoformat(running.replace("Z", "+00:00")),
            datetime.fromisoformat(stopped.replace("Z", "+00:00")),
        )
    return {
        "tenant_id": tenant["id"],
        "requests": len(records),
        "prompt_tokens": sum(r["prompt_tokens"] for r in records),
        "completion_tokens": sum(r["completion_tokens"] for r in records),
        "token_cost": expected_cost,
        "gpu_cost": expected_gpu,
    }


def day_str(k: int) -> str:
    return (D0.date() + timedelta(days=k)).isoformat()


def summed(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests": sum(s["requests"] for s in summaries),
        "prompt_tokens": sum(s["prompt_tokens"] for s in summaries),
        "completion_tokens": sum(s["completion_tokens"] for s in summaries),
        "token_cost": sum((Decimal(s["token_cost"]) for s in summaries), Decimal(0)),
        "gpu_cost": sum((Decimal(s["gpu_cost"]) for s in summaries), Decimal(0)),
        "total_cost": sum((Decimal(s["total_cost"]) for s in summaries), Decimal(0)),
    }


FIELDS = ("requests", "prompt_tokens", "completion_tokens", "token_cost", "gpu_cost")


def test_the_whole_ten_days_bill_exactly_the_usage_and_gpu_time_recorded(admin, spread):
    s = summary(admin, spread["tenant_id"], day_str(0), day_str(SPREAD_DAYS))

    assert {f: s[f] for f in FIELDS} == {
        "requests": spread["requests"],
        "prompt_tokens": spread["prompt_tokens"],
        "completion_tokens": spread["completion_tokens"],
        "token_cost": f"{spread['token_cost'].normalize():f}",
        "gpu_cost": f"{spread['gpu_cost'].normalize():f}",
    }
    assert len(s["by_day"]) == SPREAD_DAYS


@settings(max_examples=30, deadline=None)
@given(cuts=st.sets(st.integers(min_value=1, max_value=SPREAD_DAYS - 1)))
def test_splitting_a_range_into_consecutive_sub_ranges_never_changes_its_totals(
    admin, spread, cuts
):
    bounds = [0, *sorted(cuts), SPREAD_DAYS]
    parts = [
        summary(admin, spread["tenant_id"], day_str(lo), day_str(hi))
        for lo, hi in zip(bounds, bounds[1:], strict=False)
    ]
    whole = summary(admin, spread["tenant_id"], day_str(0), day_str(SPREAD_DAYS))

    assert summed(parts) == summed([whole])
    assert summed(parts)["token_cost"] == spread["token_cost"]
    assert summed(parts)["gpu_cost"] == spread["gpu_cost"]


def test_the_days_of_a_summary_add_up_to_its_totals(admin, spread):
    s = summary(admin, spread["tenant_id"], day_str(0), day_str(SPREAD_DAYS))

    assert summed(s["by_day"]) == summed([s])


# -- replay: rebuild equality and crash-resume ---------------------------------------------

REPLAYED = {
    "rm_usage": ["hourly", "daily", "vendor_hourly", "vendor_daily"],
    "rm_costs": ["gpu_hourly", "runs", "credits"],
}


def read_side(container: Any, admin: Any, tenant_ids: list[str]) -> dict[str, Any]:
    caught_up(container, "usage", "costs", "pricebook")
    out: dict[str, Any] = {
        f"{schema}.{table}": rows_of(container, schema, table)
        for schema, tables in REPLAYED.items()
        for table in tables
    }
    for tenant_id in tenant_ids:
        for lo, hi in ((0, SPREAD_DAYS), (0, 3), (3, 4), (4, 4)):
            out[f"summary {tenant_id} {lo}-{hi}"] = summary(
                admin, tenant_id, day_str(lo), day_str(hi)
            )
        out[f"balance {tenant_id}"] = admin.get(f"/tenants/{tenant_id}/balance").json()
    return out


def test_rebuilding_usage_costs_and_price_book_yields_identical_rows_and_bills(
    admin, container, spread, tenant, model
):
    admin.post(f"/tenants/{tenant.id}/credits", json={"amount_eur": "3.25"})
    ingest(tenant.api, record(tenant.key["id"], model, "2025-09-05T12:00:00Z"))
    tenant_ids = [spread["tenant_id"], tenant.id]
    before = read_side(container, admin, tenant_ids)
    assert before["rm_usage.hourly"] and before["rm_costs.gpu_hourly"]
    assert before["rm_costs.credits"]
    vendors = {row[2] for row in before["rm_usage.vendor_daily"]}
    assert {"", "openai", "mistral"} <= vendors

    for name in ("usage", "costs", "pricebook"):
        container.runner.rebuild(name)

    after = read_side(container, admin, tenant_ids)
    assert after.keys() == before.keys()
    for part in before:
        assert after[part] == before[part], part


class Crash(Exception):
    """The fault injected into a projection."""


class FlakyUsage(UsageProjection):
    """The usage projection, failing on its n-th usage event until the fault is removed."""

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.fail_on: int | None = fail_on
        self.seen = 0

    def flaky_recorded(self, curs: Any, e: Any) -> None:
        self.seen += 1
        if self.fail_on is not None and self.seen == self.fail_on:
            raise Crash(f"killed on usage event {self.seen}")
        UsageProjection.recorded(self, curs, e)

    handlers = {UsageBatch.Recorded: flaky_recorded}


def first_usage_events(container: Any, n: int) -> list[tuple[int, int]]:
    """The notification ids and record counts of the first ``n`` usage events in the log."""
    source = container.runner.source
    with container.pool.connection() as conn:
        rows = conn.execute(
            source.select_sql(),
            (0, container.runner.max_notification_id(), UsageProjection.topics(), n),
        ).fetchall()
    out = []
    for r in rows:
        event = source.mapper.to_domain_event(
            StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
        )
        out.append((r["notification_id"], len(event.records)))
    return out


def sum_requests(container: Any, schema: str, table: str) -> int:
    with container.pool.connection() as conn:
        row = conn.execute(f"SELECT coalesce(sum(requests), 0) AS n FROM {schema}.{table}")
        return row.fetchone()["n"]


@pytest.mark.parametrize("fail_on", [3, 4])
def test_a_usage_projection_killed_mid_catch_up_resumes_without_double_counting(
    container, tenant, model, fail_on
):
    for i in range(4):
        ingest(
            tenant.api,
            *(record(tenant.key["id"], model, f"2025-10-2{i}T10:00:00Z") for _ in range(i + 1)),
        )
    scratch = "rm_usage_crashtest"
    projection = FlakyUsage(fail_on)
    runner = ProjectionRunner(
        container.pool,
        container.runner.source,
        [projection],
        container.database.conninfo,
        batch_size=2,
    )
    with container.pool.connection() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")
    try:
        runner.create_schema(projection, scratch)
        (first, n1), (second, n2) = first_usage_events(container, 2)

        with pytest.raises(Crash):
            runner.catch_up("usage", scratch)

        with container.pool.connection() as conn:
            position = conn.execute(f"SELECT position FROM {scratch}.tracking").fetchone()
        assert position["position"] == second < container.runner.max_notification_id()
        assert sum_requests(container, scratch, "hourly") == n1 + n2
        assert sum_requests(container, scratch, "daily") == n1 + n2

        projection.fail_on = None
        runner.catch_up("usage", scratch)

        caught_up(container, "usage")
        for table in ("hourly", "daily"):
            assert rows_of(container, scratch, table) == rows_of(container, "rm_usage", table)
    finally:
        with container.pool.connection() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")
