"""Budgets over HTTP: a spending limit in EUR for a tenant or one of its keys (seed 002)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from tests.helpers import assert_error

BUDGET = {"limit_eur": "12.50", "period": "monthly", "thresholds": [0.5, 0.8, 1]}
CHANGE = {"limit_eur": "1", "period": "daily", "thresholds": [1]}


def create(api, **fields):
    r = api.post("/budgets", json={**BUDGET, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def decimals(values):
    return [Decimal(v) for v in values]


def test_a_management_key_sets_a_budget_for_its_whole_tenant(tenant):
    r = tenant.api.post("/budgets", json=BUDGET)

    assert r.status_code == 201, r.text
    budget = r.json()
    assert budget["scope"] == "tenant"
    assert budget["tenant_id"] == tenant.id
    assert budget["key_id"] is None
    assert budget["period"] == "monthly"


def test_a_budget_with_a_key_id_covers_that_key(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")

    budget = create(tenant.api, key_id=key["id"])

    assert budget["scope"] == "key"
    assert budget["key_id"] == key["id"]
    assert budget["tenant_id"] == tenant.id


@pytest.mark.parametrize("limit", ["12.50", "0.01", "1000000", "1234.567891"])
def test_the_limit_comes_back_as_the_exact_decimal_string_it_was_given(tenant, limit):
    budget = create(tenant.api, limit_eur=limit)

    assert budget["limit_eur"] == limit
    assert tenant.api.get(f"/budgets/{budget['id']}").json()["limit_eur"] == limit


def test_thresholds_come_back_sorted(tenant):
    budget = create(tenant.api, thresholds=[1, 0.5, 0.8])

    assert decimals(budget["thresholds"]) == [Decimal("0.5"), Decimal("0.8"), Decimal("1")]


def test_a_budget_without_period_or_thresholds_is_monthly_and_alerts_at_50_80_and_100_percent(
    tenant,
):
    r = tenant.api.post("/budgets", json={"limit_eur": "10"})

    assert r.status_code == 201, r.text
    assert r.json()["period"] == "monthly"
    assert decimals(r.json()["thresholds"]) == [Decimal("0.5"), Decimal("0.8"), Decimal("1")]


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly", "total"])
def test_every_documented_period_is_accepted(tenant, period):
    assert create(tenant.api, period=period)["period"] == period


def test_the_admin_sets_a_budget_for_the_tenant_named_in_the_body(admin, tenant):
    budget = create(admin, tenant_id=tenant.id)

    assert budget["tenant_id"] == tenant.id
    assert [b["id"] for b in tenant.api.get("/budgets").json()["data"]] == [budget["id"]]


def test_the_admin_without_a_tenant_id_gets_a_400_naming_tenant_id(admin):
    r = admin.post("/budgets", json=BUDGET)

    assert_error(r, 400, "tenant_id")


@pytest.mark.parametrize("limit", [0, "0.00", -5, "-0.01", "abc", "", "NaN", "Infinity", None])
def test_a_limit_that_is_not_a_positive_amount_is_a_400_naming_limit_eur(tenant, limit):
    r = tenant.api.post("/budgets", json={**BUDGET, "limit_eur": limit})

    assert_error(r, 400, "limit_eur")


def test_a_limit_with_more_than_six_decimal_places_is_a_400(tenant):
    r = tenant.api.post("/budgets", json={**BUDGET, "limit_eur": "1.0000001"})

    assert_error(r, 400, "limit_eur")


def test_a_budget_without_a_limit_is_a_400_naming_limit_eur(tenant):
    r = tenant.api.post("/budgets", json={"period": "monthly"})

    assert_error(r, 400, "limit_eur")


@pytest.mark.parametrize("period", ["yearly", "Monthly", "", 30])
def test_an_unknown_period_is_a_400_naming_period(tenant, period):
    r = tenant.api.post("/budgets", json={**BUDGET, "period": period})

    assert_error(r, 400, "period")


@pytest.mark.parametrize(
    "thresholds",
    [[1.5], [0.5, 1.01], [0], [-0.5], [0.5, 0.5], [0.8, 0.5, 0.8], ["half"]],
    ids=["above-1", "one-above-1", "zero", "negative", "duplicate", "duplicate-unsorted", "text"],
)
def test_thresholds_outside_zero_to_one_or_repeated_are_a_400_naming_thresholds(tenant, thresholds):
    r = tenant.api.post("/budgets", json={**BUDGET, "thresholds": thresholds})

    assert_error(r, 400, "thresholds")
    assert tenant.api.get("/budgets").json()["data"] == []


def test_an_unknown_field_in_a_budget_is_a_400_naming_that_field(tenant):
    r = tenant.api.post("/budgets", json={**BUDGET, "currency": "USD"})

    assert_error(r, 400, "currency")


def test_a_key_id_of_another_tenant_is_404_and_sets_no_budget(admin, tenant, other_tenant):
    foreign_key, _ = admin.new_key(other_tenant.id, "router")

    r = tenant.api.post("/budgets", json={**BUDGET, "key_id": foreign_key["id"]})

    assert_error(r, 404)
    assert tenant.api.get("/budgets").json()["data"] == []
    assert other_tenant.api.get("/budgets").json()["data"] == []


def test_the_admin_pairing_a_tenant_with_a_key_of_another_tenant_gets_404(
    admin, tenant, other_tenant
):
    foreign_key, _ = admin.new_key(other_tenant.id, "router")

    r = admin.post("/budgets", json={**BUDGET, "tenant_id": tenant.id, "key_id": foreign_key["id"]})

    assert_error(r, 404)


def test_an_unknown_key_id_is_404(tenant):
    r = tenant.api.post("/budgets", json={**BUDGET, "key_id": str(uuid.uuid4())})

    assert_error(r, 404)


def test_a_budget_for_a_deleted_key_is_404(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    assert tenant.api.delete(f"/keys/{key['id']}").status_code == 200

    r = tenant.api.post("/budgets", json={**BUDGET, "key_id": key["id"]})

    assert_error(r, 404)


def test_a_budget_for_another_tenant_named_in_the_body_is_404(tenant, other_tenant):
    r = tenant.api.post("/budgets", json={**BUDGET, "tenant_id": other_tenant.id})

    assert_error(r, 404)
    assert other_tenant.api.get("/budgets").json()["data"] == []


def test_an_offboarded_tenant_gets_no_new_budget(admin):
    t = admin.new_tenant()
    admin.delete(f"/tenants/{t['id']}")

    r = admin.post("/budgets", json={**BUDGET, "tenant_id": t["id"]})

    assert_error(r, 409, "offboarded")


def test_put_replaces_limit_period_and_thresholds(tenant):
    budget = create(tenant.api)

    r = tenant.api.put(
        f"/budgets/{budget['id']}",
        json={"limit_eur": "99.90", "period": "daily", "thresholds": [0.9, 0.25]},
    )

    assert r.status_code == 200, r.text
    assert r.json()["limit_eur"] == "99.90"
    assert r.json()["period"] == "daily"
    assert decimals(r.json()["thresholds"]) == [Decimal("0.25"), Decimal("0.9")]
    assert tenant.api.get(f"/budgets/{budget['id']}").json() == r.json()


def test_put_keeps_the_budgets_scope_and_creation_time(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    budget = create(tenant.api, key_id=key["id"])

    r = tenant.api.put(f"/budgets/{budget['id']}", json={"limit_eur": "1", "period": "total"})

    assert (r.json()["scope"], r.json()["key_id"]) == ("key", key["id"])
    assert r.json()["created_at"] == budget["created_at"]
    assert r.json()["updated_at"] > budget["updated_at"]


def test_put_without_thresholds_resets_them_to_the_defaults(tenant):
    budget = create(tenant.api, thresholds=[0.3])

    r = tenant.api.put(f"/budgets/{budget['id']}", json={"limit_eur": "5", "period": "weekly"})

    assert decimals(r.json()["thresholds"]) == [Decimal("0.5"), Decimal("0.8"), Decimal("1")]


def test_put_without_a_period_is_a_400_naming_period(tenant):
    budget = create(tenant.api)

    r = tenant.api.put(f"/budgets/{budget['id']}", json={"limit_eur": "5"})

    assert_error(r, 400, "period")


def test_put_cannot_move_a_budget_to_another_key(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    budget = create(tenant.api)

    r = tenant.api.put(f"/budgets/{budget['id']}", json={**CHANGE, "key_id": key["id"]})

    assert_error(r, 400, "key_id")


def test_an_invalid_put_leaves_the_budget_unchanged(tenant):
    budget = create(tenant.api)

    r = tenant.api.put(f"/budgets/{budget['id']}", json={**CHANGE, "limit_eur": "-1"})

    assert_error(r, 400, "limit_eur")
    assert tenant.api.get(f"/budgets/{budget['id']}").json() == budget


def test_put_on_an_unknown_budget_is_404(tenant):
    r = tenant.api.put(f"/budgets/{uuid.uuid4()}", json=CHANGE)

    assert_error(r, 404)


def test_a_deleted_budget_answers_404_afterwards(tenant):
    budget = create(tenant.api)

    r = tenant.api.delete(f"/budgets/{budget['id']}")

    assert r.status_code == 200, r.text
    assert r.json() == {"id": budget["id"], "deleted": True}
    assert_error(tenant.api.get(f"/budgets/{budget['id']}"), 404)


def test_a_deleted_budget_leaves_the_list(tenant):
    kept, gone = create(tenant.api), create(tenant.api)

    tenant.api.delete(f"/budgets/{gone['id']}")

    assert [b["id"] for b in tenant.api.get("/budgets").json()["data"]] == [kept["id"]]


def test_a_deleted_budget_can_be_neither_changed_nor_deleted_again(tenant):
    budget = create(tenant.api)
    tenant.api.delete(f"/budgets/{budget['id']}")

    assert_error(tenant.api.put(f"/budgets/{budget['id']}", json=CHANGE), 404)
    assert_error(tenant.api.delete(f"/budgets/{budget['id']}"), 404)


def test_deleting_a_key_deletes_its_budgets(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    budget = create(tenant.api, key_id=key["id"])

    assert tenant.api.delete(f"/keys/{key['id']}").status_code == 200

    assert_error(tenant.api.get(f"/budgets/{budget['id']}"), 404)


def test_a_key_whose_budget_was_deleted_can_be_deleted(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    budget = create(tenant.api, key_id=key["id"])
    tenant.api.delete(f"/budgets/{budget['id']}")

    assert tenant.api.delete(f"/keys/{key['id']}").status_code == 200


def test_a_management_key_cannot_see_another_tenants_budget(tenant, other_tenant):
    budget = create(other_tenant.api)

    assert_error(tenant.api.get(f"/budgets/{budget['id']}"), 404)
    assert budget["id"] not in tenant.api.get("/budgets").text


def test_a_management_key_cannot_change_or_delete_another_tenants_budget(tenant, other_tenant):
    budget = create(other_tenant.api)

    assert_error(tenant.api.put(f"/budgets/{budget['id']}", json=CHANGE), 404)
    assert_error(tenant.api.delete(f"/budgets/{budget['id']}"), 404)
    assert other_tenant.api.get(f"/budgets/{budget['id']}").json() == budget


def test_budgets_are_listed_newest_first_and_paged_with_a_cursor(tenant):
    created = [create(tenant.api)["id"] for _ in range(3)]

    first = tenant.api.get("/budgets", params={"limit": 2}).json()
    second = tenant.api.get("/budgets", params={"limit": 2, "cursor": first["next_cursor"]}).json()

    assert first["has_more"] is True
    assert second["has_more"] is False
    assert [b["id"] for b in first["data"] + second["data"]] == list(reversed(created))


def test_the_admin_lists_one_tenants_budgets_with_tenant_id(admin, tenant, other_tenant):
    mine, theirs = create(tenant.api), create(other_tenant.api)

    listed = admin.get("/budgets", params={"tenant_id": tenant.id}).json()["data"]

    assert [b["id"] for b in listed] == [mine["id"]]
    assert theirs["id"] not in [b["id"] for b in listed]


def test_a_retried_budget_post_with_the_same_idempotency_key_sets_one_budget(tenant):
    headers = {"Idempotency-Key": uuid.uuid4().hex}

    first = tenant.api.post("/budgets", json=BUDGET, headers=headers)
    again = tenant.api.post("/budgets", json=BUDGET, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert len(tenant.api.get("/budgets").json()["data"]) == 1
