"""The webhook delivery outbox: what is owed to each subscription, and every attempt's outcome.

The outbox is deliberately **not** part of the rebuildable ``rm_webhooks`` schema. It holds the
attempt state (status, attempts, next attempt, last outcome), which no replay can recreate, so
it lives in the public table ``hostplane_webhook_deliveries``. Rows are keyed by
(webhook, event position) with an id derived from both and written ``ON CONFLICT DO NOTHING``:
``hostplane projections rebuild`` replays the same events, derives the same keys, finds the
rows already there and changes nothing, so no delivery is lost, reset or sent twice.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Cursor

from projections.engine.base import keyset_page

OUTBOX = "hostplane_webhook_deliveries"

CREATE_OUTBOX = f"""
CREATE TABLE IF NOT EXISTS {OUTBOX} (
    id uuid PRIMARY KEY, webhook_id uuid NOT NULL, tenant_id uuid NOT NULL,
    position bigint NOT NULL, event_id uuid NOT NULL, event_type text NOT NULL,
    data jsonb NOT NULL, created_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
    last_status_code integer, last_error text, last_attempt_at timestamptz,
    next_attempt_at timestamptz, delivered_at timestamptz,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, position))"""
CREATE_OUTBOX_DUE = (
    f"CREATE INDEX IF NOT EXISTS {OUTBOX}_due ON {OUTBOX} (next_attempt_at)"
    " WHERE status = 'pending'"
)
CREATE_OUTBOX_ORDER = (
    f"CREATE INDEX IF NOT EXISTS {OUTBOX}_order ON {OUTBOX} (webhook_id, created_at DESC, id DESC)"
)

TABLES = [CREATE_OUTBOX, CREATE_OUTBOX_DUE, CREATE_OUTBOX_ORDER]

# The delivery id is derived from (webhook, position), so a replay finds the row it made.
ENQUEUE = (
    f"INSERT INTO {OUTBOX} (id, webhook_id, tenant_id, position, event_id, event_type, data,"
    " created_at, next_attempt_at)"
    " SELECT md5(w.id::text || '/' || %(position)s)::uuid, w.id, w.tenant_id, %(position)s,"
    " %(event_id)s, %(type)s, %(data)s, %(at)s, now()"
    " FROM {s}.webhooks w"
    " WHERE w.tenant_id = %(tenant_id)s AND NOT w.deleted AND %(type)s = ANY(w.events)"
    " ON CONFLICT DO NOTHING"
)

DELIVERY_COLUMNS = (
    "id, webhook_id, event_id, event_type, status, attempts, last_status_code, last_error,"
    " last_attempt_at, next_attempt_at, delivered_at, created_at"
)


def list_deliveries(
    curs: Cursor[Any], webhook_id: UUID, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A webhook's deliveries, newest event first."""
    filters = {"webhook_id": webhook_id}
    return keyset_page(curs, OUTBOX, DELIVERY_COLUMNS, filters, limit, cursor, dict)
