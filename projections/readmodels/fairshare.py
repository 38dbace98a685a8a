"""Read model: fair-share groups and their weights."""

from __future__ import annotations

from typing import Any

from psycopg import Cursor

from domain.fairshare import FairshareGroup
from projections.engine.base import Handler, Projection, keyset_page, live_schema

SCHEMA = live_schema("fairshare")

CREATE_GROUPS = """
CREATE TABLE IF NOT EXISTS {s}.groups (
    id uuid PRIMARY KEY, name text NOT NULL UNIQUE, weight integer NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"""
CREATE_GROUPS_ORDER = (
    "CREATE INDEX IF NOT EXISTS groups_order ON {s}.groups (created_at DESC, id DESC)"
)
INSERT_GROUP = """
INSERT INTO {s}.groups (id, name, weight, created_at, updated_at) VALUES (%s, %s, %s, %s, %s)"""
UPDATE_WEIGHT = "UPDATE {s}.groups SET weight = %s, updated_at = %s WHERE id = %s"
COLUMNS = "id, name, weight, created_at, updated_at"


class FairshareProjection(Projection):
    name = "fairshare"
    tables = [CREATE_GROUPS, CREATE_GROUPS_ORDER]

    def created(self, curs: Cursor[Any], e: Any) -> None:
        row = (e.originator_id, e.name, e.weight, e.timestamp, e.timestamp)
        curs.execute(e.sql(INSERT_GROUP), row)

    def weight_changed(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(UPDATE_WEIGHT), (e.weight, e.timestamp, e.originator_id))

    handlers: dict[type, Handler] = {
        FairshareGroup.Created: created,
        FairshareGroup.WeightChanged: weight_changed,
    }


def get_group(curs: Cursor[Any], name: str) -> dict[str, Any] | None:
    return curs.execute(
        f"SELECT {COLUMNS} FROM {SCHEMA}.groups WHERE name = %s", (name,)
    ).fetchone()


def list_groups(
    curs: Cursor[Any], limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    return keyset_page(curs, f"{SCHEMA}.groups", COLUMNS, {}, limit, cursor, dict)


def group_weights(curs: Cursor[Any]) -> dict[str, int]:
    """Every group's weight by name: what a scheduler loads (groups are few, and only grow)."""
    rows = curs.execute(f"SELECT name, weight FROM {SCHEMA}.groups").fetchall()
    return {r["name"]: r["weight"] for r in rows}
