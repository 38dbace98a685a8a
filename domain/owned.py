"""The kinds of aggregate a tenant owns, listed once: offboarding, audit and export read this.

A kind is owned when its created event carries ``tenant_id`` (a unit test holds every such
aggregate of ``domain`` to an entry here). The tenant itself is the owner, not a kind it owns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from eventsourcing.domain import Aggregate

from domain.apikey import ApiKey
from domain.base import Actor
from domain.budget import Budget
from domain.instance import Instance
from domain.mcpserver import McpServer
from domain.projectconfig import ProjectConfig
from domain.usage import UsageBatch
from domain.user import User
from domain.webhook import Webhook


@dataclass(frozen=True)
class OwnedKind:
    """One kind of aggregate a tenant owns, and what offboarding, audit and export do with it."""

    aggregate: type[Aggregate]
    # Its name in audit entries (``target_type``, actions such as ``key.issued``), in export
    # lines (``aggregate_type``) and in the tenant directory's answers (``owned_ids``).
    name: str
    # How offboarding ends one, e.g. ``ApiKey.delete``; ``None``: kept as it is (history).
    end: Callable[[Any, Actor], None] | None = None
    # Whether one is ended already (offboarding skips it).
    ended: Callable[[Any], bool] = attrgetter("deleted")
    # Field names never shown in audit entries or exports, in any event that has them (bytes,
    # and names with "secret", "ciphertext", "password" or the word "token", are anyway).
    secret_fields: frozenset[str] = frozenset()

    def end_live(self, aggregate: Any, actor: Actor) -> bool:
        """End ``aggregate`` unless it is ended already; whether it was ended now."""
        if self.end is None or self.ended(aggregate):
            return False
        self.end(aggregate, actor)
        return True


# In the order offboarding writes them, in one save: webhooks last, as they are still owed
# the events that precede their deletion.
OWNED: tuple[OwnedKind, ...] = (
    OwnedKind(Budget, "budget", end=Budget.delete),
    OwnedKind(ApiKey, "key", end=ApiKey.delete, secret_fields=frozenset({"token_hash"})),
    OwnedKind(
        Instance,
        "instance",
        end=Instance.destroy,
        ended=attrgetter("is_destroyed"),
        secret_fields=frozenset({"api_key_ciphertext"}),
    ),
    OwnedKind(
        McpServer,
        "mcp_server",
        end=McpServer.delete,
        secret_fields=frozenset({"headers_ciphertext"}),
    ),
    # Its tokens stop working at once; the email stays encrypted with the tenant's data key.
    OwnedKind(
        User,
        "user",
        end=User.remove,
        ended=attrgetter("removed"),
        secret_fields=frozenset({"email_ciphertext", "email_fingerprint", "password_hash"}),
    ),
    OwnedKind(
        Webhook, "webhook", end=Webhook.delete, secret_fields=frozenset({"secret_ciphertext"})
    ),
    # Kept at offboarding: settings, not a resource; the tenant's requests end anyway.
    OwnedKind(ProjectConfig, "project_config"),
    OwnedKind(UsageBatch, "usage"),  # what was used stays billed and exported
)
ENDED_AT_OFFBOARDING: tuple[OwnedKind, ...] = tuple(k for k in OWNED if k.end is not None)
_BY_AGGREGATE: dict[type[Aggregate], OwnedKind] = {k.aggregate: k for k in OWNED}


def owned_kind(aggregate: type[Aggregate]) -> OwnedKind | None:
    """The entry of an aggregate class, or ``None`` for one no tenant owns (``Tenant``, ``Model``)."""
    return _BY_AGGREGATE.get(aggregate)
