"""Read model: the MCP servers tenants registered (header names only, never their values)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.mcpserver import McpServer
from projections.engine.base import Handler, keyset_page, live_schema
from projections.readmodels.owned import OwnedListing

SCHEMA = live_schema("mcp_servers")

CREATE_SERVERS = """
CREATE TABLE IF NOT EXISTS {s}.servers (
    id uuid PRIMARY KEY, tenant_id uuid NOT NULL, name text NOT NULL, url text NOT NULL,
    transport text NOT NULL, header_names text[] NOT NULL, enabled boolean NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"""
CREATE_SERVERS_ORDER = (
    "CREATE INDEX IF NOT EXISTS servers_tenant_order"
    " ON {s}.servers (tenant_id, created_at DESC, id DESC)"
)
INSERT_SERVER = """
INSERT INTO {s}.servers
    (id, tenant_id, name, url, transport, header_names, enabled, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"""
# Only the fields an ``Updated`` event names change; the others keep their value.
UPDATE_SERVER = """
UPDATE {s}.servers SET name = coalesce(%(name)s, name), url = coalesce(%(url)s, url),
    transport = coalesce(%(transport)s, transport), enabled = coalesce(%(enabled)s, enabled),
    updated_at = %(at)s
WHERE id = %(id)s"""
REPLACE_HEADERS = "UPDATE {s}.servers SET header_names = %s, updated_at = %s WHERE id = %s"
DELETE_SERVER = "UPDATE {s}.servers SET deleted = true, updated_at = %s WHERE id = %s"
COLUMNS = "id, tenant_id, name, url, transport, header_names, enabled, created_at, updated_at"


class McpServersProjection(OwnedListing):
    name = "mcp_servers"
    lists = McpServer
    live_ids_sql = "SELECT id FROM {s}.servers WHERE tenant_id = %s AND NOT deleted"
    tables = [CREATE_SERVERS, CREATE_SERVERS_ORDER]

    def registered(self, curs: Cursor[Any], e: Any) -> None:
        row = (e.originator_id, e.tenant_id, e.name, e.url, e.transport, list(e.header_names))
        curs.execute(e.sql(INSERT_SERVER), (*row, e.enabled, e.timestamp, e.timestamp))

    def updated(self, curs: Cursor[Any], e: Any) -> None:
        fields = dict.fromkeys(("name", "url", "transport", "enabled")) | e.changes
        curs.execute(e.sql(UPDATE_SERVER), {**fields, "at": e.timestamp, "id": e.originator_id})

    def headers_replaced(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(REPLACE_HEADERS), (list(e.header_names), e.timestamp, e.originator_id))

    def deleted(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(DELETE_SERVER), (e.timestamp, e.originator_id))

    handlers: dict[type, Handler] = {
        McpServer.Registered: registered,
        McpServer.Updated: updated,
        McpServer.HeadersReplaced: headers_replaced,
        McpServer.Deleted: deleted,
    }


def get_server(curs: Cursor[Any], server_id: UUID, scope: UUID | None) -> dict[str, Any] | None:
    """A live MCP server, limited to tenant ``scope`` when given."""
    row = curs.execute(
        f"SELECT {COLUMNS} FROM {SCHEMA}.servers WHERE id = %s AND NOT deleted", (server_id,)
    ).fetchone()
    if row is None or (scope is not None and row["tenant_id"] != scope):
        return None
    return dict(row)


def list_servers(
    curs: Cursor[Any], tenant_id: UUID | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    filters = {"tenant_id": tenant_id} if tenant_id is not None else {}
    return keyset_page(
        curs, f"{SCHEMA}.servers", COLUMNS, filters, limit, cursor, dict, "NOT deleted"
    )
