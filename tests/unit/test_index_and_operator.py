"""The NameIndex (unique names) and Operator (admin token) aggregates."""

from __future__ import annotations

import hashlib
from uuid import UUID, uuid4

import pytest

from domain.base import ConflictError, NameTakenError
from domain.index import NameIndex
from domain.operator import ADMIN_TOKEN_PREFIX, Operator
from tests.unit.support import an_actor, random_name, replay, through_store


def an_index(
    owner_id: UUID | None = None, kind: str = "tenant", key: str | None = None
) -> NameIndex:
    return NameIndex(
        kind=kind, key=key or random_name("acme"), owner_id=owner_id or uuid4(), actor=an_actor()
    )


# NameIndex


def test_an_index_entry_gets_the_id_of_its_natural_key():
    index = an_index(kind="tenant", key="acme")

    assert index.id == NameIndex.create_id("tenant", "acme")


def test_the_index_id_is_the_same_for_the_same_natural_key():
    assert NameIndex.create_id("tenant", "acme") == NameIndex.create_id("tenant", "acme")


def test_index_entries_for_two_names_of_one_kind_get_different_ids():
    assert an_index(kind="tenant", key="acme").id != an_index(kind="tenant", key="globex").id


def test_the_same_name_of_two_kinds_gets_different_ids():
    assert NameIndex.create_id("tenant", "acme") != NameIndex.create_id("key", "acme")


def test_a_new_index_entry_is_owned_by_its_claimant():
    owner = uuid4()

    assert an_index(owner).owner_id == owner


def test_claiming_a_taken_name_is_refused():
    index = an_index(key="acme")

    with pytest.raises(NameTakenError, match="acme"):
        index.claim(uuid4(), actor=an_actor())


def test_a_taken_name_is_a_conflict():
    assert issubclass(NameTakenError, ConflictError)


def test_claiming_a_name_again_by_its_owner_is_refused_too():
    owner = uuid4()
    index = an_index(owner)

    with pytest.raises(NameTakenError):
        index.claim(owner, actor=an_actor())


def test_a_released_name_is_free():
    owner = uuid4()
    index = an_index(owner)

    index.release(owner, actor=an_actor())

    assert index.owner_id is None
    index.check_free()


def test_a_released_name_can_be_reclaimed_by_someone_else():
    first, second = uuid4(), uuid4()
    index = an_index(first)
    index.release(first, actor=an_actor())

    index.claim(second, actor=an_actor())

    assert index.owner_id == second


def test_only_the_owner_can_release_a_name():
    owner = uuid4()
    index = an_index(owner)
    index.collect_events()

    index.release(uuid4(), actor=an_actor())

    assert index.owner_id == owner
    assert index.collect_events() == []


def test_releasing_a_free_name_records_nothing():
    owner = uuid4()
    index = an_index(owner)
    index.release(owner, actor=an_actor())
    index.collect_events()

    index.release(owner, actor=an_actor())

    assert index.collect_events() == []


def test_an_index_replayed_from_its_events_equals_the_original():
    first, second = uuid4(), uuid4()
    index = an_index(first)
    index.release(first, actor=an_actor())
    index.claim(second, actor=an_actor())
    events = index.collect_events()

    assert [type(e).__name__ for e in events] == ["Claimed", "Released", "Reclaimed"]
    assert replay(events) == index
    assert replay(through_store(events)) == index


# Operator


def test_starting_the_operator_returns_an_admin_token_it_accepts():
    operator, token = Operator.start(actor=an_actor())

    assert token.startswith(ADMIN_TOKEN_PREFIX)
    assert operator.accepts(token)


def test_the_operator_has_one_fixed_id():
    operator, _ = Operator.start(actor=an_actor())

    assert operator.id == Operator.create_id()


def test_the_operator_stores_only_the_sha256_of_its_token():
    operator, token = Operator.start(actor=an_actor())
    (created,) = operator.collect_events()

    assert operator.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(vars(created))


def test_the_operator_refuses_a_wrong_token():
    operator, token = Operator.start(actor=an_actor())

    assert not operator.accepts(token + "x")
    assert not operator.accepts("")


def test_a_rotated_admin_token_replaces_the_old_one():
    operator, old_token = Operator.start(actor=an_actor())

    new_token = operator.rotate_admin_token(actor=an_actor())

    assert new_token != old_token
    assert operator.accepts(new_token)
    assert not operator.accepts(old_token)


def test_the_rotated_token_never_enters_the_rotation_event():
    operator, _ = Operator.start(actor=an_actor())
    operator.collect_events()

    new_token = operator.rotate_admin_token(actor=an_actor())
    (rotated,) = operator.collect_events()

    assert new_token not in repr(rotated)
    assert new_token not in repr(vars(rotated))


def test_every_operator_event_carries_the_actor_it_was_given():
    actors = [an_actor(ip=f"198.51.100.{i}") for i in range(3)]
    operator, _ = Operator.start(actor=actors[0])
    operator.rotate_admin_token(actor=actors[1])
    operator.rotate_admin_token(actor=actors[2])

    assert [e.actor for e in operator.collect_events()] == actors


def test_an_operator_replayed_from_stored_events_accepts_only_the_latest_token():
    operator, first = Operator.start(actor=an_actor())
    latest = operator.rotate_admin_token(actor=an_actor())

    replayed = replay(through_store(operator.collect_events()))

    assert replayed == operator
    assert replayed.accepts(latest)
    assert not replayed.accepts(first)
