"""MCP server routes (seed 004). Header values go in encrypted and never come back out."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, StrictBool

from application.idempotency import Created
from domain.mcpserver import MAX_HEADERS, McpServer
from interfaces.db.readgate import ReadGate
from interfaces.http.deps import Caller, Gate, McpServersDep, Once
from interfaces.http.routes.common import CursorQuery, LimitQuery, found, scoped_listing
from interfaces.http.schemas import OWNING_TENANT, Deleted, Page, Strict
from projections.readmodels import mcp_servers

router = APIRouter(tags=["mcp-servers"])

Transport = Literal["streamable-http", "sse"]
HEADERS = "Sent to the server on each request (e.g. Authorization); stored encrypted, never shown."


class McpServerCreate(Strict):
    tenant_id: UUID | None = Field(None, description=OWNING_TENANT)
    name: str = Field(description="Unique within the tenant.")
    url: str = Field(description="The server's http:// or https:// endpoint.")
    transport: Transport = "streamable-http"
    headers: dict[str, str] | None = Field(None, description=HEADERS, max_length=MAX_HEADERS)
    enabled: StrictBool = True


class McpServerUpdate(Strict):
    name: str | None = None
    url: str | None = None
    transport: Transport | None = None
    headers: dict[str, str] | None = Field(
        None, description=HEADERS + " Given, it replaces the whole set.", max_length=MAX_HEADERS
    )
    enabled: StrictBool | None = None


class McpServerPublic(BaseModel):
    id: UUID
    tenant_id: UUID
    name: str
    url: str
    transport: str
    header_names: list[str] = Field(description="The names of the stored headers; never values.")
    enabled: bool
    created_at: datetime
    updated_at: datetime


def read_server(gate: ReadGate, caller: Caller, server_id: UUID) -> McpServerPublic:
    with gate.reading("mcp_servers") as curs:
        row = mcp_servers.get_server(curs, server_id, caller.tenant_filter())
    return McpServerPublic(**found(row, "MCP server", server_id))


@router.post("/mcp-servers", status_code=201, response_model=McpServerPublic)
def register_server(
    body: McpServerCreate,
    caller: Caller,
    commands: McpServersDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Register an MCP server. Its headers are encrypted with the tenant's data key."""

    def create() -> McpServerPublic:
        return read_server(gate, caller, commands.register(caller, **body.model_dump()))

    def recover(done: Created) -> McpServerPublic:
        return read_server(gate, caller, once.created_id(done, McpServer))

    return once(caller, request, response, body, create, recover)


@router.get("/mcp-servers", response_model=Page[McpServerPublic])
def list_servers(
    caller: Caller,
    gate: Gate,
    tenant_id: UUID | None = Query(None, description="Only this tenant's servers."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """List MCP servers (header names only), newest first."""
    with gate.reading("mcp_servers") as curs:
        return scoped_listing(
            caller, tenant_id, lambda t: mcp_servers.list_servers(curs, t, limit, cursor)
        )


@router.get("/mcp-servers/{server_id}", response_model=McpServerPublic)
def get_server(server_id: UUID, caller: Caller, gate: Gate) -> McpServerPublic:
    """Get one MCP server (header names only)."""
    return read_server(gate, caller, server_id)


@router.put("/mcp-servers/{server_id}", response_model=McpServerPublic)
def update_server(
    server_id: UUID, body: McpServerUpdate, caller: Caller, commands: McpServersDep, gate: Gate
) -> McpServerPublic:
    """Change the fields given; ``headers`` replaces the stored set (``{}`` removes them)."""
    commands.update(caller, server_id, **body.model_dump(exclude_unset=True))
    return read_server(gate, caller, server_id)


@router.delete("/mcp-servers/{server_id}", response_model=Deleted)
def delete_server(server_id: UUID, caller: Caller, commands: McpServersDep) -> Deleted:
    """Delete an MCP server for good; its name is free again."""
    commands.delete(caller, server_id)
    return Deleted(id=server_id)
