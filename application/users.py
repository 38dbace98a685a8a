"""Use cases on users: sign-up, sign-in, adding and removing a tenant's users.

An email is unique across hostplane, case-insensitively, through a ``NameIndex`` entry keyed by
its fingerprint (a keyed hash): the email itself is stored only encrypted with the tenant's data
key. Sign-up (when open) creates a tenant owned by the new user, in the same write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from uuid import UUID, uuid4

from application.auth import Principal
from application.errors import (
    AuthenticationError,
    ConcurrentModificationError,
    ForbiddenError,
)
from application.keys import Keys
from application.names import claim_name
from application.ports import Clock, Fingerprinter, Passwords, SecretBox, UserTokens
from application.store import EventStore
from application.tenants import tenant_for
from domain.base import Actor
from domain.index import NameIndex
from domain.tenant import Tenant
from domain.user import (
    EmailTakenError,
    User,
    check_email,
    check_password,
    email_key,
)

INDEX_KIND = "user-email"
FINGERPRINT_PURPOSE = "user-email"
WRONG_CREDENTIALS = "invalid email or password"


class InvalidCredentialsError(AuthenticationError):
    """A sign-in with an unknown email or a wrong password: the same answer for both."""


class SignupClosedError(ForbiddenError):
    """``HOSTPLANE_SIGNUP=closed``: only the operator or a tenant adds users."""


class SelfRemovalError(ForbiddenError):
    """A user can't remove the user that authenticates the request."""


@dataclass(frozen=True)
class SignedIn:
    """A user and a fresh token for it."""

    user_id: UUID
    tenant_id: UUID
    email: str
    token: str
    expires_in: int


@dataclass(frozen=True)
class UserView:
    """A user as the API shows it (the email decrypted)."""

    user_id: UUID
    tenant_id: UUID
    email: str


class Users:
    def __init__(
        self,
        store: EventStore,
        secret_box: SecretBox,
        fingerprints: Fingerprinter,
        passwords: Passwords,
        tokens: UserTokens,
        clock: Clock,
        signup_open: bool = True,
        keys: Keys | None = None,
    ) -> None:
        self.store = store
        self.secret_box = secret_box
        self.fingerprints = fingerprints
        self.passwords = passwords
        self.tokens = tokens
        self.clock = clock
        self.signup_open = signup_open
        self.keys = keys  # a removed user's personal access tokens are revoked with it

    @cached_property
    def _dummy_hash(self) -> str:
        """Hashed once, at the first sign-in: an unknown email is checked against it, as
        slowly as a known one."""
        return self.passwords.hash(uuid4().hex)

    # -- sign-up and sign-in ------------------------------------------------------------

    def register(self, email: str, password: str, ip: str | None) -> SignedIn:
        """Sign up: a new tenant owned by a new user, in one write; returns a token."""
        if not self.signup_open:
            raise SignupClosedError(
                "sign-up is closed on this hostplane: ask its operator or your team for an account"
            )
        email = check_email(email)
        check_password(password, email)
        user_id = uuid4()
        actor = Actor(id=f"user:{user_id}", ip=ip)
        tenant = Tenant.register(
            name=f"user-{user_id.hex[:12]}",
            weight=100,
            tokens_per_minute=None,
            group=None,
            wrapped_data_key=self.secret_box.new_wrapped_data_key(),
            actor=actor,
        )
        tenant_name = claim_name(self.store, "tenant", tenant.name, tenant.id, actor)
        user, *claims = self._new_user(user_id, tenant, email, password, actor)
        self._commit_new(tenant, tenant_name, user, *claims)
        return self._signed_in(user, email)

    def login(self, email: str, password: str) -> SignedIn:
        """Sign in; an unknown email and a wrong password are refused alike, as slowly."""
        if not isinstance(email, str) or not isinstance(password, str):
            raise InvalidCredentialsError(WRONG_CREDENTIALS)
        user = self._user_by_email(email.strip())
        if user is None:
            self.passwords.verify(self._dummy_hash, password)
            raise InvalidCredentialsError(WRONG_CREDENTIALS)
        if not self.passwords.verify(user.password_hash, password):
            raise InvalidCredentialsError(WRONG_CREDENTIALS)
        tenant = self.store.load(Tenant, user.tenant_id, "tenant")
        if tenant.offboarded:  # a user added while its tenant was being offboarded
            raise InvalidCredentialsError(WRONG_CREDENTIALS)
        if self.passwords.needs_rehash(user.password_hash):
            user.change_password_hash(self.passwords.hash(password), Actor.system())
            # Changed meanwhile: the next sign-in rehashes.
            with contextlib.suppress(ConcurrentModificationError):
                self.store.commit(user)
        email = self.secret_box.decrypt(tenant.wrapped_data_key, user.email_ciphertext)
        return self._signed_in(user, email)

    # -- a tenant's users ---------------------------------------------------------------

    def add_user(self, principal: Principal, tenant_id: UUID, email: str, password: str) -> UUID:
        """Add a user to a tenant (the admin, or the tenant's management authority)."""
        tenant = tenant_for(self.store, principal, tenant_id)
        tenant.check_active()
        email = check_email(email)
        check_password(password, email)
        user, *claims = self._new_user(uuid4(), tenant, email, password, principal.actor)
        self._commit_new(user, *claims)
        return user.id

    def get_for(self, principal: Principal, user_id: UUID) -> User:
        """A user the caller may see; another tenant's, or a removed one, is 404."""
        return self.store.load_owned(
            principal, User, user_id, "user", gone=lambda user: user.removed
        )

    def view(self, principal: Principal, user_id: UUID) -> UserView:
        user = self.get_for(principal, user_id)
        return UserView(user.id, user.tenant_id, self.email_of(user))

    def remove_user(self, principal: Principal, user_id: UUID) -> None:
        """Remove a user for good: its tokens stop working, its email is free again."""
        user = self.get_for(principal, user_id)
        if user.id == principal.user_id:
            raise SelfRemovalError("a user can't remove itself")
        user.remove(actor=principal.actor)
        index = self.store.find(NameIndex, NameIndex.create_id(INDEX_KIND, user.email_fingerprint))
        if index is not None:
            index.release(user.id, actor=principal.actor)
        tokens = (
            self.keys.revoking_tokens_of(user.tenant_id, user.id, principal.actor)
            if self.keys
            else []
        )
        self.store.commit(user, index, *tokens)

    # -- emails -------------------------------------------------------------------------

    def email_of(self, user: User) -> str:
        tenant = self.store.load(Tenant, user.tenant_id, "tenant")
        return self.secret_box.decrypt(tenant.wrapped_data_key, user.email_ciphertext)

    def emails(self, sealed: Iterable[tuple[UUID, bytes]]) -> list[str]:
        """The emails of read-model rows (tenant id, ciphertext), each tenant loaded once."""
        keys: dict[UUID, bytes] = {}
        out = []
        for tenant_id, ciphertext in sealed:
            if tenant_id not in keys:
                keys[tenant_id] = self.store.load(Tenant, tenant_id, "tenant").wrapped_data_key
            out.append(self.secret_box.decrypt(keys[tenant_id], bytes(ciphertext)))
        return out

    # -- helpers ------------------------------------------------------------------------

    def fingerprint_of(self, email: str) -> str:
        """The keyed hash that stands for an email (in a rate limit's subject, say)."""
        return self._fingerprint(email.strip())

    def _fingerprint(self, email: str) -> str:
        return self.fingerprints.fingerprint(FINGERPRINT_PURPOSE, email_key(email))

    def _user_by_email(self, email: str) -> User | None:
        index = self.store.find(
            NameIndex, NameIndex.create_id(INDEX_KIND, self._fingerprint(email))
        )
        if index is None or index.owner_id is None:
            return None
        user = self.store.find(User, index.owner_id)
        return None if user is None or user.removed else user

    def _new_user(
        self, user_id: UUID, tenant: Tenant, email: str, password: str, actor: Actor
    ) -> list[User | NameIndex]:
        """The user, and its email's claim (plus the release of a removed owner's claim)."""
        fingerprint = self._fingerprint(email)
        user = User.register(
            user_id=user_id,
            tenant_id=tenant.id,
            email_ciphertext=self.secret_box.encrypt(tenant.wrapped_data_key, email),
            email_fingerprint=fingerprint,
            password_hash=self.passwords.hash(password),
            actor=actor,
        )
        index = self.store.find(NameIndex, NameIndex.create_id(INDEX_KIND, fingerprint))
        if index is None:
            return [
                user,
                NameIndex(kind=INDEX_KIND, key=fingerprint, owner_id=user.id, actor=actor),
            ]
        if index.owner_id is not None:
            # A user removed by its tenant's offboarding still holds the claim: it is free.
            owner = self.store.find(User, index.owner_id)
            if owner is not None and not owner.removed:
                raise EmailTakenError("this email is already registered")
            index.release(index.owner_id, actor=actor)
        index.claim(user.id, actor=actor)
        return [user, index]

    def _commit_new(self, *aggregates: Tenant | User | NameIndex) -> None:
        try:
            self.store.commit(*aggregates)
        except ConcurrentModificationError:
            # Two sign-ups raced for one email: the index aggregate let exactly one win.
            raise EmailTakenError("this email is already registered") from None

    def _signed_in(self, user: User, email: str) -> SignedIn:
        token = self.tokens.issue(user.id, user.tenant_id, self.clock.now())
        return SignedIn(user.id, user.tenant_id, email, token, self.tokens.lifetime_seconds)
