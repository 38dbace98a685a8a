"""Authentication: which principal a bearer token stands for, and the operator's admin token."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from application.auth import Principal
from application.errors import AuthenticationError, ConcurrentModificationError
from application.store import EventStore
from domain.apikey import ApiKey, KeyUnusableError, key_id_for_token
from domain.base import Actor, sha256_hex
from domain.operator import ADMIN_TOKEN_PREFIX, Operator

KEY_CACHE_SIZE = 10_000


class Authenticator:
    """Turns bearer tokens into principals; keeps the keys that authenticated lately.

    ``admin_token`` is ``HOSTPLANE_ADMIN_TOKEN``; without it, the admin token is the one kept
    in the event store (``Operator``), created at first start (``ensure_admin_token``).
    """

    def __init__(self, store: EventStore, admin_token: str | None = None) -> None:
        self.store = store
        self._admin_token_hash = sha256_hex(admin_token) if admin_token else None
        # Keys that authenticated lately, reused only while their stored version is unchanged.
        self._keys: dict[UUID, ApiKey] = {}

    def key_id_of(self, token: str) -> UUID | None:
        """The id of the key a bearer token names (``None`` for the admin token)."""
        return None if self._is_admin_token(token) else key_id_for_token(token)

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
        cached = self._kept_key(key_id, stored_version)
        return None if cached is None else self._principal(cached, token, ip, None)

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
            actor=Actor(id=f"key:{key.id}", ip=ip),
            tenant_id=key.tenant_id,
            key_id=key.id,
        )

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
