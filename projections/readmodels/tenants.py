"""Read model: the tenant listing."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.tenant import Tenant
from projections.engine.base import Projection, keyset_page, live_schema

SCHEMA = live_schema("tenants")

CREATE_TENANTS = """
CREATE TABLE IF NOT EXISTS {s}.tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    weight integer NOT NULL,
    tokens_per_minute bigint,
    grp text,
    status text NOT NULL,
    on_demand_boot boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
)"""
# A listing made before on-demand boot: widened in place (rebuild it to fill it in).
WIDEN_TENANTS = (
    "ALTER TABLE {s}.tenants ADD COLUMN IF NOT EXISTS on_demand_boot boolean NOT NULL DEFAULT false"
)
CREATE_TENANTS_ORDER = (
    "CREATE INDEX IF NOT EXISTS tenants_order ON {s}.tenants (created_at DESC, id DESC)"
)
INSERT_TENANT = """
INSERT INTO {s}.tenants (id, name, weight, tokens_per_minute, grp, status, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, 'active', %s, %s)"""
UPDATE_FIELD = "UPDATE {s}.tenants SET {col} = %s, updated_at = %s WHERE id = %s"

COLUMNS = "id, name, weight, tokens_per_minute, grp, status, on_demand_boot, created_at, updated_at"


class TenantsProjection(Projection):
    name = "tenants"
    tables = [CREATE_TENANTS, WIDEN_TENANTS, CREATE_TENANTS_ORDER]

    def registered(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(
            e.sql(INSERT_TENANT),
            (
                e.originator_id,
                e.name,
                e.weight,
                e.tokens_per_minute,
                e.group,
                e.timestamp,
                e.timestamp,
            ),
        )

    def _set(self, curs: Cursor[Any], e: Any, col: str, value: Any) -> None:
        curs.execute(
            UPDATE_FIELD.format(s=e.schema, col=col), (value, e.timestamp, e.originator_id)
        )

    def weight_changed(self, curs: Cursor[Any], e: Any) -> None:
        self._set(curs, e, "weight", e.weight)

    def quota_changed(self, curs: Cursor[Any], e: Any) -> None:
        self._set(curs, e, "tokens_per_minute", e.tokens_per_minute)

    def group_assigned(self, curs: Cursor[Any], e: Any) -> None:
        self._set(curs, e, "grp", e.group)

    def on_demand_boot_set(self, curs: Cursor[Any], e: Any) -> None:
        self._set(curs, e, "on_demand_boot", e.enabled)

    def offboarded(self, curs: Cursor[Any], e: Any) -> None:
        self._set(curs, e, "status", "offboarded")

    handlers = {
        Tenant.Registered: registered,
        Tenant.WeightChanged: weight_changed,
        Tenant.QuotaChanged: quota_changed,
        Tenant.GroupAssigned: group_assigned,
        Tenant.OnDemandBootSet: on_demand_boot_set,
        Tenant.Offboarded: offboarded,
    }


SELECT_ON_DEMAND = f"SELECT on_demand_boot FROM {SCHEMA}.tenants WHERE id = %s"


def _public(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["group"] = row.pop("grp")
    return row


def get_tenant(curs: Cursor[Any], tenant_id: UUID, scope: UUID | None) -> dict[str, Any] | None:
    """One tenant; ``scope`` limits the answer to that tenant (a tenant's own key)."""
    if scope is not None and scope != tenant_id:
        return None
    row = curs.execute(
        f"SELECT {COLUMNS} FROM {SCHEMA}.tenants WHERE id = %s", (tenant_id,)
    ).fetchone()
    return _public(row) if row else None


def list_tenants(
    curs: Cursor[Any], scope: UUID | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated; a tenant's own key sees only its tenant."""
    filters = {"id": scope} if scope is not None else {}
    return keyset_page(curs, f"{SCHEMA}.tenants", COLUMNS, filters, limit, cursor, _public)
