"""The Operator aggregate: the platform operator's admin token, stored as a hash."""

from __future__ import annotations

import secrets
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, name_id, sha256_hex

ADMIN_TOKEN_PREFIX = "hp_admin_"


class Operator(Aggregate):
    """The single operator of this installation; holds the hash of the admin token."""

    @staticmethod
    def create_id() -> UUID:
        return name_id("operator")

    class AdminTokenSet(Aggregate.Created):
        token_hash: str
        actor: Actor

    @event(AdminTokenSet)
    def __init__(self, token_hash: str, actor: Actor) -> None:
        self.token_hash = token_hash

    @classmethod
    def start(cls, actor: Actor) -> tuple[Operator, str]:
        token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        return cls._create(
            cls.AdminTokenSet, id=cls.create_id(), token_hash=sha256_hex(token), actor=actor
        ), token

    def rotate_admin_token(self, actor: Actor) -> str:
        token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._admin_token_rotated(token_hash=sha256_hex(token), actor=actor)
        return token

    @event("AdminTokenRotated")
    def _admin_token_rotated(self, token_hash: str, actor: Actor) -> None:
        self.token_hash = token_hash

    def accepts(self, token: str) -> bool:
        return secrets.compare_digest(self.token_hash, sha256_hex(token))
