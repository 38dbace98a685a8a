"""Errors over HTTP: every one in the OpenAI shape with the right status; docs and content types."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest


def assert_openai_error(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert isinstance(error["code"], str) and error["code"]
    assert "Traceback" not in r.text
    return error


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/api/v1/tenants/x/y/z", "/nowhere"])
def test_an_unknown_route_is_a_404_in_the_openai_shape(live_server, path):
    r = httpx.get(live_server.url + path)

    error = assert_openai_error(r, 404)
    assert path in error["message"]


def test_an_unknown_route_is_a_404_even_with_a_valid_token(admin):
    assert_openai_error(admin.get("/no-such-thing"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/tenants"), ("PUT", "/instances"), ("PATCH", "/budgets"), ("POST", "/health")],
)
def test_a_wrong_method_is_a_405_in_the_openai_shape(admin, method, path):
    r = admin.request(method, path)

    error = assert_openai_error(r, 405)
    assert error["code"] == "method_not_allowed"


@pytest.mark.parametrize("body", [b"{", b'{"model_id": }', b"not json at all", b"{'a': 1}"])
def test_a_malformed_json_body_is_a_400(tenant, body):
    r = tenant.api.post("/instances", content=body, headers={"Content-Type": "application/json"})

    error = assert_openai_error(r, 400)
    assert error["type"] == "invalid_request_error"


def test_a_json_body_that_is_not_an_object_is_a_400(tenant):
    r = tenant.api.post("/budgets", json=["limit_eur", "10"])

    assert_openai_error(r, 400)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/tenants", {}, "name"),
        ("/tenants", {"name": ""}, "name"),
        ("/tenants", {"name": "ok", "weight": "heavy"}, "weight"),
        ("/instances", {"tenant_id": "not-a-uuid", "model_id": "m"}, "tenant_id"),
        ("/budgets", {"tenant_id": "x", "limit_eur": "1"}, "tenant_id"),
        ("/budgets", {"limit_eur": "ten euros"}, "limit_eur"),
    ],
)
def test_a_validation_error_is_a_400_not_a_422_and_names_the_field(admin, path, body, field):
    r = admin.post(path, json=body)

    error = assert_openai_error(r, 400)
    assert field in error["message"]


def test_a_bad_query_parameter_is_a_400_naming_it(admin):
    r = admin.get("/tenants", params={"limit": "lots"})

    error = assert_openai_error(r, 400)
    assert "limit" in error["message"]


def test_a_path_id_that_is_not_a_uuid_is_a_400_naming_it(admin):
    r = admin.get("/budgets/12")

    error = assert_openai_error(r, 400)
    assert "budget_id" in error["message"]


def test_a_missing_token_is_a_401_that_asks_for_a_bearer_token(anonymous):
    r = anonymous.get("/tenants")

    error = assert_openai_error(r, 401)
    assert error["type"] == "authentication_error"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "hp_mk_abc", "Token hp_mk_abc"])
def test_an_authorization_header_without_a_bearer_token_is_a_401(live_server, header):
    r = httpx.get(live_server.url + "/api/v1/tenants", headers={"Authorization": header})

    assert_openai_error(r, 401)


def test_an_anonymous_request_is_told_401_before_its_body_is_checked(anonymous):
    r = anonymous.post("/budgets", json={"limit_eur": "abc", "period": "yearly"})

    assert_openai_error(r, 401)


def wait_for_a_fresh_minute_if_the_window_is_about_to_roll_over():
    # The limit counts per wall-clock minute; a roll-over mid-test would reset the count.
    now = datetime.now(UTC)
    if now.second >= 55:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.2)


def test_past_the_rate_limit_a_token_gets_429_with_retry_after(admin, container, tenant):
    api = admin.as_token(admin.new_key(tenant.id, "management")[1])
    wait_for_a_fresh_minute_if_the_window_is_about_to_roll_over()
    original = container.rate_limiter.per_minute
    container.rate_limiter.per_minute = 3
    try:
        allowed = [api.get("/instances").status_code for _ in range(3)]
        r = api.get("/instances")
    finally:
        container.rate_limiter.per_minute = original

    assert allowed == [200, 200, 200]
    error = assert_openai_error(r, 429)
    assert error["type"] == "rate_limit_error"
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_the_rate_limit_counts_each_token_on_its_own(admin, container, tenant):
    first = admin.as_token(admin.new_key(tenant.id, "management")[1])
    second = admin.as_token(admin.new_key(tenant.id, "management")[1])
    wait_for_a_fresh_minute_if_the_window_is_about_to_roll_over()
    original = container.rate_limiter.per_minute
    container.rate_limiter.per_minute = 3
    try:
        for _ in range(4):
            first.get("/instances")
        r = second.get("/instances")
    finally:
        container.rate_limiter.per_minute = original

    assert r.status_code == 200, r.text


def test_a_refused_creation_past_the_rate_limit_creates_nothing(admin, container, tenant):
    api = admin.as_token(admin.new_key(tenant.id, "management")[1])
    wait_for_a_fresh_minute_if_the_window_is_about_to_roll_over()
    original = container.rate_limiter.per_minute
    container.rate_limiter.per_minute = 3
    try:
        for _ in range(3):
            api.get("/budgets")
        r = api.post("/budgets", json={"limit_eur": "10"})
    finally:
        container.rate_limiter.per_minute = original

    assert r.status_code == 429
    assert tenant.api.get("/budgets").json()["data"] == []


def test_the_openapi_document_is_version_3_1_and_lists_the_management_routes(live_server):
    r = httpx.get(live_server.url + "/api/v1/openapi.json")

    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.1")
    for path in ("/api/v1/tenants", "/api/v1/keys", "/api/v1/instances", "/api/v1/budgets"):
        assert path in spec["paths"]


def test_the_swagger_ui_is_served_as_html_at_docs(live_server):
    r = httpx.get(live_server.url + "/docs")

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "/api/v1/openapi.json" in r.text


def test_a_body_sent_without_a_content_type_is_read_as_json(tenant):
    # Like the seeds' curl examples: -d '{...}' with no -H "Content-Type: application/json".
    r = tenant.api.post("/budgets", content=b'{"limit_eur": "12.50", "period": "weekly"}')

    assert r.status_code == 201, r.text
    assert (r.json()["limit_eur"], r.json()["period"]) == ("12.50", "weekly")


def test_a_body_that_curl_labels_as_a_form_is_read_as_json(tenant):
    r = tenant.api.post(
        "/budgets",
        content=b'{"limit_eur": "3", "period": "daily"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert r.status_code == 201, r.text
    assert r.json()["period"] == "daily"


def test_an_illegal_instance_transition_is_a_409_conflict(tenant):
    instance = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"}).json()
    tenant.api.delete(f"/instances/{instance['id']}")

    r = tenant.api.delete(f"/instances/{instance['id']}")

    error = assert_openai_error(r, 409)
    assert error["type"] == "conflict_error"


def test_an_unknown_resource_is_a_404_that_says_what_was_not_found(tenant):
    missing = uuid.uuid4()

    error = assert_openai_error(tenant.api.get(f"/budgets/{missing}"), 404)

    assert "budget" in error["message"]
