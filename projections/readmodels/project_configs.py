"""Read model: each tenant's project configuration (seed 002), as the gateway applies it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.types.json import Jsonb

from domain.projectconfig import ProjectConfig
from projections.engine.base import Handler, Projection, live_schema

SCHEMA = live_schema("project_configs")

CREATE_CONFIGS = """
CREATE TABLE IF NOT EXISTS {s}.configs (
    id uuid PRIMARY KEY, tenant_id uuid NOT NULL UNIQUE, allow_overwrite boolean NOT NULL,
    settings jsonb NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"""
INSERT_CONFIG = """
INSERT INTO {s}.configs (id, tenant_id, allow_overwrite, settings, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s)"""
UPDATE_CONFIG = (
    "UPDATE {s}.configs SET allow_overwrite = %s, settings = %s, updated_at = %s WHERE id = %s"
)
COLUMNS = "id, tenant_id, allow_overwrite, settings, created_at, updated_at"
SELECT_CONFIG = f"SELECT {COLUMNS} FROM {SCHEMA}.configs WHERE tenant_id = %s"


class ProjectConfigsProjection(Projection):
    """Not an ``OwnedListing``: offboarding keeps a project's configuration (it ends nothing)."""

    name = "project_configs"
    tables = [CREATE_CONFIGS]

    def created(self, curs: Cursor[Any], e: Any) -> None:
        row = (e.originator_id, e.tenant_id, e.allow_overwrite, Jsonb(e.settings))
        curs.execute(e.sql(INSERT_CONFIG), (*row, e.timestamp, e.timestamp))

    def updated(self, curs: Cursor[Any], e: Any) -> None:
        values = (e.allow_overwrite, Jsonb(e.settings), e.timestamp, e.originator_id)
        curs.execute(e.sql(UPDATE_CONFIG), values)

    handlers: dict[type, Handler] = {
        ProjectConfig.Created: created,
        ProjectConfig.Updated: updated,
    }


def get_config(curs: Cursor[Any], tenant_id: UUID) -> dict[str, Any] | None:
    """The tenant's project configuration, or ``None`` while it has never set one."""
    row = curs.execute(SELECT_CONFIG, (tenant_id,)).fetchone()
    return dict(row) if row is not None else None
