"""Tenants over HTTP: create, read, list, change, offboard; who may do what; idempotent creation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.helpers import ensure_group, error_of, names_field
from tests.helpers import unique_name as shared_unique_name


def unique_name(prefix: str = "t") -> str:
    return shared_unique_name(prefix)


def all_tenant_ids(api: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        r = api.get("/tenants", params=params)
        assert r.status_code == 200, r.text
        ids += [t["id"] for t in r.json()["data"]]
        if not r.json()["has_more"]:
            return ids
        cursor = r.json()["next_cursor"]


# -- create ------------------------------------------------------------------------------


def test_creating_a_tenant_answers_201_with_the_given_fields(admin):
    name = unique_name()
    ensure_group(admin, "gold")
    r = admin.post(
        "/tenants", json={"name": name, "weight": 200, "tokens_per_minute": 100000, "group": "gold"}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    uuid.UUID(body["id"])
    assert body["name"] == name
    assert body["weight"] == 200
    assert body["tokens_per_minute"] == 100000
    assert body["group"] == "gold"
    assert body["status"] == "active"
    assert body["created_at"].endswith("Z")
    assert body["updated_at"].endswith("Z")


def test_a_tenant_created_with_only_a_name_gets_the_defaults(admin):
    body = admin.new_tenant()
    assert body["weight"] == 100
    assert body["tokens_per_minute"] is None
    assert body["group"] is None
    assert body["status"] == "active"


def test_a_tenant_name_already_in_use_is_a_409(admin):
    name = unique_name()
    admin.new_tenant(name=name)
    error = error_of(admin.post("/tenants", json={"name": name}), 409)
    assert error["type"] == "conflict_error"


def test_tenant_names_are_unique_regardless_of_case(admin):
    name = unique_name("acme")
    admin.new_tenant(name=name)
    error_of(admin.post("/tenants", json={"name": name.upper()}), 409)


@pytest.mark.parametrize(
    "name", ["", "has space", "-leading-dash", "x" * 64, "ünïcode", "trailing-newline\n"]
)
def test_an_invalid_tenant_name_is_a_400_naming_the_field(admin, name):
    error = error_of(admin.post("/tenants", json={"name": name}), 400)
    assert error["type"] == "invalid_request_error"
    assert names_field(error, "name")


@pytest.mark.parametrize("weight", [0, -5, 10_001, "heavy", 1.5])
def test_an_invalid_weight_is_a_400_naming_the_field(admin, weight):
    error = error_of(admin.post("/tenants", json={"name": unique_name(), "weight": weight}), 400)
    assert names_field(error, "weight")


def test_a_tenant_name_of_63_characters_is_accepted(admin):
    name = uuid.uuid4().hex + "x" * 31
    assert len(name) == 63
    assert admin.new_tenant(name=name)["name"] == name


def test_a_tenant_without_a_name_is_a_400_not_a_422(admin):
    error = error_of(admin.post("/tenants", json={"weight": 100}), 400)
    assert names_field(error, "name")


def test_a_tenant_body_that_is_not_json_is_a_400(admin):
    r = admin.post("/tenants", content=b"name=acme", headers={"Content-Type": "application/json"})
    error_of(r, 400)


def test_a_negative_quota_is_a_400_naming_the_field(admin):
    r = admin.post("/tenants", json={"name": unique_name(), "tokens_per_minute": -1})
    assert names_field(error_of(r, 400), "tokens_per_minute")


def test_an_unknown_field_in_a_tenant_body_is_a_400(admin):
    r = admin.post("/tenants", json={"name": unique_name(), "colour": "blue"})
    assert names_field(error_of(r, 400), "colour")


# -- read --------------------------------------------------------------------------------


def test_getting_a_tenant_returns_what_was_created(admin):
    created = admin.new_tenant(weight=300)
    r = admin.get(f"/tenants/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created


def test_getting_an_unknown_tenant_is_a_404(admin):
    error = error_of(admin.get(f"/tenants/{uuid.uuid4()}"), 404)
    assert error["code"] == "not_found"


def test_a_tenant_id_that_is_not_a_uuid_is_a_400(admin):
    assert names_field(error_of(admin.get("/tenants/not-a-uuid"), 400), "tenant_id")


def test_the_tenant_list_is_newest_first(admin):
    first, second, third = admin.new_tenant(), admin.new_tenant(), admin.new_tenant()
    r = admin.get("/tenants", params={"limit": 3})
    assert r.status_code == 200
    assert [t["id"] for t in r.json()["data"]] == [third["id"], second["id"], first["id"]]


def test_the_tenant_list_pages_with_a_cursor_without_gaps_or_repeats(admin):
    created = [admin.new_tenant()["id"] for _ in range(5)]
    newest_first = list(reversed(created))

    page1 = admin.get("/tenants", params={"limit": 2}).json()
    assert [t["id"] for t in page1["data"]] == newest_first[:2]
    assert page1["has_more"] is True
    assert isinstance(page1["next_cursor"], str)

    page2 = admin.get("/tenants", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert [t["id"] for t in page2["data"]] == newest_first[2:4]
    assert page2["has_more"] is True

    page3 = admin.get("/tenants", params={"limit": 2, "cursor": page2["next_cursor"]}).json()
    assert page3["data"][0]["id"] == newest_first[4]


def test_the_last_page_of_tenants_has_no_more_and_no_cursor(admin):
    admin.new_tenant()
    body = admin.get("/tenants", params={"limit": 500}).json()
    while body["has_more"]:
        body = admin.get("/tenants", params={"limit": 500, "cursor": body["next_cursor"]}).json()
    assert body["next_cursor"] is None


def test_a_malformed_cursor_is_a_400(admin):
    error = error_of(admin.get("/tenants", params={"cursor": "not-a-cursor!"}), 400)
    assert names_field(error, "cursor")


@pytest.mark.parametrize("limit", [0, 501, "many"])
def test_a_page_size_out_of_range_is_a_400(admin, limit):
    assert names_field(error_of(admin.get("/tenants", params={"limit": limit}), 400), "limit")


# -- change ------------------------------------------------------------------------------


def test_patching_the_weight_changes_it(admin):
    t = admin.new_tenant()
    r = admin.patch(f"/tenants/{t['id']}/weight", json={"weight": 500})
    assert r.status_code == 200, r.text
    assert r.json()["weight"] == 500
    assert admin.get(f"/tenants/{t['id']}").json()["weight"] == 500


def test_patching_an_invalid_weight_is_a_400_and_changes_nothing(admin):
    t = admin.new_tenant(weight=250)
    error = error_of(admin.patch(f"/tenants/{t['id']}/weight", json={"weight": 0}), 400)
    assert names_field(error, "weight")
    assert admin.get(f"/tenants/{t['id']}").json()["weight"] == 250


def test_patching_the_weight_of_an_unknown_tenant_is_a_404(admin):
    error_of(admin.patch(f"/tenants/{uuid.uuid4()}/weight", json={"weight": 5}), 404)


def test_putting_a_quota_sets_tokens_per_minute(admin):
    t = admin.new_tenant()
    r = admin.put(f"/tenants/{t['id']}/quota", json={"tokens_per_minute": 250000})
    assert r.status_code == 200, r.text
    assert r.json()["tokens_per_minute"] == 250000
    assert admin.get(f"/tenants/{t['id']}").json()["tokens_per_minute"] == 250000


def test_putting_a_null_quota_removes_it(admin):
    t = admin.new_tenant(tokens_per_minute=1000)
    r = admin.put(f"/tenants/{t['id']}/quota", json={"tokens_per_minute": None})
    assert r.status_code == 200, r.text
    assert r.json()["tokens_per_minute"] is None
    assert admin.get(f"/tenants/{t['id']}").json()["tokens_per_minute"] is None


def test_putting_a_negative_quota_is_a_400(admin):
    t = admin.new_tenant()
    r = admin.put(f"/tenants/{t['id']}/quota", json={"tokens_per_minute": -10})
    assert names_field(error_of(r, 400), "tokens_per_minute")


def test_patching_the_group_assigns_it(admin):
    t = admin.new_tenant()
    ensure_group(admin, "premium")
    r = admin.patch(f"/tenants/{t['id']}/group", json={"group": "premium"})
    assert r.status_code == 200, r.text
    assert r.json()["group"] == "premium"
    assert admin.get(f"/tenants/{t['id']}").json()["group"] == "premium"


def test_patching_a_null_group_removes_it(admin):
    t = admin.new_tenant(group=ensure_group(admin, "premium"))
    r = admin.patch(f"/tenants/{t['id']}/group", json={"group": None})
    assert r.status_code == 200, r.text
    assert r.json()["group"] is None


def test_an_invalid_group_is_a_400_naming_the_field(admin):
    t = admin.new_tenant()
    r = admin.patch(f"/tenants/{t['id']}/group", json={"group": "no spaces please"})
    assert names_field(error_of(r, 400), "group")


def test_a_change_moves_updated_at_but_not_created_at(admin):
    t = admin.new_tenant()
    changed = admin.patch(f"/tenants/{t['id']}/weight", json={"weight": 7}).json()
    assert changed["created_at"] == t["created_at"]
    assert changed["updated_at"] > t["updated_at"]


# -- offboard ----------------------------------------------------------------------------


@pytest.fixture
def offboarded(admin, tenant) -> dict[str, Any]:
    """A tenant with a router key, an instance and a budget, then offboarded."""
    router_key, router_secret = admin.new_key(tenant.id, "router")
    instance = admin.post("/instances", json={"tenant_id": tenant.id, "model_id": "llama-3.1-8b"})
    assert instance.status_code == 201, instance.text
    budget = admin.post(
        "/budgets", json={"tenant_id": tenant.id, "limit_eur": "50", "period": "monthly"}
    )
    assert budget.status_code == 201, budget.text
    r = admin.delete(f"/tenants/{tenant.id}")
    return {
        "response": r,
        "tenant": tenant,
        "router_secret": router_secret,
        "instance_id": instance.json()["id"],
        "budget_id": budget.json()["id"],
    }


def test_deleting_a_tenant_offboards_it(admin, offboarded):
    r = offboarded["response"]
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "offboarded"
    again = admin.get(f"/tenants/{offboarded['tenant'].id}")
    assert again.status_code == 200
    assert again.json()["status"] == "offboarded"


def test_the_keys_of_an_offboarded_tenant_no_longer_authenticate(admin, offboarded):
    management = offboarded["tenant"].api
    error = error_of(management.get("/tenants"), 401)
    assert error["type"] == "authentication_error"
    router = admin.as_token(offboarded["router_secret"])
    error_of(router.get("/keys"), 401)


def test_the_keys_of_an_offboarded_tenant_are_no_longer_listed(admin, offboarded):
    r = admin.get("/keys", params={"tenant_id": offboarded["tenant"].id})
    assert r.status_code == 200
    assert r.json()["data"] == []


def test_the_instances_of_an_offboarded_tenant_are_destroyed(admin, offboarded):
    r = admin.get(f"/instances/{offboarded['instance_id']}")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "destroyed"


def test_the_budgets_of_an_offboarded_tenant_are_gone(admin, offboarded):
    error_of(admin.get(f"/budgets/{offboarded['budget_id']}"), 404)


def test_offboarding_a_tenant_twice_is_a_409(admin, offboarded):
    error = error_of(admin.delete(f"/tenants/{offboarded['tenant'].id}"), 409)
    assert error["type"] == "conflict_error"


def test_an_offboarded_tenant_accepts_no_new_key(admin, offboarded):
    r = admin.post(
        f"/tenants/{offboarded['tenant'].id}/keys", json={"name": "late", "kind": "router"}
    )
    error_of(r, 409)


def test_an_offboarded_tenant_accepts_no_new_instance(admin, offboarded):
    r = admin.post(
        "/instances", json={"tenant_id": offboarded["tenant"].id, "model_id": "llama-3.1-8b"}
    )
    error_of(r, 409)


def test_an_offboarded_tenants_settings_can_no_longer_change(admin, offboarded):
    tenant_id = offboarded["tenant"].id
    error_of(admin.patch(f"/tenants/{tenant_id}/weight", json={"weight": 5}), 409)
    error_of(admin.put(f"/tenants/{tenant_id}/quota", json={"tokens_per_minute": 5}), 409)
    error_of(admin.patch(f"/tenants/{tenant_id}/group", json={"group": "late"}), 409)


def test_an_offboarded_tenant_keeps_its_name_taken(admin, offboarded):
    name = offboarded["tenant"].tenant["name"]
    error_of(admin.post("/tenants", json={"name": name}), 409)


def test_offboarding_an_unknown_tenant_is_a_404(admin):
    error_of(admin.delete(f"/tenants/{uuid.uuid4()}"), 404)


# -- who may do what ---------------------------------------------------------------------


def test_a_management_key_cannot_create_tenants(tenant):
    error = error_of(tenant.api.post("/tenants", json={"name": unique_name()}), 403)
    assert error["type"] == "permission_error"


def test_a_management_key_cannot_change_its_tenants_weight(admin, tenant):
    error_of(tenant.api.patch(f"/tenants/{tenant.id}/weight", json={"weight": 9999}), 403)
    assert admin.get(f"/tenants/{tenant.id}").json()["weight"] == 100


def test_a_management_key_cannot_change_its_tenants_quota_or_group(tenant):
    error_of(tenant.api.put(f"/tenants/{tenant.id}/quota", json={"tokens_per_minute": 1}), 403)
    error_of(tenant.api.patch(f"/tenants/{tenant.id}/group", json={"group": "vip"}), 403)


def test_a_management_key_cannot_offboard_its_own_tenant(admin, tenant):
    error_of(tenant.api.delete(f"/tenants/{tenant.id}"), 403)
    assert admin.get(f"/tenants/{tenant.id}").json()["status"] == "active"


def test_a_management_key_reads_its_own_tenant(tenant):
    r = tenant.api.get(f"/tenants/{tenant.id}")
    assert r.status_code == 200
    assert r.json()["id"] == tenant.id


def test_a_management_key_lists_only_its_own_tenant(tenant, other_tenant):
    r = tenant.api.get("/tenants")
    assert r.status_code == 200
    assert [t["id"] for t in r.json()["data"]] == [tenant.id]
    assert r.json()["has_more"] is False


def test_another_tenants_id_is_a_404_for_a_management_key(tenant, other_tenant):
    error = error_of(tenant.api.get(f"/tenants/{other_tenant.id}"), 404)
    assert other_tenant.tenant["name"] not in error["message"]


def test_a_router_key_cannot_read_tenants(admin, tenant):
    _, secret = admin.new_key(tenant.id, "router")
    router = admin.as_token(secret)
    error_of(router.get("/tenants"), 403)
    error_of(router.get(f"/tenants/{tenant.id}"), 403)


def test_listing_tenants_without_a_token_is_a_401(anonymous):
    error = error_of(anonymous.get("/tenants"), 401)
    assert error["type"] == "authentication_error"


def test_an_unknown_token_is_a_401(admin):
    error_of(admin.as_token("hp_mk_" + uuid.uuid4().hex).get("/tenants"), 401)


# -- idempotency -------------------------------------------------------------------------


def test_retrying_a_tenant_creation_with_the_same_idempotency_key_returns_the_first_result(admin):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": unique_name(), "weight": 150}
    first = admin.post("/tenants", json=body, headers=headers)
    assert first.status_code == 201, first.text
    before = all_tenant_ids(admin)

    retry = admin.post("/tenants", json=body, headers=headers)

    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert all_tenant_ids(admin) == before


def test_reusing_an_idempotency_key_with_a_different_body_is_a_409(admin):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    assert admin.post("/tenants", json={"name": unique_name()}, headers=headers).status_code == 201
    before = all_tenant_ids(admin)

    r = admin.post("/tenants", json={"name": unique_name()}, headers=headers)

    error_of(r, 409)
    assert all_tenant_ids(admin) == before


def test_a_refused_creation_leaves_its_idempotency_key_free_for_a_corrected_request(admin):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    name = unique_name()
    error_of(admin.post("/tenants", json={"name": name, "weight": 0}, headers=headers), 400)
    r = admin.post("/tenants", json={"name": name, "weight": 10}, headers=headers)
    assert r.status_code == 201, r.text


def test_without_an_idempotency_key_the_same_body_twice_is_a_duplicate(admin):
    body = {"name": unique_name()}
    assert admin.post("/tenants", json=body).status_code == 201
    error_of(admin.post("/tenants", json=body), 409)
