"""Exports and reconciliation on real PostgreSQL: the CLI, past states, tampered read models."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from freezegun import freeze_time

from application.auth import Principal
from domain.base import Actor
from tests.helpers import ensure_group, new_model, unique_name
from tests.integration.test_cli import hostplane

ADMIN = Principal(kind="admin", actor=Actor(id="admin", ip=None))
SYSTEM = Actor.system()


def lines_of(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


def without_time(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in line.items() if k != "generated_at"} for line in lines]


def caught_up(container: Any, *names: str) -> None:
    target = container.runner.max_notification_id()
    assert container.runner.wait_for(names, target, 10.0), container.runner.status()


@pytest.fixture
def billed(admin: Any, tenant: Any, container: Any) -> Any:
    """A tenant with usage over two days, a GPU run across midnight and credits."""
    model = new_model(admin, "1.00", "2.00", prefix="export-test")
    key = tenant.key["id"]
    records = [
        {
            "request_id": uuid.uuid4().hex,
            "key_id": key,
            "model": model,
            "prompt_tokens": 1000 * (i + 1),
            "completion_tokens": 500,
            "status": "success",
            "latency_ms": 100,
            "occurred_at": f"2025-10-{30 + i % 2}T1{i}:00:00Z",
        }
        for i in range(6)
    ]
    assert tenant.api.post("/usage/events", json={"records": records}).is_success
    r = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    instance_id = uuid.UUID(r.json()["id"])
    for status, when in (
        ("deploying", "2025-10-30T21:00:00Z"),
        ("running", "2025-10-30T22:15:00Z"),
        ("stopped", "2025-10-31T01:40:00Z"),
    ):
        with freeze_time(when):
            container.instances.transition_instance(instance_id, status, SYSTEM)
    assert admin.post(f"/tenants/{tenant.id}/credits", json={"amount_eur": "7"}).is_success
    caught_up(container, "usage", "costs", "audit")
    return tenant


def test_the_cli_writes_the_same_export_as_the_api_with_a_progress_bar(
    database_conninfo, tmp_path, admin, billed
):
    out = tmp_path / "export.ndjson"

    result = hostplane(
        "export", billed.id, "-o", str(out), database=database_conninfo, data_dir=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert "exporting events" in result.stderr
    from_api = lines_of(admin.get(f"/tenants/{billed.id}/export").text)
    assert without_time(lines_of(out.read_text())) == without_time(from_api)


def test_the_cli_exports_a_past_state_with_as_of(database_conninfo, tmp_path, admin, tenant):
    r = admin.patch(f"/tenants/{tenant.id}/group", json={"group": ensure_group(admin, "gold")})
    assert r.status_code == 200, r.text

    result = hostplane(
        "export",
        tenant.id,
        "--as-of",
        tenant.tenant["created_at"],
        database=database_conninfo,
        data_dir=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    lines = lines_of(result.stdout)
    state = next(s for s in lines if s["kind"] == "state" and s["type"] == "tenant")
    assert state["data"]["group"] is None
    assert [e["type"] for e in lines if e["kind"] == "event"] == ["tenant.registered"]


def test_an_instance_running_at_as_of_is_billed_up_to_that_moment(container):
    with freeze_time("2025-10-30T20:00:00Z"):
        tenant_id = container.tenants.create_tenant(ADMIN, unique_name())
        instance_id = container.instances.deploy_instance(
            ADMIN, tenant_id, "llama-3.1-8b", "EU", "simulated", "text"
        )
    for status, when in (("deploying", "21:00"), ("running", "22:00"), ("stopped", "23:59")):
        with freeze_time(f"2025-10-30T{when}:00Z"):
            container.instances.transition_instance(instance_id, status, SYSTEM)
    caught_up(container, "audit")

    with freeze_time("2025-11-05T00:00:00Z"):
        lines = list(
            container.replays.open_export(
                ADMIN, tenant_id, as_of=datetime.fromisoformat("2025-10-30T23:00:00Z")
            )
        )

    state = next(s for s in lines if s["kind"] == "state" and s["type"] == "instance")
    assert state["data"]["status"] == "running"
    bill = next(b for b in lines if b["kind"] == "billing")
    assert (bill["month"], bill["gpu_cost"], bill["gpu_seconds"]) == ("2025-10", "0.85", "3600.00")


def test_an_export_read_in_small_pages_is_the_same_export(container, billed, monkeypatch):
    tenant_id = uuid.UUID(billed.id)
    whole = without_time(list(container.replays.open_export(ADMIN, tenant_id)))

    monkeypatch.setattr("projections.reports.export.ITERSIZE", 2)
    paged = without_time(list(container.replays.open_export(ADMIN, tenant_id)))

    assert paged == whole
    assert len([line for line in paged if line["kind"] == "event"]) > 2 * 2


def test_exports_abandoned_midway_give_their_connection_back(container, billed, monkeypatch):
    monkeypatch.setattr("projections.reports.export.ITERSIZE", 2)
    tenant_id = uuid.UUID(billed.id)
    for _ in range(container.pool.max_size + 1):
        lines = container.replays.open_export(ADMIN, tenant_id)
        assert [next(lines)["kind"], next(lines)["kind"]] == ["header", "event"]
        lines.close()

    complete = list(container.replays.open_export(ADMIN, tenant_id))

    assert complete[-1]["kind"] == "end"


def reconcile(database: str, tmp_path: Any, *args: str) -> Any:
    return hostplane("reconcile", *args, database=database, data_dir=tmp_path)


def test_reconcile_finds_no_difference_after_a_rebuild(
    database_conninfo, tmp_path, container, billed
):
    for name in ("usage", "costs"):
        container.runner.rebuild(name)

    result = reconcile(database_conninfo, tmp_path, billed.id)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 tenant(s) reconciled: 0 difference(s)" in result.stdout


@pytest.mark.parametrize(
    ("table", "key", "column", "field"),
    [
        ("rm_usage.daily", "tenant_id, at, key_id, model, instance_id", "cost", "token_cost"),
        ("rm_costs.gpu_hourly", "tenant_id, at, instance_id", "cost", "gpu_cost"),
    ],
)
def test_reconcile_reports_a_tampered_read_model_row_and_fails(
    database_conninfo, tmp_path, container, billed, table, key, column, field
):
    # The row is picked by its whole primary key, in order: the change and its undoing must
    # hit the same row. (Picked by ``ctid ... LIMIT 1``, a sequential scan found another row
    # of the day after the first update had moved this one: the undoing left one GPU hour
    # 0.50 up and the other 0.50 down, and the read model no longer equalled its rebuild.)
    tamper = (
        f"UPDATE {table} SET {column} = {column} + %s WHERE ({key}) = (SELECT {key} FROM {table}"
        " WHERE tenant_id = %s AND at >= '2025-10-31' AND at < '2025-11-01'"
        f" ORDER BY {key} LIMIT 1)"
    )
    with container.pool.connection() as conn:
        assert conn.execute(tamper, (Decimal("0.5"), billed.id)).rowcount == 1
    try:
        result = reconcile(database_conninfo, tmp_path, billed.id)
    finally:
        with container.pool.connection() as conn:
            undo = conn.execute(tamper.replace("+ %s", "- %s"), (Decimal("0.5"), billed.id))
            assert undo.rowcount == 1

    assert result.returncode == 1
    assert f"tenant {billed.id} 2025-10-31 {field}:" in result.stdout
    assert "1 tenant(s) reconciled: 1 difference(s)" in result.stdout


def test_reconcile_reports_tampered_credits(database_conninfo, tmp_path, container, billed):
    sql = "UPDATE rm_costs.credits SET credits = credits + %s WHERE tenant_id = %s"
    with container.pool.connection() as conn:
        conn.execute(sql, (Decimal(1), billed.id))
    try:
        result = reconcile(database_conninfo, tmp_path, billed.id)
    finally:
        with container.pool.connection() as conn:
            conn.execute(sql, (Decimal(-1), billed.id))

    assert result.returncode == 1
    assert "credits: events say 7.00, read model says 8.00" in result.stdout


def test_reconcile_checks_every_tenant_when_none_is_named(database_conninfo, tmp_path, billed):
    result = reconcile(database_conninfo, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 difference(s)" in result.stdout


def test_reconcile_of_an_unknown_tenant_fails(database_conninfo, tmp_path):
    result = reconcile(database_conninfo, tmp_path, str(uuid.uuid4()))

    assert result.returncode == 1
    assert "not found" in result.stderr


def test_a_response_cache_hit_costs_nothing_in_the_read_models_and_in_the_events_alike(
    database_conninfo, tmp_path, admin, tenant, container
):
    model = new_model(admin, "1.00", "2.00", prefix="export-test")
    records = [
        {
            "request_id": uuid.uuid4().hex,
            "key_id": tenant.key["id"],
            "model": model,
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "status": "success",
            "latency_ms": 10,
            "occurred_at": "2025-10-30T10:00:00Z",
            "cache_hit": hit,
        }
        for hit in (False, True)
    ]
    assert admin.post("/usage/events", json={"records": records}).is_success  # the operator
    caught_up(container, "usage", "costs", "audit")

    bill = admin.get(f"/team-billing/summary/{tenant.id}/2025-10-30/2025-10-31").json()
    exported = lines_of(admin.get(f"/tenants/{tenant.id}/export").text)
    month = next(line for line in exported if line["kind"] == "billing")

    # Both requests keep their tokens; only the one the upstream answered costs (1.00 + 1.00).
    assert (bill["requests"], bill["prompt_tokens"], bill["completion_tokens"]) == (2, 2000, 1000)
    assert Decimal(bill["token_cost"]) == Decimal("0.002")
    assert (month["prompt_tokens"], Decimal(month["token_cost"])) == (2000, Decimal("0.002"))
    container.runner.rebuild("usage")
    result = reconcile(database_conninfo, tmp_path, tenant.id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 difference(s)" in result.stdout
