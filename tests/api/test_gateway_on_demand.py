"""On-demand boot (issue 18 §3): a tenant that wants it has a serveable model nothing serves
deployed by the gateway, once however many requests ask, and is told when to come back
(503 ``cold_start`` with ``Retry-After``); without it, 503 ``model_unavailable``."""

from __future__ import annotations

import threading
import time
from typing import Any

import openai
import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway, GatewayTenant

DEPLOY_SECONDS = 2.0  # the simulated provider's: the Retry-After a fresh boot answers


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    """This module's server runs the provisioning jobs; a deploy takes ``DEPLOY_SECONDS``."""
    return {
        "provision_interval_seconds": 0.1,
        "status_sync_seconds": 0.2,
        "simulated_deploy_seconds": DEPLOY_SECONDS,
    }


def serveable_model(gateway: Gateway) -> str:
    """A model our GPUs can serve, of no vendor (no BYOK upstream can serve it)."""
    return gateway.model(None, prefix="od-llm", serveable=True)


def on_demand_tenant(gateway: Gateway) -> GatewayTenant:
    t = gateway.new_tenant()
    r = t.api.patch(f"/tenants/{t.id}", json={"on_demand_boot": True})
    assert r.status_code == 200, r.text
    assert r.json()["on_demand_boot"] is True
    return t


def instances_of(t: GatewayTenant, model: str) -> list[dict[str, Any]]:
    r = t.api.get("/instances")
    assert r.status_code == 200, r.text
    return [i for i in r.json()["data"] if i["model_id"] == model and i["kind"] == "gpu"]


def refusal(call: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as raised:
        call()
    return raised.value


def test_a_model_nothing_serves_is_booted_once_for_many_requests_then_serves(gateway: Gateway):
    t = on_demand_tenant(gateway)
    model = serveable_model(gateway)
    _, secret = t.router_key()
    client = gateway.client(secret)

    def ask() -> Any:
        return client.chat.completions.create(model=model, messages=HELLO)

    errors: list[openai.APIStatusError] = []
    threads = [threading.Thread(target=lambda: errors.append(refusal(ask))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(errors) == 8
    for e in errors:
        assert (e.status_code, e.code) == (503, "cold_start"), e.body
        assert e.body["type"] == "service_unavailable"
        assert 1 <= int(e.response.headers["retry-after"]) <= DEPLOY_SECONDS
    [instance] = instances_of(t, model)  # one deploy, however many asked at once
    assert instance["status"] in ("pending", "deploying", "running")

    deadline = time.monotonic() + 20
    while (status := t.api.get(f"/instances/{instance['id']}").json()["status"]) != "running":
        assert time.monotonic() < deadline, f"still {status}"
        time.sleep(0.1)
    answer = None
    while answer is None:  # the gateway keeps a tenant's instances for about a second
        try:
            answer = ask()
        except openai.APIStatusError as e:
            assert e.code == "cold_start" and time.monotonic() < deadline, e.body
            time.sleep(0.2)
    assert answer.choices[0].message.content
    assert len(instances_of(t, model)) == 1
    t.wait_billed(9)
    [record] = t.records()[answer.id]
    assert record["instance_id"] == instance["id"]


def test_without_on_demand_boot_nothing_is_deployed_and_the_answer_is_model_unavailable(
    gateway: Gateway,
):
    t = gateway.new_tenant()
    model = serveable_model(gateway)
    _, secret = t.router_key()

    e = refusal(lambda: gateway.client(secret).chat.completions.create(model=model, messages=HELLO))

    assert (e.status_code, e.code) == (503, "model_unavailable"), e.body
    assert instances_of(t, model) == []
    assert t.api.get(f"/tenants/{t.id}").json()["on_demand_boot"] is False


def test_a_model_our_gpus_cannot_serve_is_never_booted(gateway: Gateway):
    t = on_demand_tenant(gateway)
    model = gateway.model(None, prefix="od-api-only")  # not serveable
    _, secret = t.router_key()

    e = refusal(lambda: gateway.client(secret).chat.completions.create(model=model, messages=HELLO))

    assert (e.status_code, e.code) == (503, "model_unavailable"), e.body
    assert instances_of(t, model) == []


def test_a_request_pinned_to_a_byok_vendor_never_boots_a_gpu(gateway: Gateway):
    t = on_demand_tenant(gateway)
    model = serveable_model(gateway)
    _, secret = t.router_key()

    e = refusal(
        lambda: gateway.client(secret).chat.completions.create(
            model=model, messages=HELLO, extra_body={"vendor": "openai"}
        )
    )

    assert (e.status_code, e.code) == (503, "model_unavailable"), e.body
    assert instances_of(t, model) == []


def test_on_demand_boot_is_set_at_creation_audited_and_exported(gateway: Gateway):
    admin = gateway.admin
    created = admin.new_tenant(on_demand_boot=True)
    assert created["on_demand_boot"] is True
    r = admin.patch(f"/tenants/{created['id']}", json={"on_demand_boot": False})
    assert r.status_code == 200, r.text
    assert r.json()["on_demand_boot"] is False

    r = admin.get(
        "/audit", params={"tenant_id": created["id"], "action": "tenant.on_demand_boot_set"}
    )
    assert r.status_code == 200, r.text
    assert [e["changes"] for e in reversed(r.json()["data"])] == [
        {"enabled": True},
        {"enabled": False},
    ]
    r = admin.get(f"/tenants/{created['id']}/export")
    assert r.status_code == 200, r.text
    assert '"type":"tenant.on_demand_boot_set"' in r.text
    assert '"on_demand_boot":false' in r.text  # the replayed state


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_on_demand_boot_must_be_true_or_false(gateway: Gateway, value: Any):
    t = gateway.new_tenant()
    r = gateway.admin.post("/tenants", json={"name": "od-" + t.id[:8], "on_demand_boot": value})
    assert r.status_code == 400, r.text
    r = t.api.patch(f"/tenants/{t.id}", json={"on_demand_boot": value})
    if value is None:  # nothing to change
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400, r.text


def test_a_tenant_may_not_set_another_tenants_on_demand_boot(gateway: Gateway):
    t, other = gateway.new_tenant(), gateway.new_tenant()
    r = t.api.patch(f"/tenants/{other.id}", json={"on_demand_boot": True})
    assert r.status_code == 404, r.text
    assert gateway.admin.get(f"/tenants/{other.id}").json()["on_demand_boot"] is False
