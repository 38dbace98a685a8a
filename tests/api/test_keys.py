"""API keys over HTTP: issue (secret shown once), use, restrict, disable, delete, list."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import error_of, names_field
from tests.helpers import unique_name as shared_unique_name


def unique_name(prefix: str = "k") -> str:
    return shared_unique_name(prefix)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def works(api: Any) -> bool:
    """Whether a management token is accepted (any 2xx on a cheap route)."""
    return api.get("/keys", params={"limit": 1}).status_code == 200


# -- issue -------------------------------------------------------------------------------


def test_issuing_a_key_answers_201_with_the_key_and_its_secret(admin, tenant):
    name = unique_name()
    r = admin.post(f"/tenants/{tenant.id}/keys", json={"name": name, "kind": "management"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"key", "secret"}
    key = body["key"]
    uuid.UUID(key["id"])
    assert key["tenant_id"] == tenant.id
    assert key["name"] == name
    assert key["kind"] == "management"
    assert key["disabled"] is False
    assert key["created_at"].endswith("Z")
    assert "secret" not in key and "token_hash" not in key


def test_the_secret_starts_with_the_keys_display_prefix(admin, tenant):
    key, secret = admin.new_key(tenant.id, "router")
    assert key["key_prefix"]
    assert secret.startswith(key["key_prefix"])
    assert len(secret) > len(key["key_prefix"]) + 16


def test_a_key_issued_without_options_has_no_restrictions(admin, tenant):
    key, _ = admin.new_key(tenant.id, "management")
    assert key["allowed_models"] is None
    assert key["sovereignty_mode"] is False
    assert key["expires_at"] is None
    assert key["ip_allowlist"] == []


def test_a_newly_issued_key_authenticates(admin, tenant):
    _, secret = admin.new_key(tenant.id, "management")
    r = admin.as_token(secret).get(f"/tenants/{tenant.id}")
    assert r.status_code == 200, r.text


def test_a_management_key_issues_keys_for_its_own_tenant(tenant):
    r = tenant.api.post(f"/tenants/{tenant.id}/keys", json={"name": unique_name()})
    assert r.status_code == 201, r.text
    assert r.json()["key"]["tenant_id"] == tenant.id


def test_a_management_key_cannot_issue_keys_for_another_tenant(tenant, other_tenant):
    r = tenant.api.post(f"/tenants/{other_tenant.id}/keys", json={"name": unique_name()})
    error_of(r, 404)


def test_issuing_a_key_for_an_unknown_tenant_is_a_404(admin):
    error_of(admin.post(f"/tenants/{uuid.uuid4()}/keys", json={"name": unique_name()}), 404)


def test_an_unknown_kind_is_a_400_naming_the_field(admin, tenant):
    r = admin.post(f"/tenants/{tenant.id}/keys", json={"name": unique_name(), "kind": "root"})
    assert names_field(error_of(r, 400), "kind")


@pytest.mark.parametrize("name", ["", " leading-space", "x" * 64, "semi;colon", "newline\n"])
def test_an_invalid_key_name_is_a_400_naming_the_field(admin, tenant, name):
    r = admin.post(f"/tenants/{tenant.id}/keys", json={"name": name})
    assert names_field(error_of(r, 400), "name")


# -- secrets are shown once --------------------------------------------------------------


def test_the_secret_never_appears_when_reading_the_key(admin, tenant):
    key, secret = admin.new_key(tenant.id, "router")
    r = admin.get(f"/keys/{key['id']}")
    assert r.status_code == 200
    assert r.json()["id"] == key["id"]
    assert secret not in r.text
    assert "secret" not in r.json()


def test_the_secret_never_appears_in_key_lists(admin, tenant):
    key, secret = admin.new_key(tenant.id, "router")
    for api in (admin, tenant.api):
        r = api.get("/keys", params={"tenant_id": tenant.id})
        assert r.status_code == 200
        assert key["id"] in [k["id"] for k in r.json()["data"]]
        assert secret not in r.text
        assert all("secret" not in k for k in r.json()["data"])


def test_the_secret_never_appears_in_later_responses(admin, tenant):
    key, secret = admin.new_key(tenant.id, "router")
    responses = [
        admin.put(f"/keys/{key['id']}/disabled", json={"disabled": True}),
        admin.put(f"/keys/{key['id']}/disabled", json={"disabled": False}),
        admin.get(f"/tenants/{tenant.id}"),
        admin.get("/keys"),
        admin.delete(f"/keys/{key['id']}"),
    ]
    for r in responses:
        assert r.status_code == 200, r.text
        assert secret not in r.text


# -- kinds -------------------------------------------------------------------------------


def test_a_key_issued_as_router_is_a_router_key(admin, tenant):
    key, secret = admin.new_key(tenant.id, "router")
    assert key["kind"] == "router"
    assert admin.get(f"/keys/{key['id']}").json()["kind"] == "router"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/tenants"),
        ("GET", "/keys"),
        ("GET", "/instances"),
        ("GET", "/budgets"),
    ],
)
def test_a_router_key_is_refused_on_management_routes(admin, tenant, method, path):
    _, secret = admin.new_key(tenant.id, "router")
    error = error_of(admin.as_token(secret).request(method, path), 403)
    assert error["type"] == "permission_error"


def test_a_router_key_cannot_issue_keys(admin, tenant):
    _, secret = admin.new_key(tenant.id, "router")
    r = admin.as_token(secret).post(f"/tenants/{tenant.id}/keys", json={"name": unique_name()})
    error_of(r, 403)


# -- names -------------------------------------------------------------------------------


def test_a_key_name_already_used_in_the_tenant_is_a_409(admin, tenant):
    name = unique_name()
    admin.new_key(tenant.id, "router", name=name)
    r = admin.post(f"/tenants/{tenant.id}/keys", json={"name": name, "kind": "management"})
    assert error_of(r, 409)["type"] == "conflict_error"


def test_key_names_are_unique_in_a_tenant_regardless_of_case(admin, tenant):
    name = unique_name("prod")
    admin.new_key(tenant.id, "router", name=name)
    error_of(admin.post(f"/tenants/{tenant.id}/keys", json={"name": name.upper()}), 409)


def test_the_same_key_name_may_be_used_in_another_tenant(admin, tenant, other_tenant):
    name = unique_name()
    admin.new_key(tenant.id, "router", name=name)
    key, _ = admin.new_key(other_tenant.id, "router", name=name)
    assert key["name"] == name
    assert key["tenant_id"] == other_tenant.id


def test_a_key_name_can_be_reused_after_the_key_is_deleted(admin, tenant):
    name = unique_name()
    old, _ = admin.new_key(tenant.id, "router", name=name)
    assert admin.delete(f"/keys/{old['id']}").status_code == 200
    new, _ = admin.new_key(tenant.id, "router", name=name)
    assert new["id"] != old["id"]
    assert new["name"] == name


# -- restrictions ------------------------------------------------------------------------


def test_key_restrictions_round_trip(admin, tenant):
    expires = "2031-05-06T07:08:09Z"
    key, _ = admin.new_key(
        tenant.id,
        "router",
        allowed_models=["llama-3-8b", "mistral-7b"],
        sovereignty_mode=True,
        expires_at=expires,
        ip_allowlist=["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"],
    )
    fetched = admin.get(f"/keys/{key['id']}").json()
    for shown in (key, fetched):
        assert shown["allowed_models"] == ["llama-3-8b", "mistral-7b"]
        assert shown["sovereignty_mode"] is True
        assert shown["expires_at"] == expires
        assert shown["ip_allowlist"] == ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"]


def test_the_key_in_the_creation_response_is_the_key_a_read_returns(admin, tenant):
    # The response is built from the key as saved, without waiting for the read model.
    key, _ = admin.new_key(
        tenant.id,
        "router",
        allowed_models=["llama-3-8b"],
        sovereignty_mode=True,
        expires_at="2031-05-06T09:08:09+02:00",
        ip_allowlist=["192.168.1.7", "2001:db8::/32"],
    )
    plain, _ = admin.new_key(tenant.id, "management")

    assert admin.get(f"/keys/{key['id']}").json() == key
    assert admin.get(f"/keys/{plain['id']}").json() == plain


def test_an_expiry_with_an_offset_is_shown_in_utc(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router", expires_at="2031-05-06T09:08:09+02:00")
    assert key["expires_at"] == "2031-05-06T07:08:09Z"


def test_a_single_address_in_the_ip_allowlist_is_shown_as_a_32_network(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router", ip_allowlist=["192.168.1.7"])
    assert key["ip_allowlist"] == ["192.168.1.7/32"]


def test_an_empty_allowed_models_list_is_kept_apart_from_no_list(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router", allowed_models=[])
    assert admin.get(f"/keys/{key['id']}").json()["allowed_models"] == []


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "not-an-ip", "300.1.1.1", ""])
def test_a_bad_cidr_in_the_ip_allowlist_is_a_400(admin, tenant, cidr):
    r = admin.post(
        f"/tenants/{tenant.id}/keys", json={"name": unique_name(), "ip_allowlist": [cidr]}
    )
    assert names_field(error_of(r, 400), "ip_allowlist")


def test_an_expiry_in_the_past_is_a_400(admin, tenant):
    past = iso(datetime.now(UTC) - timedelta(minutes=1))
    r = admin.post(f"/tenants/{tenant.id}/keys", json={"name": unique_name(), "expires_at": past})
    assert names_field(error_of(r, 400), "expires_at")


def test_an_expiry_that_is_not_a_date_is_a_400(admin, tenant):
    r = admin.post(
        f"/tenants/{tenant.id}/keys", json={"name": unique_name(), "expires_at": "tomorrow"}
    )
    assert names_field(error_of(r, 400), "expires_at")


def test_a_key_stops_authenticating_once_it_has_expired(admin, tenant):
    expires = datetime.now(UTC) + timedelta(seconds=2)
    _, secret = admin.new_key(tenant.id, "management", expires_at=iso(expires))
    api = admin.as_token(secret)
    assert works(api)

    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)

    error = error_of(api.get("/keys"), 401)
    assert error["type"] == "authentication_error"


def test_a_request_from_outside_the_ip_allowlist_is_a_403(admin, tenant):
    _, secret = admin.new_key(tenant.id, "management", ip_allowlist=["10.0.0.0/8"])
    error = error_of(admin.as_token(secret).get("/keys"), 403)
    assert error["type"] == "permission_error"


def test_a_request_from_inside_the_ip_allowlist_is_served(admin, tenant):
    _, secret = admin.new_key(tenant.id, "management", ip_allowlist=["127.0.0.1/32"])
    assert works(admin.as_token(secret))


# -- disable -----------------------------------------------------------------------------


def test_a_disabled_key_gets_401(admin, tenant):
    key, secret = admin.new_key(tenant.id, "management")
    r = admin.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is True
    error_of(admin.as_token(secret).get("/keys"), 401)


def test_a_key_in_use_gets_401_as_soon_as_it_is_disabled(admin, tenant):
    # The server keeps keys it has authenticated in memory; disabling must still win at once.
    key, secret = admin.new_key(tenant.id, "management")
    user = admin.as_token(secret)
    assert user.get(f"/keys/{key['id']}").status_code == 200
    assert user.get(f"/keys/{key['id']}").status_code == 200
    admin.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    error_of(user.get(f"/keys/{key['id']}"), 401)
    admin.put(f"/keys/{key['id']}/disabled", json={"disabled": False})
    assert user.get(f"/keys/{key['id']}").status_code == 200


def test_a_re_enabled_key_works_again(admin, tenant):
    key, secret = admin.new_key(tenant.id, "management")
    admin.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    r = admin.put(f"/keys/{key['id']}/disabled", json={"disabled": False})
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is False
    assert works(admin.as_token(secret))


def test_a_disabled_key_is_shown_disabled_in_the_list(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    admin.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    listed = admin.get("/keys", params={"tenant_id": tenant.id}).json()["data"]
    assert {k["id"]: k["disabled"] for k in listed}[key["id"]] is True


def test_disabled_must_be_a_boolean(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    r = admin.put(f"/keys/{key['id']}/disabled", json={"disabled": "maybe"})
    assert names_field(error_of(r, 400), "disabled")


def test_a_key_cannot_disable_itself(tenant):
    r = tenant.api.put(f"/keys/{tenant.key['id']}/disabled", json={"disabled": True})
    assert error_of(r, 409)["type"] == "conflict_error"
    assert works(tenant.api)


def test_a_management_key_disables_another_key_of_its_tenant(admin, tenant):
    key, secret = admin.new_key(tenant.id, "router")
    r = tenant.api.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is True


# -- delete ------------------------------------------------------------------------------


def test_a_deleted_key_gets_401(admin, tenant):
    key, secret = admin.new_key(tenant.id, "management")
    r = admin.delete(f"/keys/{key['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": key["id"], "deleted": True}
    error_of(admin.as_token(secret).get("/keys"), 401)


def test_a_deleted_key_cannot_be_brought_back_by_enabling_it(admin, tenant):
    key, secret = admin.new_key(tenant.id, "management")
    admin.delete(f"/keys/{key['id']}")
    r = admin.put(f"/keys/{key['id']}/disabled", json={"disabled": False})
    assert r.status_code in (404, 409), r.text
    error_of(r, r.status_code)
    error_of(admin.as_token(secret).get("/keys"), 401)


def test_a_deleted_key_is_not_found(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    admin.delete(f"/keys/{key['id']}")
    error_of(admin.get(f"/keys/{key['id']}"), 404)


def test_a_deleted_key_is_no_longer_listed(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    admin.delete(f"/keys/{key['id']}")
    listed = admin.get("/keys", params={"tenant_id": tenant.id}).json()["data"]
    assert key["id"] not in [k["id"] for k in listed]


def test_deleting_a_key_twice_is_a_404(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    assert admin.delete(f"/keys/{key['id']}").status_code == 200
    error_of(admin.delete(f"/keys/{key['id']}"), 404)


def test_deleting_an_unknown_key_is_a_404(admin):
    error_of(admin.delete(f"/keys/{uuid.uuid4()}"), 404)


def test_a_key_cannot_delete_itself(tenant):
    r = tenant.api.delete(f"/keys/{tenant.key['id']}")
    assert error_of(r, 409)["type"] == "conflict_error"
    assert works(tenant.api)


def test_a_management_key_deletes_another_key_of_its_tenant(admin, tenant):
    key, secret = admin.new_key(tenant.id, "router")
    assert tenant.api.delete(f"/keys/{key['id']}").status_code == 200
    error_of(admin.as_token(secret).get("/keys"), 401)


def test_deleting_a_key_deletes_its_budgets(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    budget = admin.post(
        "/budgets",
        json={"tenant_id": tenant.id, "key_id": key["id"], "limit_eur": "25", "period": "daily"},
    )
    assert budget.status_code == 201, budget.text
    budget_id = budget.json()["id"]

    assert admin.delete(f"/keys/{key['id']}").status_code == 200

    error_of(admin.get(f"/budgets/{budget_id}"), 404)


def test_deleting_a_key_keeps_the_tenants_own_budget(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    budget = admin.post("/budgets", json={"tenant_id": tenant.id, "limit_eur": "100"})
    assert budget.status_code == 201, budget.text
    admin.delete(f"/keys/{key['id']}")
    assert admin.get(f"/budgets/{budget.json()['id']}").status_code == 200


# -- tenant isolation --------------------------------------------------------------------


def test_another_tenants_key_is_a_404_for_a_management_key(tenant, other_tenant):
    error_of(tenant.api.get(f"/keys/{other_tenant.key['id']}"), 404)


def test_a_management_key_cannot_disable_or_delete_another_tenants_key(tenant, other_tenant):
    target = other_tenant.key["id"]
    error_of(tenant.api.put(f"/keys/{target}/disabled", json={"disabled": True}), 404)
    error_of(tenant.api.delete(f"/keys/{target}"), 404)
    assert works(other_tenant.api)


# -- lists -------------------------------------------------------------------------------


def test_the_admin_lists_one_tenants_keys_with_tenant_id(admin, tenant, other_tenant):
    mine, _ = admin.new_key(tenant.id, "router")
    r = admin.get("/keys", params={"tenant_id": tenant.id})
    assert r.status_code == 200
    listed = r.json()["data"]
    assert {k["id"] for k in listed} == {tenant.key["id"], mine["id"]}
    assert {k["tenant_id"] for k in listed} == {tenant.id}


def test_the_admin_lists_every_tenants_keys_without_tenant_id(admin, tenant, other_tenant):
    ids = {k["id"] for k in admin.get("/keys", params={"limit": 500}).json()["data"]}
    assert {tenant.key["id"], other_tenant.key["id"]} <= ids


def test_keys_are_listed_newest_first_and_page_with_a_cursor(admin, tenant):
    issued = [tenant.key["id"]] + [admin.new_key(tenant.id, "router")[0]["id"] for _ in range(3)]
    newest_first = list(reversed(issued))

    page1 = admin.get("/keys", params={"tenant_id": tenant.id, "limit": 3}).json()
    assert [k["id"] for k in page1["data"]] == newest_first[:3]
    assert page1["has_more"] is True

    page2 = admin.get(
        "/keys", params={"tenant_id": tenant.id, "limit": 3, "cursor": page1["next_cursor"]}
    ).json()
    assert [k["id"] for k in page2["data"]] == newest_first[3:]
    assert page2["has_more"] is False
    assert page2["next_cursor"] is None


def test_a_malformed_key_cursor_is_a_400(admin):
    assert names_field(error_of(admin.get("/keys", params={"cursor": "%%%"}), 400), "cursor")


def test_a_management_key_lists_only_its_own_tenants_keys(tenant, other_tenant):
    listed = tenant.api.get("/keys").json()["data"]
    assert [k["id"] for k in listed] == [tenant.key["id"]]


def test_a_management_key_asking_for_another_tenants_keys_gets_an_empty_list(tenant, other_tenant):
    r = tenant.api.get("/keys", params={"tenant_id": other_tenant.id})
    assert r.status_code == 200
    assert r.json() == {"data": [], "has_more": False, "next_cursor": None}


# -- idempotency -------------------------------------------------------------------------


def test_retrying_a_key_issue_with_the_same_idempotency_key_returns_the_same_key_and_secret(
    admin, tenant
):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": unique_name(), "kind": "router"}
    first = admin.post(f"/tenants/{tenant.id}/keys", json=body, headers=headers)
    assert first.status_code == 201, first.text

    retry = admin.post(f"/tenants/{tenant.id}/keys", json=body, headers=headers)

    assert retry.status_code == 201, retry.text
    assert retry.json()["key"]["id"] == first.json()["key"]["id"]
    assert retry.json()["secret"] == first.json()["secret"]


def test_retrying_a_key_issue_with_the_same_idempotency_key_issues_only_one_key(admin, tenant):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": unique_name(), "kind": "router"}
    for _ in range(3):
        assert (
            admin.post(f"/tenants/{tenant.id}/keys", json=body, headers=headers).status_code == 201
        )
    listed = admin.get("/keys", params={"tenant_id": tenant.id}).json()["data"]
    assert [k["name"] for k in listed].count(body["name"]) == 1
    assert len(listed) == 2  # the fixture's management key and this one


def test_the_same_idempotency_key_for_another_tenant_is_a_409(admin, tenant, other_tenant):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": unique_name(), "kind": "router"}
    assert admin.post(f"/tenants/{tenant.id}/keys", json=body, headers=headers).status_code == 201
    r = admin.post(f"/tenants/{other_tenant.id}/keys", json=body, headers=headers)
    error_of(r, 409)
    assert admin.get("/keys", params={"tenant_id": other_tenant.id}).json()["data"] == [
        other_tenant.key
    ]


def test_a_keys_rpm_limit_is_kept_and_shown_wherever_the_key_is(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router", rpm_limit=120)

    assert key["rpm_limit"] == 120
    assert admin.get(f"/keys/{key['id']}").json()["rpm_limit"] == 120
    listed = admin.get("/keys", params={"tenant_id": tenant.id}).json()["data"]
    assert {k["id"]: k["rpm_limit"] for k in listed}[key["id"]] == 120


def test_a_key_issued_without_an_rpm_limit_has_none(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")

    assert key["rpm_limit"] is None
    assert admin.get(f"/keys/{key['id']}").json()["rpm_limit"] is None


@pytest.mark.parametrize("rpm_limit", [0, -1, 10**9 + 1, "60", 1.5, True])
def test_an_rpm_limit_that_is_not_a_positive_whole_number_is_a_400(admin, tenant, rpm_limit):
    body = {"name": "rpm", "kind": "router", "rpm_limit": rpm_limit}
    r = admin.post(f"/tenants/{tenant.id}/keys", json=body)

    assert names_field(error_of(r, 400), "rpm_limit")


def test_a_keys_rpm_limit_is_audited_with_its_issue(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router", rpm_limit=30)

    log = admin.get("/audit", params={"target_id": key["id"]}).json()["data"]
    assert [(e["action"], e["changes"]["rpm_limit"]) for e in log] == [("key.issued", 30)]
