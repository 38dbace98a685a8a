"""The Instance aggregate: its lifecycle, its endpoint, its events and replay."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from domain.base import Actor, ConflictError, InvalidValueError
from domain.instance import (
    STATUSES,
    TRANSITIONS,
    IllegalTransitionError,
    Instance,
    NotDeployedError,
    check_external_key,
)
from tests.unit.support import an_actor, replay, through_store

ENDPOINT = "https://gpu-1.example.net/v1"

LEGAL = sorted((src, dst) for src, targets in TRANSITIONS.items() for dst in targets)
ILLEGAL = sorted((src, dst) for src in STATUSES for dst in STATUSES if dst not in TRANSITIONS[src])

# How to reach each status from "pending" through legal transitions only.
PATH_TO = {
    "pending": [],
    "deploying": ["deploying"],
    "running": ["deploying", "running"],
    "stopped": ["deploying", "running", "stopped"],
    "failed": ["failed"],
    "destroyed": ["destroyed"],
}


def an_instance(actor: Actor | None = None, **overrides: object) -> Instance:
    values: dict[str, object] = {
        "tenant_id": uuid4(),
        "model_id": "meta-llama/Llama-3.1-8B-Instruct",
        "region": "eu-west-1",
        "provider": "simulated",
        "instance_type": "gpu.a100:1",
        "api_key_ciphertext": b"\x01ciphertext\x00",
        "api_key_prefix": "hp_ik_abcdefghij",
        "hourly_rate_eur": Decimal("0.85"),
        "actor": actor or an_actor(),
    }
    values.update(overrides)
    return Instance.request_deploy(**values)  # type: ignore[arg-type]


def an_instance_in(status: str) -> Instance:
    instance = an_instance()
    for step in PATH_TO[status]:
        endpoint = ENDPOINT if step == "running" else None
        instance.transition(step, actor=an_actor(), endpoint_url=endpoint)
    assert instance.status == status
    return instance


def test_the_lifecycle_table_covers_every_status():
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(targets <= set(STATUSES) for targets in TRANSITIONS.values())


def test_a_requested_instance_is_pending_without_an_endpoint():
    instance = an_instance()

    assert instance.status == "pending"
    assert instance.endpoint_url is None
    assert instance.status_reason is None
    assert instance.is_destroyed is False


@pytest.mark.parametrize("field", ["model_id", "region", "provider", "instance_type"])
@pytest.mark.parametrize("value", ["", " x", "-x", "x" * 129, "has space"])
def test_a_malformed_slug_is_refused_naming_its_field(field, value):
    with pytest.raises(InvalidValueError) as refused:
        an_instance(**{field: value})

    assert refused.value.field == field


def test_a_slug_ending_in_a_newline_is_refused():
    with pytest.raises(InvalidValueError):
        an_instance(region="eu-west-1\n")


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_every_legal_transition_is_allowed(source, target):
    instance = an_instance_in(source)

    instance.transition(target, actor=an_actor(), reason=f"to {target}")

    assert instance.status == target
    assert instance.status_reason == f"to {target}"


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_every_illegal_transition_is_refused_and_changes_nothing(source, target):
    instance = an_instance_in(source)
    instance.collect_events()

    with pytest.raises(IllegalTransitionError):
        instance.transition(target, actor=an_actor())

    assert instance.status == source
    assert instance.collect_events() == []


def test_an_unknown_status_is_refused_naming_the_status_field():
    instance = an_instance()

    with pytest.raises(InvalidValueError) as refused:
        instance.transition("exploded", actor=an_actor())

    assert refused.value.field == "status"


@pytest.mark.parametrize("target", STATUSES)
def test_a_destroyed_instance_can_become_nothing_else(target):
    instance = an_instance_in("running")
    instance.destroy(actor=an_actor())

    with pytest.raises(IllegalTransitionError):
        instance.transition(target, actor=an_actor())
    assert instance.is_destroyed is True


def test_destroying_a_destroyed_instance_is_refused():
    instance = an_instance()
    instance.destroy(actor=an_actor())

    with pytest.raises(IllegalTransitionError):
        instance.destroy(actor=an_actor())


def test_a_running_instance_has_the_endpoint_it_was_given():
    instance = an_instance_in("running")

    assert instance.endpoint_url == ENDPOINT


@pytest.mark.parametrize("target", sorted(TRANSITIONS["running"]))
def test_leaving_running_clears_the_endpoint(target):
    instance = an_instance_in("running")

    instance.transition(target, actor=an_actor(), endpoint_url="https://ignored.example")

    assert instance.endpoint_url is None


@pytest.mark.parametrize(("source", "target"), [p for p in LEGAL if p[1] != "running"])
def test_an_endpoint_given_outside_running_is_not_kept(source, target):
    instance = an_instance_in(source)

    instance.transition(target, actor=an_actor(), endpoint_url="https://too-early.example")

    assert instance.endpoint_url is None


def test_an_instance_has_an_endpoint_only_while_running_along_a_full_lifecycle():
    instance = an_instance()
    steps = ["deploying", "running", "failed", "pending", "deploying", "running", "stopped"]
    steps += ["deploying", "running", "destroyed"]
    for step in steps:
        instance.transition(step, actor=an_actor(), endpoint_url=ENDPOINT)
        assert (instance.endpoint_url is not None) == (instance.status == "running")


def test_every_instance_event_carries_the_actor_it_was_given():
    actors = [an_actor(ip=f"198.51.100.{i}") for i in range(4)]
    instance = an_instance(actor=actors[0])
    instance.transition("deploying", actor=actors[1])
    instance.transition("running", actor=actors[2], endpoint_url=ENDPOINT)
    instance.destroy(actor=actors[3])

    assert [e.actor for e in instance.collect_events()] == actors


def test_an_instance_replayed_from_its_events_equals_the_original():
    instance = an_instance()
    instance.transition("deploying", actor=an_actor())
    instance.transition("running", actor=an_actor(), endpoint_url=ENDPOINT)

    assert replay(instance.collect_events()) == instance


def test_an_instance_replayed_from_stored_events_equals_the_original():
    instance = an_instance()
    instance.transition("failed", actor=Actor.system(), reason="provider said no")
    instance.transition("pending", actor=an_actor())
    instance.transition("deploying", actor=an_actor())
    instance.transition("running", actor=an_actor(), endpoint_url=ENDPOINT)

    replayed = replay(through_store(instance.collect_events()))

    assert replayed == instance
    assert replayed.api_key_ciphertext == b"\x01ciphertext\x00"


def an_upstream(**overrides: object) -> Instance:
    values: dict[str, object] = {
        "tenant_id": uuid4(),
        "name": "OpenAI prod",
        "upstream": "openai",
        "external_key_ciphertext": b"\x02sealed\x00",
        "external_key_last4": "WXYZ",
        "actor": an_actor(),
    }
    values.update(overrides)
    return Instance.attach_upstream(**values)  # type: ignore[arg-type]


def test_an_upstream_is_a_running_byok_instance_at_its_vendors_endpoint():
    upstream = an_upstream(upstream="mistral")

    assert (upstream.kind, upstream.status, upstream.provider) == ("byok", "running", "mistral")
    assert upstream.endpoint_url == "https://api.mistral.ai/v1"
    assert upstream.hourly_rate_eur == 0


def test_an_upstream_replays_from_its_stored_events_to_the_same_state():
    upstream = an_upstream()
    upstream.destroy(actor=an_actor())

    copy = replay(through_store(upstream.collect_events()))

    assert (copy.kind, copy.name, copy.external_key_last4) == ("byok", "OpenAI prod", "WXYZ")
    assert copy.external_key_ciphertext == b"\x02sealed\x00"
    assert copy.status == "destroyed" and copy.endpoint_url is None


@pytest.mark.parametrize("upstream", ["cohere", "", "OpenAI"])
def test_an_unknown_upstream_is_refused_naming_upstream(upstream):
    with pytest.raises(InvalidValueError) as refused:
        an_upstream(upstream=upstream)

    assert refused.value.field == "upstream"


@pytest.mark.parametrize("key", ["short", "has a space in it", "x" * 501])
def test_a_malformed_external_key_is_refused_without_repeating_it(key):
    with pytest.raises(InvalidValueError) as refused:
        check_external_key(key)

    assert refused.value.field == "external_key" and key not in str(refused.value)


def test_an_upstream_has_no_deployment_to_operate_on():
    upstream = an_upstream()

    with pytest.raises(NotDeployedError):
        upstream.check_deployed()
    with pytest.raises(NotDeployedError):
        upstream.record_check(True, 200, 5, None, an_actor())


def test_a_health_check_is_recorded_on_a_running_instance_and_survives_replay():
    instance = an_instance_in("running")
    instance.record_check(False, 503, 12, "HTTP 503", an_actor())

    copy = replay(through_store(instance.collect_events()))

    assert copy.last_check["ok"] is False and copy.last_check["status_code"] == 503
    assert copy.last_check["error"] == "HTTP 503" and copy.status == "running"


@pytest.mark.parametrize("status", ["pending", "deploying", "failed", "destroyed"])
def test_only_a_running_instance_is_health_checked(status):
    with pytest.raises(ConflictError):
        an_instance_in(status).record_check(True, 200, 1, None, an_actor())
