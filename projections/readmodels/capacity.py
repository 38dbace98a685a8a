"""Read model: the operator's capacity setting (one row once set; none means the default)."""

from __future__ import annotations

from typing import Any

from psycopg import Cursor

from domain.capacity import Capacity
from projections.engine.base import Handler, Projection, live_schema

SCHEMA = live_schema("capacity")

# One row at most: the key can only be true.
CREATE_CAPACITY = """
CREATE TABLE IF NOT EXISTS {s}.capacity (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    max_in_flight integer NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL)"""
INSERT_CAPACITY = """
INSERT INTO {s}.capacity (max_in_flight, created_at, updated_at) VALUES (%s, %s, %s)"""
UPDATE_CAPACITY = "UPDATE {s}.capacity SET max_in_flight = %s, updated_at = %s"


class CapacityProjection(Projection):
    name = "capacity"
    tables = [CREATE_CAPACITY]

    def configured(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(INSERT_CAPACITY), (e.max_in_flight, e.timestamp, e.timestamp))

    def changed(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(UPDATE_CAPACITY), (e.max_in_flight, e.timestamp))

    handlers: dict[type, Handler] = {
        Capacity.Configured: configured,
        Capacity.MaxInFlightChanged: changed,
    }


def get_capacity(curs: Cursor[Any]) -> dict[str, Any] | None:
    """The recorded setting, or ``None`` if the operator never set one."""
    return curs.execute(
        f"SELECT max_in_flight, created_at, updated_at FROM {SCHEMA}.capacity"
    ).fetchone()
