"""The hostplane application: the write side's use cases on the event store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import RecordConflictError, Transcoder

from application.auth import Principal
from application.errors import AuthenticationError, ConcurrentModificationError, NotFoundError
from application.idempotency import ClaimWrite, current_claim
from application.ports import SecretBox, TenantDirectory
from application.transcoder import OrjsonTranscoder
from domain.apikey import ApiKey, KeyUnusableError, key_id_for_token
from domain.base import Actor, sha256_hex
from domain.operator import ADMIN_TOKEN_PREFIX, Operator

A = TypeVar("A", bound=Aggregate)
KEY_CACHE_SIZE = 10_000


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


class BaseService(Application[UUID]):
    """Loading, saving and authentication shared by every use case."""

    name = "Hostplane"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        secret_box: SecretBox | None = None,
        admin_token: str | None = None,
    ) -> None:
        super().__init__(env)
        self.secret_box: SecretBox = secret_box  # type: ignore[assignment]
        self.directory: TenantDirectory | None = None
        self._admin_token_hash = sha256_hex(admin_token) if admin_token else None
        # Keys that authenticated lately, reused only while their stored version is unchanged.
        self._keys: dict[UUID, ApiKey] = {}
        # The highest notification id this process has written (read-your-writes shortcuts).
        self.last_written = 0
        self._written_lock = threading.Lock()

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    def now(self) -> datetime:
        return utcnow()

    # -- loading and saving -------------------------------------------------------------

    def load(self, cls: type[A], aggregate_id: UUID, kind: str) -> A:
        """Load an aggregate of type ``cls``; anything else with that id is "not found"."""
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError(kind, aggregate_id) from None
        if not isinstance(aggregate, cls):
            raise NotFoundError(kind, aggregate_id)
        return aggregate

    def load_owned(
        self,
        principal: Principal,
        cls: type[A],
        aggregate_id: UUID,
        kind: str,
        gone: Callable[[A], bool] = lambda aggregate: bool(getattr(aggregate, "deleted", False)),
    ) -> A:
        """A tenant-owned aggregate the caller may see; another tenant's, or a gone one, is 404."""
        aggregate = self.load(cls, aggregate_id, kind)
        principal.check_tenant(aggregate.tenant_id, kind, aggregate_id)  # type: ignore[attr-defined]
        if gone(aggregate):  # GET answers 404 for it, so PUT and DELETE must too
            raise NotFoundError(kind, aggregate_id)
        return aggregate

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, cls) else None

    def commit(
        self, *aggregates: Aggregate | None, shown_once: str | None = None, **kwargs: Any
    ) -> int | None:
        """Save aggregates atomically; returns the last notification id written.

        Within a request that holds an Idempotency-Key claim (``current_claim``), the save also
        marks the claim committed, in the same statement, with ``shown_once`` (a secret the
        response shows this once) sealed: a retry after a crash can then still answer.
        """
        claim = current_claim.get()
        if claim is not None:
            kwargs["idempotency_claim"] = ClaimWrite(claim, self._seal(shown_once))
        try:
            recordings = self.save(*aggregates, **kwargs)
        except RecordConflictError:
            raise ConcurrentModificationError(
                "the resource was changed by another request; retry"
            ) from None
        written = max((r.notification.id for r in recordings), default=None)
        if written is not None:
            with self._written_lock:
                self.last_written = max(self.last_written, written)
        return written

    def _seal(self, secret: str | None) -> tuple[bytes, bytes] | None:
        if secret is None:
            return None
        wrapped = self.secret_box.new_wrapped_data_key()
        return wrapped, self.secret_box.encrypt(wrapped, secret)

    # -- authentication ---------------------------------------------------------------

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
            key.check_usable(token, now or utcnow(), ip)
        except KeyUnusableError as e:
            raise AuthenticationError(str(e)) from None
        return Principal(
            kind=key.kind,  # type: ignore[arg-type]
            actor=Actor(id=f"key:{key.id}", ip=ip),
            tenant_id=key.tenant_id,
            key_id=key.id,
        )

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
        key = self.find(ApiKey, key_id)
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
        operator = self.find(Operator, Operator.create_id())
        return operator is not None and operator.accepts(token)

    def ensure_admin_token(self) -> str | None:
        """On first start without ``HOSTPLANE_ADMIN_TOKEN``: create an admin token, once."""
        if self._admin_token_hash is not None:
            return None
        if self.find(Operator, Operator.create_id()) is not None:
            return None
        operator, token = Operator.start(actor=Actor.system())
        try:
            self.commit(operator)
        except ConcurrentModificationError:
            return None  # another process created it first and printed it
        return token

    def rotate_admin_token(self, actor: Actor) -> str:
        """Replace the stored admin token; the old one stops working at once."""
        operator = self.find(Operator, Operator.create_id())
        if operator is None:
            operator, token = Operator.start(actor=actor)
        else:
            token = operator.rotate_admin_token(actor=actor)
        self.commit(operator)
        return token
