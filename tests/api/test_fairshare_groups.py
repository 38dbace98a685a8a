"""Fair-share groups (seed 004, issue 19): created, listed and weighted by the operator; a tenant
can only be put in a group that exists."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import assert_error, error_of, names_field, unique_name


def new_group(admin: Any, weight: int = 3) -> dict[str, Any]:
    r = admin.post("/fairshare/groups", json={"name": unique_name("g"), "weight": weight})
    assert r.status_code == 201, r.text
    return r.json()


def test_a_created_group_is_answered_201_and_listed(admin):
    name = unique_name("gold")
    r = admin.post("/fairshare/groups", json={"name": name, "weight": 300})

    assert r.status_code == 201, r.text
    group = r.json()
    assert (group["name"], group["weight"]) == (name, 300)
    assert group["created_at"].endswith("Z")
    listed = admin.get("/fairshare/groups", params={"limit": 500}).json()["data"]
    assert group in listed
    assert admin.get(f"/fairshare/groups/{name}").json() == group


def test_a_group_without_a_weight_weighs_100(admin):
    r = admin.post("/fairshare/groups", json={"name": unique_name("g")})

    assert r.status_code == 201, r.text
    assert r.json()["weight"] == 100


def test_groups_are_listed_newest_first_page_by_page(admin):
    a, b = new_group(admin), new_group(admin)

    first = admin.get("/fairshare/groups", params={"limit": 1}).json()
    assert first["has_more"] and first["data"][0]["id"] == b["id"]
    second = admin.get("/fairshare/groups", params={"limit": 1, "cursor": first["next_cursor"]})
    assert second.json()["data"][0]["id"] == a["id"]


def test_a_group_name_already_in_use_is_a_409(admin):
    group = new_group(admin)

    r = admin.post("/fairshare/groups", json={"name": group["name"], "weight": 1})
    error_of(r, 409)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "no spaces", "weight": 1}, "name"),
        ({"name": "", "weight": 1}, "name"),
        ({"name": "x" * 64, "weight": 1}, "name"),
        ({"name": "ok-name", "weight": 0}, "weight"),
        ({"name": "ok-name", "weight": 10_001}, "weight"),
        ({"name": "ok-name", "weight": "3"}, "weight"),
        ({"weight": 3}, "name"),
    ],
)
def test_a_malformed_group_is_a_400_naming_the_field(admin, body, field):
    assert names_field(error_of(admin.post("/fairshare/groups", json=body), 400), field)


def test_changing_a_groups_weight_is_answered_with_the_group_and_audited(admin):
    group = new_group(admin, weight=2)

    r = admin.patch(f"/fairshare/groups/{group['name']}/weight", json={"weight": 9})

    assert r.status_code == 200, r.text
    assert r.json()["weight"] == 9 and r.json()["id"] == group["id"]
    log = admin.get("/audit", params={"target_id": group["id"]}).json()["data"]
    assert [(e["action"], e["changes"].get("weight")) for e in log] == [
        ("fairshare_group.weight_changed", 9),
        ("fairshare_group.created", 2),
    ]
    assert all(e["actor"] == "admin" and e["target_type"] == "fairshare_group" for e in log)


def test_the_weight_of_a_group_that_does_not_exist_is_a_404(admin):
    error_of(
        admin.patch(f"/fairshare/groups/{unique_name('nope')}/weight", json={"weight": 2}), 404
    )
    error_of(admin.get(f"/fairshare/groups/{unique_name('nope')}"), 404)


def test_an_invalid_weight_for_a_group_is_a_400(admin):
    group = new_group(admin)

    r = admin.patch(f"/fairshare/groups/{group['name']}/weight", json={"weight": -5})
    assert names_field(error_of(r, 400), "weight")


def test_a_tenant_key_may_not_create_list_or_weigh_groups(admin, tenant):
    group = new_group(admin)

    error_of(tenant.api.post("/fairshare/groups", json={"name": unique_name("g")}), 403)
    error_of(tenant.api.get("/fairshare/groups"), 403)
    error_of(tenant.api.patch(f"/fairshare/groups/{group['name']}/weight", json={"weight": 1}), 403)


def test_a_tenant_can_be_assigned_to_a_group_that_exists(admin):
    group = new_group(admin)
    t = admin.new_tenant()

    r = admin.patch(f"/tenants/{t['id']}/group", json={"group": group["name"]})

    assert r.status_code == 200, r.text
    assert r.json()["group"] == group["name"]


def test_assigning_a_tenant_to_a_group_that_does_not_exist_is_a_404(admin):
    t = admin.new_tenant()

    error_of(admin.patch(f"/tenants/{t['id']}/group", json={"group": unique_name("ghost")}), 404)
    assert admin.get(f"/tenants/{t['id']}").json()["group"] is None


def test_creating_a_tenant_in_a_group_that_does_not_exist_is_a_404(admin):
    name = unique_name("t")
    r = admin.post("/tenants", json={"name": name, "group": unique_name("ghost")})

    error_of(r, 404)
    # Nothing was created: the name is still free.
    assert admin.post("/tenants", json={"name": name}).status_code == 201


def test_group_names_are_matched_exactly(admin):
    group = new_group(admin)
    t = admin.new_tenant()

    r = admin.patch(f"/tenants/{t['id']}/group", json={"group": group["name"].upper()})
    assert_error(r, 404)


def test_the_read_model_gives_a_scheduler_every_groups_weight_by_name(admin, container):
    from projections.readmodels import fairshare

    group = new_group(admin, weight=4)
    admin.patch(f"/fairshare/groups/{group['name']}/weight", json={"weight": 5})

    with container.gate.reading("fairshare") as curs:
        assert fairshare.group_weights(curs)[group["name"]] == 5
