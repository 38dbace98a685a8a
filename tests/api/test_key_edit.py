"""Editing a key after issue (``PATCH /api/v1/keys/{id}``, seed 001: "edit the API token to add
restrictions"): what changes, what is refused, that it is audited, and that every process
applies it at the key's next request."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import orjson
import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway, gateway_settings
from tests.conftest import Api, LiveServer
from tests.helpers import error_of, names_field, unique_name


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    return {"pool_size": 3}  # three servers' connections on one PostgreSQL


def later(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).isoformat()


def test_a_patch_changes_the_fields_given_and_keeps_the_others(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router", rpm_limit=100, allowed_models=["a"])
    name = unique_name("renamed")
    expires = later(30)

    r = tenant.api.patch(
        f"/keys/{key['id']}",
        json={
            "name": name,
            "allowed_models": ["llama-3.1-8b"],
            "sovereignty_mode": True,
            "expires_at": expires,
            "ip_allowlist": ["10.0.0.0/8"],
        },
    )

    assert r.status_code == 200, r.text
    shown = tenant.api.get(f"/keys/{key['id']}").json()
    assert shown == r.json()
    assert shown["name"] == name
    assert shown["allowed_models"] == ["llama-3.1-8b"]
    assert shown["sovereignty_mode"] is True
    assert datetime.fromisoformat(shown["expires_at"]) == datetime.fromisoformat(expires)
    assert shown["ip_allowlist"] == ["10.0.0.0/8"]
    assert shown["rpm_limit"] == 100  # not given: kept
    assert shown["kind"] == "router" and shown["key_prefix"] == key["key_prefix"]


def test_null_lifts_a_restriction(admin, tenant):
    key, _ = admin.new_key(
        tenant.id, "router", allowed_models=["a"], expires_at=later(3), rpm_limit=5
    )

    r = tenant.api.patch(
        f"/keys/{key['id']}",
        json={"allowed_models": None, "expires_at": None, "rpm_limit": None, "ip_allowlist": []},
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["allowed_models"] is None
    assert body["expires_at"] is None
    assert body["rpm_limit"] is None
    assert body["ip_allowlist"] == []


def test_a_rename_frees_the_old_name_and_a_taken_name_is_a_409(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router", name="first-name")
    other, _ = admin.new_key(tenant.id, "router", name="other-name")

    taken = tenant.api.patch(f"/keys/{key['id']}", json={"name": "OTHER-name"})
    renamed = tenant.api.patch(f"/keys/{key['id']}", json={"name": "second-name"})
    reused = tenant.api.post(f"/tenants/{tenant.id}/keys", json={"name": "first-name"})

    error_of(taken, 409)
    assert renamed.status_code == 200 and renamed.json()["name"] == "second-name"
    assert reused.status_code == 201, reused.text
    assert tenant.api.get(f"/keys/{other['id']}").json()["name"] == "other-name"


def test_changing_only_the_case_of_its_name_keeps_its_claim(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router", name="casey")

    r = tenant.api.patch(f"/keys/{key['id']}", json={"name": "CASEY"})
    again = tenant.api.post(f"/tenants/{tenant.id}/keys", json={"name": "casey"})

    assert r.status_code == 200 and r.json()["name"] == "CASEY"
    error_of(again, 409)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"ip_allowlist": ["not-an-ip"]}, "ip_allowlist"),
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"rpm_limit": "10"}, "rpm_limit"),
        ({"sovereignty_mode": None}, "sovereignty_mode"),
        ({"name": "bad/name"}, "name"),
        ({"kind": "management"}, "kind"),
        ({"allowed_models": [""]}, "allowed_models"),
    ],
)
def test_a_bad_change_is_a_400_naming_the_field_and_changes_nothing(admin, tenant, body, field):
    key, _ = admin.new_key(tenant.id, "router", rpm_limit=7)

    r = tenant.api.patch(f"/keys/{key['id']}", json={"name": unique_name(), **body})

    assert names_field(error_of(r, 400), field)
    after = tenant.api.get(f"/keys/{key['id']}").json()
    assert after == key | {"updated_at": after["updated_at"]}
    assert after["updated_at"] == key["updated_at"]


def test_the_change_is_audited_with_what_changed_and_who_changed_it(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")

    tenant.api.patch(f"/keys/{key['id']}", json={"rpm_limit": 42, "allowed_models": ["m"]})
    tenant.api.patch(f"/keys/{key['id']}", json={"rpm_limit": 42})  # changes nothing

    entries = admin.get("/audit", params={"target_id": key["id"]}).json()["data"]
    changed = [e for e in entries if e["action"] == "key.changed"]
    assert len(changed) == 1
    assert changed[0]["changes"]["changes"] == {"rpm_limit": 42, "allowed_models": ["m"]}
    assert changed[0]["actor"] == f"key:{tenant.key['id']}"


def test_the_key_as_it_was_before_the_change_is_replayed_from_its_events(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router", rpm_limit=5)
    before = datetime.now(UTC).isoformat()

    tenant.api.patch(f"/keys/{key['id']}", json={"rpm_limit": 6})

    then = tenant.api.get(f"/keys/{key['id']}", params={"as_of": before}).json()
    assert then["rpm_limit"] == 5
    assert tenant.api.get(f"/keys/{key['id']}").json()["rpm_limit"] == 6


def test_another_tenants_key_is_not_found(tenant, other_tenant):
    r = other_tenant.api.patch(f"/keys/{tenant.key['id']}", json={"rpm_limit": 1})

    error_of(r, 404)


def test_an_ip_allowlist_added_refuses_the_key_at_its_next_request(admin, tenant):
    key, secret = admin.new_key(tenant.id, "management")
    own = admin.as_token(secret)
    assert own.get("/keys").status_code == 200

    r = tenant.api.patch(f"/keys/{key['id']}", json={"ip_allowlist": ["203.0.113.0/24"]})

    assert r.status_code == 200, r.text
    assert error_of(own.get("/keys"), 403)["code"] == "ip_not_allowed"


# -- on the gateway, in every process -------------------------------------------------------


@pytest.fixture(scope="module")
def second_process(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Another hostplane on the gateway's database: what another process of a deployment is
    (its own authenticator, keeping the keys it saw)."""
    from interfaces.bootstrap import Container

    settings = gateway_settings(
        gateway.container.settings.database_url,
        tmp_path_factory.mktemp("second"),
        gateway.fake,
        pool_size=2,
    )
    container = Container.open(settings)
    server = LiveServer(container).start()
    try:
        yield server
    finally:
        server.stop()
        container.close()


def client(server: Any, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=30)


def test_allowed_models_changed_in_one_process_apply_at_the_next_request_in_another(
    gateway, second_process
):
    t = gateway.new_tenant()
    t.byok("openai")
    first, second = gateway.model("openai"), gateway.model("openai")
    key, secret = t.router_key()
    elsewhere = client(second_process, secret)
    answer = elsewhere.chat.completions.create(model=first, messages=HELLO)
    assert answer.choices[0].message.content  # the key is now kept by the other process

    r = t.api.patch(f"/keys/{key['id']}", json={"allowed_models": [second]})
    assert r.status_code == 200, r.text

    with pytest.raises(openai.PermissionDeniedError) as refused:
        elsewhere.chat.completions.create(model=first, messages=HELLO)
    assert refused.value.status_code == 403
    assert elsewhere.chat.completions.create(model=second, messages=HELLO).choices


def test_an_expiry_brought_forward_refuses_the_key_at_its_next_request_in_another_process(
    gateway, second_process
):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    key, secret = t.router_key(expires_at=later(30))
    elsewhere = client(second_process, secret)
    assert elsewhere.chat.completions.create(model=model, messages=HELLO).choices
    soon = datetime.now(UTC) + timedelta(seconds=1)

    r = t.api.patch(f"/keys/{key['id']}", json={"expires_at": soon.isoformat()})
    assert r.status_code == 200, r.text
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)

    with pytest.raises(openai.AuthenticationError):
        elsewhere.chat.completions.create(model=model, messages=HELLO)


def test_an_unknown_key_is_a_404(tenant):
    r = tenant.api.patch(f"/keys/{uuid.uuid4()}", json={"rpm_limit": 3})

    error_of(r, 404)


def test_a_router_key_may_not_edit_keys(admin, tenant):
    key, secret = admin.new_key(tenant.id, "router")

    r = Api.as_token(admin, secret).patch(f"/keys/{key['id']}", json={"rpm_limit": 3})

    error_of(r, 403)


def test_the_change_is_in_the_tenants_export_and_its_replayed_state(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    tenant.api.patch(f"/keys/{key['id']}", json={"rpm_limit": 9, "sovereignty_mode": True})

    r = admin.get(f"/tenants/{tenant.id}/export")

    assert r.status_code == 200, r.text
    lines = [orjson.loads(line) for line in r.text.splitlines()]
    changed = [
        x for x in lines if x.get("type") == "key.changed" and x["aggregate_id"] == key["id"]
    ]
    assert [x["data"]["changes"] for x in changed] == [{"rpm_limit": 9, "sovereignty_mode": True}]
    state = next(x for x in lines if x["kind"] == "state" and x["id"] == key["id"])
    assert state["data"]["rpm_limit"] == 9 and state["data"]["sovereignty_mode"] is True
