"""Read model: budgets (their settings; spend arrives with usage metering)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.budget import Budget
from projections.engine.base import keyset_page, live_schema
from projections.readmodels.owned import OwnedListing

SCHEMA = live_schema("budgets")

CREATE_BUDGETS = """
CREATE TABLE IF NOT EXISTS {s}.budgets (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    key_id uuid,
    limit_eur numeric NOT NULL,
    period text NOT NULL,
    thresholds numeric[] NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
)"""
CREATE_BUDGETS_ORDER = (
    "CREATE INDEX IF NOT EXISTS budgets_tenant_order"
    " ON {s}.budgets (tenant_id, created_at DESC, id DESC)"
)
INSERT_BUDGET = """
INSERT INTO {s}.budgets (id, tenant_id, key_id, limit_eur, period, thresholds, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
UPDATE_BUDGET = """
UPDATE {s}.budgets SET limit_eur = %s, period = %s, thresholds = %s, updated_at = %s WHERE id = %s"""
DELETE_BUDGET = "UPDATE {s}.budgets SET deleted = true, updated_at = %s WHERE id = %s"

COLUMNS = "id, tenant_id, key_id, limit_eur, period, thresholds, created_at, updated_at"
SELECT_LIVE_IDS = "SELECT id FROM {s}.budgets WHERE tenant_id = %s AND NOT deleted"


class BudgetsProjection(OwnedListing):
    name = "budgets"
    lists = Budget
    live_ids_sql = SELECT_LIVE_IDS
    tables = [CREATE_BUDGETS, CREATE_BUDGETS_ORDER]

    def set(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(
            e.sql(INSERT_BUDGET),
            (
                e.originator_id,
                e.tenant_id,
                e.key_id,
                e.limit_eur,
                e.period,
                list(e.thresholds),
                e.timestamp,
                e.timestamp,
            ),
        )

    def changed(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(
            e.sql(UPDATE_BUDGET),
            (e.limit_eur, e.period, list(e.thresholds), e.timestamp, e.originator_id),
        )

    def deleted(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(DELETE_BUDGET), (e.timestamp, e.originator_id))

    handlers = {Budget.Set: set, Budget.Changed: changed, Budget.Deleted: deleted}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["scope"] = "key" if row["key_id"] else "tenant"
    return row


def get_budget(curs: Cursor[Any], budget_id: UUID, scope: UUID | None) -> dict[str, Any] | None:
    row = curs.execute(
        f"SELECT {COLUMNS} FROM {SCHEMA}.budgets WHERE id = %s AND NOT deleted", (budget_id,)
    ).fetchone()
    if row is None or (scope is not None and row["tenant_id"] != scope):
        return None
    return _public(row)


def list_budgets(
    curs: Cursor[Any], tenant_id: UUID | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    filters = {"tenant_id": tenant_id} if tenant_id is not None else {}
    return keyset_page(
        curs, f"{SCHEMA}.budgets", COLUMNS, filters, limit, cursor, _public, "NOT deleted"
    )


def tenants_with_budgets(curs: Cursor[Any]) -> list[UUID]:
    rows = curs.execute(
        f"SELECT DISTINCT tenant_id FROM {SCHEMA}.budgets WHERE NOT deleted"
    ).fetchall()
    return [r["tenant_id"] for r in rows]
