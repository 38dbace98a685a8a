"""Numbers a read model can't store (beyond its columns, or summing beyond them) and numbers
that aren't numbers (``"12"``, ``true``) are refused as a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.hostile import (
    assert_billing_follows,
    assert_keys_and_audit_follow,
    assert_refused,
    assert_tenants_follow,
    assert_usage_refused,
    ok,
)
from tests.helpers import new_model, unique_name, usage_record

AT = "2025-11-03T09:00:00Z"


@pytest.fixture
def model(admin: Any) -> str:
    return new_model(admin)


# -- tenants -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**63, 2**64, 10**30, -1])
def test_a_tokens_per_minute_quota_beyond_its_column_is_refused(admin, value):
    tenant = admin.new_tenant()

    changed = admin.put(f"/tenants/{tenant['id']}/quota", json={"tokens_per_minute": value})
    created = admin.post("/tenants", json={"name": unique_name("t"), "tokens_per_minute": value})

    assert_refused(changed, "tokens_per_minute")
    assert_refused(created, "tokens_per_minute")
    assert ok(admin.get(f"/tenants/{tenant['id']}"))["tokens_per_minute"] is None
    assert_tenants_follow(admin)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weight", True),
        ("weight", "12"),
        ("weight", 12.5),
        ("tokens_per_minute", "1000"),
        ("tokens_per_minute", False),
    ],
)
def test_a_tenant_number_given_as_a_string_or_a_boolean_is_refused(admin, field, value):
    tenant = admin.new_tenant()
    path = {"weight": "weight", "tokens_per_minute": "quota"}[field]
    method = admin.patch if field == "weight" else admin.put

    assert_refused(method(f"/tenants/{tenant['id']}/{path}", json={field: value}), field)
    assert_refused(admin.post("/tenants", json={"name": unique_name("t"), field: value}), field)
    assert ok(admin.get(f"/tenants/{tenant['id']}"))["weight"] == 100


def test_a_largest_quota_is_stored_and_read_back(admin):
    tenant = admin.new_tenant(tokens_per_minute=10**12)

    assert ok(admin.get(f"/tenants/{tenant['id']}"))["tokens_per_minute"] == 10**12


# -- usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt_tokens", 2**63),
        ("completion_tokens", 2**63),
        ("cached_tokens", 2**63),
        ("latency_ms", 2**63),
        ("prompt_tokens", 2**64),
        ("latency_ms", 2**64),
        ("completion_tokens", 10**40),
        ("prompt_tokens", 2**62),
    ],
)
def test_a_usage_count_beyond_its_bound_is_refused_and_billing_keeps_working(
    tenant, model, field, value
):
    extra = {"prompt_tokens": value} if field == "cached_tokens" else {}
    record = usage_record(tenant.key["id"], model, AT, **{field: value, **extra})

    r = tenant.api.post("/usage/events", json={"records": [record]})

    assert_usage_refused(r, field)
    assert_billing_follows(tenant.api, tenant.key["id"], model, tenant.id)


def test_two_records_that_would_overflow_a_bucket_together_are_refused(tenant, model):
    records = [usage_record(tenant.key["id"], model, AT, prompt_tokens=2**62) for _ in range(2)]

    r = tenant.api.post("/usage/events", json={"records": records})

    assert_usage_refused(r, "prompt_tokens")
    assert_billing_follows(tenant.api, tenant.key["id"], model, tenant.id)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt_tokens", "12"),
        ("completion_tokens", True),
        ("latency_ms", True),
        ("cached_tokens", "0"),
        ("prompt_tokens", 12.0),
    ],
)
def test_a_usage_count_given_as_a_string_or_a_boolean_is_refused(tenant, model, field, value):
    record = usage_record(tenant.key["id"], model, AT, **{field: value})

    r = tenant.api.post("/usage/events", json={"records": [record]})

    assert_usage_refused(r, field)


def test_the_largest_counts_a_record_may_carry_are_billed(tenant, model):
    record = usage_record(
        tenant.key["id"], model, "2025-11-05T09:00:00Z", prompt_tokens=10**9, latency_ms=86_400_000
    )

    ok(tenant.api.post("/usage/events", json={"records": [record]}))

    summary = ok(tenant.api.get(f"/team-billing/summary/{tenant.id}/2025-11-05/2025-11-06"))
    assert summary["prompt_tokens"] == 10**9


# -- everything else -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["8192", True, 2**63])
def test_a_context_length_that_is_not_a_bounded_integer_is_refused(admin, value):
    body = {
        "id": unique_name("m"),
        "display_name": "M",
        "context_length": value,
        "input_eur_per_mtok": "1",
        "output_eur_per_mtok": "2",
    }

    assert_refused(admin.post("/models", json=body), "context_length")


@pytest.mark.parametrize(("field", "value"), [("sovereignty_mode", "yes"), ("disabled", 1)])
def test_a_boolean_given_as_another_type_is_refused(tenant, field, value):
    if field == "disabled":
        r = tenant.api.put(f"/keys/{tenant.key['id']}/disabled", json={field: value})
    else:
        r = tenant.api.post(f"/tenants/{tenant.id}/keys", json={"name": "b", field: value})

    assert_refused(r, field)
    assert_keys_and_audit_follow(tenant.api, tenant.id)


@pytest.mark.parametrize("value", [True, "1E-1000000", "0.1234567"])
def test_a_budget_threshold_that_numeric_cannot_hold_is_refused(tenant, value):
    r = tenant.api.post("/budgets", json={"limit_eur": "10", "thresholds": [value]})

    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] in ("thresholds", "thresholds.0")
    assert_keys_and_audit_follow(tenant.api, tenant.id)


@pytest.mark.parametrize("value", [True, "1E+1000000"])
def test_a_money_amount_given_as_a_boolean_or_an_overflow_is_refused(tenant, value):
    assert_refused(tenant.api.post("/budgets", json={"limit_eur": value}), "limit_eur")
