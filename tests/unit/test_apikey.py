"""The ApiKey aggregate: issuing, hashing of the token, usability checks, lifecycle."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from eventsourcing.persistence import Mapper
from freezegun import freeze_time

from application.transcoder import OrjsonTranscoder
from domain.apikey import (
    KINDS,
    PREFIX_LEN,
    TOKEN_PREFIX,
    ApiKey,
    KeyDeletedError,
    KeyIpNotAllowedError,
    KeyUnusableError,
    key_id_for_token,
)
from domain.base import Actor, InvalidValueError
from tests.unit.support import an_actor, random_name, replay, through_store

NOW = datetime(2025, 10, 30, 12, 0, tzinfo=UTC)


def a_key(actor: Actor | None = None, **overrides: object) -> tuple[ApiKey, str]:
    values: dict[str, object] = {
        "tenant_id": uuid4(),
        "name": random_name("key"),
        "kind": "management",
        "now": NOW,
        "actor": actor or an_actor(),
    }
    values.update(overrides)
    return ApiKey.issue(**values)  # type: ignore[arg-type]


# Issuing


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_of_each_kind_is_issued_with_a_token_of_that_kinds_prefix(kind):
    key, token = a_key(kind=kind)

    assert key.kind == kind
    assert token.startswith(TOKEN_PREFIX[kind])


def test_an_unknown_kind_is_refused_naming_the_kind_field():
    with pytest.raises(InvalidValueError) as refused:
        a_key(kind="admin")

    assert refused.value.field == "kind"


def test_the_stored_hash_is_the_sha256_of_the_token():
    key, token = a_key()

    assert key.token_hash == hashlib.sha256(token.encode()).hexdigest()


def test_the_display_prefix_is_the_first_16_characters_of_the_token():
    key, token = a_key()

    assert PREFIX_LEN == 16
    assert key.key_prefix == token[:16]


def test_the_key_id_is_derived_from_the_token():
    key, token = a_key()

    assert key.id == key_id_for_token(token)


def test_two_keys_get_different_tokens_and_ids():
    first, first_token = a_key()
    second, second_token = a_key()

    assert first_token != second_token
    assert first.id != second.id


def test_the_token_never_enters_any_event():
    key, token = a_key(ip_allowlist=["10.0.0.0/8"], expires_at=NOW + timedelta(days=1))
    key.set_disabled(True, actor=an_actor())
    key.set_disabled(False, actor=an_actor())
    key.attach_budget(uuid4(), actor=an_actor())
    key.delete(actor=an_actor())
    events = key.collect_events()
    secret_part = token[len(TOKEN_PREFIX["management"]) :]

    assert len(events) == 5
    for domain_event in events:
        for text in (repr(domain_event), repr(vars(domain_event))):
            assert token not in text
            assert secret_part not in text


def test_the_token_never_enters_the_stored_state_of_any_event():
    key, token = a_key()
    key.delete(actor=an_actor())
    mapper = Mapper(transcoder=OrjsonTranscoder())
    for domain_event in key.collect_events():
        assert token.encode() not in mapper.to_stored_event(domain_event).state


def test_a_key_is_issued_with_its_optional_settings():
    models = ["llama-3", "mistral"]
    key, _ = a_key(
        allowed_models=models,
        sovereignty_mode=True,
        expires_at=NOW + timedelta(hours=1),
        ip_allowlist=["10.1.2.3/8", "2001:db8::1/32"],
    )
    models.append("changed-after-issue")

    assert key.allowed_models == ["llama-3", "mistral"]
    assert key.sovereignty_mode is True
    assert key.expires_at == NOW + timedelta(hours=1)
    assert key.ip_allowlist == ["10.0.0.0/8", "2001:db8::/32"]


def test_a_key_is_issued_enabled_not_deleted_and_without_budgets():
    key, _ = a_key()

    assert (key.disabled, key.deleted, key.budget_ids) == (False, False, [])
    assert key.allowed_models is None
    assert key.ip_allowlist == []


@pytest.mark.parametrize("cidr", ["not-an-ip", "10.0.0.0/33", "300.1.1.1", "", "2001:db8::/129"])
def test_a_malformed_cidr_is_refused_naming_the_ip_allowlist_field(cidr):
    with pytest.raises(InvalidValueError) as refused:
        a_key(ip_allowlist=["10.0.0.0/8", cidr])

    assert refused.value.field == "ip_allowlist"


@pytest.mark.parametrize("expires_at", [NOW, NOW - timedelta(seconds=1)])
def test_an_expiry_that_is_not_in_the_future_is_refused(expires_at):
    with pytest.raises(InvalidValueError) as refused:
        a_key(expires_at=expires_at)

    assert refused.value.field == "expires_at"


def test_an_expiry_in_another_timezone_is_stored_in_utc():
    paris = timezone(timedelta(hours=2))
    key, _ = a_key(expires_at=datetime(2025, 10, 31, 14, 0, tzinfo=paris))

    assert key.expires_at == datetime(2025, 10, 31, 12, 0, tzinfo=UTC)
    assert key.expires_at.utcoffset() == timedelta(0)


def test_a_naive_expiry_is_taken_to_be_utc():
    key, _ = a_key(expires_at=datetime(2025, 10, 31, 12, 0))

    assert key.expires_at == datetime(2025, 10, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["", " leading-space", "x" * 64, "slash/name"])
def test_a_malformed_key_name_is_refused_naming_the_name_field(name):
    with pytest.raises(InvalidValueError) as refused:
        a_key(name=name)

    assert refused.value.field == "name"


def test_a_key_name_ending_in_a_newline_is_refused():
    with pytest.raises(InvalidValueError):
        a_key(name="ci key\n")


# Using


def test_a_fresh_key_is_usable_with_its_token():
    key, token = a_key()

    key.check_usable(token, now=NOW, ip="192.0.2.1")


def test_a_wrong_token_is_refused():
    key, token = a_key()
    _, other_token = a_key()

    with pytest.raises(KeyUnusableError):
        key.check_usable(other_token, now=NOW, ip=None)
    with pytest.raises(KeyUnusableError):
        key.check_usable(token + "x", now=NOW, ip=None)


def test_a_disabled_key_is_refused():
    key, token = a_key()
    key.set_disabled(True, actor=an_actor())

    with pytest.raises(KeyUnusableError, match="disabled"):
        key.check_usable(token, now=NOW, ip=None)


def test_a_re_enabled_key_is_usable_again():
    key, token = a_key()
    key.set_disabled(True, actor=an_actor())
    key.set_disabled(False, actor=an_actor())

    key.check_usable(token, now=NOW, ip=None)


def test_a_deleted_key_is_refused():
    key, token = a_key()
    key.delete(actor=an_actor())

    with pytest.raises(KeyUnusableError, match="deleted"):
        key.check_usable(token, now=NOW, ip=None)


def test_a_key_is_usable_until_just_before_its_expiry():
    key, token = a_key(expires_at=NOW + timedelta(hours=1))

    key.check_usable(token, now=NOW + timedelta(minutes=59, seconds=59), ip=None)


def test_a_key_is_refused_from_the_moment_it_expires():
    key, token = a_key(expires_at=NOW + timedelta(hours=1))

    with pytest.raises(KeyUnusableError, match="expired"):
        key.check_usable(token, now=NOW + timedelta(hours=1), ip=None)


def test_a_key_expires_on_a_pinned_clock():
    with freeze_time("2025-10-30 12:00:00"):
        key, token = a_key(now=datetime.now(UTC), expires_at=datetime.now(UTC) + timedelta(days=1))
    with freeze_time("2025-10-31 11:59:59"):
        key.check_usable(token, now=datetime.now(UTC), ip=None)
    with freeze_time("2025-10-31 12:00:00"), pytest.raises(KeyUnusableError):
        key.check_usable(token, now=datetime.now(UTC), ip=None)


@pytest.mark.parametrize(
    "ip", ["10.0.0.1", "10.255.255.255", "192.168.1.5", "2001:db8::1", "2001:db8:ffff::42"]
)
def test_a_request_from_inside_the_allowlist_is_accepted(ip):
    key, token = a_key(ip_allowlist=["10.0.0.0/8", "192.168.1.5", "2001:db8::/32"])

    key.check_usable(token, now=NOW, ip=ip)


@pytest.mark.parametrize("ip", ["11.0.0.1", "192.168.1.6", "2001:db9::1", "::1", "garbage", ""])
def test_a_request_from_outside_the_allowlist_is_refused(ip):
    key, token = a_key(ip_allowlist=["10.0.0.0/8", "192.168.1.5", "2001:db8::/32"])

    with pytest.raises(KeyIpNotAllowedError):
        key.check_usable(token, now=NOW, ip=ip)


def test_an_ipv4_client_seen_through_a_dual_stack_socket_matches_an_ipv4_cidr():
    key, token = a_key(ip_allowlist=["10.0.0.0/8"])

    key.check_usable(token, now=NOW, ip="::ffff:10.0.0.1")


def test_a_request_without_a_known_ip_is_refused_when_the_key_has_an_allowlist():
    key, token = a_key(ip_allowlist=["10.0.0.0/8"])

    with pytest.raises(KeyIpNotAllowedError):
        key.check_usable(token, now=NOW, ip=None)


def test_a_request_without_a_known_ip_is_accepted_when_the_key_has_no_allowlist():
    key, token = a_key()

    key.check_usable(token, now=NOW, ip=None)


def test_a_wrong_token_is_refused_as_unusable_before_the_ip_is_looked_at():
    key, _ = a_key(ip_allowlist=["10.0.0.0/8"])

    with pytest.raises(KeyUnusableError):
        key.check_usable("hp_mk_wrong", now=NOW, ip="8.8.8.8")


# Lifecycle


def test_disabling_twice_records_one_event():
    key, _ = a_key()
    key.collect_events()

    key.set_disabled(True, actor=an_actor())
    key.set_disabled(True, actor=an_actor())

    assert [type(e).__name__ for e in key.collect_events()] == ["Disabled"]
    assert key.disabled is True


def test_enabling_an_enabled_key_records_nothing():
    key, _ = a_key()
    key.collect_events()

    key.set_disabled(False, actor=an_actor())

    assert key.collect_events() == []
    assert key.disabled is False


def test_a_deleted_key_cant_be_re_enabled():
    key, _ = a_key()
    key.set_disabled(True, actor=an_actor())
    key.delete(actor=an_actor())

    with pytest.raises(KeyDeletedError):
        key.set_disabled(False, actor=an_actor())
    assert key.disabled is True


def test_a_deleted_key_cant_be_deleted_again():
    key, _ = a_key()
    key.delete(actor=an_actor())

    with pytest.raises(KeyDeletedError):
        key.delete(actor=an_actor())


def test_a_budget_can_be_attached_and_detached():
    key, _ = a_key()
    budget_id = uuid4()

    key.attach_budget(budget_id, actor=an_actor())
    assert key.budget_ids == [budget_id]
    key.detach_budget(budget_id, actor=an_actor())
    assert key.budget_ids == []


def test_detaching_a_budget_that_is_not_attached_records_nothing():
    key, _ = a_key()
    key.collect_events()

    key.detach_budget(uuid4(), actor=an_actor())

    assert key.collect_events() == []


def test_a_deleted_key_refuses_a_new_budget():
    key, _ = a_key()
    key.delete(actor=an_actor())

    with pytest.raises(KeyDeletedError):
        key.attach_budget(uuid4(), actor=an_actor())


def test_every_key_event_carries_the_actor_it_was_given():
    actors = [an_actor(ip=f"198.51.100.{i}") for i in range(6)]
    key, _ = a_key(actor=actors[0])
    budget_id = uuid4()
    key.set_disabled(True, actor=actors[1])
    key.set_disabled(False, actor=actors[2])
    key.attach_budget(budget_id, actor=actors[3])
    key.detach_budget(budget_id, actor=actors[4])
    key.delete(actor=actors[5])

    assert [e.actor for e in key.collect_events()] == actors


def test_a_key_replayed_from_its_events_equals_the_original():
    key, token = a_key(
        allowed_models=["m"], expires_at=NOW + timedelta(days=3), ip_allowlist=["::1/128"]
    )
    key.set_disabled(True, actor=an_actor())
    key.attach_budget(uuid4(), actor=an_actor())
    key.attach_budget(uuid4(), actor=an_actor())
    events = key.collect_events()

    replayed = replay(events)

    assert replayed == key
    assert replayed.token_hash == hashlib.sha256(token.encode()).hexdigest()


def test_a_key_replayed_from_stored_events_equals_the_original():
    key, _ = a_key(expires_at=NOW + timedelta(days=3), ip_allowlist=["10.0.0.0/8"])
    key.attach_budget(uuid4(), actor=an_actor())
    key.delete(actor=Actor.system())

    assert replay(through_store(key.collect_events())) == key
