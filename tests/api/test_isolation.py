"""The tenant-isolation matrix: every management route against every caller that must be refused.

The first tenant ("the owner") holds one of every kind that offboarding ends (``domain.owned``):
a key, an instance, a budget, a webhook and an MCP server. Other callers — nobody,
a made-up token, the owner's own router key, another tenant's management key — must never read
or change them, and must not learn that they exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from domain.owned import ENDED_AT_OFFBOARDING
from tests.helpers import ensure_group

PW = "correct horse battery"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    body: dict[str, Any] | None = None
    # What another tenant's management key gets: "list", "admin-only" (403) or "hidden" (404).
    foreign: str = "hidden"

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("GET", "/tenants", foreign="list"),
    Route("POST", "/tenants", {"name": "iso-{unique}"}, foreign="admin-only"),
    Route("GET", "/tenants/{tenant_id}"),
    Route("DELETE", "/tenants/{tenant_id}", foreign="admin-only"),
    Route("PATCH", "/tenants/{tenant_id}/weight", {"weight": 7}, foreign="admin-only"),
    Route("PUT", "/tenants/{tenant_id}/quota", {"tokens_per_minute": 1000}, foreign="admin-only"),
    Route("PATCH", "/tenants/{tenant_id}/group", {"group": "iso"}, foreign="admin-only"),
    Route("POST", "/tenants/{tenant_id}/keys", {"name": "iso-{unique}", "kind": "router"}),
    Route("GET", "/keys", foreign="list"),
    Route("GET", "/keys/{key_id}"),
    Route("DELETE", "/keys/{key_id}"),
    Route("PUT", "/keys/{key_id}/disabled", {"disabled": True}),
    Route("PATCH", "/keys/{key_id}", {"rpm_limit": 5}),
    Route("GET", "/instances", foreign="list"),
    Route("POST", "/instances", {"tenant_id": "{tenant_id}", "model_id": "llama-3.1-8b"}),
    Route("GET", "/instances/{instance_id}"),
    Route("DELETE", "/instances/{instance_id}"),
    Route("GET", "/instances/{instance_id}/api-key"),
    Route("GET", "/budgets", foreign="list"),
    Route("POST", "/budgets", {"tenant_id": "{tenant_id}", "limit_eur": "10"}),
    Route("POST", "/budgets", {"key_id": "{key_id}", "limit_eur": "10"}),
    Route("GET", "/budgets/{budget_id}"),
    Route("PUT", "/budgets/{budget_id}", {"limit_eur": "1", "period": "daily"}),
    Route("DELETE", "/budgets/{budget_id}"),
    Route("GET", "/webhooks", foreign="list"),
    Route(
        "POST",
        "/webhooks",
        {"tenant_id": "{tenant_id}", "url": "{hook}", "events": ["key.revoked"]},
    ),
    Route("GET", "/webhooks/{webhook_id}"),
    Route("GET", "/webhooks/{webhook_id}/deliveries"),
    Route("DELETE", "/webhooks/{webhook_id}"),
    Route("GET", "/mcp-servers", foreign="list"),
    Route(
        "POST",
        "/mcp-servers",
        {"tenant_id": "{tenant_id}", "name": "iso-{unique}", "url": "https://mcp.example.com"},
    ),
    Route("GET", "/mcp-servers/{mcp_server_id}"),
    Route("PUT", "/mcp-servers/{mcp_server_id}", {"enabled": False}),
    Route("DELETE", "/mcp-servers/{mcp_server_id}"),
    Route("GET", "/users", foreign="list"),
    Route(
        "POST", "/tenants/{tenant_id}/users", {"email": "iso-{unique}@example.com", "password": PW}
    ),
    Route("GET", "/users/{user_id}"),
    Route("DELETE", "/users/{user_id}"),
    # The operator's own settings: no tenant's key reads or changes them.
    Route("GET", "/capacity", foreign="admin-only"),
    # The settings' default (the admin's call must leave the installation as other tests expect).
    Route("PUT", "/capacity", {"max_in_flight": 256}, foreign="admin-only"),
    Route("GET", "/fairshare/groups", foreign="admin-only"),
    Route("POST", "/fairshare/groups", {"name": "iso-{unique}"}, foreign="admin-only"),
    Route("GET", "/fairshare/groups/iso", foreign="admin-only"),
    Route("PATCH", "/fairshare/groups/iso/weight", {"weight": 2}, foreign="admin-only"),
    Route("PUT", "/models/llama-3.1-8b/cache", {"enabled": False}, foreign="admin-only"),
    Route("GET", "/usage/cache", foreign="list"),
]
# The collection of each kind the owner holds one of: every kind that offboarding ends.
COLLECTIONS = {
    "key": "/keys",
    "instance": "/instances",
    "budget": "/budgets",
    "webhook": "/webhooks",
    "mcp_server": "/mcp-servers",
    "user": "/users",
}
# Deliveries to it are refused at once (nothing listens on the discard port).
HOOK_URL = "http://127.0.0.1:9/hook"
WRITES = [r for r in ROUTES if r.method != "GET"]
LISTS = [r for r in ROUTES if r.foreign == "list"]


@dataclass
class Owner:
    """The first tenant and everything it owns."""

    tenant: Any
    router_key: dict[str, Any]
    router_secret: str
    instance: dict[str, Any]
    budget: dict[str, Any]
    webhook: dict[str, Any]
    mcp_server: dict[str, Any]
    user: dict[str, Any]

    @property
    def ids(self) -> dict[str, str]:
        return {
            "tenant_id": self.tenant.id,
            "key_id": self.router_key["id"],
            "instance_id": self.instance["id"],
            "budget_id": self.budget["id"],
            "webhook_id": self.webhook["id"],
            "mcp_server_id": self.mcp_server["id"],
            "user_id": self.user["id"],
        }

    def call(self, api: Any, route: Route) -> Any:
        """Send ``route`` about the owner's resources, with fresh names where names must differ."""
        values = {**self.ids, "unique": uuid.uuid4().hex[:10], "hook": HOOK_URL}
        path = route.path.format(**values)
        if route.body is None:
            return api.request(route.method, path)
        body = {k: v.format(**values) if isinstance(v, str) else v for k, v in route.body.items()}
        return api.request(route.method, path, json=body)

    def snapshot(self, admin: Any) -> list[Any]:
        """Everything a user can read about the owner's resources, as the admin sees it."""
        ids = self.ids
        return [
            admin.get(f"/tenants/{ids['tenant_id']}").json(),
            *[
                admin.get(f"{path}/{ids[kind + '_id']}").json()
                for kind, path in COLLECTIONS.items()
            ],
            *[
                admin.get(path, params={"tenant_id": ids["tenant_id"]}).json()
                for path in COLLECTIONS.values()
            ],
        ]


@pytest.fixture
def owner(admin, tenant) -> Owner:
    ensure_group(
        admin, "iso"
    )  # the group the routes above name: a tenant joins only one that exists
    router_key, router_secret = admin.new_key(tenant.id, "router")
    instance = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    budget = tenant.api.post("/budgets", json={"limit_eur": "50"})
    webhook = tenant.api.post("/webhooks", json={"url": HOOK_URL, "events": ["key.revoked"]})
    assert instance.status_code == 201, instance.text
    assert budget.status_code == 201, budget.text
    mcp = tenant.api.post(
        "/mcp-servers",
        json={"name": "tools", "url": "https://mcp.example.com", "headers": {"X-Token": "t0p"}},
    )
    assert webhook.status_code == 201, webhook.text
    assert mcp.status_code == 201, mcp.text
    user = tenant.api.post(
        f"/tenants/{tenant.id}/users",
        json={"email": f"owner-{uuid.uuid4().hex[:10]}@example.com", "password": PW},
    )
    assert user.status_code == 201, user.text
    owned = (instance.json(), budget.json(), webhook.json(), mcp.json(), user.json())
    return Owner(tenant, router_key, router_secret, *owned)


def assert_error(r, status):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert {"message", "type", "code"} <= error.keys()
    assert "Traceback" not in r.text


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_without_a_token_every_management_route_answers_401(route, owner, anonymous):
    r = owner.call(anonymous, route)

    assert_error(r, 401)
    assert r.json()["error"]["type"] == "authentication_error"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_a_made_up_token_answers_401_on_every_management_route(route, owner, admin):
    r = owner.call(admin.as_token("hp_mk_" + uuid.uuid4().hex), route)

    assert_error(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_the_owners_router_key_answers_403_on_every_management_route(route, owner, admin):
    r = owner.call(admin.as_token(owner.router_secret), route)

    assert_error(r, 403)
    assert r.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize("route", [r for r in ROUTES if r.foreign != "list"], ids=str)
def test_another_tenants_management_key_is_refused_without_learning_what_exists(
    route, owner, other_tenant
):
    r = owner.call(other_tenant.api, route)

    if route.foreign == "admin-only":
        assert_error(r, 403)
    else:
        assert_error(r, 404)
        # A 404 about the resource, not a missing route: the route is real.
        assert not r.json()["error"]["message"].startswith("no route")


@pytest.fixture
def other_user(admin, other_tenant) -> Any:
    """A user of the other tenant, signed in: a JWT with that tenant's management authority."""
    email = f"other-{uuid.uuid4().hex[:10]}@example.com"
    r = other_tenant.api.post(
        f"/tenants/{other_tenant.id}/users", json={"email": email, "password": PW}
    )
    assert r.status_code == 201, r.text
    base = str(admin.http.base_url).removesuffix("/").removesuffix("/api/v1")
    login = httpx.post(f"{base}/auth/login", json={"email": email, "password": PW})
    assert login.status_code == 200, login.text
    return admin.as_token(login.json()["token"])


@pytest.mark.parametrize("route", [r for r in ROUTES if r.foreign != "list"], ids=str)
def test_another_tenants_user_is_refused_as_its_management_key_is(route, owner, other_user):
    r = owner.call(other_user, route)

    if route.foreign == "admin-only":
        assert_error(r, 403)
    else:
        assert_error(r, 404)
        assert not r.json()["error"]["message"].startswith("no route")


@pytest.mark.parametrize("route", LISTS, ids=str)
def test_another_tenants_user_never_lists_the_owners_resources(route, owner, other_user):
    r = owner.call(other_user, route)

    assert r.status_code == 200, r.text
    for ident in owner.ids.values():
        assert ident not in r.text


@pytest.mark.parametrize("route", LISTS, ids=str)
def test_another_tenants_list_never_includes_the_owners_resources(route, owner, other_tenant):
    r = owner.call(other_tenant.api, route)

    assert r.status_code == 200, r.text
    for ident in owner.ids.values():
        assert ident not in r.text


def test_the_matrix_holds_every_kind_that_offboarding_ends():
    assert set(COLLECTIONS) == {k.name for k in ENDED_AT_OFFBOARDING}
    for path in COLLECTIONS.values():
        assert any(r.path == path and r.foreign == "list" for r in ROUTES), path
        assert any(r.path.startswith(path + "/{") for r in ROUTES), path


@pytest.mark.parametrize("path", list(COLLECTIONS.values()))
def test_another_tenants_list_filtered_by_the_owners_tenant_id_is_empty(path, owner, other_tenant):
    r = other_tenant.api.get(path, params={"tenant_id": owner.tenant.id})

    assert r.status_code == 200, r.text
    assert r.json()["data"] == []


@pytest.mark.parametrize("route", WRITES, ids=str)
def test_refused_writes_leave_the_owners_resources_unchanged(route, owner, admin, other_tenant):
    before = owner.snapshot(admin)
    callers = [
        admin.as_token(None),
        admin.as_token("hp_mk_" + uuid.uuid4().hex),
        admin.as_token(owner.router_secret),
        other_tenant.api,
    ]

    for caller in callers:
        owner.call(caller, route)

    assert owner.snapshot(admin) == before


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_the_same_route_succeeds_for_the_owner_so_the_refusals_are_about_the_caller(
    route, owner, admin
):
    caller = admin if route.foreign == "admin-only" else owner.tenant.api

    r = owner.call(caller, route)

    assert 200 <= r.status_code < 300, r.text
