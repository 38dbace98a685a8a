"""The OpenAPI document tells the truth: every error status, in the error shape; strict types."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import assert_error

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def spec(live_server) -> dict[str, Any]:
    r = httpx.get(live_server.url + "/api/v1/openapi.json")
    assert r.status_code == 200
    return r.json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def test_every_operation_but_the_health_checks_authenticates_with_a_bearer_token(spec):
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for method, path, operation in operations(spec):
        if path.startswith(("/api/v1/health", "/auth/")):  # sign-up and sign-in give tokens
            assert "security" not in operation
        else:
            assert operation.get("security") == [{"bearer": []}], (method, path)


def test_every_authenticated_operation_documents_401_403_429_and_503(spec):
    authenticated = [op for op in operations(spec) if op[2].get("security")]
    assert len(authenticated) > 50
    for method, path, operation in authenticated:
        assert {"401", "403", "429", "503"} <= operation["responses"].keys(), (method, path)


def test_rate_limited_and_unavailable_answers_document_retry_after(spec):
    responses = spec["paths"]["/api/v1/tenants"]["get"]["responses"]

    assert "Retry-After" in responses["429"]["headers"]
    assert "Retry-After" in responses["503"]["headers"]


def test_every_operation_with_an_id_in_its_path_documents_404(spec):
    for method, path, operation in operations(spec):
        if "_id}" in path:
            assert "404" in operation["responses"], (method, path)


def test_every_operation_with_a_body_documents_400_and_413(spec):
    for method, path, operation in operations(spec):
        if "requestBody" in operation:
            assert {"400", "413"} <= operation["responses"].keys(), (method, path)


def test_every_write_documents_409(spec):
    writes = [op for op in operations(spec) if op[0] != "GET" and op[2].get("security")]
    assert len(writes) > 20
    for method, path, operation in writes:
        assert "409" in operation["responses"], (method, path)


def test_operations_that_call_a_gpu_provider_document_502(spec):
    paths = spec["paths"]
    for path, method in [
        ("/api/v1/instances/{instance_id}", "delete"),
        ("/api/v1/instances/{instance_id}/refresh", "post"),
        ("/api/v1/instances/{instance_id}/test", "post"),
        ("/api/v1/instances/{instance_id}/logs", "get"),
        ("/api/v1/tenants/{tenant_id}", "delete"),
    ]:
        assert "502" in paths[path][method]["responses"], (method, path)


def test_every_error_is_documented_in_the_openai_error_shape_and_none_as_422(spec):
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["message", "type", "code"]
    for method, path, operation in operations(spec):
        assert "422" not in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_the_document_says_that_unsupported_methods_answer_405(spec):
    assert "405" in spec["info"]["description"]
    assert spec["components"]["responses"]["MethodNotAllowed"]["content"]


def parameter(spec: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    found = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name]
    assert len(found) == 1
    return found[0]["schema"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/usage", "from"),
        ("/api/v1/usage", "to"),
        ("/api/v1/costs", "from"),
        ("/api/v1/usage/series", "to"),
        ("/api/v1/audit", "since"),
        ("/api/v1/audit", "until"),
        ("/api/v1/tenants/{tenant_id}", "as_of"),
        ("/api/v1/keys/{key_id}", "as_of"),
        ("/api/v1/tenants/{tenant_id}/export", "as_of"),
    ],
)
def test_times_are_documented_as_a_date_or_a_date_time(spec, path, name):
    schema = parameter(spec, path, name)

    assert schema["anyOf"] == [
        {"type": "string", "format": "date"},
        {"type": "string", "format": "date-time"},
    ]


def test_billing_range_ends_are_documented_as_dates(spec):
    path = "/api/v1/team-billing/summary/{tenant_id}/{start}/{end}"

    assert parameter(spec, path, "start")["format"] == "date"
    assert parameter(spec, path, "end")["format"] == "date"


@pytest.mark.parametrize("model", ["InstanceCreate", "ByokCreate", "BudgetCreate", "WebhookCreate"])
def test_an_optional_tenant_id_says_that_the_admin_must_give_it(spec, model):
    description = spec["components"]["schemas"][model]["properties"]["tenant_id"]["description"]

    assert "Required with the admin token" in description


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/instances", {"model_id": "llama-3.1-8b"}),
        ("/byok", {"name": "n", "upstream": "openai", "external_key": "sk-" + "x" * 40}),
        ("/budgets", {"limit_eur": "10"}),
        ("/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["key.revoked"]}),
    ],
)
def test_the_admin_creating_without_a_tenant_id_is_told_400_naming_it(admin, path, body):
    r = admin.post(path, json=body)

    assert_error(r, 400, "tenant_id")
    assert r.json()["error"]["param"] == "tenant_id"


def test_every_creating_operation_documents_the_idempotency_key_header(spec):
    creating = [op for op in operations(spec) if "201" in op[2]["responses"]]
    assert len(creating) >= 7
    for method, path, operation in creating:
        headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
        assert headers == ["Idempotency-Key"], (method, path)
