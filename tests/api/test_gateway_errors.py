"""The gateway's refusals and failures, as the official ``openai`` SDK's typed exceptions.

Every error is in OpenAI's shape (``{"error": {"message", "type", "code", "param"}}``), so the
SDK's ``e.code`` is the gateway's code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from application.auth import Principal
from domain.base import Actor
from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, UNREACHABLE_VENDOR, Gateway, GatewayTenant
from tests.conftest import ADMIN_TOKEN

BASES = ["/v1", "/api/v1"]


@pytest.fixture(scope="module")
def byok_tenant(gateway: Gateway) -> tuple[GatewayTenant, dict[str, Any], str]:
    """A tenant with an OpenAI BYOK upstream and a model of OpenAI's."""
    t = gateway.new_tenant()
    upstream, _ = t.byok("openai")
    return t, upstream, gateway.model("openai")


def chat(gateway: Gateway, secret: str, model: str, base: str = "/v1", **kwargs: Any) -> Any:
    return gateway.client(secret, base).chat.completions.create(
        model=model, messages=HELLO, **kwargs
    )


def refused(
    error: type[openai.APIStatusError], call: Callable[[], Any], status: int, code: str | None
) -> openai.APIStatusError:
    with pytest.raises(error) as raised:
        call()
    e = raised.value
    assert e.status_code == status, e.body
    assert isinstance(e.body, dict) and e.body["message"] and e.body["type"]
    if code is not None:
        assert e.code == code, e.body
    return e


def eventually_refused(
    error: type[openai.APIStatusError], call: Callable[[], Any], status: int, code: str | None
) -> openai.APIStatusError:
    """A change to a key reaches every process within a second: allow a few."""
    deadline = time.monotonic() + 5
    while True:
        try:
            call()
        except error as e:
            assert e.status_code == status and (code is None or e.code == code), e.body
            return e
        assert time.monotonic() < deadline, "the change never took effect"
        time.sleep(0.1)


# -- 401 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("secret", ["hp_rk_" + uuid.uuid4().hex, "not-a-key", "hp_ik_nope"])
def test_an_unknown_key_is_an_authentication_error(gateway, byok_tenant, base, secret):
    _, _, model = byok_tenant
    call = lambda: chat(gateway, secret, model, base)  # noqa: E731
    refused(openai.AuthenticationError, call, 401, "invalid_api_key")


def test_a_missing_bearer_is_a_401_in_openais_shape(gateway, byok_tenant):
    _, _, model = byok_tenant
    r = httpx.post(gateway.url + "/v1/chat/completions", json={"model": model, "messages": HELLO})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_api_key"


def test_a_disabled_key_is_an_authentication_error_and_works_again_when_enabled(
    gateway, byok_tenant
):
    t, _, model = byok_tenant
    key, secret = t.router_key()
    chat(gateway, secret, model)
    r = gateway.admin.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    assert r.status_code == 200, r.text
    call = lambda: chat(gateway, secret, model)  # noqa: E731
    eventually_refused(openai.AuthenticationError, call, 401, "invalid_api_key")
    gateway.admin.put(f"/keys/{key['id']}/disabled", json={"disabled": False})
    deadline = time.monotonic() + 5
    while True:
        try:
            assert chat(gateway, secret, model).choices
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline, "the re-enabled key is still refused"
            time.sleep(0.1)


def test_a_deleted_key_is_an_authentication_error(gateway, byok_tenant):
    t, _, model = byok_tenant
    key, secret = t.router_key()
    chat(gateway, secret, model)
    assert gateway.admin.delete(f"/keys/{key['id']}").status_code == 200
    call = lambda: chat(gateway, secret, model)  # noqa: E731
    eventually_refused(openai.AuthenticationError, call, 401, "invalid_api_key")


def test_a_key_disabled_here_is_refused_at_its_very_next_request(gateway, byok_tenant):
    """The gateway keeps keys without reading the store per request; a change made through
    this process is noted as it commits, before the management API answers."""
    t, _, model = byok_tenant
    key, secret = t.router_key()
    for _ in range(3):  # kept, and trusted, by now
        assert chat(gateway, secret, model).choices
    r = gateway.admin.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    assert r.status_code == 200, r.text
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, secret, model)


def test_a_key_disabled_by_another_process_is_refused_soon(gateway, byok_tenant):
    """Another process's change reaches this one through the event store's stream."""
    from interfaces.bootstrap import Container

    t, _, model = byok_tenant
    key, secret = t.router_key()
    for _ in range(3):
        assert chat(gateway, secret, model).choices
    other = Container.open(gateway.container.settings)  # its own event store and pools
    try:
        operator = Principal(kind="admin", actor=Actor(id="admin", ip=None))
        other.keys.set_key_disabled(operator, uuid.UUID(key["id"]), True)
    finally:
        other.close()
    call = lambda: chat(gateway, secret, model)  # noqa: E731
    eventually_refused(openai.AuthenticationError, call, 401, "invalid_api_key")


def test_an_expired_key_is_an_authentication_error(gateway, byok_tenant):
    t, _, model = byok_tenant
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    _, secret = t.router_key(expires_at=expires.isoformat())
    assert chat(gateway, secret, model).choices
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
    refused(openai.AuthenticationError, lambda: chat(gateway, secret, model), 401, None)


# -- 403 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_a_management_key_is_the_wrong_kind_of_key(gateway, byok_tenant, base):
    t, _, model = byok_tenant
    call = lambda: chat(gateway, t.management_key(), model, base)  # noqa: E731
    refused(openai.PermissionDeniedError, call, 403, "wrong_key_kind")


def test_the_admin_token_is_the_wrong_kind_of_key(gateway, byok_tenant):
    _, _, model = byok_tenant
    call = lambda: chat(gateway, ADMIN_TOKEN, model)  # noqa: E731
    refused(openai.PermissionDeniedError, call, 403, "wrong_key_kind")


def test_a_model_outside_allowed_models_is_refused(gateway, byok_tenant):
    t, _, model = byok_tenant
    other = gateway.model("openai")
    _, secret = t.router_key(allowed_models=[other])
    assert chat(gateway, secret, other).choices
    call = lambda: chat(gateway, secret, model)  # noqa: E731
    refused(openai.PermissionDeniedError, call, 403, "model_not_allowed")
    assert gateway.fake.requests_for(model) == [] or all(
        r.bearer != secret for r in gateway.fake.requests_for(model)
    )


def test_an_address_outside_the_ip_allowlist_is_refused(gateway, byok_tenant):
    t, _, model = byok_tenant
    _, secret = t.router_key(ip_allowlist=["10.0.0.0/8"])
    call = lambda: chat(gateway, secret, model)  # noqa: E731
    refused(openai.PermissionDeniedError, call, 403, "ip_not_allowed")
    _, allowed = t.router_key(ip_allowlist=["127.0.0.1/32"])
    assert chat(gateway, allowed, model).choices


def test_a_sovereign_key_never_reaches_a_byok_upstream(gateway, byok_tenant):
    t, _, model = byok_tenant
    before = len(gateway.fake.requests_for(model))
    _, secret = t.router_key(sovereignty_mode=True)
    call = lambda: chat(gateway, secret, model)  # noqa: E731
    refused(openai.PermissionDeniedError, call, 403, "sovereignty_violation")
    call = lambda: chat(gateway, secret, model, stream=True)  # noqa: E731
    refused(openai.PermissionDeniedError, call, 403, "sovereignty_violation")
    assert len(gateway.fake.requests_for(model)) == before


def test_another_tenants_upstream_by_x_key_id_is_refused(gateway, byok_tenant):
    t, _, model = byok_tenant
    other = gateway.new_tenant()
    theirs, their_key = other.byok("openai")
    _, secret = t.router_key()
    call = lambda: chat(  # noqa: E731
        gateway, secret, model, extra_headers={"X-Key-Id": theirs["id"]}
    )
    refused(openai.PermissionDeniedError, call, 403, None)
    assert all(r.bearer != their_key for r in gateway.fake.requests_for(model))


# -- 400 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_an_unknown_model_is_a_bad_request(gateway, byok_tenant, base):
    t, _, _ = byok_tenant
    _, secret = t.router_key()
    call = lambda: chat(gateway, secret, "no-such-model-" + uuid.uuid4().hex[:8], base)  # noqa: E731
    refused(openai.BadRequestError, call, 400, "model_not_found")


# -- upstream failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (400, openai.BadRequestError, "invalid_value"),
        (404, openai.NotFoundError, "model_not_found"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
    ],
)
def test_an_upstream_4xx_passes_through_with_its_status(gateway, byok_tenant, status, error, code):
    t, _, _ = byok_tenant
    model = gateway.model("openai")
    gateway.fake.script(model, status=status)
    _, secret = t.router_key()
    refused(error, lambda: chat(gateway, secret, model), status, code)
    refused(error, lambda: chat(gateway, secret, model, stream=True), status, code)


@pytest.mark.parametrize("status", [500, 503])
def test_an_upstream_5xx_is_a_502_upstream_error(gateway, byok_tenant, status):
    t, _, _ = byok_tenant
    model = gateway.model("openai")
    gateway.fake.script(model, status=status)
    _, secret = t.router_key()
    refused(openai.InternalServerError, lambda: chat(gateway, secret, model), 502, "upstream_error")
    call = lambda: chat(gateway, secret, model, stream=True)  # noqa: E731
    refused(openai.InternalServerError, call, 502, "upstream_error")


def test_an_unreachable_upstream_is_a_502(gateway):
    """This server's upstream for one vendor is a closed port: a connection error."""
    t = gateway.new_tenant()
    t.byok(UNREACHABLE_VENDOR)
    model = gateway.model(UNREACHABLE_VENDOR, prefix=f"{UNREACHABLE_VENDOR}-gw")
    _, secret = t.router_key()
    refused(openai.InternalServerError, lambda: chat(gateway, secret, model), 502, "upstream_error")


def test_a_stalled_upstream_is_a_504_upstream_timeout(gateway, byok_tenant):
    t, _, _ = byok_tenant
    model = gateway.model("openai")
    gateway.fake.script(model, stall=3.0)  # first-byte timeout: 1 s
    _, secret = t.router_key()
    refused(openai.APIStatusError, lambda: chat(gateway, secret, model), 504, "upstream_timeout")
    call = lambda: chat(gateway, secret, model, stream=True)  # noqa: E731
    refused(openai.APIStatusError, call, 504, "upstream_timeout")


# -- 503 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_a_model_nothing_can_serve_is_503_model_unavailable(gateway, base):
    t = gateway.new_tenant()  # no BYOK upstream, no instance
    model = gateway.model("openai")
    _, secret = t.router_key()
    e = refused(
        openai.InternalServerError,
        lambda: chat(gateway, secret, model, base),
        503,
        "model_unavailable",
    )
    assert isinstance(e, openai.APIStatusError)


def test_a_model_whose_instance_is_pending_is_503_cold_start_with_retry_after(gateway):
    t = gateway.new_tenant()
    r = t.api.post(
        "/instances", json={"model_id": "llama-3.1-8b", "region": "EU", "provider": "simulated"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"  # this server runs no provisioning jobs
    _, secret = t.router_key()
    call = lambda: chat(gateway, secret, "llama-3.1-8b")  # noqa: E731
    e = refused(openai.APIStatusError, call, 503, "cold_start")
    retry_after = e.response.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit(), e.response.headers
