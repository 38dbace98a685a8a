"""Read model: instances, their current status and the history of their transitions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.types.json import Jsonb

from domain.instance import UPSTREAMS, Instance
from projections.engine.base import keyset_page, live_schema
from projections.readmodels.owned import OwnedListing

SCHEMA = live_schema("instances")

CREATE_INSTANCES = """
CREATE TABLE IF NOT EXISTS {s}.instances (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    kind text NOT NULL DEFAULT 'gpu',
    name text,
    model_id text,
    region text,
    provider text NOT NULL,
    instance_type text,
    status text NOT NULL,
    status_reason text,
    endpoint_url text,
    api_key_prefix text,
    key_last4 text,
    last_check jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
)"""
# Read models made before BYOK and health checks: the same table, widened in place.
WIDEN_INSTANCES = [
    "ALTER TABLE {s}.instances ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'gpu'",
    "ALTER TABLE {s}.instances ADD COLUMN IF NOT EXISTS name text",
    "ALTER TABLE {s}.instances ADD COLUMN IF NOT EXISTS key_last4 text",
    "ALTER TABLE {s}.instances ADD COLUMN IF NOT EXISTS last_check jsonb",
    *(
        f"ALTER TABLE {{s}}.instances ALTER COLUMN {col} DROP NOT NULL"
        for col in ("model_id", "region", "instance_type", "api_key_prefix")
    ),
]
CREATE_INSTANCES_ACTIVE = (
    "CREATE INDEX IF NOT EXISTS instances_active ON {s}.instances (status)"
    " WHERE status IN ('pending', 'deploying', 'running') AND kind = 'gpu'"
)
CREATE_INSTANCES_ORDER = (
    "CREATE INDEX IF NOT EXISTS instances_tenant_order"
    " ON {s}.instances (tenant_id, created_at DESC, id DESC)"
)
CREATE_TRANSITIONS = """
CREATE TABLE IF NOT EXISTS {s}.transitions (
    instance_id uuid NOT NULL,
    version integer NOT NULL,
    status text NOT NULL,
    reason text,
    at timestamptz NOT NULL,
    PRIMARY KEY (instance_id, version)
)"""
INSERT_INSTANCE = """
INSERT INTO {s}.instances (id, tenant_id, model_id, region, provider, instance_type, status,
                           api_key_prefix, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s, %s, %s)"""
UPDATE_STATUS = """
UPDATE {s}.instances SET status = %s, status_reason = %s, endpoint_url = %s, updated_at = %s
WHERE id = %s"""
INSERT_UPSTREAM = """
INSERT INTO {s}.instances (id, tenant_id, kind, name, provider, status, endpoint_url, key_last4,
                           created_at, updated_at)
VALUES (%s, %s, 'byok', %s, %s, 'running', %s, %s, %s, %s)"""
SET_CHECK = "UPDATE {s}.instances SET last_check = %s, updated_at = %s WHERE id = %s"
INSERT_TRANSITION = """
INSERT INTO {s}.transitions (instance_id, version, status, reason, at) VALUES (%s, %s, %s, %s, %s)"""

COLUMNS = (
    "id, tenant_id, kind, name, model_id, region, provider, instance_type, status,"
    " status_reason, endpoint_url, key_last4, last_check, created_at, updated_at"
)
SELECT_LIVE_IDS = "SELECT id FROM {s}.instances WHERE tenant_id = %s AND status <> 'destroyed'"


class InstancesProjection(OwnedListing):
    name = "instances"
    lists = Instance
    live_ids_sql = SELECT_LIVE_IDS
    tables = [
        CREATE_INSTANCES,
        *WIDEN_INSTANCES,
        CREATE_INSTANCES_ORDER,
        CREATE_INSTANCES_ACTIVE,
        CREATE_TRANSITIONS,
    ]

    def deploy_requested(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(
            e.sql(INSERT_INSTANCE),
            (
                e.originator_id,
                e.tenant_id,
                e.model_id,
                e.region,
                e.provider,
                e.instance_type,
                e.api_key_prefix,
                e.timestamp,
                e.timestamp,
            ),
        )
        curs.execute(
            e.sql(INSERT_TRANSITION),
            (e.originator_id, e.originator_version, "pending", None, e.timestamp),
        )

    def status_changed(self, curs: Cursor[Any], e: Any) -> None:
        endpoint = e.endpoint_url if e.status == "running" else None
        curs.execute(
            e.sql(UPDATE_STATUS), (e.status, e.reason, endpoint, e.timestamp, e.originator_id)
        )
        curs.execute(
            e.sql(INSERT_TRANSITION),
            (e.originator_id, e.originator_version, e.status, e.reason, e.timestamp),
        )

    def upstream_attached(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(
            e.sql(INSERT_UPSTREAM),
            (
                e.originator_id,
                e.tenant_id,
                e.name,
                e.upstream,
                UPSTREAMS[e.upstream],
                e.external_key_last4,
                e.timestamp,
                e.timestamp,
            ),
        )
        curs.execute(
            e.sql(INSERT_TRANSITION),
            (e.originator_id, e.originator_version, "running", None, e.timestamp),
        )

    def health_checked(self, curs: Cursor[Any], e: Any) -> None:
        check = {
            "ok": e.ok,
            "status_code": e.status_code,
            "latency_ms": e.latency_ms,
            "error": e.error,
            "at": e.timestamp.isoformat().replace("+00:00", "Z"),
        }
        curs.execute(e.sql(SET_CHECK), (Jsonb(check), e.timestamp, e.originator_id))

    handlers = {
        Instance.DeployRequested: deploy_requested,
        Instance.UpstreamAttached: upstream_attached,
        Instance.StatusChanged: status_changed,
        Instance.HealthChecked: health_checked,
    }


def get_instance(curs: Cursor[Any], instance_id: UUID, scope: UUID | None) -> dict[str, Any] | None:
    row = curs.execute(
        f"SELECT {COLUMNS} FROM {SCHEMA}.instances WHERE id = %s", (instance_id,)
    ).fetchone()
    if row is None or (scope is not None and row["tenant_id"] != scope):
        return None
    history = curs.execute(
        f"SELECT status, reason, at FROM {SCHEMA}.transitions WHERE instance_id = %s"
        " ORDER BY version",
        (instance_id,),
    ).fetchall()
    row = dict(row)
    # Each status lasted until the next transition; the current one is still running (null).
    row["history"] = [
        {**h, "duration_seconds": (nxt["at"] - h["at"]).total_seconds() if nxt else None}
        for h, nxt in zip(history, [*history[1:], None], strict=True)
    ]
    return row


def list_instances(
    curs: Cursor[Any],
    tenant_id: UUID | None,
    limit: int,
    cursor: str | None,
    kind: str | None = None,
    live: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of instances, newest first; ``live``: only those not destroyed."""
    filters: dict[str, Any] = {"tenant_id": tenant_id} if tenant_id is not None else {}
    if kind is not None:
        filters["kind"] = kind
    where = "status <> 'destroyed'" if live else "true"
    return keyset_page(curs, f"{SCHEMA}.instances", COLUMNS, filters, limit, cursor, dict, where)


def running_models(curs: Cursor[Any], tenant_id: UUID | None) -> set[str]:
    """The models with a running GPU instance now (of the tenant, or of any for ``None``)."""
    where, params = "kind = 'gpu' AND status = 'running'", []
    if tenant_id is not None:
        where += " AND tenant_id = %s"
        params.append(tenant_id)
    rows = curs.execute(
        f"SELECT DISTINCT model_id FROM {SCHEMA}.instances WHERE {where}", params
    ).fetchall()
    return {r["model_id"] for r in rows}


def ids_in_status(curs: Cursor[Any], statuses: tuple[str, ...]) -> list[UUID]:
    """GPU instances (not BYOK upstreams) in any of ``statuses``: the provisioning work list."""
    rows = curs.execute(
        f"SELECT id FROM {SCHEMA}.instances WHERE kind = 'gpu' AND status = ANY(%s)"
        " AND status IN ('pending', 'deploying', 'running') ORDER BY created_at",
        (list(statuses),),
    ).fetchall()
    return [r["id"] for r in rows]
