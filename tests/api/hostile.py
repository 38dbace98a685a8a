"""Checks shared by the hostile-input tests: a refused value is a 400 naming its field, and the
read models it would have stopped keep following the event store afterwards."""

from __future__ import annotations

from typing import Any

from tests.helpers import error_of, unique_name, usage_record


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def assert_refused(r: Any, field: str) -> dict[str, Any]:
    """A 400 in the OpenAI shape whose ``param`` is ``field``."""
    error = error_of(r, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field, error
    assert "Traceback" not in r.text
    return error


def assert_usage_refused(r: Any, field: str) -> None:
    """A usage batch refused as a 400 that names ``field`` of its first record."""
    error = error_of(r, 400)
    named = error.get("param") == f"records.0.{field}" or any(
        p["index"] == 0 and p["field"] == field for p in error.get("records", [])
    )
    assert named, error


def assert_keys_and_audit_follow(api: Any, tenant_id: str) -> None:
    """A key issued now is listed and audited: the keys and audit read models keep going."""
    created = ok(
        api.post(f"/tenants/{tenant_id}/keys", json={"name": unique_name("k"), "kind": "router"}),
        201,
    )
    key_id = created["key"]["id"]
    listed = ok(api.get("/keys", params={"tenant_id": tenant_id, "limit": 500}))["data"]
    assert key_id in [k["id"] for k in listed]
    audited = ok(api.get("/audit", params={"target_id": key_id}))["data"]
    assert [e["action"] for e in audited] == ["key.issued"]


def assert_tenants_follow(admin: Any) -> None:
    """A tenant created now can be read back: the tenants read model keeps going."""
    tenant = ok(admin.post("/tenants", json={"name": unique_name("t")}), 201)
    assert ok(admin.get(f"/tenants/{tenant['id']}"))["name"] == tenant["name"]


def assert_instances_follow(api: Any) -> None:
    """A BYOK upstream attached now is listed: the instances read model keeps going."""
    body = {"name": unique_name("up"), "upstream": "openai", "external_key": "sk-" + "a" * 20}
    upstream = ok(api.post("/byok", json=body), 201)
    listed = ok(api.get("/instances", params={"limit": 500}))["data"]
    assert upstream["id"] in [i["id"] for i in listed]


def assert_webhooks_follow(api: Any) -> None:
    """A webhook registered now is listed: the webhooks read model keeps going."""
    body = {"url": "https://example.com/hook", "events": ["key.revoked"]}
    webhook = ok(api.post("/webhooks", json=body), 201)
    listed = ok(api.get("/webhooks", params={"limit": 500}))["data"]
    assert webhook["id"] in [w["id"] for w in listed]


def assert_pricebook_follows(admin: Any) -> None:
    """A GPU rate set now is listed: the price book read model keeps going."""
    instance_type = unique_name("gpu")
    ok(admin.put(f"/gpu-rates/{instance_type}/EU", json={"eur_per_hour": "1.5"}))
    rates = ok(admin.get("/gpu-rates"))["data"]
    assert (instance_type, "EU") in [(r["instance_type"], r["region"]) for r in rates]


def assert_billing_follows(api: Any, key_id: str, model: str, tenant_id: str) -> None:
    """A record ingested now is billed: the usage read model keeps going."""
    day, at = "2025-11-03", "2025-11-03T10:00:00Z"
    ok(api.post("/usage/events", json={"records": [usage_record(key_id, model, at)]}))
    summary = ok(api.get(f"/team-billing/summary/{tenant_id}/{day}/2025-11-04"))
    assert (summary["requests"], summary["prompt_tokens"]) == (1, 1000)
