"""Authentication: which principal a bearer token stands for, and the operator's admin token."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from application.auth import Principal
from application.errors import AuthenticationError, ConcurrentModificationError
from application.ports import UserClaims, UserTokens
from application.store import EventStore
from domain.apikey import ApiKey, KeyUnusableError, key_id_for_token
from domain.base import Actor, sha256_hex
from domain.operator import ADMIN_TOKEN_PREFIX, Operator
from domain.user import User

KEY_CACHE_SIZE = 10_000


class Authenticator:
    """Turns bearer tokens into principals; keeps the keys that authenticated lately.

    ``admin_token`` is ``HOSTPLANE_ADMIN_TOKEN``; without it, the admin token is the one kept
    in the event store (``Operator``), created at first start (``ensure_admin_token``).

    A user's token (``tokens``, a JWT) names its user, whose stored version is read with every
    request as a key's is: a user removed (or offboarded with its tenant) is refused at its
    next request, however long its token has left.
    """

    def __init__(
        self, store: EventStore, admin_token: str | None = None, tokens: UserTokens | None = None
    ) -> None:
        self.store = store
        self._admin_token_hash = sha256_hex(admin_token) if admin_token else None
        self.tokens = tokens
        # Keys that authenticated lately, reused only while their stored version is unchanged.
        self._keys: dict[UUID, ApiKey] = {}
        # Users likewise, and the claims of the tokens verified lately (a signature check is
        # ~20-80 µs; a token's expiry is checked again at every use).
        self._users: dict[UUID, User] = {}
        self._claims: dict[str, UserClaims] = {}

    def key_id_of(self, token: str) -> UUID | None:
        """The id of the key (or user) a bearer token names (``None`` for the admin token);
        ``AuthenticationError`` for a user's token that is forged or expired."""
        if self.is_user_token(token):
            return self._claims_of(token, None).user_id
        return None if self._is_admin_token(token) else key_id_for_token(token)

    def is_user_token(self, token: str) -> bool:
        return self.tokens is not None and self.tokens.is_token(token)

    def knows_without_loading(self, token: str) -> bool:
        """Whether ``key_id_of(token)`` answers without reading the event store."""
        return self._admin_token_hash is not None or not token.startswith(ADMIN_TOKEN_PREFIX)

    def authenticate(
        self,
        token: str,
        ip: str | None,
        now: datetime | None = None,
        stored_version: int | None = None,
    ) -> Principal:
        """The principal a bearer token stands for, or ``AuthenticationError``.

        ``stored_version``, the key's latest version in the event store read by the caller for
        this request, lets a key that authenticated before be reused without loading it again;
        a key changed since (disabled, deleted) has another version and is loaded afresh.
        """
        if self.is_user_token(token):
            claims = self._claims_of(token, now)
            user = self._kept_user(claims.user_id, stored_version)
            return self._user_principal(user or self._load_user(claims.user_id), claims, ip)
        if self._is_admin_token(token):
            return Principal(kind="admin", actor=Actor(id="admin", ip=ip))
        key = self._key(key_id_for_token(token), stored_version)
        return self._principal(key, token, ip, now)

    def authenticate_cached(
        self, token: str, key_id: UUID | None, ip: str | None, stored_version: int | None
    ) -> Principal | None:
        """``authenticate``, when that needs no read of the event store; else ``None``.

        Only for a token ``knows_without_loading`` answers for, with its ``key_id_of`` and the
        key's stored version.
        """
        if key_id is None:
            return Principal(kind="admin", actor=Actor(id="admin", ip=ip))
        if self.is_user_token(token):
            user = self._kept_user(key_id, stored_version)
            claims = self._claims_of(token, None)
            return None if user is None else self._user_principal(user, claims, ip)
        cached = self._kept_key(key_id, stored_version)
        return None if cached is None else self._principal(cached, token, ip, None)

    def _claims_of(self, token: str, now: datetime | None) -> UserClaims:
        assert self.tokens is not None
        now = now or datetime.now(tz=UTC)
        claims = self._claims.get(token)
        if claims is None:
            claims = self.tokens.read(token, now)
            if len(self._claims) >= KEY_CACHE_SIZE:
                self._claims.clear()
            self._claims[token] = claims
        elif now >= claims.expires_at:
            raise AuthenticationError("this token has expired: sign in again")
        return claims

    @staticmethod
    def _user_principal(user: User | None, claims: UserClaims, ip: str | None) -> Principal:
        if user is None or user.tenant_id != claims.tenant_id:
            raise AuthenticationError("invalid token")
        if user.removed:
            raise AuthenticationError("this user has been removed")
        return Principal(
            kind="management",
            actor=Actor(id=f"user:{user.id}", ip=ip),
            tenant_id=user.tenant_id,
            user_id=user.id,
        )

    def _kept_user(self, user_id: UUID, stored_version: int | None) -> User | None:
        """The user as kept in memory, if that is its stored version."""
        kept = self._users.get(user_id)
        if kept is None or stored_version is None or kept.version != stored_version:
            return None
        return kept

    def _load_user(self, user_id: UUID) -> User | None:
        user = self.store.find(User, user_id)
        if user is not None:
            if len(self._users) >= KEY_CACHE_SIZE:
                self._users.clear()
            self._users[user_id] = user
        return user

    def _principal(
        self, key: ApiKey | None, token: str, ip: str | None, now: datetime | None
    ) -> Principal:
        if key is None:
            raise AuthenticationError("invalid API key")
        try:
            key.check_usable(token, now or datetime.now(tz=UTC), ip)
        except KeyUnusableError as e:
            raise AuthenticationError(str(e)) from None
        return Principal(
            kind=key.kind,  # type: ignore[arg-type]
            # A user's personal access token acts as that user: the audit log says who.
            actor=Actor(id=f"user:{key.user_id}" if key.user_id else f"key:{key.id}", ip=ip),
            tenant_id=key.tenant_id,
            key_id=key.id,
        )

    def kept_version(self, key_id: UUID) -> int | None:
        """The version of the key (or user) with this id as kept here, if one is."""
        kept = self._keys.get(key_id) or self._users.get(key_id)
        return None if kept is None else kept.version

    def kept_key(self, key_id: UUID) -> ApiKey | None:
        """The key as last loaded here (after ``authenticate`` succeeded: as it stands now)."""
        return self._keys.get(key_id)

    def _kept_key(self, key_id: UUID, stored_version: int | None) -> ApiKey | None:
        """The key as kept in memory, if that is its stored version."""
        kept = self._keys.get(key_id)
        if kept is None or stored_version is None or kept.version != stored_version:
            return None
        return kept

    def _key(self, key_id: UUID, stored_version: int | None) -> ApiKey | None:
        cached = self._kept_key(key_id, stored_version)
        if cached is not None:
            return cached
        key = self.store.find(ApiKey, key_id)
        if key is not None:
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[key_id] = key
        return key

    def _is_admin_token(self, token: str) -> bool:
        if self._admin_token_hash is not None:
            return sha256_hex(token) == self._admin_token_hash
        if not token.startswith(ADMIN_TOKEN_PREFIX):
            return False
        operator = self.store.find(Operator, Operator.create_id())
        return operator is not None and operator.accepts(token)

    def ensure_admin_token(self) -> str | None:
        """On first start without ``HOSTPLANE_ADMIN_TOKEN``: create an admin token, once."""
        if self._admin_token_hash is not None:
            return None
        if self.store.find(Operator, Operator.create_id()) is not None:
            return None
        operator, token = Operator.start(actor=Actor.system())
        try:
            self.store.commit(operator)
        except ConcurrentModificationError:
            return None  # another process created it first and printed it
        return token

    def rotate_admin_token(self, actor: Actor) -> str:
        """Replace the stored admin token; the old one stops working at once."""
        operator = self.store.find(Operator, Operator.create_id())
        if operator is None:
            operator, token = Operator.start(actor=actor)
        else:
            token = operator.rotate_admin_token(actor=actor)
        self.store.commit(operator)
        return token
