"""Instance status read model: current status and the history of transitions with durations."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from freezegun import freeze_time

from domain.base import Actor

SYSTEM = Actor.system()


def test_the_history_lists_each_status_with_how_long_it_lasted(tenant, container):
    r = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    instance_id = r.json()["id"]
    created = datetime.fromisoformat(r.json()["created_at"])
    with freeze_time(created.replace(microsecond=0).isoformat(), tick=True) as clock:
        clock.tick(30)
        container.instances.transition_instance(UUID(instance_id), "deploying", SYSTEM)
        clock.tick(90)
        container.instances.transition_instance(
            UUID(instance_id), "running", SYSTEM, endpoint_url="http://127.0.0.1:1/v1"
        )
    body = tenant.api.get(f"/instances/{instance_id}").json()
    assert body["status"] == "running"
    assert body["endpoint_url"] == "http://127.0.0.1:1/v1"
    history = body["history"]
    assert [h["status"] for h in history] == ["pending", "deploying", "running"]
    assert 89 <= history[1]["duration_seconds"] <= 92  # ticking clock: a little slack
    assert history[2]["duration_seconds"] is None  # still running


def test_a_failed_instance_shows_the_reason_and_loses_its_endpoint(tenant, container):
    r = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    instance_id = UUID(r.json()["id"])
    container.instances.transition_instance(instance_id, "deploying", SYSTEM)
    container.instances.transition_instance(
        instance_id, "running", SYSTEM, endpoint_url="http://x/v1"
    )
    container.instances.transition_instance(instance_id, "failed", SYSTEM, reason="GPU lost")
    body = tenant.api.get(f"/instances/{instance_id}").json()
    assert body["status"] == "failed"
    assert body["status_reason"] == "GPU lost"
    assert body["endpoint_url"] is None
    assert body["history"][-1]["reason"] == "GPU lost"


def test_an_illegal_transition_is_refused_and_changes_nothing(tenant, container):
    import pytest

    from domain.instance import IllegalTransitionError

    r = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    instance_id = UUID(r.json()["id"])
    with pytest.raises(IllegalTransitionError):
        container.instances.transition_instance(instance_id, "running", SYSTEM)
    assert tenant.api.get(f"/instances/{instance_id}").json()["status"] == "pending"
