"""The Tenant aggregate: validation of its settings, offboarding, events and replay."""

from __future__ import annotations

import pytest

from domain.base import Actor, InvalidValueError
from domain.tenant import Tenant, TenantOffboardedError
from tests.unit.support import an_actor, random_name, replay, through_store


def a_tenant(actor: Actor | None = None, **overrides: object) -> Tenant:
    values: dict[str, object] = {
        "name": random_name("acme"),
        "weight": 10,
        "tokens_per_minute": 1000,
        "group": "gold",
        "wrapped_data_key": b"\x00wrapped\xff",
        "actor": actor or an_actor(),
    }
    values.update(overrides)
    return Tenant.register(**values)  # type: ignore[arg-type]


def test_a_registered_tenant_keeps_its_settings():
    tenant = a_tenant(name="acme-corp", weight=5, tokens_per_minute=0, group=None)

    assert (tenant.name, tenant.weight, tenant.tokens_per_minute, tenant.group) == (
        "acme-corp",
        5,
        0,
        None,
    )
    assert tenant.offboarded is False


@pytest.mark.parametrize("name", ["a", "A.b_c-9", "x" * 63])
def test_a_name_of_1_to_63_letters_digits_dots_underscores_or_dashes_is_accepted(name):
    assert a_tenant(name=name).name == name


@pytest.mark.parametrize(
    "name", ["", "x" * 64, "-leading-dash", ".dot", "has space", "ümlaut", "a/b"]
)
def test_a_malformed_name_is_refused_naming_the_name_field(name):
    with pytest.raises(InvalidValueError) as refused:
        a_tenant(name=name)

    assert refused.value.field == "name"


def test_a_name_ending_in_a_newline_is_refused():
    with pytest.raises(InvalidValueError):
        a_tenant(name="acme\n")


@pytest.mark.parametrize("weight", [1, 10_000])
def test_a_weight_at_either_bound_is_accepted(weight):
    assert a_tenant(weight=weight).weight == weight


@pytest.mark.parametrize("weight", [0, -1, 10_001])
def test_a_weight_outside_1_to_10000_is_refused_naming_the_weight_field(weight):
    with pytest.raises(InvalidValueError) as refused:
        a_tenant(weight=weight)

    assert refused.value.field == "weight"


@pytest.mark.parametrize("quota", [None, 0, 1, 10**9])
def test_a_quota_that_is_none_or_not_negative_is_accepted(quota):
    assert a_tenant(tokens_per_minute=quota).tokens_per_minute == quota


def test_a_negative_quota_is_refused_naming_the_tokens_per_minute_field():
    with pytest.raises(InvalidValueError) as refused:
        a_tenant(tokens_per_minute=-1)

    assert refused.value.field == "tokens_per_minute"


@pytest.mark.parametrize("group", ["", "bad group", "-x", "y" * 64])
def test_a_malformed_group_is_refused_naming_the_group_field(group):
    with pytest.raises(InvalidValueError) as refused:
        a_tenant(group=group)

    assert refused.value.field == "group"


def test_changing_the_weight_to_a_valid_value_updates_it():
    tenant = a_tenant(weight=10)

    tenant.change_weight(20, actor=an_actor())

    assert tenant.weight == 20


def test_changing_the_weight_to_an_invalid_value_is_refused_and_records_nothing():
    tenant = a_tenant(weight=10)
    tenant.collect_events()

    with pytest.raises(InvalidValueError) as refused:
        tenant.change_weight(0, actor=an_actor())

    assert refused.value.field == "weight"
    assert tenant.weight == 10
    assert tenant.collect_events() == []


def test_changing_the_quota_accepts_none_for_unlimited():
    tenant = a_tenant(tokens_per_minute=1000)

    tenant.change_quota(None, actor=an_actor())

    assert tenant.tokens_per_minute is None


def test_changing_the_quota_to_a_negative_value_is_refused():
    tenant = a_tenant()

    with pytest.raises(InvalidValueError) as refused:
        tenant.change_quota(-5, actor=an_actor())

    assert refused.value.field == "tokens_per_minute"


def test_assigning_a_group_and_clearing_it_again():
    tenant = a_tenant(group=None)

    tenant.assign_group("silver", actor=an_actor())
    assert tenant.group == "silver"
    tenant.assign_group(None, actor=an_actor())
    assert tenant.group is None


def test_assigning_a_malformed_group_is_refused():
    tenant = a_tenant()

    with pytest.raises(InvalidValueError) as refused:
        tenant.assign_group("no spaces allowed", actor=an_actor())

    assert refused.value.field == "group"


def test_an_offboarded_tenant_is_marked_offboarded():
    tenant = a_tenant()

    tenant.offboard(actor=an_actor())

    assert tenant.offboarded is True


@pytest.mark.parametrize(
    "change",
    [
        lambda t, a: t.change_weight(3, actor=a),
        lambda t, a: t.change_quota(5, actor=a),
        lambda t, a: t.assign_group("gold", actor=a),
        lambda t, a: t.offboard(actor=a),
        lambda t, a: t.check_active(),
    ],
    ids=["weight", "quota", "group", "offboard-again", "check-active"],
)
def test_an_offboarded_tenant_refuses_every_change(change):
    tenant = a_tenant()
    tenant.offboard(actor=an_actor())
    tenant.collect_events()

    with pytest.raises(TenantOffboardedError):
        change(tenant, an_actor())
    assert tenant.collect_events() == []


def test_every_tenant_event_carries_the_actor_it_was_given():
    actors = [an_actor(ip=f"198.51.100.{i}") for i in range(5)]
    tenant = a_tenant(actor=actors[0])
    tenant.change_weight(2, actor=actors[1])
    tenant.change_quota(7, actor=actors[2])
    tenant.assign_group("g", actor=actors[3])
    tenant.offboard(actor=actors[4])

    assert [e.actor for e in tenant.collect_events()] == actors


def test_a_tenant_replayed_from_its_events_equals_the_original():
    tenant = a_tenant()
    tenant.change_weight(2, actor=an_actor())
    tenant.change_quota(None, actor=an_actor())
    tenant.assign_group("g", actor=an_actor())
    tenant.offboard(actor=an_actor())
    events = tenant.collect_events()

    assert replay(events) == tenant


def test_a_tenant_replayed_from_stored_events_equals_the_original():
    tenant = a_tenant()
    tenant.change_weight(2, actor=an_actor(ip=None))
    tenant.offboard(actor=Actor.system())

    assert replay(through_store(tenant.collect_events())) == tenant


def test_on_demand_boot_is_off_until_set_and_replays_from_its_events():
    tenant = a_tenant()
    assert tenant.on_demand_boot is False

    tenant.set_on_demand_boot(True, an_actor())

    assert tenant.on_demand_boot is True
    assert replay(tenant.collect_events()).on_demand_boot is True


@pytest.mark.parametrize("value", [1, "true", None])
def test_on_demand_boot_is_true_or_false(value):
    with pytest.raises(InvalidValueError):
        a_tenant().set_on_demand_boot(value, an_actor())  # type: ignore[arg-type]


def test_an_offboarded_tenant_can_not_turn_on_demand_boot_on():
    tenant = a_tenant()
    tenant.offboard(an_actor())
    with pytest.raises(TenantOffboardedError):
        tenant.set_on_demand_boot(True, an_actor())
