"""Read model: webhook subscriptions; each subscribed event becomes outbox rows.

Every event of a subscribed type becomes one row of ``projections.readmodels.webhook_outbox`` per
matching live subscription of its tenant, written in the batch's transaction with the
projection's position: none is missed across restarts, and (see that module) a rebuild
neither loses attempt state nor sends anything twice.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, AggregateCreated
from psycopg import Cursor
from psycopg.types.json import Jsonb

from domain.apikey import ApiKey
from domain.base import name_id
from domain.budget import Budget
from domain.instance import Instance
from domain.tenant import Tenant
from domain.webhook import Webhook
from projections.engine.base import Handler, keyset_page, live_schema
from projections.readmodels import webhook_outbox as outbox
from projections.readmodels.owned import OwnedListing

SCHEMA = live_schema("webhooks")

CREATE_WEBHOOKS = """
CREATE TABLE IF NOT EXISTS {s}.webhooks (
    id uuid PRIMARY KEY, tenant_id uuid NOT NULL, url text NOT NULL, events text[] NOT NULL,
    description text, deleted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"""
CREATE_WEBHOOKS_ORDER = (
    "CREATE INDEX IF NOT EXISTS webhooks_tenant_order"
    " ON {s}.webhooks (tenant_id, created_at DESC, id DESC)"
)
# Which tenant owns an instance, key or budget (their later events don't say), and what a
# payload reports about it.
CREATE_OWNERS = """
CREATE TABLE IF NOT EXISTS {s}.owners (
    aggregate_id uuid PRIMARY KEY, tenant_id uuid NOT NULL, info jsonb NOT NULL)"""
INSERT_WEBHOOK = """
INSERT INTO {s}.webhooks (id, tenant_id, url, events, description, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)"""
DELETE_WEBHOOK = "UPDATE {s}.webhooks SET deleted = true, updated_at = %s WHERE id = %s"
INSERT_OWNER = """
INSERT INTO {s}.owners (aggregate_id, tenant_id, info) VALUES (%s, %s, %s)
ON CONFLICT (aggregate_id) DO UPDATE SET info = {s}.owners.info || excluded.info"""
SELECT_OWNER = "SELECT tenant_id, info FROM {s}.owners WHERE aggregate_id = %s"
COLUMNS = "id, tenant_id, url, events, description, created_at, updated_at"
SELECT_LIVE_IDS = "SELECT id FROM {s}.webhooks WHERE tenant_id = %s AND NOT deleted"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class WebhooksProjection(OwnedListing):
    name = "webhooks"
    lists = Webhook
    live_ids_sql = SELECT_LIVE_IDS
    tables = [
        CREATE_WEBHOOKS,
        CREATE_WEBHOOKS_ORDER,
        CREATE_OWNERS,
        *outbox.TABLES,
    ]

    def enqueue(self, curs: Cursor[Any], e: Any, type_: str, tenant_id: UUID, data: dict) -> None:
        event_id = name_id("webhook-event", e.originator_id, e.originator_version)
        params = {"position": e.position, "event_id": event_id, "type": type_}
        params |= {"data": Jsonb(data), "at": e.timestamp, "tenant_id": tenant_id}
        curs.execute(e.sql(outbox.ENQUEUE), params)

    def own(self, curs: Cursor[Any], e: Any, info: dict[str, Any]) -> None:
        curs.execute(e.sql(INSERT_OWNER), (e.originator_id, e.tenant_id, Jsonb(info)))

    def owner(self, curs: Cursor[Any], e: Any) -> tuple[UUID | None, dict[str, Any]]:
        row = curs.execute(e.sql(SELECT_OWNER), (e.originator_id,)).fetchone()
        return (row["tenant_id"], row["info"]) if row else (None, {})

    # -- subscriptions -----------------------------------------------------------------

    def created(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(
            e.sql(INSERT_WEBHOOK),
            (
                e.originator_id,
                e.tenant_id,
                e.url,
                list(e.events),
                e.description,
                *[e.timestamp] * 2,
            ),
        )

    def deleted(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(DELETE_WEBHOOK), (e.timestamp, e.originator_id))

    # -- events that are delivered --------------------------------------------------------

    def instance_created(self, curs: Cursor[Any], e: Any) -> None:
        model_id = getattr(e.event, "model_id", None)
        self.own(curs, e, {"model_id": model_id})
        if isinstance(e.event, Instance.DeployRequested):
            data = {"instance_id": str(e.originator_id), "model_id": model_id}
            data |= {"status": "pending", "reason": None, "endpoint_url": None}
            self.enqueue(curs, e, "instance.status_changed", e.tenant_id, data)

    def instance_status_changed(self, curs: Cursor[Any], e: Any) -> None:
        tenant_id, info = self.owner(curs, e)
        if tenant_id is not None:
            data = {"instance_id": str(e.originator_id), "model_id": info.get("model_id")}
            data |= {"status": e.status, "reason": e.reason, "endpoint_url": e.endpoint_url}
            self.enqueue(curs, e, "instance.status_changed", tenant_id, data)

    def key_issued(self, curs: Cursor[Any], e: Any) -> None:
        self.own(curs, e, {"name": e.name, "kind": e.kind, "key_prefix": e.key_prefix})

    def _key_event(self, curs: Cursor[Any], e: Any, type_: str) -> None:
        tenant_id, info = self.owner(curs, e)
        if tenant_id is not None:
            self.enqueue(curs, e, type_, tenant_id, {"key_id": str(e.originator_id), **info})

    def key_deleted(self, curs: Cursor[Any], e: Any) -> None:
        self._key_event(curs, e, "key.revoked")

    def key_disabled(self, curs: Cursor[Any], e: Any) -> None:
        self._key_event(curs, e, "key.disabled")

    def budget_set(self, curs: Cursor[Any], e: Any) -> None:
        info = {"key_id": _text(e.key_id), "limit_eur": str(e.limit_eur), "period": e.period}
        self.own(curs, e, info)

    def budget_changed(self, curs: Cursor[Any], e: Any) -> None:
        tenant_id, _ = self.owner(curs, e)
        if tenant_id is not None:
            info = {"limit_eur": str(e.limit_eur), "period": e.period}
            curs.execute(e.sql(INSERT_OWNER), (e.originator_id, tenant_id, Jsonb(info)))

    def _budget_event(self, curs: Cursor[Any], e: Any, type_: str, extra: dict) -> None:
        tenant_id, info = self.owner(curs, e)
        if tenant_id is not None:
            data = {"budget_id": str(e.originator_id), **info, "spent_eur": str(e.spent)}
            data |= {"period_start": e.period_start.isoformat().replace("+00:00", "Z"), **extra}
            self.enqueue(curs, e, type_, tenant_id, data)

    def budget_threshold_crossed(self, curs: Cursor[Any], e: Any) -> None:
        extra = {"threshold": str(e.threshold)}
        self._budget_event(curs, e, "budget.threshold_crossed", extra)

    def budget_exceeded(self, curs: Cursor[Any], e: Any) -> None:
        self._budget_event(curs, e, "budget.exceeded", {})

    def tenant_offboarded(self, curs: Cursor[Any], e: Any) -> None:
        tenant_id = e.originator_id
        self.enqueue(curs, e, "tenant.offboarded", tenant_id, {"tenant_id": str(tenant_id)})

    handlers: dict[type, Handler] = {
        Webhook.Created: created,
        Webhook.Deleted: deleted,
        Instance.StatusChanged: instance_status_changed,
        ApiKey.Issued: key_issued,
        ApiKey.Deleted: key_deleted,
        ApiKey.Disabled: key_disabled,
        Budget.Set: budget_set,
        Budget.Changed: budget_changed,
        Budget.ThresholdCrossed: budget_threshold_crossed,
        Budget.Exceeded: budget_exceeded,
        Tenant.Offboarded: tenant_offboarded,
    }


def _created_events(aggregate: type[Aggregate]) -> list[type]:
    """Every way an aggregate can be created (an instance: deployed, or a BYOK upstream)."""
    return [
        v
        for v in vars(aggregate).values()
        if isinstance(v, type) and issubclass(v, AggregateCreated)
    ]


WebhooksProjection.handlers |= dict.fromkeys(
    _created_events(Instance), WebhooksProjection.instance_created
)


def get_webhook(curs: Cursor[Any], webhook_id: UUID, scope: UUID | None) -> dict[str, Any] | None:
    """A live webhook (never its secret), limited to tenant ``scope`` when given."""
    row = curs.execute(
        f"SELECT {COLUMNS} FROM {SCHEMA}.webhooks WHERE id = %s AND NOT deleted", (webhook_id,)
    ).fetchone()
    if row is None or (scope is not None and row["tenant_id"] != scope):
        return None
    return dict(row)


def list_webhooks(
    curs: Cursor[Any], tenant_id: UUID | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    filters = {"tenant_id": tenant_id} if tenant_id is not None else {}
    return keyset_page(
        curs, f"{SCHEMA}.webhooks", COLUMNS, filters, limit, cursor, dict, "NOT deleted"
    )
