"""BYOK: a tenant's own upstream key as a logical instance; the key never comes back out."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from tests.helpers import error_of, names_field


def external_key() -> str:
    return "sk-proj-" + uuid.uuid4().hex + "WXYZ"


def attach(api: Any, **fields: Any) -> dict[str, Any]:
    body = {"name": "OpenAI prod", "upstream": "openai", "external_key": external_key(), **fields}
    r = api.post("/byok", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_attaching_an_upstream_shows_vendor_label_last_four_and_active(tenant):
    secret = external_key()
    r = tenant.api.post(
        "/byok", json={"name": "Claude team", "upstream": "anthropic", "external_key": secret}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["vendor"], body["label"], body["key_last4"]) == (
        "anthropic",
        "Claude team",
        "WXYZ",
    )
    assert body["is_active"] is True and body["tenant_id"] == tenant.id
    assert secret not in r.text


def test_the_list_shows_upstreams_newest_first_without_their_keys(tenant):
    secrets = [external_key() for _ in range(3)]
    ids = [
        attach(tenant.api, name=f"key {i}", upstream="mistral", external_key=s)["id"]
        for i, s in enumerate(secrets)
    ]
    r = tenant.api.get("/byok")
    assert r.status_code == 200, r.text
    assert [u["id"] for u in r.json()["data"]] == ids[::-1]
    assert {"vendor", "label", "is_active", "created_at", "key_last4"} <= r.json()["data"][0].keys()
    assert not any(s in r.text for s in secrets)


def test_an_upstream_is_an_instance_of_kind_byok_running_at_its_vendor(tenant):
    upstream = attach(tenant.api, upstream="deepseek")
    instance = tenant.api.get(f"/instances/{upstream['id']}").json()
    assert (instance["kind"], instance["status"], instance["provider"]) == (
        "byok",
        "running",
        "deepseek",
    )
    assert instance["endpoint_url"] == "https://api.deepseek.com/v1"
    assert instance["cost_eur"] == "0.00"
    listed = tenant.api.get("/instances").json()["data"]
    assert upstream["id"] in [i["id"] for i in listed]


def test_the_external_key_is_in_no_event_no_response_no_audit_entry_and_no_log(
    tenant, container, caplog
):
    secret = external_key()
    with caplog.at_level(logging.DEBUG):
        r = tenant.api.post(
            "/byok", json={"name": "prod", "upstream": "openai", "external_key": secret}
        )
        upstream_id = r.json()["id"]
        responses = [
            r,
            tenant.api.get("/byok"),
            tenant.api.get(f"/byok/{upstream_id}"),
            tenant.api.get(f"/instances/{upstream_id}"),
            tenant.api.get("/instances"),
            tenant.api.get("/audit", params={"target_id": upstream_id}),
            tenant.api.delete(f"/byok/{upstream_id}"),
        ]
    assert all(secret not in x.text for x in responses)
    assert all(secret not in record.getMessage() for record in caplog.records)
    recorder = container.store.recorder
    table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
    with container.pool.connection() as conn:
        hits = conn.execute(
            f"SELECT count(*) AS n FROM {table} WHERE position(%s::bytea IN state) > 0",
            (secret.encode(),),
        ).fetchone()["n"]
        stored = conn.execute(
            f"SELECT count(*) AS n FROM {table} WHERE originator_id = %s", (upstream_id,)
        ).fetchone()["n"]
    assert stored == 2 and hits == 0


def test_an_upstream_outside_the_list_is_a_400_naming_upstream(tenant):
    r = tenant.api.post(
        "/byok", json={"name": "x", "upstream": "cohere", "external_key": external_key()}
    )
    assert names_field(error_of(r, 400), "upstream")


@pytest.mark.parametrize("missing", ["name", "upstream", "external_key"])
def test_a_missing_field_is_a_400_naming_it(tenant, missing):
    body = {"name": "x", "upstream": "openai", "external_key": external_key()}
    del body[missing]
    assert names_field(error_of(tenant.api.post("/byok", json=body), 400), missing)


def test_a_malformed_external_key_is_a_400_that_does_not_repeat_it(tenant):
    bad = "sk short"
    r = tenant.api.post("/byok", json={"name": "x", "upstream": "openai", "external_key": bad})
    error = error_of(r, 400)
    assert names_field(error, "external_key") and bad not in r.text


def test_an_upstreams_instance_key_and_deploy_operations_are_refused(tenant):
    upstream = attach(tenant.api)
    for path in ("test", "retry", "refresh"):
        error = error_of(tenant.api.post(f"/instances/{upstream['id']}/{path}"), 409)
        assert "BYOK" in error["message"]
    error_of(tenant.api.get(f"/instances/{upstream['id']}/api-key"), 409)
    error_of(tenant.api.get(f"/instances/{upstream['id']}/logs"), 409)


def test_deleting_an_upstream_deactivates_it_for_good(tenant):
    upstream = attach(tenant.api)
    r = tenant.api.delete(f"/byok/{upstream['id']}")
    assert r.status_code == 200 and r.json()["is_active"] is False, r.text
    assert tenant.api.get(f"/byok/{upstream['id']}").json()["is_active"] is False
    error_of(tenant.api.delete(f"/byok/{upstream['id']}"), 409)


def test_another_tenant_can_neither_see_nor_delete_an_upstream(tenant, other_tenant):
    upstream = attach(tenant.api)
    error_of(other_tenant.api.get(f"/byok/{upstream['id']}"), 404)
    error_of(other_tenant.api.delete(f"/byok/{upstream['id']}"), 404)
    assert upstream["id"] not in [u["id"] for u in other_tenant.api.get("/byok").json()["data"]]


def test_a_gpu_instance_is_not_an_upstream(tenant):
    r = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    error_of(tenant.api.get(f"/byok/{r.json()['id']}"), 404)
    error_of(tenant.api.delete(f"/byok/{r.json()['id']}"), 404)


def test_a_router_key_may_not_attach_upstreams(admin, tenant):
    _, secret = admin.new_key(tenant.id, "router")
    error_of(admin.as_token(secret).post("/byok", json={}), 403)


def test_the_admin_attaches_for_the_tenant_named_in_the_body(admin, tenant):
    upstream = attach(admin, tenant_id=tenant.id, upstream="qwen")
    assert upstream["tenant_id"] == tenant.id
    assert upstream["id"] in [u["id"] for u in tenant.api.get("/byok").json()["data"]]


def test_a_retried_attach_with_the_same_idempotency_key_returns_the_first_upstream(tenant):
    body = {"name": "x", "upstream": "moonshot", "external_key": external_key()}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = tenant.api.post("/byok", json=body, headers=headers)
    second = tenant.api.post("/byok", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
