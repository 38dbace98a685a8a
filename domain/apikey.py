"""The ApiKey aggregate: a tenant's management or router token, stored only as a hash."""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import (
    Actor,
    ConflictError,
    DomainError,
    InvalidValueError,
    name_id,
    sha256_hex,
)
from domain.values import (
    MAX_REQUESTS_PER_MINUTE,
    BoundedInt,
    Text,
    TextList,
    check_flag,
    check_instant,
)

KINDS = ("management", "router")
TOKEN_PREFIX = {"management": "hp_mk_", "router": "hp_rk_"}
PREFIX_LEN = 16
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}\Z")
KEY_NAME = Text(
    63,
    pattern=KEY_NAME_RE,
    message="{field} must be 1-63 characters: letters, digits, space, '.', '_' or '-'",
)
# Model ids a key may use: catalog slugs or upstream model names, each a jsonb string.
ALLOWED_MODELS = TextList(
    Text(200, message="{field} must be a model id of {min}-{max} characters"), 1000
)
IP_ALLOWLIST = TextList(Text(64, min_length=0), 1000)  # ip_network says what is wrong
RPM_LIMIT = BoundedInt(
    1, MAX_REQUESTS_PER_MINUTE, "{field} must be a whole number of requests from 1 to {maximum}"
)


class KeyUnusableError(DomainError):
    """The key may not authenticate (expired, disabled or deleted): HTTP 401."""


class KeyIpNotAllowedError(DomainError):
    """The request comes from outside the key's IP allowlist: HTTP 403."""


class KeyDeletedError(ConflictError):
    """A deleted key can't be changed."""


def key_id_for_token(token: str) -> UUID:
    """A key's id is derived from the hash of its token, so a token finds its key directly."""
    return name_id("api-key", sha256_hex(token))


def generate_token(kind: str) -> str:
    return TOKEN_PREFIX[kind] + secrets.token_urlsafe(32)


def check_ip_allowlist(cidrs: list[str]) -> list[str]:
    normalised = []
    for cidr in IP_ALLOWLIST.check("ip_allowlist", cidrs):
        try:
            normalised.append(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError:
            raise InvalidValueError(
                "ip_allowlist", f"{cidr!r} is not an IP address or CIDR"
            ) from None
    return normalised


def check_key_name(name: str) -> str:
    return KEY_NAME.check("name", name)


def check_allowed_models(models: list[str] | None) -> list[str] | None:
    return None if models is None else ALLOWED_MODELS.check("allowed_models", models)


def check_rpm_limit(rpm_limit: object) -> int | None:
    """Requests per minute the key may make (``None``: no limit of its own)."""
    return None if rpm_limit is None else RPM_LIMIT.check("rpm_limit", rpm_limit)


def check_expiry(expires_at: object, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime):
        raise InvalidValueError("expires_at", "expires_at must be a time (ISO 8601) or null")
    checked = check_instant("expires_at", expires_at)
    if checked <= now:
        raise InvalidValueError("expires_at", "expires_at must be in the future")
    return checked


# What ``PATCH /keys/{id}`` may change after issue, each checked as at issue.
EDITABLE: dict[str, Callable[[object, datetime], object]] = {
    "name": lambda v, now: check_key_name(v),
    "allowed_models": lambda v, now: check_allowed_models(v),
    "sovereignty_mode": lambda v, now: check_flag("sovereignty_mode", v),
    "expires_at": check_expiry,
    "ip_allowlist": lambda v, now: check_ip_allowlist(v or []),
    "rpm_limit": lambda v, now: check_rpm_limit(v),
}


def check_editable(field: str, value: object, now: datetime) -> object:
    if field not in EDITABLE:
        raise InvalidValueError(field, f"{field} can't be changed after a key is issued")
    return EDITABLE[field](value, now)


class ApiKey(Aggregate):
    """A bearer token of one tenant, of kind management or router."""

    class Issued(Aggregate.Created):
        """A key was issued; the event holds the token's hash, never the token."""

        tenant_id: UUID
        name: str
        kind: str
        token_hash: str
        key_prefix: str
        allowed_models: list[str] | None
        sovereignty_mode: bool
        expires_at: datetime | None
        ip_allowlist: list[str]
        actor: Actor
        # Added later: keys issued before it have none (the default, on replay).
        rpm_limit: int | None = None
        # The user who issued it (a personal access token, seed 000), whose actions it takes.
        user_id: UUID | None = None

    @event(Issued)
    def __init__(
        self,
        tenant_id: UUID,
        name: str,
        kind: str,
        token_hash: str,
        key_prefix: str,
        allowed_models: list[str] | None,
        sovereignty_mode: bool,
        expires_at: datetime | None,
        ip_allowlist: list[str],
        actor: Actor,
        rpm_limit: int | None = None,
        user_id: UUID | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.kind = kind
        self.token_hash = token_hash
        self.key_prefix = key_prefix
        self.allowed_models = allowed_models
        self.sovereignty_mode = sovereignty_mode
        self.expires_at = expires_at
        self.ip_allowlist = ip_allowlist
        self.rpm_limit = rpm_limit
        self.user_id = user_id
        self.disabled = False
        self.deleted = False
        self.budget_ids: list[UUID] = []

    @classmethod
    def issue(
        cls,
        tenant_id: UUID,
        name: str,
        kind: str,
        now: datetime,
        actor: Actor,
        allowed_models: list[str] | None = None,
        sovereignty_mode: bool = False,
        expires_at: datetime | None = None,
        ip_allowlist: list[str] | None = None,
        rpm_limit: int | None = None,
        user_id: UUID | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a new key; returns the key and its plaintext token (to be shown once).

        ``user_id``: the user issuing it; what the key does is that user's doing (its actor).
        """
        if kind not in KINDS:
            raise InvalidValueError("kind", f"kind must be one of {', '.join(KINDS)}")
        expires_at = check_expiry(expires_at, now)
        token = generate_token(kind)
        key = cls._create(
            cls.Issued,
            id=key_id_for_token(token),
            tenant_id=tenant_id,
            name=check_key_name(name),
            kind=kind,
            token_hash=sha256_hex(token),
            key_prefix=token[:PREFIX_LEN],
            allowed_models=check_allowed_models(allowed_models),
            sovereignty_mode=check_flag("sovereignty_mode", sovereignty_mode),
            expires_at=expires_at,
            ip_allowlist=check_ip_allowlist(ip_allowlist or []),
            actor=actor,
            rpm_limit=check_rpm_limit(rpm_limit),
            user_id=user_id,
        )
        return key, token

    def check_usable(self, token: str, now: datetime, ip: str | None) -> None:
        """Raise unless this key may authenticate a request from ``ip`` at ``now``."""
        if not secrets.compare_digest(self.token_hash, sha256_hex(token)):
            raise KeyUnusableError("invalid API key")
        if self.deleted:
            raise KeyUnusableError("this API key has been deleted")
        if self.disabled:
            raise KeyUnusableError("this API key is disabled")
        if self.expires_at is not None and now >= self.expires_at:
            raise KeyUnusableError("this API key has expired")
        if self.ip_allowlist and not self.ip_allowed(ip):
            raise KeyIpNotAllowedError("requests from this IP address are not allowed for this key")

    def ip_allowed(self, ip: str | None) -> bool:
        if ip is None:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped:  # an IPv4 client on a dual-stack socket
            address = address.ipv4_mapped
        return any(address in ipaddress.ip_network(c) for c in self.ip_allowlist)

    def check_not_deleted(self) -> None:
        if self.deleted:
            raise KeyDeletedError("this key has been deleted")

    def set_disabled(self, disabled: bool, actor: Actor) -> None:
        self.check_not_deleted()
        check_flag("disabled", disabled)
        if disabled and not self.disabled:
            self._disabled(actor=actor)
        elif not disabled and self.disabled:
            self._enabled(actor=actor)

    @event("Disabled")
    def _disabled(self, actor: Actor) -> None:
        self.disabled = True

    @event("Enabled")
    def _enabled(self, actor: Actor) -> None:
        self.disabled = False

    def delete(self, actor: Actor) -> None:
        """Revoke the key for good: a deleted key never authenticates again."""
        self.check_not_deleted()
        self._deleted(actor=actor)

    @event("Deleted")
    def _deleted(self, actor: Actor) -> None:
        self.deleted = True

    def change(self, actor: Actor, now: datetime, **changes: object) -> None:
        """Change the restrictions given (``EDITABLE``); a change that changes nothing records
        nothing. ``None`` clears ``allowed_models`` (every model), ``expires_at`` (never) and
        ``rpm_limit`` (no limit of its own); ``ip_allowlist`` is cleared with ``[]``."""
        self.check_not_deleted()
        checked = {field: check_editable(field, value, now) for field, value in changes.items()}
        changed = {k: v for k, v in checked.items() if v != getattr(self, k)}
        if changed:
            self._changed(changes=changed, actor=actor)

    @event("Changed")
    def _changed(self, changes: dict[str, object], actor: Actor) -> None:
        for field, value in changes.items():
            setattr(self, field, value)

    def attach_budget(self, budget_id: UUID, actor: Actor) -> None:
        self.check_not_deleted()
        self._budget_attached(budget_id=budget_id, actor=actor)

    @event("BudgetAttached")
    def _budget_attached(self, budget_id: UUID, actor: Actor) -> None:
        self.budget_ids.append(budget_id)

    def detach_budget(self, budget_id: UUID, actor: Actor) -> None:
        if budget_id in self.budget_ids:
            self._budget_detached(budget_id=budget_id, actor=actor)

    @event("BudgetDetached")
    def _budget_detached(self, budget_id: UUID, actor: Actor) -> None:
        self.budget_ids.remove(budget_id)
