"""Use cases on MCP servers (seed 004): register, change, delete; header values kept encrypted."""

from __future__ import annotations

from uuid import UUID

import orjson
from eventsourcing.domain import Aggregate

from application.auth import Principal
from application.errors import ConcurrentModificationError
from application.names import claim_name, commit_claim
from application.ports import SecretBox
from application.store import EventStore
from application.tenants import tenant_for
from domain.base import NameTakenError
from domain.index import NameIndex
from domain.mcpserver import McpServer, check_headers, check_name
from domain.tenant import Tenant

INDEX_KIND = "mcp-server"


def name_key(tenant_id: UUID, name: str) -> str:
    return f"{tenant_id}/{name}"


class McpServers:
    def __init__(self, store: EventStore, secret_box: SecretBox) -> None:
        self.store = store
        self.secret_box = secret_box

    def register(
        self,
        principal: Principal,
        tenant_id: UUID | None,
        name: str,
        url: str,
        transport: str = "streamable-http",
        headers: dict[str, str] | None = None,
        enabled: bool = True,
    ) -> UUID:
        """Register a server under a name unique in its tenant; returns its id."""
        tenant = tenant_for(self.store, principal, principal.owning_tenant(tenant_id))
        tenant.check_active()
        names, sealed = self._sealed(tenant, headers or {})
        server = McpServer.register(
            tenant_id=tenant.id,
            name=name,
            url=url,
            transport=transport,
            header_names=names,
            headers_ciphertext=sealed,
            enabled=enabled,
            actor=principal.actor,
        )
        index = claim_name(
            self.store, INDEX_KIND, name_key(tenant.id, server.name), server.id, principal.actor
        )
        taken = f"an MCP server named {name!r} already exists in this tenant"
        commit_claim(self.store, server, index, taken)
        return server.id

    def get_for(self, principal: Principal, server_id: UUID) -> McpServer:
        """A live server of the caller's tenant; a deleted one is gone (404)."""
        return self.store.load_owned(principal, McpServer, server_id, "MCP server")

    def update(
        self,
        principal: Principal,
        server_id: UUID,
        name: str | None = None,
        url: str | None = None,
        transport: str | None = None,
        headers: dict[str, str] | None = None,
        enabled: bool | None = None,
    ) -> None:
        """Change the fields given (``headers`` replaces the whole set); a rename moves the
        name's claim in the same write."""
        server = self.get_for(principal, server_id)
        changed: list[Aggregate] = [server]
        if name is not None and check_name(name) != server.name:
            old = self.store.load(
                NameIndex,
                NameIndex.create_id(INDEX_KIND, name_key(server.tenant_id, server.name)),
                "MCP server name",
            )
            old.release(server.id, actor=principal.actor)
            new = claim_name(
                self.store, INDEX_KIND, name_key(server.tenant_id, name), server.id, principal.actor
            )
            changed += [old, new]
        server.update(principal.actor, name=name, url=url, transport=transport, enabled=enabled)
        if headers is not None:
            tenant = self.store.load(Tenant, server.tenant_id, "tenant")
            server.replace_headers(*self._sealed(tenant, headers), actor=principal.actor)
        try:
            self.store.commit(*changed)
        except ConcurrentModificationError:
            if len(changed) == 1:
                raise
            # Two requests raced for the new name: the index aggregate let exactly one win.
            raise NameTakenError(f"an MCP server named {name!r} already exists") from None

    def delete(self, principal: Principal, server_id: UUID) -> None:
        """Delete for good; the name is free again."""
        server = self.get_for(principal, server_id)
        server.delete(actor=principal.actor)
        index = self.store.find(
            NameIndex, NameIndex.create_id(INDEX_KIND, name_key(server.tenant_id, server.name))
        )
        if index is not None:
            index.release(server.id, actor=principal.actor)
        self.store.commit(server, index)

    def headers(self, server_id: UUID) -> dict[str, str]:
        """The plaintext headers, for a caller that connects to the server (kept in memory)."""
        server = self.store.load(McpServer, server_id, "MCP server")
        if server.headers_ciphertext is None:
            return {}
        tenant = self.store.load(Tenant, server.tenant_id, "tenant")
        plain = self.secret_box.decrypt(tenant.wrapped_data_key, server.headers_ciphertext)
        return orjson.loads(plain)

    def _sealed(self, tenant: Tenant, headers: dict[str, str]) -> tuple[list[str], bytes | None]:
        """Header names in clear, the values encrypted with the tenant's data key."""
        headers = check_headers(headers)
        if not headers:
            return [], None
        sealed = self.secret_box.encrypt(tenant.wrapped_data_key, orjson.dumps(headers).decode())
        return list(headers), sealed
