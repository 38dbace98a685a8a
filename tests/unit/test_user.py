"""The User aggregate and the rules of emails and passwords; a key's changes after issue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.apikey import ApiKey
from domain.base import InvalidValueError
from domain.user import User, UserRemovedError, check_email, check_password, email_key
from tests.unit.support import an_actor, replay, through_store
from tests.unit.test_apikey import NOW, a_key


def a_user() -> User:
    return User.register(
        user_id=uuid4(),
        tenant_id=uuid4(),
        email_ciphertext=b"\x00sealed",
        email_fingerprint="f" * 64,
        password_hash="$argon2id$...",
        actor=an_actor(),
    )


def test_a_user_survives_the_event_store_and_replays_to_the_same_state():
    user = a_user()
    user.remove(an_actor())

    replayed = replay(through_store(user.collect_events()))

    assert replayed.removed and replayed.tenant_id == user.tenant_id
    assert replayed.email_ciphertext == b"\x00sealed"


def test_a_removed_user_cant_be_removed_or_changed_again():
    user = a_user()
    user.remove(an_actor())

    with pytest.raises(UserRemovedError):
        user.remove(an_actor())
    with pytest.raises(UserRemovedError):
        user.change_password_hash("$argon2id$new", an_actor())


@pytest.mark.parametrize("email", ["you@example.com", "  a.b+c@sub.example.co.uk "])
def test_an_email_is_trimmed_and_compared_whatever_its_case(email):
    assert check_email(email) == email.strip()
    assert email_key("You@Example.COM") == email_key("you@example.com")


@pytest.mark.parametrize(
    "email", ["", "no-at", "a@b", "a@@b.io", "a b@c.io", "a@b.io\x00", 1, None, "x" * 250 + "@a.io"]
)
def test_a_malformed_email_is_refused(email):
    with pytest.raises(InvalidValueError) as refused:
        check_email(email)
    assert refused.value.field == "email"


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short", "too short"),
        ("x" * 257, "too long"),
        ("abababababab", "different characters"),
        ("Password123", "common"),
        ("bad\x00password", "NUL"),
        ("jane.doe!2026", "email"),
        (12345678, "string"),
    ],
)
def test_a_weak_password_is_refused_saying_why(password, why):
    with pytest.raises(InvalidValueError) as refused:
        check_password(password, "Jane.Doe@example.com")
    assert why in str(refused.value)


def test_a_good_password_passes():
    assert check_password("YourSecurePass123", "you@example.com") == "YourSecurePass123"


# A key's changes after issue


def test_a_change_records_only_what_changed_and_replays():
    key, _ = a_key(rpm_limit=5)
    key.collect_events()

    key.change(an_actor(), NOW, rpm_limit=5, allowed_models=["m"], ip_allowlist=["10.1.2.3"])

    events = key.collect_events()
    assert [type(e).__name__ for e in events] == ["Changed"]
    assert events[0].changes == {"allowed_models": ["m"], "ip_allowlist": ["10.1.2.3/32"]}
    assert through_store(events)[0].changes == events[0].changes


def test_a_change_that_changes_nothing_records_nothing():
    key, _ = a_key(rpm_limit=5)
    key.collect_events()

    key.change(an_actor(), NOW, rpm_limit=5)

    assert key.collect_events() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expires_at", datetime(2000, 1, 1, tzinfo=UTC)),
        ("expires_at", "tomorrow"),
        ("rpm_limit", 0),
        ("sovereignty_mode", "yes"),
        ("kind", "router"),
        ("token_hash", "0" * 64),
    ],
)
def test_a_change_that_is_not_allowed_is_refused_naming_its_field(field, value):
    key, _ = a_key()

    with pytest.raises(InvalidValueError) as refused:
        key.change(an_actor(), NOW, **{field: value})
    assert refused.value.field == field


def test_a_deleted_key_cant_be_changed():
    key, _ = a_key()
    key.delete(an_actor())

    with pytest.raises(Exception, match="deleted"):
        key.change(an_actor(), NOW, expires_at=NOW + timedelta(days=1))
    assert isinstance(key, ApiKey)
