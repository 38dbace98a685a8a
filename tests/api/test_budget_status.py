"""Budget status and alert events (issue 3, item 4)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from domain.budget import Budget


def ingest(api, key_id: str, prompt_tokens: int, completion_tokens: int = 0) -> None:
    record = {
        "request_id": uuid.uuid4().hex,
        "key_id": key_id,
        "model": "gpt-4o",  # 2.30 EUR / 9.20 EUR per million tokens in the default catalog
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "status": "success",
        "latency_ms": 10,
        "occurred_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
    }
    r = api.post("/usage/events", json={"records": [record]})
    assert r.status_code == 200, r.text


@pytest.fixture
def key_budget(admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    r = tenant.api.post(
        "/budgets",
        json={
            "key_id": key["id"],
            "limit_eur": "0.023",
            "period": "daily",
            "thresholds": ["0.5", "1"],
        },
    )
    assert r.status_code == 201, r.text
    return key, r.json()


def alert_events(container, budget_id: str) -> list[str]:
    events = container.store.events.get(UUID(budget_id))
    return [
        type(e).__name__ for e in events if isinstance(e, Budget.ThresholdCrossed | Budget.Exceeded)
    ]


def test_a_new_budget_shows_todays_window_nothing_spent_and_state_ok(tenant, key_budget):
    _, budget = key_budget
    r = tenant.api.get(f"/budgets/{budget['id']}")
    body = r.json()
    today = datetime.now(UTC).date().isoformat()
    assert body["period_start"] == f"{today}T00:00:00Z"
    assert body["spent"] == "0"
    assert body["remaining"] == "0.023"
    assert body["state"] == "ok"


def test_spend_past_a_threshold_turns_the_budget_to_warning_and_records_one_event(
    admin, tenant, key_budget, container
):
    key, budget = key_budget
    ingest(admin, key["id"], prompt_tokens=5000)  # 0.0115 EUR = exactly half of 0.023
    body = tenant.api.get(f"/budgets/{budget['id']}").json()
    assert Decimal(body["spent"]) == Decimal("0.0115")
    assert body["state"] == "warning"
    container.budget_watch.evaluate_watched()
    container.budget_watch.evaluate_watched()
    assert alert_events(container, budget["id"]) == ["ThresholdCrossed"]


def test_spend_at_the_limit_records_exceeded_exactly_once(admin, tenant, key_budget, container):
    key, budget = key_budget
    ingest(admin, key["id"], prompt_tokens=10000)  # 0.023 EUR: the limit itself
    container.budget_watch.evaluate_watched()
    ingest(admin, key["id"], prompt_tokens=10)
    container.budget_watch.evaluate_watched()
    body = tenant.api.get(f"/budgets/{budget['id']}").json()
    assert body["state"] == "exceeded"
    assert body["remaining"] == "0"
    assert alert_events(container, budget["id"]) == ["ThresholdCrossed", "Exceeded"]


def test_an_alert_appears_in_the_audit_log_of_the_tenant(admin, tenant, key_budget, container):
    key, budget = key_budget
    ingest(admin, key["id"], prompt_tokens=20000)
    container.budget_watch.evaluate_watched()
    r = tenant.api.get("/audit", params={"target_id": budget["id"]})
    actions = [e["action"] for e in r.json()["data"]]
    assert "budget.exceeded" in actions
    assert "budget.threshold_crossed" in actions


def test_a_tenant_budget_counts_every_key_of_the_tenant(admin, tenant):
    k1, _ = admin.new_key(tenant.id, "router")
    k2, _ = admin.new_key(tenant.id, "router")
    r = tenant.api.post("/budgets", json={"limit_eur": "1", "period": "monthly"})
    budget_id = r.json()["id"]
    ingest(admin, k1["id"], prompt_tokens=1000)
    ingest(admin, k2["id"], prompt_tokens=1000)
    body = tenant.api.get(f"/budgets/{budget_id}").json()
    assert Decimal(body["spent"]) == Decimal("0.0046")
    assert body["state"] == "ok"
