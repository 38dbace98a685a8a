"""Seed 003 (AimActok's BYOK platform) as written, walked in the seed's order with its own
requests and bodies, against a served hostplane: register and log in, add, list and delete
vendor keys, chat by model, by vendor and with ``X-Key-Id`` (the official openai SDK where
the request fits it), usage by vendor and model, and the seed's error table.

The gateway's server of its own (tests/api/gateway_fixtures.py): every vendor's upstream is
the fake OpenAI upstream, except minimax's, a closed port (an upstream error).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest
from freezegun import freeze_time

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import UNREACHABLE_VENDOR, Gateway, external_key
from tests.helpers import error_of

PASSWORD = "YourSecurePass123"
VENDORS = ["openai", "anthropic", "google", "deepseek", "qwen", "moonshot", "minimax"]
HELLO = [{"role": "user", "content": "Hello!"}]


def new_email() -> str:
    return f"you-{uuid.uuid4().hex[:10]}@example.com"


class User:
    """One AimActok user: signed up, with its JWT."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.email = new_email()
        r = httpx.post(
            gateway.url + "/auth/register", json={"email": self.email, "password": PASSWORD}
        )
        assert r.status_code == 201, r.text
        self.registered = r.json()
        self.token = self.registered["token"]
        self.http = httpx.Client(
            base_url=gateway.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def add_key(self, vendor: str = "openai", api_key: str | None = None) -> tuple[dict, str]:
        api_key = api_key or external_key()
        body = {"vendor": vendor, "label": f"Personal {vendor}", "api_key": api_key}
        r = self.http.post("/keys", json=body)
        assert r.status_code == 201, r.text
        return r.json(), api_key

    def openai(self) -> openai.OpenAI:
        return self.gateway.client(self.token, "/v1")

    def usage(self) -> list[dict[str, Any]]:
        r = self.http.get("/usage")
        assert r.status_code == 200, r.text
        return r.json()["data"]


@pytest.fixture
def user(gateway: Gateway) -> User:
    return User(gateway)


# -- Authentication: register and log in ------------------------------------------------------


def test_register_answers_201_with_the_user_its_token_and_seven_days(gateway):
    email = new_email()
    r = httpx.post(gateway.url + "/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"]["email"] == email and body["user"]["id"]
    assert body["token"].startswith("eyJ") and body["expires_in"] == 604800
    again = httpx.post(gateway.url + "/auth/register", json={"email": email, "password": PASSWORD})
    error_of(again, 409)  # Email already registered


def test_login_answers_a_token_and_a_wrong_password_or_email_is_401(gateway, user):
    r = httpx.post(gateway.url + "/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == user.registered["user"]["id"]
    token = r.json()["token"]
    listed = httpx.get(gateway.url + "/keys", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200, listed.text
    wrong = httpx.post(
        gateway.url + "/auth/login", json={"email": user.email, "password": "x" * 12}
    )
    unknown = httpx.post(
        gateway.url + "/auth/login", json={"email": new_email(), "password": PASSWORD}
    )
    assert error_of(wrong, 401)["message"] == error_of(unknown, 401)["message"]


def test_tokens_are_valid_for_7_days_on_every_route_and_at_the_gateway(gateway, user):
    now = datetime.now(UTC)
    issued = {}
    for name, age in (
        ("fresh", timedelta(days=7) - timedelta(minutes=1)),
        ("expired", timedelta(days=7) + timedelta(seconds=1)),
    ):
        with freeze_time(now - age):
            issued[name] = gateway.container.users.login(user.email, PASSWORD).token
    user.add_key("openai")
    for name, status in (("fresh", 200), ("expired", 401)):
        headers = {"Authorization": f"Bearer {issued[name]}"}
        for path in ("/keys", "/usage"):
            r = httpx.get(gateway.url + path, headers=headers)
            assert r.status_code == status, (name, path, r.text)
    gateway.client(issued["fresh"]).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        gateway.client(issued["expired"]).chat.completions.create(
            model="gpt-4o-mini", messages=HELLO
        )


def test_every_call_but_register_and_login_needs_a_valid_jwt(gateway):
    for method, path in [("GET", "/keys"), ("GET", "/usage"), ("DELETE", f"/keys/{uuid.uuid4()}")]:
        error_of(httpx.request(method, gateway.url + path), 401)
        forged = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"}
        error_of(httpx.request(method, gateway.url + path, headers=forged), 401)
    with pytest.raises(openai.AuthenticationError):
        gateway.client("eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl").chat.completions.create(
            model="gpt-4o-mini", messages=HELLO
        )


def test_an_unknown_endpoint_is_a_404_in_the_openai_shape(gateway, user):
    error_of(user.http.get("/keys/123/nothing"), 404)
    error_of(user.http.get("/no-such-endpoint"), 404)


# -- Keys: add, list, delete --------------------------------------------------------------------


def test_a_key_is_added_for_each_supported_vendor_and_listed_without_the_key(user):
    added = {}
    for vendor in VENDORS:
        key, secret = user.add_key(vendor)
        assert key["vendor"] == vendor and key["label"] == f"Personal {vendor}"
        assert key["is_active"] is True and key["created_at"]
        added[key["id"]] = secret
    r = user.http.get("/keys")
    assert r.status_code == 200, r.text
    listed = r.json()
    assert {k["id"] for k in listed} == added.keys()
    assert sorted(k["vendor"] for k in listed) == sorted(VENDORS)
    assert all({"vendor", "label", "is_active", "created_at"} <= k.keys() for k in listed)
    assert not any(secret in r.text for secret in added.values())


def test_the_email_password_and_vendor_key_never_appear_in_the_export_or_audit(gateway, user):
    _, secret = user.add_key("anthropic")
    tenant_id = user.registered["user"]["tenant_id"]
    export = user.http.get(f"/api/v1/tenants/{tenant_id}/export")
    assert export.status_code == 200, export.text
    audit = gateway.admin.get("/audit", params={"tenant_id": tenant_id})
    assert audit.status_code == 200 and audit.json()["data"]
    for text in (export.text, audit.text):
        for private in (user.email, PASSWORD, secret, secret[-8:]):
            assert private not in text


def test_the_seed_example_key_body_is_accepted_and_an_unsupported_vendor_is_400(user):
    r = user.http.post(
        "/keys", json={"vendor": "openai", "label": "Personal OpenAI", "api_key": "sk-" + "a" * 40}
    )
    assert r.status_code == 201, r.text
    error_of(
        user.http.post("/keys", json={"vendor": "mistral", "label": "x", "api_key": "sk-"}), 400
    )


def test_deleting_a_key_deactivates_it_for_good(user):
    key, _ = user.add_key("openai")
    r = user.http.delete(f"/keys/{key['id']}")
    assert r.status_code == 200, r.text
    (listed,) = user.http.get("/keys").json()
    assert listed["id"] == key["id"] and listed["is_active"] is False
    with pytest.raises(openai.APIStatusError) as none_left:
        user.openai().chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert none_left.value.status_code == 503


def test_another_users_key_is_a_403_to_delete_and_to_pick(gateway, user):
    key, secret = user.add_key("openai")
    other = User(gateway)
    other.add_key("openai")
    error_of(other.http.delete(f"/keys/{key['id']}"), 403)
    error_of(other.http.delete(f"/keys/{uuid.uuid4()}"), 403)  # no key: the same answer
    error_of(other.http.delete("/keys/123"), 403)
    assert key["id"] not in other.http.get("/keys").text
    assert user.http.get("/usage").json()["data"] == []  # nobody used the user's key
    with pytest.raises(openai.PermissionDeniedError):
        other.openai().chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, extra_headers={"X-Key-Id": key["id"]}
        )
    assert user.http.get("/keys").json()[0]["is_active"] is True


# -- Chat completion ----------------------------------------------------------------------------


def test_a_chat_by_model_goes_to_the_users_key_of_that_vendor(gateway, user):
    _, secret = user.add_key("openai")
    answer = user.openai().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=100
    )
    assert answer.choices[0].message.content
    received = gateway.fake.requests_for("gpt-4o-mini")[-1]
    assert received.bearer == secret and received.vendor == "openai"
    assert received.body["max_tokens"] == 100


def test_a_chat_by_vendor_picks_the_users_key_of_that_vendor(gateway, user):
    _, secret = user.add_key("anthropic")
    r = user.http.post("/v1/chat/completions", json={"vendor": "anthropic", "messages": HELLO})
    assert r.status_code == 200, r.text
    received = [
        g for g in gateway.fake.received if g.bearer == secret and g.path.endswith("/completions")
    ]
    (got,) = received
    assert got.vendor == "anthropic" and "vendor" not in got.body
    assert got.body["model"] == r.json()["model"] == "claude-sonnet-4-5"


def test_x_key_id_forces_a_specific_key(gateway, user):
    first, _ = user.add_key("openai")
    second, second_secret = user.add_key("openai")
    answer = user.openai().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, extra_headers={"X-Key-Id": second["id"]}
    )
    assert answer.choices[0].message.content
    assert gateway.fake.requests_for("gpt-4o-mini")[-1].bearer == second_secret
    # With X-Key-Id and no model, the key's vendor's model.
    r = user.http.post(
        "/v1/chat/completions", json={"messages": HELLO}, headers={"X-Key-Id": first["id"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "gpt-4o"


def test_an_unknown_model_is_a_400(user):
    user.add_key("openai")
    with pytest.raises(openai.BadRequestError) as unknown:
        user.openai().chat.completions.create(model="gpt-9-nonexistent", messages=HELLO)
    assert unknown.value.code == "model_not_found"


def test_an_upstream_failure_is_a_5xx(user):
    user.add_key(UNREACHABLE_VENDOR)
    with pytest.raises(openai.APIStatusError) as failed:
        user.openai().chat.completions.create(model="minimax-m3", messages=HELLO)
    assert failed.value.status_code == 502


# -- Usage stats ----------------------------------------------------------------------------------


def test_usage_is_broken_down_by_vendor_and_model_with_success_and_failure_counts(user):
    user.add_key("openai")
    user.add_key("anthropic")
    user.add_key(UNREACHABLE_VENDOR)
    client = user.openai()
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    client.chat.completions.create(model="claude-haiku-4", messages=HELLO)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="minimax-m3", messages=HELLO)
    deadline = time.monotonic() + 10
    rows = user.usage()
    while sum(row["requests"] for row in rows) < 4:
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
        rows = user.usage()
    counts = {(r["vendor"], r["model"]): (r["successes"], r["failures"]) for r in rows}
    assert counts == {
        ("openai", "gpt-4o-mini"): (2, 0),
        ("anthropic", "claude-haiku-4"): (1, 0),
        ("minimax", "minimax-m3"): (0, 1),
    }
    assert all(r["prompt_tokens"] > 0 for r in rows if r["successes"])
