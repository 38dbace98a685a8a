"""The Webhook aggregate: a tenant's subscription to events, delivered signed to a URL."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, ConflictError, InvalidValueError
from domain.values import Text, Url

# The event types a webhook may subscribe to, and what each one reports.
EVENT_TYPES = (
    "instance.status_changed",
    "budget.threshold_crossed",
    "budget.exceeded",
    "key.revoked",
    "key.disabled",
    "tenant.offboarded",
)
SECRET_PREFIX = "whsec_"
MAX_URL = 2048
MAX_DESCRIPTION = 500
SIGNATURE_HEADER = "Hostplane-Signature"
URL = Url(MAX_URL)
DESCRIPTION = Text(
    MAX_DESCRIPTION, min_length=0, message="{field} must be at most {max} characters"
)


class WebhookDeletedError(ConflictError):
    """A deleted webhook can't be changed."""


def check_url(url: str) -> str:
    """An absolute http(s) URL without credentials (they would end up in an event)."""
    parts = urlsplit(URL.check("url", url))
    if parts.username is not None or parts.password is not None:
        raise InvalidValueError("url", "url must not contain credentials")
    return url


def check_events(events: list[str]) -> list[str]:
    """Known event types, each once, in the order given."""
    unknown = [e for e in events if e not in EVENT_TYPES]
    if not events or unknown:
        raise InvalidValueError(
            "events", f"events must be a non-empty list of: {', '.join(EVENT_TYPES)}"
        )
    return list(dict.fromkeys(events))


def check_description(description: str | None) -> str | None:
    return None if description is None else DESCRIPTION.check("description", description)


class Webhook(Aggregate):
    """A URL that receives the tenant's events of the chosen types, signed with its secret."""

    class Created(Aggregate.Created):
        """A webhook was registered; its signing secret is stored encrypted, never in clear."""

        tenant_id: UUID
        url: str
        events: list[str]
        description: str | None
        secret_ciphertext: bytes
        actor: Actor

    @event(Created)
    def __init__(
        self,
        tenant_id: UUID,
        url: str,
        events: list[str],
        description: str | None,
        secret_ciphertext: bytes,
        actor: Actor,
    ) -> None:
        self.tenant_id = tenant_id
        self.url = url
        self.events = events
        self.description = description
        # Encrypted with the tenant's data key: the worker needs the secret back to sign.
        self.secret_ciphertext = secret_ciphertext
        self.deleted = False

    @classmethod
    def register(
        cls,
        tenant_id: UUID,
        url: str,
        events: list[str],
        description: str | None,
        secret_ciphertext: bytes,
        actor: Actor,
    ) -> Webhook:
        return cls(
            tenant_id=tenant_id,
            url=check_url(url),
            events=check_events(events),
            description=check_description(description),
            secret_ciphertext=secret_ciphertext,
            actor=actor,
        )

    def check_not_deleted(self) -> None:
        if self.deleted:
            raise WebhookDeletedError("this webhook has been deleted")

    def delete(self, actor: Actor) -> None:
        """Stop new deliveries for good."""
        self.check_not_deleted()
        self._deleted(actor=actor)

    @event("Deleted")
    def _deleted(self, actor: Actor) -> None:
        self.deleted = True


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Hostplane-Signature`` header: ``t=<unix ts>,v1=<hex HMAC-SHA256 of "t.body">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def retry_delay(attempts: int, base_seconds: float, cap_seconds: float = 3600.0) -> timedelta:
    """Exponential backoff after ``attempts`` failed attempts: base, 2x base, 4x base ... capped."""
    exponent = min(max(attempts - 1, 0), 32)
    return timedelta(seconds=min(base_seconds * 2**exponent, cap_seconds))
