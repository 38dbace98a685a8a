"""Response cache settings per model (seed 004, issue 19): set by the operator, shown, audited."""

from __future__ import annotations

import pytest

from tests.helpers import error_of, names_field, new_model


def test_a_model_has_its_cache_off_until_it_is_configured(admin):
    model = new_model(admin)

    assert admin.get(f"/models/{model}").json()["cache"] == {"enabled": False, "ttl_seconds": 3600}


def test_configuring_the_cache_is_shown_by_the_model_and_in_the_catalog(admin):
    model = new_model(admin)

    r = admin.put(f"/models/{model}/cache", json={"enabled": True, "ttl_seconds": 120})

    assert r.status_code == 200, r.text
    assert r.json()["cache"] == {"enabled": True, "ttl_seconds": 120}
    assert admin.get(f"/models/{model}").json()["cache"] == {"enabled": True, "ttl_seconds": 120}
    listed = {m["id"]: m for m in admin.get("/models").json()["data"]}
    assert listed[model]["cache"] == {"enabled": True, "ttl_seconds": 120}


def test_turning_the_cache_off_without_a_ttl_keeps_the_ttl(admin):
    model = new_model(admin)
    admin.put(f"/models/{model}/cache", json={"enabled": True, "ttl_seconds": 60})

    r = admin.put(f"/models/{model}/cache", json={"enabled": False})

    assert r.json()["cache"] == {"enabled": False, "ttl_seconds": 60}


def test_each_cache_change_is_audited_and_an_unchanged_one_is_not(admin):
    model = new_model(admin)
    model_id = admin.get("/audit", params={"action": "model.registered", "limit": 500}).json()
    target = next(e["target_id"] for e in model_id["data"] if e["changes"]["slug"] == model)
    for _ in range(2):
        body = {"enabled": True, "ttl_seconds": 30}
        assert admin.put(f"/models/{model}/cache", json=body).status_code == 200

    log = admin.get("/audit", params={"target_id": target}).json()["data"]
    changes = [e["changes"] for e in log if e["action"] == "model.cache_configured"]
    assert changes == [{"enabled": True, "ttl_seconds": 30}]
    assert log[0]["actor"] == "admin" and log[0]["tenant_id"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"enabled": "yes"}, "enabled"),
        ({"ttl_seconds": 10}, "enabled"),
        ({"enabled": True, "ttl_seconds": 0}, "ttl_seconds"),
        ({"enabled": True, "ttl_seconds": 30 * 86_400 + 1}, "ttl_seconds"),
        ({"enabled": True, "ttl_seconds": "60"}, "ttl_seconds"),
    ],
)
def test_a_malformed_cache_setting_is_a_400_naming_the_field(admin, body, field):
    model = new_model(admin)

    assert names_field(error_of(admin.put(f"/models/{model}/cache", json=body), 400), field)


def test_the_cache_of_an_unknown_or_deleted_model_is_a_404(admin):
    model = new_model(admin)
    assert admin.delete(f"/models/{model}").status_code == 200

    error_of(admin.put(f"/models/{model}/cache", json={"enabled": True}), 404)
    error_of(admin.put("/models/no-such-model-x/cache", json={"enabled": True}), 404)


def test_a_tenants_management_key_may_not_configure_the_cache(admin, tenant):
    model = new_model(admin)

    error_of(tenant.api.put(f"/models/{model}/cache", json={"enabled": True}), 403)
