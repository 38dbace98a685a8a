"""MCP servers (seed 004): registered, listed, changed and deleted per tenant; headers sealed."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.helpers import assert_error, unique_name


def register(api, **fields):
    body = {"name": unique_name("mcp"), "url": "https://mcp.example.com/mcp", **fields}
    return api.post("/mcp-servers", json=body)


def test_a_registered_server_shows_its_header_names_but_never_their_values(tenant):
    token = f"Bearer sk-{uuid.uuid4().hex}"
    r = register(tenant.api, transport="sse", headers={"Authorization": token, "X-Team": "ml"})

    assert r.status_code == 201, r.text
    server = r.json()
    assert server["tenant_id"] == tenant.id
    assert (server["transport"], server["enabled"]) == ("sse", True)
    assert server["header_names"] == ["Authorization", "X-Team"]
    listed = tenant.api.get("/mcp-servers").json()["data"]
    got = tenant.api.get(f"/mcp-servers/{server['id']}").json()
    for shown in (r.text, str(listed), str(got)):
        assert token not in shown and "ml" not in str(shown).split("X-Team")[-1][:8]
    assert got == server
    assert server["id"] in [s["id"] for s in listed]


def test_header_values_are_stored_encrypted_in_the_event_store(tenant, container):
    token = f"secret-{uuid.uuid4().hex}"
    r = register(tenant.api, headers={"Authorization": token})
    assert r.status_code == 201, r.text

    with psycopg.connect(container.database.conninfo) as conn:
        hits = conn.execute(
            "SELECT count(*) FROM hostplane_events WHERE convert_from(state, 'UTF8') LIKE %s",
            (f"%{token}%",),
        ).fetchone()[0]
    assert hits == 0
    assert container.mcp_servers.headers(uuid.UUID(r.json()["id"])) == {"Authorization": token}


def test_names_are_unique_within_a_tenant_but_not_across_tenants(tenant, other_tenant):
    name = unique_name("mcp")
    assert register(tenant.api, name=name).status_code == 201
    assert_error(register(tenant.api, name=name), 409)
    assert register(other_tenant.api, name=name).status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "ftp://mcp.example.com"),
        ("url", "https://user:pw@mcp.example.com"),
        ("transport", "stdio"),
        ("headers", {"X-Token": "a\r\nInjected: yes"}),
        ("enabled", "yes"),
        ("name", "x\u0000"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(tenant, field, value):
    assert_error(register(tenant.api, **{field: value}), 400, field)


def test_the_admin_names_the_tenant_and_a_tenant_key_never_reaches_another(
    admin, tenant, other_tenant
):
    assert_error(register(admin), 400, "tenant_id")
    r = register(admin, tenant_id=tenant.id)
    assert r.status_code == 201, r.text
    server_id = r.json()["id"]

    assert_error(other_tenant.api.get(f"/mcp-servers/{server_id}"), 404)
    assert_error(other_tenant.api.put(f"/mcp-servers/{server_id}", json={"enabled": False}), 404)
    assert_error(other_tenant.api.delete(f"/mcp-servers/{server_id}"), 404)
    assert server_id not in [s["id"] for s in other_tenant.api.get("/mcp-servers").json()["data"]]


def test_an_update_changes_what_is_given_and_frees_the_old_name(tenant):
    server = register(tenant.api, headers={"X-Old": "1"}).json()
    new_name = unique_name("renamed")
    r = tenant.api.put(
        f"/mcp-servers/{server['id']}",
        json={"name": new_name, "enabled": False, "headers": {"Authorization": "Bearer x"}},
    )

    assert r.status_code == 200, r.text
    changed = r.json()
    assert (changed["name"], changed["enabled"], changed["url"]) == (
        new_name,
        False,
        server["url"],
    )
    assert changed["header_names"] == ["Authorization"]
    assert register(tenant.api, name=server["name"]).status_code == 201  # the old name is free
    taken = register(tenant.api).json()["name"]
    assert_error(tenant.api.put(f"/mcp-servers/{server['id']}", json={"name": taken}), 409)


def test_a_deleted_server_is_gone_and_its_name_free(tenant):
    server = register(tenant.api).json()
    assert tenant.api.delete(f"/mcp-servers/{server['id']}").status_code == 200
    assert_error(tenant.api.get(f"/mcp-servers/{server['id']}"), 404)
    assert_error(tenant.api.delete(f"/mcp-servers/{server['id']}"), 404)
    assert register(tenant.api, name=server["name"]).status_code == 201


def test_every_change_is_audited_without_header_values(tenant):
    server = register(tenant.api, headers={"Authorization": "Bearer hidden-value"}).json()
    tenant.api.put(f"/mcp-servers/{server['id']}", json={"enabled": False})
    tenant.api.delete(f"/mcp-servers/{server['id']}")

    entries = tenant.api.get("/audit", params={"target_id": server["id"]}).json()["data"]
    assert [e["action"] for e in entries] == [
        "mcp_server.deleted",
        "mcp_server.updated",
        "mcp_server.registered",
    ]
    assert all(e["target_type"] == "mcp_server" for e in entries)
    assert "hidden-value" not in str(entries)


def test_the_export_carries_the_servers_and_offboarding_deletes_them(admin, tenant):
    server = register(tenant.api, headers={"Authorization": "Bearer in-export"}).json()
    assert admin.delete(f"/tenants/{tenant.id}").status_code == 200

    assert_error(admin.get(f"/mcp-servers/{server['id']}"), 404)
    export = admin.get(f"/tenants/{tenant.id}/export").text
    assert "in-export" not in export
    lines = [line for line in export.splitlines() if server["id"] in line]
    kinds = [(line.split('"kind":"')[1].split('"')[0]) for line in lines]
    assert kinds.count("event") == 2 and kinds.count("state") == 1  # registered, deleted
    assert '"aggregate_type":"mcp_server"' in lines[0]
