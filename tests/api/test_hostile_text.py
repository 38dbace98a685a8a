"""Text a read model can't store (NUL, lone surrogates, huge strings, URLs that don't parse) is
refused as a 400 naming the field, and every read model keeps following the event store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.hostile import (
    assert_billing_follows,
    assert_instances_follow,
    assert_keys_and_audit_follow,
    assert_pricebook_follows,
    assert_refused,
    assert_tenants_follow,
    assert_usage_refused,
    assert_webhooks_follow,
)
from tests.helpers import new_model, unique_name, usage_record

NUL = "x\u0000y"
WEBHOOK = {"url": "https://example.com/hook", "events": ["key.revoked"]}
BYOK = {"name": "label", "upstream": "openai", "external_key": "sk-" + "a" * 20}


def raw_json(api: Any, method: str, path: str, body: bytes) -> Any:
    """Send bytes as they are: httpx can't encode a lone surrogate, a hostile client can."""
    return api.request(method, path, content=body, headers={"Content-Type": "application/json"})


# -- NUL -----------------------------------------------------------------------------------


def test_a_nul_in_allowed_models_from_the_tenants_own_key_is_refused_and_keys_keep_working(
    tenant,
):
    r = tenant.api.post(
        f"/tenants/{tenant.id}/keys", json={"name": "evil", "allowed_models": ["x\u0000"]}
    )

    assert_refused(r, "allowed_models.0")
    assert_keys_and_audit_follow(tenant.api, tenant.id)


@pytest.mark.parametrize("field", ["name", "external_key"])
def test_a_nul_in_a_byok_upstream_is_refused_and_instances_keep_working(tenant, field):
    r = tenant.api.post("/byok", json={**BYOK, field: BYOK[field] + "\u0000"})

    assert_refused(r, field)
    assert_instances_follow(tenant.api)
    assert_keys_and_audit_follow(tenant.api, tenant.id)


@pytest.mark.parametrize(
    ("field", "value"),
    [("description", NUL), ("url", "https://example.com/\u0000hook")],
)
def test_a_nul_in_a_webhook_is_refused_and_webhooks_keep_working(tenant, field, value):
    r = tenant.api.post("/webhooks", json={**WEBHOOK, field: value})

    assert_refused(r, field)
    assert_webhooks_follow(tenant.api)
    assert_keys_and_audit_follow(tenant.api, tenant.id)


def test_a_nul_in_a_models_display_name_is_refused_and_the_price_book_keeps_working(admin, tenant):
    slug = new_model(admin)
    body = {"context_length": 8192, "input_eur_per_mtok": "1", "output_eur_per_mtok": "2"}

    created = admin.post("/models", json={"id": unique_name("m"), "display_name": NUL, **body})
    updated = admin.put(f"/models/{slug}", json={"display_name": NUL, **body})

    assert_refused(created, "display_name")
    assert_refused(updated, "display_name")
    assert_pricebook_follows(admin)
    assert_keys_and_audit_follow(tenant.api, tenant.id)


@pytest.mark.parametrize(
    ("path", "field"),
    [("/gpu-rates/te%00xt/EU", "instance_type"), ("/gpu-rates/text/E%00U", "region")],
)
def test_a_nul_in_a_gpu_rates_path_is_refused_and_the_price_book_keeps_working(
    admin, tenant, path, field
):
    r = admin.put(path, json={"eur_per_hour": "1.5"})

    assert_refused(r, field)
    assert_pricebook_follows(admin)
    assert_keys_and_audit_follow(tenant.api, tenant.id)


def test_a_nul_in_a_usage_request_id_is_refused_and_billing_keeps_working(admin, tenant):
    model = new_model(admin)
    record = usage_record(tenant.key["id"], model, "2025-11-03T09:00:00Z", request_id=NUL)

    r = tenant.api.post("/usage/events", json={"records": [record]})

    assert_usage_refused(r, "request_id")
    assert_billing_follows(tenant.api, tenant.key["id"], model, tenant.id)


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", NUL), ("group", NUL)],
)
def test_a_nul_in_a_tenant_is_refused_and_tenants_keep_working(admin, field, value):
    body = {"name": unique_name("t"), field: value}

    assert_refused(admin.post("/tenants", json=body), field)
    assert_tenants_follow(admin)


# -- lone surrogates -----------------------------------------------------------------------


def test_a_lone_surrogate_in_allowed_models_is_a_400_not_a_500(tenant):
    body = b'{"name": "evil", "allowed_models": ["ok", "x\\ud800"]}'

    r = raw_json(tenant.api, "POST", f"/tenants/{tenant.id}/keys", body)

    assert_refused(r, "allowed_models.1")
    assert_keys_and_audit_follow(tenant.api, tenant.id)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/tenants/{tenant}/keys", b'{"name": "\\ud800"}', "name"),
        ("/tenants/{tenant}/keys", b'{"name": "\\udfff x"}', "name"),
        ("/byok", b'{"name": "\\ud800", "upstream": "openai", "external_key": "sk-aaaaaaaa"}', "name"),
        ("/webhooks", b'{"url": "https://e.com", "events": ["key.revoked"], "description": "\\ud800"}', "description"),
        ("/budgets", b'{"limit_eur": "1", "period": "\\ud800"}', "period"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_in_a_name_is_a_400_naming_it(tenant, path, body, field):
    r = raw_json(tenant.api, "POST", path.format(tenant=tenant.id), body)

    assert_refused(r, field)
    assert_keys_and_audit_follow(tenant.api, tenant.id)


def test_a_lone_surrogate_with_an_idempotency_key_is_a_400_not_a_500(tenant):
    r = tenant.api.post(
        f"/tenants/{tenant.id}/keys",
        content=b'{"name": "k\\ud800"}',
        headers={"Content-Type": "application/json", "Idempotency-Key": unique_name("idem")},
    )

    assert_refused(r, "name")


def test_a_lone_surrogate_in_a_tenant_name_is_a_400_naming_it(admin):
    r = raw_json(admin, "POST", "/tenants", b'{"name": "\\ud800"}')

    assert_refused(r, "name")
    assert_tenants_follow(admin)


def test_a_lone_surrogate_as_an_unknown_field_name_is_a_400(tenant):
    r = raw_json(tenant.api, "POST", "/webhooks", b'{"\\ud800": 1}')

    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_a_lone_surrogate_in_a_usage_request_id_is_a_400(admin, tenant):
    model = new_model(admin)
    key = tenant.key["id"]
    record = usage_record(key, model, "2025-11-03T09:00:00Z", request_id="REQUEST_ID")
    body = json.dumps({"records": [record]}).replace('"REQUEST_ID"', '"\\ud800"').encode()

    r = raw_json(tenant.api, "POST", "/usage/events", body)

    assert_usage_refused(r, "request_id")
    assert_billing_follows(tenant.api, key, model, tenant.id)


def test_a_surrogate_pair_is_an_ordinary_character(tenant):
    r = raw_json(tenant.api, "POST", "/webhooks", b'{"url": "https://e.com", '
                 b'"events": ["key.revoked"], "description": "ok \\ud83d\\ude00"}')  # fmt: skip

    assert r.status_code == 201, r.text
    assert r.json()["description"] == "ok \U0001f600"


# -- lengths and URLs ----------------------------------------------------------------------


def test_a_one_megabyte_allowed_models_entry_is_refused(tenant):
    r = tenant.api.post(
        f"/tenants/{tenant.id}/keys", json={"name": "big", "allowed_models": ["m" * 1_000_000]}
    )

    assert_refused(r, "allowed_models.0")


def test_ten_thousand_allowed_models_are_refused(tenant):
    models = [f"m{i}" for i in range(10_000)]

    r = tenant.api.post(
        f"/tenants/{tenant.id}/keys", json={"name": "many", "allowed_models": models}
    )

    assert_refused(r, "allowed_models")


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://example.com:99999/", "http://example.com:port/", "https://"],
)
def test_a_webhook_url_that_does_not_parse_is_a_400(tenant, url):
    r = tenant.api.post("/webhooks", json={**WEBHOOK, "url": url})

    assert_refused(r, "url")
    assert_webhooks_follow(tenant.api)


def test_a_far_future_expiry_in_a_negative_offset_is_a_400_not_a_500(tenant):
    r = tenant.api.post(
        f"/tenants/{tenant.id}/keys",
        json={"name": unique_name("k"), "expires_at": "9999-12-31T23:59:59-01:00"},
    )

    assert_refused(r, "expires_at")


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/audit?actor=a%00b", "actor"),
        ("/audit?action=key.issued%00", "action"),
        ("/audit?target_type=%00", "target_type"),
        ("/models/a%00b", "model_id"),
    ],
)
def test_a_nul_in_a_query_or_path_parameter_is_a_400_naming_it(tenant, path, param):
    assert_refused(tenant.api.get(path), param)
    assert_keys_and_audit_follow(tenant.api, tenant.id)
