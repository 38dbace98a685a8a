"""Exports over HTTP: everything a tenant owns, replayed from events, and past states (as_of)."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from freezegun import freeze_time

from domain.base import Actor
from tests.helpers import error_of, new_model
from tests.helpers import usage_record as record

SYSTEM = Actor.system()


def export(api: Any, tenant_id: str, **params: str) -> tuple[str, list[dict[str, Any]]]:
    r = api.get(f"/tenants/{tenant_id}/export", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return r.text, [orjson.loads(line) for line in r.text.splitlines()]


def of_kind(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["kind"] == kind]


def audit_positions(admin: Any, tenant_id: str) -> set[int]:
    positions, cursor = set(), None
    while True:
        params = {"tenant_id": tenant_id, "limit": 500, **({"cursor": cursor} if cursor else {})}
        body = admin.get("/audit", params=params).json()
        positions |= {entry["id"] for entry in body["data"]}
        if not body["has_more"]:
            return positions
        cursor = body["next_cursor"]


@pytest.fixture
def busy(admin: Any, tenant: Any, container: Any) -> dict[str, Any]:
    """A tenant after a series of changes: keys, a budget, an instance, usage, credits."""
    model = new_model(admin, "1.00", "2.00", prefix="export-test")
    router, router_secret = admin.new_key(tenant.id, "router")
    spare, spare_secret = admin.new_key(tenant.id, "management")
    assert tenant.api.put(f"/keys/{router['id']}/disabled", json={"disabled": True}).is_success
    assert tenant.api.delete(f"/keys/{spare['id']}").is_success
    r = tenant.api.post("/budgets", json={"limit_eur": "10", "period": "monthly"})
    assert r.status_code == 201, r.text
    r = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    assert r.status_code == 201, r.text
    instance_id = r.json()["id"]
    instance_secret = tenant.api.get(f"/instances/{instance_id}/api-key").json()["api_key"]
    for status, when in (
        ("deploying", "2025-10-30T21:50:00Z"),
        ("running", "2025-10-30T22:00:00Z"),
        ("stopped", "2025-11-01T02:00:00Z"),
    ):
        with freeze_time(when):
            container.instances.transition_instance(uuid.UUID(instance_id), status, SYSTEM)
    records = [
        record(tenant.key["id"], model, "2025-10-31T23:59:59.999Z"),
        record(tenant.key["id"], model, "2025-11-01T00:00:00Z", prompt_tokens=3000),
    ]
    assert tenant.api.post("/usage/events", json={"records": records}).is_success
    r = admin.post(f"/tenants/{tenant.id}/credits", json={"amount_eur": "25.5"})
    assert r.is_success, r.text
    return {
        "secrets": [tenant.secret, router_secret, spare_secret, instance_secret],
        "instance_id": instance_id,
    }


def test_an_export_holds_every_event_of_the_tenant_in_global_order(admin, tenant, busy):
    _, lines = export(admin, tenant.id)

    events = of_kind(lines, "event")
    positions = [e["position"] for e in events]
    assert positions == sorted(positions)
    assert set(positions) == audit_positions(admin, tenant.id)
    header, end = lines[0], lines[-1]
    assert header["kind"] == "header" and header["tenant_id"] == tenant.id
    assert header["counts"]["events"] == len(events) == end["events"]
    assert header["counts"]["usage"] == 1 and header["counts"]["key"] == 5
    assert {e["type"] for e in events} >= {
        "tenant.registered",
        "key.issued",
        "key.disabled",
        "key.deleted",
        "budget.set",
        "instance.deploy_requested",
        "instance.status_changed",
        "usage.recorded",
        "tenant.credits_added",
    }


def test_an_export_contains_no_secret(admin, tenant, busy):
    text, lines = export(admin, tenant.id)

    for secret in busy["secrets"]:
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text
    issued = next(e for e in of_kind(lines, "event") if e["type"] == "key.issued")
    assert issued["data"]["token_hash"] == "[redacted]"
    tenant_state = next(s for s in of_kind(lines, "state") if s["type"] == "tenant")
    assert tenant_state["data"]["wrapped_data_key"] == "[redacted]"


def test_the_export_ends_with_the_replayed_state_and_the_bill_per_month(admin, tenant, busy):
    _, lines = export(admin, tenant.id)

    kinds = [line["kind"] for line in lines]
    assert kinds == sorted(kinds, key=["header", "event", "state", "billing", "end"].index)
    states = {(s["type"], s["id"]): s["data"] for s in of_kind(lines, "state")}
    assert states[("instance", busy["instance_id"])]["status"] == "stopped"
    assert states[("tenant", tenant.id)]["credits"] == "25.5"
    keys = [d for (kind, _), d in states.items() if kind == "key"]
    assert sorted((k["kind"], k["disabled"], k["deleted"]) for k in keys) == [
        ("management", False, False),
        ("management", False, True),
        ("router", True, False),
    ]
    bill = {b["month"]: b for b in of_kind(lines, "billing")}
    # 22:00 on 30 Oct to 02:00 on 1 Nov at 0.85 EUR/h: 26 h in October, 2 h in November.
    assert (bill["2025-10"]["gpu_cost"], bill["2025-11"]["gpu_cost"]) == ("22.10", "1.70")
    assert (bill["2025-10"]["token_cost"], bill["2025-11"]["token_cost"]) == ("0.002", "0.004")
    assert (bill["2025-10"]["requests"], bill["2025-11"]["requests"]) == (1, 1)


def test_the_bill_rebuilt_from_the_exported_events_matches_the_exported_totals(admin, tenant, busy):
    _, lines = export(admin, tenant.id)

    assert rebuild_bill(of_kind(lines, "event")) == {
        b["month"]: (Decimal(b["token_cost"]), Decimal(b["gpu_cost"]), Decimal(b["credits"]))
        for b in of_kind(lines, "billing")
    }


def rebuild_bill(events: list[dict[str, Any]]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """A reader's own billing from the export format alone (see the README)."""
    token: dict[str, Decimal] = defaultdict(Decimal)
    gpu: dict[str, Decimal] = defaultdict(Decimal)
    credits: dict[str, Decimal] = defaultdict(Decimal)
    rates: dict[str, Decimal] = {}
    since: dict[str, datetime] = {}
    for e in events:
        data = e["data"]
        if e["type"] == "usage.recorded":
            for _, _, rate, prompt, completion, *_rest, at_us, _ in data["records"]:
                _, input_price, output_price = data["rates"][rate]
                month = datetime.fromtimestamp(at_us / 1e6, UTC).strftime("%Y-%m")
                cost = prompt * Decimal(input_price) + completion * Decimal(output_price)
                token[month] += cost / 1_000_000
        elif e["type"] == "tenant.credits_added":
            credits[e["at"][:7]] += Decimal(data["amount_eur"])
        elif e["type"] == "instance.deploy_requested":
            rates[e["aggregate_id"]] = Decimal(data["hourly_rate_eur"])
        elif e["type"] == "instance.status_changed" and e["aggregate_id"] in rates:
            at = datetime.fromisoformat(e["at"])
            if data["status"] == "running":
                since.setdefault(e["aggregate_id"], at)
            elif e["aggregate_id"] in since:
                start = since.pop(e["aggregate_id"])
                for month, hours in hours_per_month(start, at).items():
                    gpu[month] += rates[e["aggregate_id"]] * hours
    months = token.keys() | gpu.keys() | credits.keys()
    return {m: (token[m], gpu[m], credits[m]) for m in sorted(months)}


def hours_per_month(start: datetime, end: datetime) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    t = start
    while t < end:
        nxt = datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=UTC)
        stop = min(nxt, end)
        out[t.strftime("%Y-%m")] += Decimal((stop - t).total_seconds()) / 3600
        t = stop
    return out


def test_a_tenant_may_export_itself_with_its_management_key(tenant):
    _, lines = export(tenant.api, tenant.id)

    assert lines[0]["tenant_id"] == tenant.id


def test_another_tenants_export_is_not_found(tenant, other_tenant):
    error_of(tenant.api.get(f"/tenants/{other_tenant.id}/export"), 404)


def test_a_router_key_may_not_export(admin, tenant):
    _, secret = admin.new_key(tenant.id, "router")

    error_of(admin.as_token(secret).get(f"/tenants/{tenant.id}/export"), 403)


def test_an_unknown_tenant_has_no_export(admin):
    error_of(admin.get(f"/tenants/{uuid.uuid4()}/export"), 404)


def test_a_malformed_as_of_is_a_400(admin, tenant):
    error = error_of(admin.get(f"/tenants/{tenant.id}/export", params={"as_of": "soon"}), 400)

    assert "as_of" in error["message"]


def test_an_export_as_of_a_past_moment_replays_only_the_events_until_then(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    r = tenant.api.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    disabled_at = r.json()["updated_at"]

    _, before = export(admin, tenant.id, as_of=key["created_at"])
    _, after = export(admin, tenant.id, as_of=disabled_at)

    def state(lines: list[dict[str, Any]]) -> dict[str, Any]:
        return next(s for s in of_kind(lines, "state") if s["id"] == key["id"])["data"]

    assert state(before)["disabled"] is False
    assert state(after)["disabled"] is True
    assert before[0]["as_of"] is not None
    assert before[0]["counts"]["events"] == len(of_kind(before, "event"))
    assert len(of_kind(after, "event")) == len(of_kind(before, "event")) + 1


def test_an_export_as_of_a_past_moment_bills_only_the_usage_recorded_until_then(admin, tenant):
    model = new_model(admin, "1.00", "2.00", prefix="export-test")
    early = [record(tenant.key["id"], model, "2025-10-30T10:00:00Z") for _ in range(2)]
    late = [record(tenant.key["id"], model, "2025-10-30T11:00:00Z", prompt_tokens=7000)]
    assert tenant.api.post("/usage/events", json={"records": early}).is_success
    _, lines = export(admin, tenant.id)
    first_batch_at = of_kind(lines, "event")[-1]["at"]
    assert tenant.api.post("/usage/events", json={"records": late}).is_success

    _, then = export(admin, tenant.id, as_of=first_batch_at)
    _, now = export(admin, tenant.id)

    usage_then = [e for e in of_kind(then, "event") if e["type"] == "usage.recorded"]
    assert [len(e["data"]["records"]) for e in usage_then] == [2]
    assert then[0]["counts"]["usage"] == 1 and then[-1]["events"] == then[0]["counts"]["events"]
    (bill_then,) = of_kind(then, "billing")
    (bill_now,) = of_kind(now, "billing")
    assert (bill_then["requests"], bill_then["token_cost"]) == (2, "0.004")
    assert (bill_now["requests"], bill_now["token_cost"]) == (3, "0.012")


def test_a_key_as_of_before_and_after_a_change_shows_both_versions(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    r = tenant.api.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    disabled_at = r.json()["updated_at"]

    before = tenant.api.get(f"/keys/{key['id']}", params={"as_of": key["created_at"]})
    after = tenant.api.get(f"/keys/{key['id']}", params={"as_of": disabled_at})

    assert before.status_code == after.status_code == 200
    assert before.json()["disabled"] is False
    assert after.json()["disabled"] is True
    assert before.json()["name"] == after.json()["name"] == key["name"]
    assert "token_hash" not in before.text


def test_a_key_before_it_was_issued_is_not_found(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")

    r = tenant.api.get(f"/keys/{key['id']}", params={"as_of": "2020-01-01T00:00:00Z"})

    error_of(r, 404)


def test_a_deleted_key_is_still_shown_as_it_was_before_its_deletion(admin, tenant):
    key, _ = admin.new_key(tenant.id, "management")
    assert tenant.api.delete(f"/keys/{key['id']}").is_success

    error_of(tenant.api.get(f"/keys/{key['id']}"), 404)
    r = tenant.api.get(f"/keys/{key['id']}", params={"as_of": key["created_at"]})
    assert r.status_code == 200 and r.json()["id"] == key["id"]


def test_another_tenants_key_as_of_is_not_found(admin, tenant, other_tenant):
    key, _ = admin.new_key(other_tenant.id, "router")

    error_of(tenant.api.get(f"/keys/{key['id']}", params={"as_of": key["created_at"]}), 404)


def test_a_tenant_as_of_before_a_weight_change_shows_the_old_weight(admin):
    t = admin.new_tenant(weight=100)
    r = admin.patch(f"/tenants/{t['id']}/weight", json={"weight": 300})
    changed_at = r.json()["updated_at"]

    before = admin.get(f"/tenants/{t['id']}", params={"as_of": t["created_at"]}).json()
    after = admin.get(f"/tenants/{t['id']}", params={"as_of": changed_at}).json()

    assert (before["weight"], after["weight"]) == (100, 300)
    assert before["name"] == t["name"] and before["status"] == "active"


def test_another_tenant_as_of_is_not_found(tenant, other_tenant):
    r = tenant.api.get(f"/tenants/{other_tenant.id}", params={"as_of": "2030-01-01T00:00:00Z"})

    error_of(r, 404)


def test_a_webhook_is_exported_as_replayed_state_without_its_secret(tenant):
    r = tenant.api.post(
        "/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["tenant.offboarded"]}
    )
    assert r.status_code == 201, r.text
    webhook_id, secret = r.json()["id"], r.json()["secret"]

    text, lines = export(tenant.api, tenant.id)

    assert secret not in text
    state = next(s for s in of_kind(lines, "state") if s["id"] == webhook_id)
    assert state["type"] == "webhook"
    assert state["data"]["url"] == "http://127.0.0.1:9/hook"
    assert state["data"]["secret_ciphertext"] == "[redacted]"
    assert "webhook.created" in {e["type"] for e in of_kind(lines, "event")}
