"""Usage over HTTP: ingesting metered requests, and reading usage and costs back (seeds 003, 004)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from freezegun import freeze_time

from domain.base import Actor
from tests.helpers import new_model as shared_new_model
from tests.helpers import usage_record

DAY = "2025-10-30"
NEXT_DAY = "2025-10-31"


def new_model(admin: Any, input_price: str = "1.00", output_price: str = "2.00") -> str:
    return shared_new_model(admin, input_price, output_price, prefix="usage-test")


def record(key_id: str, model: str, at: str, **fields: Any) -> dict[str, Any]:
    return usage_record(key_id, model, at, **{"latency_ms": 120, **fields})


def post(api: Any, *records: dict[str, Any]) -> Any:
    return api.post("/usage/events", json={"records": list(records)})


def ingest(api: Any, *records: dict[str, Any]) -> dict[str, Any]:
    r = post(api, *records)
    assert r.status_code == 200, r.text
    return r.json()


def summary(api: Any, tenant_id: str, start: str = DAY, end: str = NEXT_DAY) -> dict[str, Any]:
    r = api.get(f"/team-billing/summary/{tenant_id}/{start}/{end}")
    assert r.status_code == 200, r.text
    return r.json()


def totals(s: dict[str, Any]) -> tuple[Any, ...]:
    return (s["requests"], s["prompt_tokens"], s["completion_tokens"], s["token_cost"])


def assert_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert {"message", "type", "code"} <= error.keys()
    return error


def at(hour: int, minute: int = 0, day: str = DAY) -> str:
    return f"{day}T{hour:02d}:{minute:02d}:00Z"


@pytest.fixture
def model(admin: Any) -> str:
    return new_model(admin)


# -- ingestion -----------------------------------------------------------------------------


def test_a_management_key_records_usage_of_its_own_keys_and_billing_shows_it(tenant, model):
    result = ingest(tenant.api, record(tenant.key["id"], model, at(10)))

    assert (result["accepted"], result["duplicates"]) == (1, 0)
    assert len(result["batch_ids"]) == 1
    assert totals(summary(tenant.api, tenant.id)) == (1, 1000, 500, "0.002")


def test_a_request_id_repeated_within_one_batch_is_counted_once(tenant, model):
    key = tenant.key["id"]

    result = ingest(
        tenant.api,
        record(key, model, at(10), request_id="req-a"),
        record(key, model, at(10), request_id="req-a"),
        record(key, model, at(11), request_id="req-b"),
    )

    assert (result["accepted"], result["duplicates"]) == (2, 1)
    assert totals(summary(tenant.api, tenant.id)) == (2, 2000, 1000, "0.004")


def test_a_request_id_recorded_by_an_earlier_batch_is_a_duplicate_in_a_later_one(tenant, model):
    key = tenant.key["id"]
    ingest(tenant.api, record(key, model, at(10), request_id="req-a"))

    result = ingest(
        tenant.api,
        record(key, model, at(10), request_id="req-a"),
        record(key, model, at(11), request_id="req-b"),
    )

    assert (result["accepted"], result["duplicates"]) == (1, 1)
    assert totals(summary(tenant.api, tenant.id)) == (2, 2000, 1000, "0.004")


def test_retrying_a_whole_batch_accepts_nothing_and_bills_nothing_twice(tenant, model):
    key = tenant.key["id"]
    batch = [record(key, model, at(10, i), request_id=f"retry-{i}") for i in range(3)]
    first = ingest(tenant.api, *batch)

    retry = ingest(tenant.api, *batch)

    assert (first["accepted"], first["duplicates"]) == (3, 0)
    assert (retry["accepted"], retry["duplicates"], retry["batch_ids"]) == (0, 3, [])
    assert totals(summary(tenant.api, tenant.id)) == (3, 3000, 1500, "0.006")


def test_the_same_request_id_in_two_tenants_is_counted_in_each(admin, tenant, other_tenant, model):
    mine = record(tenant.key["id"], model, at(10), request_id="shared-id")
    theirs = record(other_tenant.key["id"], model, at(10), request_id="shared-id")

    result = ingest(admin, mine, theirs)

    assert (result["accepted"], result["duplicates"]) == (2, 0)
    assert totals(summary(tenant.api, tenant.id)) == (1, 1000, 500, "0.002")
    assert totals(summary(other_tenant.api, other_tenant.id)) == (1, 1000, 500, "0.002")


def test_an_invalid_record_refuses_its_batch_naming_every_bad_record_and_field(tenant, model):
    key = tenant.key["id"]
    batch = [
        record(key, model, at(10), request_id="good-0"),
        record(key, model, at(10), request_id="bad-1", prompt_tokens=-1),
        record(key, "no-such-model", at(10), request_id="bad-2"),
        record(key, model, at(10), request_id="good-3"),
        record(str(uuid.uuid4()), model, at(10), request_id="bad-4"),
        record(key, model, "2025-10-30T10:00:00", request_id="bad-5"),
        record(key, model, at(10), request_id="bad-6", cached_tokens=1001),
    ]

    r = post(tenant.api, *batch)

    error = assert_error(r, 400)
    assert error["code"] == "invalid_usage_batch"
    assert {(p["index"], p["request_id"], p["field"]) for p in error["records"]} == {
        (1, "bad-1", "prompt_tokens"),
        (2, "bad-2", "model"),
        (4, "bad-4", "key_id"),
        (5, "bad-5", "occurred_at"),
        (6, "bad-6", "cached_tokens"),
    }


def test_nothing_of_a_refused_batch_is_stored_and_its_good_records_can_be_sent_again(tenant, model):
    key = tenant.key["id"]
    good = [record(key, model, at(10), request_id=f"good-{i}") for i in range(2)]
    bad = record(key, model, at(10), request_id="bad", completion_tokens=-5)
    assert_error(post(tenant.api, good[0], bad, good[1]), 400)

    empty = summary(tenant.api, tenant.id)
    no_usage = tenant.api.get("/usage", params={"from": DAY, "to": NEXT_DAY}).json()["data"]
    retried = ingest(tenant.api, *good)

    assert totals(empty) == (0, 0, 0, "0.00")
    assert no_usage == []
    assert (retried["accepted"], retried["duplicates"]) == (2, 0)
    assert totals(summary(tenant.api, tenant.id)) == (2, 2000, 1000, "0.004")


def test_usage_that_occurred_in_the_future_is_refused(tenant, model):
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")

    r = post(tenant.api, record(tenant.key["id"], model, future, request_id="from-the-future"))

    error = assert_error(r, 400)
    assert [(p["index"], p["field"]) for p in error["records"]] == [(0, "occurred_at")]
    assert tenant.api.get("/usage").json()["data"] == []


def test_a_management_key_may_not_record_usage_for_another_tenants_key(tenant, other_tenant, model):
    r = post(tenant.api, record(other_tenant.key["id"], model, at(10), request_id="theirs"))

    error = assert_error(r, 400)
    assert [(p["field"], p["message"]) for p in error["records"]] == [("key_id", "unknown key")]
    assert totals(summary(other_tenant.api, other_tenant.id)) == (0, 0, 0, "0.00")


def test_a_router_key_is_refused_when_posting_usage(admin, tenant, model):
    key, secret = admin.new_key(tenant.id, "router")

    r = post(admin.as_token(secret), record(key["id"], model, at(10)))

    assert_error(r, 403)
    assert totals(summary(tenant.api, tenant.id)) == (0, 0, 0, "0.00")


def test_an_empty_batch_is_a_400(tenant):
    assert_error(tenant.api.post("/usage/events", json={"records": []}), 400)


def test_records_in_other_json_forms_are_read_as_the_same_values(tenant, model):
    key = tenant.key["id"]
    canonical = record(key, model, at(10), request_id="plain")
    # Forms a router may send that mean the same: a key id without hyphens and in capitals,
    # a time with an offset and fractional seconds. (Numbers as strings are refused: issue 16.)
    variant = record(
        key.replace("-", "").upper(),
        model,
        "2025-10-30T12:00:00.000+02:00",
        request_id="variant",
    )

    result = ingest(tenant.api, canonical, variant)
    by_key = tenant.api.get("/usage", params={"group_by": "key", "from": DAY, "to": NEXT_DAY})

    assert (result["accepted"], result["duplicates"]) == (2, 0)
    assert totals(summary(tenant.api, tenant.id)) == (2, 2000, 1000, "0.004")
    assert [(row["key_id"], row["requests"]) for row in by_key.json()["data"]] == [(key, 2)]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"records": [{"request_id": "x"}]}, "records.0.key_id"),
        ({"records": "all of them"}, "records"),
        ({"records": [], "extra": 1}, "records"),
        ({"rows": []}, "records"),
    ],
)
def test_a_malformed_batch_is_a_400_naming_the_field(tenant, body, param):
    error = assert_error(tenant.api.post("/usage/events", json=body), 400)

    assert error["param"] == param


def test_a_body_that_is_not_json_is_a_400(tenant):
    r = tenant.api.post(
        "/usage/events", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert assert_error(r, 400)["type"] == "invalid_request_error"


def test_a_wrongly_typed_token_count_is_a_400_naming_record_and_field(tenant, model):
    bad = record(tenant.key["id"], model, at(10), prompt_tokens="many")

    error = assert_error(post(tenant.api, bad), 400)

    assert error["param"] == "records.0.prompt_tokens"
    assert totals(summary(tenant.api, tenant.id)) == (0, 0, 0, "0.00")


def test_usage_on_an_instance_of_another_tenant_is_refused(admin, tenant, other_tenant, model):
    theirs = other_tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"}).json()

    r = post(tenant.api, record(tenant.key["id"], model, at(10), instance_id=theirs["id"]))

    error = assert_error(r, 400)
    assert [p["field"] for p in error["records"]] == ["instance_id"]


# -- reading usage back --------------------------------------------------------------------


# How the requests went, for records that said nothing of it (not the gateway's).
NOTHING_NOTED = {
    "cancelled": 0,
    "streamed": 0,
    "estimated": 0,
    "cache_hits": 0,
    "ttft_ms": 0,
    "ttft_count": 0,
}


def test_usage_grouped_by_model_shows_requests_outcomes_tokens_and_cost(admin, tenant):
    cheap = new_model(admin, "1.00", "2.00")
    dear = new_model(admin, "10.00", "20.00")
    key = tenant.key["id"]
    ingest(
        tenant.api,
        record(key, cheap, at(9)),
        record(key, cheap, at(10), status="error", prompt_tokens=200, completion_tokens=0),
        record(key, dear, at(11), prompt_tokens=3000, completion_tokens=1000, cached_tokens=100),
    )

    r = tenant.api.get("/usage", params={"group_by": "model", "from": DAY, "to": NEXT_DAY})

    assert r.status_code == 200, r.text
    assert r.json()["currency"] == "EUR"
    rows = {row["model"]: row for row in r.json()["data"]}
    assert rows == {
        cheap: {
            "model": cheap,
            "requests": 2,
            "successes": 1,
            "failures": 1,
            "prompt_tokens": 1200,
            "completion_tokens": 500,
            "cached_tokens": 0,
            "latency_ms": 240,
            "cost": "0.0022",
            **NOTHING_NOTED,
        },
        dear: {
            "model": dear,
            "requests": 1,
            "successes": 1,
            "failures": 0,
            "prompt_tokens": 3000,
            "completion_tokens": 1000,
            "cached_tokens": 100,
            "latency_ms": 120,
            "cost": "0.05",
            **NOTHING_NOTED,
        },
    }


def test_usage_per_key_shows_each_keys_requests_and_cost(admin, tenant, model):
    router, _ = admin.new_key(tenant.id, "router")
    ingest(
        tenant.api,
        record(tenant.key["id"], model, at(9)),
        record(router["id"], model, at(10)),
        record(router["id"], model, at(11)),
    )

    r = tenant.api.get("/usage/keys", params={"from": DAY, "to": NEXT_DAY})

    assert r.status_code == 200, r.text
    rows = {row["key_id"]: (row["requests"], row["cost"]) for row in r.json()["data"]}
    assert rows == {tenant.key["id"]: (1, "0.002"), router["id"]: (2, "0.004")}


def test_usage_by_vendor_names_openai_for_gpt_4o_with_success_and_failure_counts(tenant):
    key = tenant.key["id"]
    ingest(
        tenant.api,
        record(key, "gpt-4o", at(9)),
        record(key, "gpt-4o", at(10)),
        record(key, "gpt-4o", at(11), status="error"),
        record(key, "llama-3.1-8b", at(12)),
    )

    r = tenant.api.get("/usage/vendors", params={"from": DAY, "to": NEXT_DAY})

    assert r.status_code == 200, r.text
    rows = [
        (row["vendor"], row["model"], row["requests"], row["successes"], row["failures"])
        for row in r.json()["data"]
    ]
    assert rows == [("meta", "llama-3.1-8b", 1, 1, 0), ("openai", "gpt-4o", 3, 2, 1)]


def test_the_hourly_series_puts_each_request_in_the_hour_it_occurred(tenant, model):
    key = tenant.key["id"]
    ingest(
        tenant.api,
        record(key, model, "2025-10-30T10:15:00Z"),
        record(key, model, "2025-10-30T10:59:59.999Z"),
        record(key, model, "2025-10-30T11:00:00Z", prompt_tokens=3000, completion_tokens=1000),
        record(key, model, "2025-10-30T23:59:59.999999Z"),
    )

    r = tenant.api.get("/usage/series", params={"interval": "hour", "from": DAY, "to": NEXT_DAY})

    assert r.status_code == 200, r.text
    rows = [
        (datetime.fromisoformat(row["at"].replace("Z", "+00:00")), row["requests"], row["cost"])
        for row in r.json()["data"]
    ]
    assert rows == [
        (datetime(2025, 10, 30, 10, tzinfo=UTC), 2, "0.004"),
        (datetime(2025, 10, 30, 11, tzinfo=UTC), 1, "0.005"),
        (datetime(2025, 10, 30, 23, tzinfo=UTC), 1, "0.002"),
    ]


def test_the_daily_series_puts_each_request_in_its_midnight_utc_day(tenant, model):
    key = tenant.key["id"]
    ingest(
        tenant.api,
        record(key, model, "2025-10-30T23:59:59.999Z"),
        record(key, model, "2025-10-31T00:00:00.000Z"),
        record(key, model, "2025-10-31T01:00:00+02:00"),  # 23:00 UTC on the 30th
    )

    r = tenant.api.get("/usage/series", params={"interval": "day", "from": DAY, "to": "2025-11-01"})

    assert r.status_code == 200, r.text
    rows = [
        (datetime.fromisoformat(row["at"].replace("Z", "+00:00")), row["requests"])
        for row in r.json()["data"]
    ]
    assert rows == [
        (datetime(2025, 10, 30, tzinfo=UTC), 2),
        (datetime(2025, 10, 31, tzinfo=UTC), 1),
    ]


def test_costs_by_instance_separate_gpu_time_from_token_cost(container, tenant, model):
    r = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    assert r.status_code == 201, r.text
    instance_id = r.json()["id"]
    assert container.store.repository.get(uuid.UUID(instance_id)).hourly_rate_eur == Decimal("0.85")
    for status, when in (
        ("deploying", "2025-10-30T09:50:00Z"),
        ("running", "2025-10-30T10:00:00Z"),
        ("stopped", "2025-10-30T13:30:00Z"),
    ):
        with freeze_time(when):
            container.instances.transition_instance(uuid.UUID(instance_id), status, Actor.system())
    key = tenant.key["id"]
    ingest(
        tenant.api,
        record(key, model, at(11), instance_id=instance_id),
        record(key, model, at(12), prompt_tokens=3000, completion_tokens=1000),
    )

    r = tenant.api.get("/costs", params={"group_by": "instance", "from": DAY, "to": NEXT_DAY})

    assert r.status_code == 200, r.text
    assert r.json()["currency"] == "EUR"
    rows = {
        row["instance"]: (row["token_cost"], row["gpu_cost"], row["total_cost"])
        for row in r.json()["data"]
    }
    assert rows == {
        None: ("0.005", "0.00", "0.005"),
        instance_id: ("0.002", "2.975", "2.977"),
    }


def test_costs_by_model_show_token_cost_and_no_gpu_cost(admin, tenant):
    cheap = new_model(admin, "1.00", "2.00")
    dear = new_model(admin, "0.50", "0.75")
    key = tenant.key["id"]
    ingest(tenant.api, record(key, cheap, at(9)), record(key, dear, at(10)))

    r = tenant.api.get("/costs", params={"group_by": "model", "from": DAY, "to": NEXT_DAY})

    assert r.status_code == 200, r.text
    rows = {row["model"]: (row["token_cost"], row["gpu_cost"]) for row in r.json()["data"]}
    assert rows == {cheap: ("0.002", "0.00"), dear: ("0.000875", "0.00")}


def test_a_management_key_sees_only_its_own_tenants_usage(admin, tenant, other_tenant, model):
    ingest(
        admin,
        record(tenant.key["id"], model, at(9)),
        record(other_tenant.key["id"], model, at(9)),
        record(other_tenant.key["id"], model, at(10)),
    )

    mine = tenant.api.get("/usage", params={"group_by": "tenant"}).json()["data"]
    by_key = tenant.api.get("/usage/keys").json()["data"]
    costs = tenant.api.get("/costs", params={"group_by": "key"}).json()["data"]
    theirs = tenant.api.get(f"/team-billing/summary/{other_tenant.id}/{DAY}/{NEXT_DAY}")

    assert [(row["tenant_id"], row["requests"], row["cost"]) for row in mine] == [
        (tenant.id, 1, "0.002")
    ]
    assert [row["key_id"] for row in by_key] == [tenant.key["id"]]
    assert [(row["key"], row["token_cost"]) for row in costs] == [(tenant.key["id"], "0.002")]
    assert_error(theirs, 404)


def test_the_admin_sees_every_tenants_usage_grouped_by_tenant(admin, tenant, other_tenant, model):
    ingest(
        admin,
        record(tenant.key["id"], model, at(9)),
        record(other_tenant.key["id"], model, at(9)),
        record(other_tenant.key["id"], model, at(10)),
    )

    rows = admin.get("/usage", params={"group_by": "tenant", "from": DAY, "to": NEXT_DAY})

    by_tenant = {row["tenant_id"]: row["requests"] for row in rows.json()["data"]}
    assert by_tenant[tenant.id] == 1
    assert by_tenant[other_tenant.id] == 2


def test_a_malformed_from_time_on_usage_queries_is_a_400(tenant):
    assert_error(tenant.api.get("/usage", params={"from": "yesterday"}), 400)


def test_a_to_time_before_the_from_time_on_usage_queries_is_a_400(tenant):
    assert_error(tenant.api.get("/usage", params={"from": NEXT_DAY, "to": DAY}), 400)


# -- how a request went: vendor, time to first token, streamed, estimated, cache hit --------


def exported_records(api: Any, tenant_id: str) -> dict[str, list[Any]]:
    """The tenant's stored usage records by request id, as its export gives them."""
    r = api.get(f"/tenants/{tenant_id}/export")
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines()]
    return {
        stored[0]: stored
        for line in lines
        if line.get("type") == "usage.recorded"
        for stored in line["data"]["records"]
    }


def test_a_record_may_say_its_vendor_time_to_first_token_and_how_it_was_answered(tenant, model):
    key = tenant.key["id"]
    ingest(
        tenant.api,
        record(key, model, at(9), request_id="plain"),
        record(
            key,
            model,
            at(10),
            request_id="streamed",
            vendor="openai",
            streamed=True,
            ttft_ms=40,
            estimated=True,
        ),
        record(key, model, at(11), request_id="cached", vendor="openai", cache_hit=True),
        record(key, model, at(12), request_id="left", status="cancelled", streamed=True),
    )

    r = tenant.api.get("/usage", params={"group_by": "vendor", "from": DAY, "to": NEXT_DAY})

    assert r.status_code == 200, r.text
    rows = {row["vendor"]: row for row in r.json()["data"]}
    assert rows.keys() == {None, "openai"}
    openai = rows["openai"]
    assert (openai["requests"], openai["streamed"], openai["estimated"]) == (2, 1, 1)
    assert (openai["cache_hits"], openai["ttft_ms"], openai["ttft_count"]) == (1, 40, 1)
    unnamed = rows[None]
    assert (unnamed["requests"], unnamed["cancelled"], unnamed["failures"]) == (2, 1, 1)
    assert unnamed["streamed"] == 1 and unnamed["ttft_count"] == 0

    stored = exported_records(tenant.api, tenant.id)
    assert len(stored["plain"]) == 10  # a record that says nothing more is stored as before
    assert stored["streamed"][10:] == [None, "openai", 40, True, True]
    assert stored["cached"][10:] == [None, "openai", None, False, False, True]
    assert stored["left"][10:] == ["cancelled", None, None, True]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"vendor": "acme-ai"}, "vendor"),
        ({"ttft_ms": 10}, "ttft_ms"),  # not streamed
        ({"streamed": True, "ttft_ms": 500}, "ttft_ms"),  # beyond its latency
        ({"streamed": True, "ttft_ms": -1}, "ttft_ms"),
    ],
)
def test_a_record_with_an_impossible_vendor_or_time_to_first_token_is_refused(
    tenant, model, fields, field
):
    r = post(tenant.api, record(tenant.key["id"], model, at(10), **fields))

    error = assert_error(r, 400)
    assert [p["field"] for p in error["records"]] == [field]


@pytest.mark.parametrize("fields", [{"streamed": "yes"}, {"estimated": 1}, {"ttft_ms": "4"}])
def test_a_wrongly_typed_detail_of_a_record_is_a_400(tenant, model, fields):
    r = post(tenant.api, record(tenant.key["id"], model, at(10), **fields))

    assert_error(r, 400)


def test_usage_by_vendor_counts_a_records_own_vendor_with_the_guess_for_the_rest(tenant, model):
    key = tenant.key["id"]
    ingest(
        tenant.api,
        record(key, "gpt-4o", at(9)),
        record(key, "gpt-4o", at(10), vendor="openai", status="error"),
        record(key, model, at(11), vendor="mistral"),
    )

    r = tenant.api.get("/usage/vendors", params={"from": DAY, "to": NEXT_DAY})

    assert r.status_code == 200, r.text
    rows = [
        (row["vendor"], row["model"], row["requests"], row["successes"], row["failures"])
        for row in r.json()["data"]
    ]
    assert rows == [("mistral", model, 1, 1, 0), ("openai", "gpt-4o", 2, 1, 1)]


def test_a_management_key_may_not_record_usage_under_a_gpu_instances_id_as_key(tenant, model):
    instance = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    assert instance.status_code == 201, instance.text

    r = post(tenant.api, record(instance.json()["id"], model, at(10)))

    error = assert_error(r, 400)
    assert [p["field"] for p in error["records"]] == ["key_id"]


def test_the_admin_may_not_record_usage_under_a_gpu_instances_id_as_key(admin, tenant, model):
    instance = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    assert instance.status_code == 201, instance.text

    r = post(admin, record(instance.json()["id"], model, at(10)))

    error = assert_error(r, 400)
    assert [p["field"] for p in error["records"]] == ["key_id"]
