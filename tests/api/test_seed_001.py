"""Seed 001 (HostedAI's API FAQs), walked in order with its own requests against hostplane.

USER_PANEL_URL is the served hostplane; the base URL of the API is ``{USER_PANEL_URL}/api``.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import new_model, usage_record


@pytest.fixture
def panel(live_server) -> str:
    return live_server.url  # USER_PANEL_URL


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def get(panel: str, path: str, key: str | None) -> httpx.Response:
    return httpx.get(panel + "/api" + path, headers=bearer(key) if key else {}, timeout=30)


def openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert {"message", "type", "code", "param"} <= error.keys()
    return error


# -- Authentication: "include it in the Authorization header ... Bearer YOUR_API_KEY" ---------


def new_user(admin: Any, tenant_id: str) -> dict[str, Any]:
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": "a long pass phrase 4 tests"}
    r = admin.post(f"/tenants/{tenant_id}/users", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_an_api_key_in_the_authorization_header_authenticates(panel, admin, tenant):
    user = new_user(admin, tenant.id)

    r = get(panel, "/users", tenant.secret)

    assert r.status_code == 200, r.text
    assert [u["id"] for u in r.json()["data"]] == [user["id"]]


# -- Troubleshooting: "a 401 ... hasn't expired, isn't IP restricted and hasn't been revoked" --


def test_a_missing_or_misplaced_api_key_is_a_401(panel, tenant):
    openai_error(get(panel, "/users", None), 401)
    misplaced = httpx.get(panel + "/api/users", headers={"Authorization": tenant.secret})
    openai_error(misplaced, 401)


def test_a_key_used_from_outside_its_ip_restriction_is_a_401(panel, admin, tenant):
    _, restricted = admin.new_key(tenant.id, "management", ip_allowlist=["10.0.0.0/8"])

    error = openai_error(get(panel, "/users", restricted), 401)

    assert "IP address" in error["message"]
    assert error["type"] == "authentication_error"
    day = f"/team-billing/summary/{tenant.id}/2025-10-30/2025-10-31"
    openai_error(get(panel, day, restricted), 401)
    # The same key on a HostedAI route from an allowed address is served.
    _, allowed = admin.new_key(tenant.id, "management", ip_allowlist=["127.0.0.1/32"])
    assert get(panel, "/users", allowed).status_code == 200


def test_a_revoked_key_is_a_401(panel, admin, tenant):
    key, secret = admin.new_key(tenant.id, "management")
    assert get(panel, "/users", secret).status_code == 200

    assert admin.delete(f"/keys/{key['id']}").status_code == 200

    openai_error(get(panel, "/users", secret), 401)


def test_a_new_key_without_ip_or_expiry_restrictions_works(panel, admin, tenant):
    _, restricted = admin.new_key(tenant.id, "management", ip_allowlist=["10.0.0.0/8"])
    openai_error(get(panel, "/users", restricted), 401)

    _, plain = admin.new_key(tenant.id, "management")

    assert get(panel, "/users", plain).status_code == 200


# -- Making API requests: "GET https://USER_PANEL_URL/api/users" ---------------------------


def test_get_api_users_retrieves_the_users_of_the_keys_team(panel, admin, tenant, other_tenant):
    mine = new_user(admin, tenant.id)
    theirs = new_user(admin, other_tenant.id)

    users = get(panel, "/users", tenant.secret).json()["data"]

    assert [(u["id"], u["email"]) for u in users] == [(mine["id"], mine["email"])]
    assert theirs["id"] not in {u["id"] for u in users}


# -- Error handling: the status codes -------------------------------------------------------


def test_the_documented_status_codes(panel, admin, tenant, other_tenant):
    openai_error(get(panel, f"/team-billing/summary/{tenant.id}/2025-10-31/x", None), 401)
    openai_error(get(panel, f"/team-billing/summary/{tenant.id}/2025-10-31/x", tenant.secret), 400)
    _, router_key = admin.new_key(tenant.id, "router")
    openai_error(get(panel, "/users", router_key), 403)  # an inference key: not allowed here
    other = f"/team-billing/summary/{other_tenant.id}/2025-10-30/2025-10-31"
    openai_error(get(panel, other, tenant.secret), 404)  # another team's: not found
    openai_error(get(panel, "/no-such-thing", tenant.secret), 404)


# -- Dates: midnight timestamps; the same date twice is 0 seconds -----------------------------


@pytest.fixture
def billed(admin, tenant) -> Any:
    """Usage on 30 and 31 October 2025 in the tenant's team."""
    model = new_model(admin, "1.00", "2.00", prefix="seed001")
    records = [
        usage_record(tenant.key["id"], model, "2025-10-30T10:00:00Z"),
        usage_record(tenant.key["id"], model, "2025-10-30T23:59:59Z"),
        usage_record(tenant.key["id"], model, "2025-10-31T00:00:00Z"),
    ]
    r = tenant.api.post("/usage/events", json={"records": records})
    assert r.status_code == 200, r.text
    return tenant


def test_the_same_date_for_start_and_end_is_a_range_of_0_seconds(panel, billed):
    r = get(panel, f"/team-billing/summary/{billed.id}/2025-10-31/2025-10-31", billed.secret)

    assert r.status_code == 200, r.text
    assert (r.json()["requests"], r.json()["token_cost"]) == (0, "0.00")


def test_different_dates_return_billing_for_the_first_day(panel, billed):
    r = get(panel, f"/team-billing/summary/{billed.id}/2025-10-30/2025-10-31", billed.secret)

    assert r.status_code == 200, r.text
    summary = r.json()
    assert (summary["requests"], summary["prompt_tokens"]) == (2, 2000)  # not the 31st's
    assert summary["token_cost"] == "0.004"


def test_the_hostedai_billing_answer_is_the_api_v1_answer(panel, billed):
    for start, end in (("2025-10-30", "2025-10-31"), ("2025-10-29", "2025-11-01")):
        ours = get(panel, f"/team-billing/summary/{billed.id}/{start}/{end}", billed.secret)
        v1 = billed.api.get(f"/team-billing/summary/{billed.id}/{start}/{end}")
        assert ours.status_code == v1.status_code == 200
        assert ours.json() == v1.json()


# -- Language integration: the seed's Python example, as written ------------------------------


def test_the_python_requests_example(panel, admin, tenant):
    import requests

    user = new_user(admin, tenant.id)
    url = f"{panel}/api/users"
    headers = {"Authorization": f"Bearer {tenant.secret}"}

    response = requests.get(url, headers=headers, timeout=30)

    assert response.status_code == 200
    assert response.json()["data"][0]["id"] == user["id"]
