"""The registry of the kinds a tenant owns: complete, and read by audit and the read models."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from eventsourcing.domain import Aggregate, AggregateCreated

import domain
from domain.owned import ENDED_AT_OFFBOARDING, OWNED, owned_kind
from domain.tenant import Tenant
from projections.readmodels.audit_fields import AUDITED, is_secret, target_type
from projections.readmodels.owned import OwnedListing, OwnedListings
from projections.readmodels.registry import all_projections
from tests.unit.support import an_actor
from tests.unit.test_apikey import a_key
from tests.unit.test_budget import a_budget
from tests.unit.test_instance import an_instance
from tests.unit.test_webhook import a_webhook


def domain_aggregates() -> set[type[Aggregate]]:
    """Every aggregate class defined in a module of ``domain``."""
    found = set()
    for info in pkgutil.iter_modules(domain.__path__):
        module = importlib.import_module(f"domain.{info.name}")
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, Aggregate)
                and value.__module__ == module.__name__
            ):
                found.add(value)
    return found


def created_with_a_tenant(aggregate: type[Aggregate]) -> bool:
    """Whether any way to create the aggregate records the tenant that owns it."""
    return any(
        inspect.isclass(v)
        and issubclass(v, AggregateCreated)
        and "tenant_id" in inspect.signature(v).parameters
        for v in vars(aggregate).values()
    )


def test_every_aggregate_created_with_a_tenant_id_is_a_kind_the_tenant_owns():
    owned = {a for a in domain_aggregates() if created_with_a_tenant(a)}

    assert {k.aggregate for k in OWNED} == owned
    assert {"ApiKey", "Budget", "Instance", "UsageBatch", "Webhook"} <= {a.__name__ for a in owned}


def test_the_tenant_itself_is_the_owner_not_a_kind_it_owns():
    assert owned_kind(Tenant) is None


def test_each_kind_has_a_name_of_its_own():
    names = [k.name for k in OWNED]

    assert len(set(names)) == len(names)
    assert [k.name for k in ENDED_AT_OFFBOARDING] == [
        "budget",
        "key",
        "instance",
        "mcp_server",
        "user",
        "webhook",
    ]


def test_audit_and_export_name_each_kind_as_the_registry_does():
    for kind in OWNED:
        assert kind.aggregate in AUDITED
        assert target_type(kind.aggregate) == kind.name


def test_a_kinds_secret_fields_are_redacted_in_audit_and_export():
    for kind in OWNED:
        for name in kind.secret_fields:
            assert is_secret(name), (kind.name, name)


def test_every_kind_that_offboarding_ends_is_listed_by_exactly_one_read_model():
    listing = [p for p in all_projections() if isinstance(p, OwnedListing)]

    listed = [owned_kind(p.lists).name for p in listing]  # type: ignore[union-attr]
    assert sorted(listed) == sorted(k.name for k in ENDED_AT_OFFBOARDING)
    assert set(OwnedListings(all_projections()).by_kind) == set(listed)


def test_ending_a_live_aggregate_ends_it_once():
    key, _ = a_key()
    kind = owned_kind(type(key))
    assert kind is not None

    assert kind.end_live(key, an_actor())
    assert key.deleted
    assert not kind.end_live(key, an_actor())  # already ended: nothing more is recorded
    assert len(key.collect_events()) == 2


def test_each_kind_is_ended_by_its_own_ending():
    budget, instance, webhook = a_budget(), an_instance(), a_webhook()

    for aggregate in (budget, instance, webhook):
        kind = owned_kind(type(aggregate))
        assert kind is not None and kind.end_live(aggregate, an_actor())

    assert budget.deleted
    assert instance.is_destroyed
    assert webhook.deleted


def test_history_is_never_ended():
    usage = next(k for k in OWNED if k.name == "usage")

    assert usage.end is None
    assert not usage.end_live(object(), an_actor())
