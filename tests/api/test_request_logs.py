"""One log line per request, management API and gateway: its request id (the client's
``X-Request-Id`` if sane, else a new one, returned on the answer), method, route template,
status, latency, tenant and key; never a token, a prompt or a completion."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import httpx
import pytest

from interfaces.logformat import TEXT_FORMAT, JsonFormatter
from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import Gateway

ACCESS = "hostplane.access"


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ACCESS)
    return caplog


def line_of(caplog: pytest.LogCaptureFixture, request_id: str) -> logging.LogRecord:
    """The access line of ``request_id`` (written once the answer is sent: wait for it)."""
    deadline = time.monotonic() + 5
    while True:
        found = [
            r for r in caplog.records if r.name == ACCESS and r.fields["request_id"] == request_id
        ]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{len(found)} log lines for {request_id}"
            return found[0]
        time.sleep(0.02)


def formatted(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record, as both formats would write it."""
    text, js = logging.Formatter(TEXT_FORMAT), JsonFormatter()
    return "\n".join(f.format(r) for r in caplog.records for f in (text, js))


def test_a_management_request_is_one_line_with_the_clients_request_id(
    gateway: Gateway, access: Any
):
    t = gateway.new_tenant()
    caller, secret = gateway.admin.new_key(t.id, "management")
    key, _ = t.router_key()
    rid = f"client-{uuid.uuid4().hex[:8]}"
    r = httpx.get(
        f"{gateway.url}/api/v1/keys/{key['id']}",
        headers={"Authorization": f"Bearer {secret}", "X-Request-Id": rid},
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == rid
    record = line_of(access, rid)
    fields = record.fields
    assert fields["method"] == "GET"
    assert fields["route"] == "/api/v1/keys/{key_id}"
    assert fields["status"] == 200
    assert fields["tenant_id"] == t.id
    assert fields["key_id"] == caller["id"]  # the caller's key, not the one read
    assert fields["latency_ms"] >= 0
    text = record.getMessage()
    assert "GET /api/v1/keys/{key_id} 200" in text and rid in text and t.id in text
    assert secret not in formatted(access)


@pytest.mark.parametrize("sent", [b"x" * 129, b"two words", "caf\u00e9".encode(), b"a\tb"])
def test_an_unfit_request_id_is_replaced_by_a_new_one(gateway: Gateway, access: Any, sent: bytes):
    r = httpx.get(f"{gateway.url}/api/v1/health", headers={"X-Request-Id": sent})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert rid.encode() != sent and len(rid) == 32
    record = line_of(access, rid)
    assert (record.fields["route"], record.fields["status"]) == ("/api/v1/health", 200)
    assert record.fields["tenant_id"] is None


def test_an_unknown_path_is_logged_without_its_path(gateway: Gateway, access: Any):
    r = httpx.get(f"{gateway.url}/no/such/{uuid.uuid4()}", headers={"X-Request-Id": "nf-1"})
    assert r.status_code == 404
    record = line_of(access, "nf-1")
    assert (record.fields["route"], record.fields["status"]) == ("unmatched", 404)


def test_a_gateway_request_is_logged_without_its_token_prompt_or_completion(
    gateway: Gateway, access: Any
):
    t = gateway.new_tenant()
    model = gateway.model("openai")
    gateway.fake.script(model, words=5)
    t.byok("openai")
    key, secret = t.router_key()
    prompt = f"zebra-{uuid.uuid4().hex} tells a secret"
    rid = f"gw-{uuid.uuid4().hex[:8]}"
    client = gateway.client(secret, default_headers={"X-Request-Id": rid})
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}]
    )
    answer = raw.parse()
    # The answer keeps the gateway's own id (its usage record's); the log has the client's.
    assert raw.headers["x-request-id"] == answer.id != rid
    record = line_of(access, rid)
    assert record.fields["route"] == "/v1/chat/completions"
    assert record.fields["method"] == "POST"
    assert record.fields["status"] == 200
    assert record.fields["tenant_id"] == t.id
    assert record.fields["key_id"] == key["id"]
    assert record.fields["answer_id"] == answer.id
    completion = answer.choices[0].message.content
    assert completion
    logged = formatted(access)
    for secret_thing in (secret, prompt, "zebra", completion):
        assert secret_thing not in logged

    # Refused before authentication: still one line, no tenant.
    r = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": "Bearer hp_rk_wrong", "X-Request-Id": "gw-401"},
        json={"model": model, "messages": [{"role": "user", "content": prompt}]},
    )
    assert r.status_code == 401 and r.headers["x-request-id"] == "gw-401"
    record = line_of(access, "gw-401")
    assert (record.fields["status"], record.fields["tenant_id"]) == (401, None)
    assert "hp_rk_wrong" not in formatted(access)


def test_the_json_format_is_one_object_per_line(gateway: Gateway, access: Any):
    r = httpx.get(f"{gateway.url}/api/v1/health", headers={"X-Request-Id": "json-1"})
    assert r.status_code == 200
    line = JsonFormatter().format(line_of(access, "json-1"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["logger"] == ACCESS and parsed["level"] == "INFO"
    assert parsed["request_id"] == "json-1"
    assert (parsed["method"], parsed["route"], parsed["status"]) == ("GET", "/api/v1/health", 200)
    assert isinstance(parsed["latency_ms"], float)
    assert parsed["time"].endswith("+00:00")
