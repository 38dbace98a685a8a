"""Instances over HTTP: deploy, read, list, reveal the instance key, destroy (seed 000)."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import assert_error

DEPLOY = {"model_id": "llama-3.1-8b", "region": "EU", "provider": "simulated"}


def deploy(api, **fields):
    r = api.post("/instances", json={**DEPLOY, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def test_a_management_key_deploys_into_its_own_tenant_and_the_instance_starts_pending(tenant):
    r = tenant.api.post("/instances", json=DEPLOY)

    assert r.status_code == 201, r.text
    instance = r.json()
    assert instance["tenant_id"] == tenant.id
    assert instance["model_id"] == "llama-3.1-8b"
    assert instance["region"] == "EU"
    assert instance["status"] == "pending"
    assert [step["status"] for step in instance["history"]] == ["pending"]


def test_deploying_fills_in_region_provider_and_type_when_only_a_model_is_given(tenant):
    r = tenant.api.post("/instances", json={"model_id": "mistral-nemo-12b"})

    assert r.status_code == 201, r.text
    instance = r.json()
    assert (instance["region"], instance["provider"], instance["instance_type"]) == (
        "EU",
        "simulated",
        "text",
    )
    assert tenant.api.get(f"/instances/{instance['id']}").json()["model_id"] == "mistral-nemo-12b"


def test_the_admin_deploys_for_the_tenant_named_in_the_body(admin, tenant):
    r = admin.post("/instances", json={**DEPLOY, "tenant_id": tenant.id})

    assert r.status_code == 201, r.text
    assert r.json()["tenant_id"] == tenant.id
    assert r.json()["status"] == "pending"
    assert tenant.api.get(f"/instances/{r.json()['id']}").status_code == 200


def test_the_admin_deploying_without_a_tenant_id_gets_a_400_naming_tenant_id(admin):
    r = admin.post("/instances", json=DEPLOY)

    assert_error(r, 400, "tenant_id")


def test_a_management_key_naming_another_tenant_in_the_body_gets_404(tenant, other_tenant):
    r = tenant.api.post("/instances", json={**DEPLOY, "tenant_id": other_tenant.id})

    assert_error(r, 404)
    assert other_tenant.api.get("/instances").json()["data"] == []


def test_deploying_for_an_unknown_tenant_is_404(admin):
    r = admin.post("/instances", json={**DEPLOY, "tenant_id": str(uuid.uuid4())})

    assert_error(r, 404)


@pytest.mark.parametrize("model_id", ["llama 3.1 8b", "", "-leading-dash", "x" * 200])
def test_a_malformed_model_id_is_a_400_naming_model_id(tenant, model_id):
    r = tenant.api.post("/instances", json={**DEPLOY, "model_id": model_id})

    assert_error(r, 400, "model_id")
    assert tenant.api.get("/instances").json()["data"] == []


def test_a_model_missing_from_the_catalog_is_a_400_naming_model_id(tenant):
    r = tenant.api.post(
        "/instances", json={**DEPLOY, "model_id": "no-such-model-" + uuid.uuid4().hex}
    )

    assert_error(r, 400, "model_id")
    assert tenant.api.get("/instances").json()["data"] == []


def test_a_region_without_gpus_is_a_400_naming_it(tenant):
    r = tenant.api.post("/instances", json={**DEPLOY, "region": "MARS"})

    assert_error(r, 400, "MARS")
    assert tenant.api.get("/instances").json()["data"] == []


def test_a_deploy_without_a_model_id_is_a_400_naming_model_id(tenant):
    r = tenant.api.post("/instances", json={"region": "EU"})

    assert_error(r, 400, "model_id")


def test_an_unknown_field_in_a_deploy_is_a_400_naming_that_field(tenant):
    r = tenant.api.post("/instances", json={**DEPLOY, "gpu_count": 8})

    assert_error(r, 400, "gpu_count")


def test_a_deployed_instance_is_readable_with_its_status_history(tenant):
    instance = deploy(tenant.api)

    r = tenant.api.get(f"/instances/{instance['id']}")

    assert r.status_code == 200
    assert r.json()["id"] == instance["id"]
    assert r.json()["status"] == "pending"
    assert r.json()["history"][0]["at"].endswith("Z")


def test_an_unknown_instance_is_404(tenant):
    r = tenant.api.get(f"/instances/{uuid.uuid4()}")

    assert_error(r, 404)


def test_an_instance_id_that_is_not_a_uuid_is_a_400(tenant):
    r = tenant.api.get("/instances/42")

    assert_error(r, 400, "instance_id")


def test_the_list_shows_a_tenants_instances_newest_first(tenant):
    first, second = deploy(tenant.api), deploy(tenant.api)

    r = tenant.api.get("/instances")

    assert r.status_code == 200
    assert [i["id"] for i in r.json()["data"]] == [second["id"], first["id"]]
    assert r.json()["has_more"] is False


def test_the_list_pages_through_every_instance_once_with_the_cursor(tenant):
    created = [deploy(tenant.api)["id"] for _ in range(5)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = tenant.api.get("/instances", params=params).json()
        seen += [i["id"] for i in body["data"]]
        pages += 1
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        cursor = body["next_cursor"]

    assert pages == 3
    assert seen == list(reversed(created))


def test_the_admin_lists_one_tenants_instances_with_tenant_id(admin, tenant, other_tenant):
    mine, theirs = deploy(tenant.api), deploy(other_tenant.api)

    ids = [i["id"] for i in admin.get("/instances", params={"tenant_id": tenant.id}).json()["data"]]

    assert ids == [mine["id"]]
    assert theirs["id"] not in ids


def test_a_malformed_list_cursor_is_a_400(tenant):
    r = tenant.api.get("/instances", params={"cursor": "not-a-cursor"})

    assert_error(r, 400, "cursor")


@pytest.mark.parametrize("limit", [0, 501, "many"])
def test_a_page_size_out_of_range_is_a_400_naming_limit(tenant, limit):
    r = tenant.api.get("/instances", params={"limit": limit})

    assert_error(r, 400, "limit")


def test_the_instance_api_key_is_an_hp_ik_token_and_the_same_every_time(tenant):
    instance = deploy(tenant.api)

    first = tenant.api.get(f"/instances/{instance['id']}/api-key")
    second = tenant.api.get(f"/instances/{instance['id']}/api-key")

    assert first.status_code == 200, first.text
    assert list(first.json()) == ["api_key"]
    assert first.json()["api_key"].startswith("hp_ik_")
    assert first.json() == second.json()


def test_each_instance_has_its_own_api_key(tenant):
    a, b = deploy(tenant.api), deploy(tenant.api)

    key_a = tenant.api.get(f"/instances/{a['id']}/api-key").json()["api_key"]
    key_b = tenant.api.get(f"/instances/{b['id']}/api-key").json()["api_key"]

    assert key_a != key_b


def test_the_admin_reads_the_same_instance_api_key_as_the_tenant(admin, tenant):
    instance = deploy(tenant.api)

    assert (
        admin.get(f"/instances/{instance['id']}/api-key").json()
        == tenant.api.get(f"/instances/{instance['id']}/api-key").json()
    )


def test_the_instance_api_key_never_appears_in_instance_reads_or_lists(tenant):
    instance = deploy(tenant.api)
    secret = tenant.api.get(f"/instances/{instance['id']}/api-key").json()["api_key"]

    assert secret not in tenant.api.get(f"/instances/{instance['id']}").text
    assert secret not in tenant.api.get("/instances").text


def test_destroying_an_instance_answers_with_it_destroyed(tenant):
    instance = deploy(tenant.api)

    r = tenant.api.delete(f"/instances/{instance['id']}")

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "destroyed"
    assert [s["status"] for s in r.json()["history"]] == ["pending", "destroyed"]


def test_a_destroyed_instance_stays_readable_and_listed(tenant):
    instance = deploy(tenant.api)
    tenant.api.delete(f"/instances/{instance['id']}")

    assert tenant.api.get(f"/instances/{instance['id']}").json()["status"] == "destroyed"
    listed = {i["id"]: i["status"] for i in tenant.api.get("/instances").json()["data"]}
    assert listed[instance["id"]] == "destroyed"


def test_destroying_an_instance_twice_is_a_409_conflict(tenant):
    instance = deploy(tenant.api)
    tenant.api.delete(f"/instances/{instance['id']}")

    r = tenant.api.delete(f"/instances/{instance['id']}")

    assert_error(r, 409)
    assert r.json()["error"]["type"] == "conflict_error"
    assert "destroyed" in r.json()["error"]["message"]


def test_destroying_an_unknown_instance_is_404(tenant):
    r = tenant.api.delete(f"/instances/{uuid.uuid4()}")

    assert_error(r, 404)


def test_a_retried_deploy_with_the_same_idempotency_key_returns_the_first_instance(tenant):
    headers = {"Idempotency-Key": uuid.uuid4().hex}

    first = tenant.api.post("/instances", json=DEPLOY, headers=headers)
    again = tenant.api.post("/instances", json=DEPLOY, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert [i["id"] for i in tenant.api.get("/instances").json()["data"]] == [first.json()["id"]]


def test_reusing_an_idempotency_key_with_another_body_is_a_409(tenant):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    tenant.api.post("/instances", json=DEPLOY, headers=headers)

    r = tenant.api.post(
        "/instances", json={**DEPLOY, "model_id": "mistral-nemo-12b"}, headers=headers
    )

    assert_error(r, 409)
    assert len(tenant.api.get("/instances").json()["data"]) == 1


def test_different_idempotency_keys_deploy_different_instances(tenant):
    a = tenant.api.post(
        "/instances", json=DEPLOY, headers={"Idempotency-Key": "a-" + uuid.uuid4().hex}
    )
    b = tenant.api.post(
        "/instances", json=DEPLOY, headers={"Idempotency-Key": "b-" + uuid.uuid4().hex}
    )

    assert a.json()["id"] != b.json()["id"]
    assert len(tenant.api.get("/instances").json()["data"]) == 2


def test_the_same_idempotency_key_from_two_tenants_deploys_for_each(tenant, other_tenant):
    headers = {"Idempotency-Key": uuid.uuid4().hex}

    mine = tenant.api.post("/instances", json=DEPLOY, headers=headers)
    theirs = other_tenant.api.post("/instances", json=DEPLOY, headers=headers)

    assert mine.json()["tenant_id"] == tenant.id
    assert theirs.json()["tenant_id"] == other_tenant.id


def test_a_failed_deploy_does_not_use_up_its_idempotency_key(tenant):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    bad = tenant.api.post("/instances", json={**DEPLOY, "model_id": "bad id"}, headers=headers)
    assert bad.status_code == 400

    r = tenant.api.post("/instances", json={**DEPLOY, "model_id": "bad id"}, headers=headers)

    assert r.status_code == 400
    assert tenant.api.get("/instances").json()["data"] == []


def test_an_offboarded_tenant_cannot_deploy_a_new_instance(admin):
    t = admin.new_tenant()
    assert admin.delete(f"/tenants/{t['id']}").status_code == 200

    r = admin.post("/instances", json={**DEPLOY, "tenant_id": t["id"]})

    assert_error(r, 409, "offboarded")
    assert admin.get("/instances", params={"tenant_id": t["id"]}).json()["data"] == []


def test_offboarding_a_tenant_destroys_its_instances(admin, tenant):
    instance = deploy(tenant.api)

    admin.delete(f"/tenants/{tenant.id}")

    assert admin.get(f"/instances/{instance['id']}").json()["status"] == "destroyed"
