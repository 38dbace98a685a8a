"""The McpServer aggregate: an MCP server a tenant registers (seed 004), reached over HTTP."""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, ConflictError, InvalidValueError
from domain.values import Text, Url, check_flag

TRANSPORTS = ("streamable-http", "sse")
MAX_HEADERS = 20
NAME = Text(
    63,
    pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}\Z"),
    message="{field} must be 1-63 characters: letters, digits, space, '.', '_' or '-'",
)
URL = Url(2048)
# An HTTP field name (RFC 9110 token) and a value without line breaks (they would split it).
HEADER_NAME = Text(
    100,
    pattern=re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z"),
    message="{field} must be an HTTP header name of 1-{max} characters",
)
HEADER_VALUE = Text(
    4096,
    min_length=0,
    pattern=re.compile(r"^[^\r\n]*\Z"),
    message="{field} must be at most {max} characters, without line breaks",
)


class McpServerDeletedError(ConflictError):
    """A deleted MCP server can't be changed."""


def check_name(name: object) -> str:
    return NAME.check("name", name)


def check_url(url: object) -> str:
    """An absolute http(s) URL without credentials (those go in ``headers``, encrypted)."""
    checked = URL.check("url", url)
    parts = urlsplit(checked)
    if parts.username is not None or parts.password is not None:
        raise InvalidValueError("url", "url must not contain credentials: send them as headers")
    return checked


def check_transport(transport: object) -> str:
    if transport not in TRANSPORTS:
        raise InvalidValueError("transport", f"transport must be one of {', '.join(TRANSPORTS)}")
    return str(transport)


def check_headers(headers: object) -> dict[str, str]:
    """Authentication headers sent to the server: names unique (case-insensitive), bounded."""
    if not isinstance(headers, dict):
        raise InvalidValueError("headers", "headers must be an object of names to values")
    if len(headers) > MAX_HEADERS:
        raise InvalidValueError("headers", f"headers holds at most {MAX_HEADERS} entries")
    seen: set[str] = set()
    out: dict[str, str] = {}
    for name, value in headers.items():
        name = HEADER_NAME.check("headers", name)
        if name.lower() in seen:
            raise InvalidValueError("headers", f"header {name!r} is given twice")
        seen.add(name.lower())
        out[name] = HEADER_VALUE.check(f"headers.{name}", value)
    return out


class McpServer(Aggregate):
    """An MCP server of one tenant: where it is, how to speak to it, whether it is in use."""

    class Registered(Aggregate.Created):
        """Registered; header values are stored encrypted with the tenant's data key."""

        tenant_id: UUID
        name: str
        url: str
        transport: str
        header_names: list[str]
        headers_ciphertext: bytes | None
        enabled: bool
        actor: Actor

    @event(Registered)
    def __init__(
        self,
        tenant_id: UUID,
        name: str,
        url: str,
        transport: str,
        header_names: list[str],
        headers_ciphertext: bytes | None,
        enabled: bool,
        actor: Actor,
    ) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.url = url
        self.transport = transport
        # Names are shown in lists; the values (tokens) only ever leave encrypted.
        self.header_names = header_names
        self.headers_ciphertext = headers_ciphertext
        self.enabled = enabled
        self.deleted = False

    @classmethod
    def register(
        cls,
        tenant_id: UUID,
        name: str,
        url: str,
        transport: str,
        header_names: list[str],
        headers_ciphertext: bytes | None,
        enabled: bool,
        actor: Actor,
    ) -> McpServer:
        return cls(
            tenant_id=tenant_id,
            name=check_name(name),
            url=check_url(url),
            transport=check_transport(transport),
            header_names=header_names,
            headers_ciphertext=headers_ciphertext,
            enabled=check_flag("enabled", enabled),
            actor=actor,
        )

    def check_not_deleted(self) -> None:
        if self.deleted:
            raise McpServerDeletedError("this MCP server has been deleted")

    def update(
        self,
        actor: Actor,
        name: str | None = None,
        url: str | None = None,
        transport: str | None = None,
        enabled: bool | None = None,
    ) -> None:
        """Change the fields given; a change that changes nothing records nothing."""
        self.check_not_deleted()
        changes = {
            "name": None if name is None else check_name(name),
            "url": None if url is None else check_url(url),
            "transport": None if transport is None else check_transport(transport),
            "enabled": None if enabled is None else check_flag("enabled", enabled),
        }
        changed = {k: v for k, v in changes.items() if v is not None and v != getattr(self, k)}
        if changed:
            self._updated(changes=changed, actor=actor)

    @event("Updated")
    def _updated(self, changes: dict[str, object], actor: Actor) -> None:
        for field, value in changes.items():
            setattr(self, field, value)

    def replace_headers(
        self, header_names: list[str], headers_ciphertext: bytes | None, actor: Actor
    ) -> None:
        self.check_not_deleted()
        self._headers_replaced(
            header_names=header_names, headers_ciphertext=headers_ciphertext, actor=actor
        )

    @event("HeadersReplaced")
    def _headers_replaced(
        self, header_names: list[str], headers_ciphertext: bytes | None, actor: Actor
    ) -> None:
        self.header_names = header_names
        self.headers_ciphertext = headers_ciphertext

    def delete(self, actor: Actor) -> None:
        self.check_not_deleted()
        self._deleted(actor=actor)

    @event("Deleted")
    def _deleted(self, actor: Actor) -> None:
        self.deleted = True
