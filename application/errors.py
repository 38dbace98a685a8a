"""Errors raised by use cases, above the domain's own."""

from __future__ import annotations

from uuid import UUID


class ApplicationError(Exception):
    """A use case refused a request."""


class NotFoundError(ApplicationError):
    """The resource doesn't exist, or the caller may not know that it does (HTTP 404)."""

    def __init__(self, kind: str, ident: UUID | str) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind


class AuthenticationError(ApplicationError):
    """No token, or a token that doesn't authenticate (HTTP 401)."""


class ForbiddenError(ApplicationError):
    """The caller is known but may not do this (HTTP 403)."""


class ConcurrentModificationError(ApplicationError):
    """Another request changed the same aggregate first (HTTP 409)."""


class PricesChangedError(ApplicationError):
    """A batch was rated with a model's prices that changed before it was stored: rate again."""


class ProviderError(ApplicationError):
    """A GPU provider (or an endpoint behind it) could not do what was asked (HTTP 502)."""
