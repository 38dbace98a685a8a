"""The User aggregate: a person who signs in with an email and a password, for one tenant.

No secret and no personal data enters an event in clear: the email is encrypted with the
tenant's data key (forgetting that key shreds it) and found again through a keyed hash of it
(its fingerprint, the key of its ``NameIndex`` entry); the password is an argon2 hash.
"""

from __future__ import annotations

import re
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, ConflictError, InvalidValueError, NameTakenError

MIN_PASSWORD = 8
MAX_PASSWORD = 256  # bounded hashing work per request
MAX_EMAIL = 254  # RFC 5321's longest path
# One "@", something on each side, a dot in the domain, no space or control character.
EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f.]+\Z")
# The most guessed passwords of 8 characters or more (an attacker tries these first).
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "12345678",
        "123456789",
        "1234567890",
        "qwertyuiop",
        "qwerty123",
        "iloveyou",
        "11111111",
        "00000000",
        "abcd1234",
        "letmein1",
        "welcome1",
        "admin123",
        "passw0rd",
    }
)


class EmailTakenError(NameTakenError):
    """An email already belongs to a user (HTTP 409)."""


class UserRemovedError(ConflictError):
    """A removed user can't be changed."""


def check_email(email: object) -> str:
    """An email address, trimmed; compared case-insensitively (``email_key``)."""
    if not isinstance(email, str):
        raise InvalidValueError("email", "email must be a string")
    email = email.strip()
    if len(email) > MAX_EMAIL or not EMAIL_RE.match(email):
        raise InvalidValueError("email", "email must be an email address, e.g. you@example.com")
    return email


def email_key(email: str) -> str:
    """What makes two emails the same address: case doesn't."""
    return email.lower()


def check_password(password: object, email: str | None = None) -> str:
    """A password strong enough to keep; the error says what is wrong with a weak one."""
    if not isinstance(password, str):
        raise InvalidValueError("password", "password must be a string")
    if len(password) < MIN_PASSWORD:
        raise InvalidValueError(
            "password", f"password is too short: use at least {MIN_PASSWORD} characters"
        )
    if len(password) > MAX_PASSWORD:
        raise InvalidValueError(
            "password", f"password is too long: use at most {MAX_PASSWORD} characters"
        )
    if "\x00" in password:
        raise InvalidValueError("password", "password must not contain NUL characters")
    if len(set(password)) < 4:
        raise InvalidValueError(
            "password", "password is too easy to guess: use at least 4 different characters"
        )
    if password.lower() in COMMON_PASSWORDS:
        raise InvalidValueError(
            "password", "password is one of the most common passwords: choose another"
        )
    # A name of 5 characters or more: "you@example.com" may still use "YourSecurePass123".
    local = email_key(email).partition("@")[0] if email else ""
    if len(local) >= 5 and local in password.lower():
        raise InvalidValueError("password", "password must not contain the email's name")
    return password


class User(Aggregate):
    """A person who signs in (email and password) and acts with one tenant's authority."""

    class Registered(Aggregate.Created):
        """A user was registered: the email encrypted, its fingerprint, the password's hash."""

        tenant_id: UUID
        email_ciphertext: bytes
        email_fingerprint: str
        password_hash: str
        actor: Actor

    @event(Registered)
    def __init__(
        self,
        tenant_id: UUID,
        email_ciphertext: bytes,
        email_fingerprint: str,
        password_hash: str,
        actor: Actor,
    ) -> None:
        self.tenant_id = tenant_id
        self.email_ciphertext = email_ciphertext
        self.email_fingerprint = email_fingerprint
        self.password_hash = password_hash
        self.removed = False

    @classmethod
    def register(
        cls,
        user_id: UUID,
        tenant_id: UUID,
        email_ciphertext: bytes,
        email_fingerprint: str,
        password_hash: str,
        actor: Actor,
    ) -> User:
        """A new user; its id is chosen first, as its sign-up also names it as actor."""
        return cls._create(
            cls.Registered,
            id=user_id,
            tenant_id=tenant_id,
            email_ciphertext=email_ciphertext,
            email_fingerprint=email_fingerprint,
            password_hash=password_hash,
            actor=actor,
        )

    def check_not_removed(self) -> None:
        if self.removed:
            raise UserRemovedError("this user has been removed")

    def change_password_hash(self, password_hash: str, actor: Actor) -> None:
        """A new hash of the password (a new password, or the same one hashed more strongly)."""
        self.check_not_removed()
        self._password_changed(password_hash=password_hash, actor=actor)

    @event("PasswordChanged")
    def _password_changed(self, password_hash: str, actor: Actor) -> None:
        self.password_hash = password_hash

    def remove(self, actor: Actor) -> None:
        """Remove for good: the user's tokens stop working at their next request."""
        self.check_not_removed()
        self._removed(actor=actor)

    @event("Removed")
    def _removed(self, actor: Actor) -> None:
        self.removed = True
