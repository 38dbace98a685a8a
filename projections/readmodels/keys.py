"""Read model: API keys (never their secrets)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncCursor, Cursor
from psycopg.types.json import Jsonb

from domain.apikey import ApiKey
from projections.engine.base import keyset_page, live_schema
from projections.readmodels.owned import OwnedListing

SCHEMA = live_schema("keys")

CREATE_KEYS = """
CREATE TABLE IF NOT EXISTS {s}.keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    key_prefix text NOT NULL,
    allowed_models jsonb,
    sovereignty_mode boolean NOT NULL,
    expires_at timestamptz,
    ip_allowlist jsonb NOT NULL,
    disabled boolean NOT NULL DEFAULT false,
    deleted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
)"""
CREATE_KEYS_ORDER = (
    "CREATE INDEX IF NOT EXISTS keys_tenant_order ON {s}.keys (tenant_id, created_at DESC, id DESC)"
)
# Added after the table: a read model kept from before gains it (empty: no key had one).
ADD_RPM_LIMIT = "ALTER TABLE {s}.keys ADD COLUMN IF NOT EXISTS rpm_limit bigint"
INSERT_KEY = """
INSERT INTO {s}.keys (id, tenant_id, name, kind, key_prefix, allowed_models, sovereignty_mode,
                      expires_at, ip_allowlist, rpm_limit, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
UPDATE_FLAG = "UPDATE {s}.keys SET {col} = %s, updated_at = %s WHERE id = %s"
# A ``Changed`` event names only the fields it changed (domain/apikey.py EDITABLE); the others
# keep their value. ``given`` says which were named, as null is a value of some of them.
UPDATE_KEY = """
UPDATE {s}.keys SET
    name = CASE WHEN %(name_given)s THEN %(name)s ELSE name END,
    allowed_models = CASE WHEN %(allowed_models_given)s THEN %(allowed_models)s
        ELSE allowed_models END,
    sovereignty_mode = CASE WHEN %(sovereignty_mode_given)s THEN %(sovereignty_mode)s
        ELSE sovereignty_mode END,
    expires_at = CASE WHEN %(expires_at_given)s THEN %(expires_at)s::timestamptz
        ELSE expires_at END,
    ip_allowlist = CASE WHEN %(ip_allowlist_given)s THEN %(ip_allowlist)s ELSE ip_allowlist END,
    rpm_limit = CASE WHEN %(rpm_limit_given)s THEN %(rpm_limit)s::bigint ELSE rpm_limit END,
    updated_at = %(at)s
WHERE id = %(id)s"""
EDITED = ("name", "allowed_models", "sovereignty_mode", "expires_at", "ip_allowlist", "rpm_limit")

COLUMNS = (
    "id, tenant_id, name, kind, key_prefix, allowed_models, sovereignty_mode, expires_at,"
    " ip_allowlist, rpm_limit, disabled, created_at, updated_at"
)
SELECT_LIVE_IDS = "SELECT id FROM {s}.keys WHERE tenant_id = %s AND NOT deleted"


class KeysProjection(OwnedListing):
    name = "keys"
    lists = ApiKey
    live_ids_sql = SELECT_LIVE_IDS
    tables = [CREATE_KEYS, CREATE_KEYS_ORDER, ADD_RPM_LIMIT]

    def issued(self, curs: Cursor[Any], e: Any) -> None:
        allowed = Jsonb(e.allowed_models) if e.allowed_models is not None else None
        curs.execute(
            e.sql(INSERT_KEY),
            (
                e.originator_id,
                e.tenant_id,
                e.name,
                e.kind,
                e.key_prefix,
                allowed,
                e.sovereignty_mode,
                e.expires_at,
                Jsonb(e.ip_allowlist),
                e.rpm_limit,
                e.timestamp,
                e.timestamp,
            ),
        )

    def _flag(self, curs: Cursor[Any], e: Any, col: str, value: bool) -> None:
        curs.execute(UPDATE_FLAG.format(s=e.schema, col=col), (value, e.timestamp, e.originator_id))

    def disabled(self, curs: Cursor[Any], e: Any) -> None:
        self._flag(curs, e, "disabled", True)

    def enabled(self, curs: Cursor[Any], e: Any) -> None:
        self._flag(curs, e, "disabled", False)

    def deleted(self, curs: Cursor[Any], e: Any) -> None:
        self._flag(curs, e, "deleted", True)

    def changed(self, curs: Cursor[Any], e: Any) -> None:
        changes = dict(e.changes)
        for field in ("allowed_models", "ip_allowlist"):
            if changes.get(field) is not None:
                changes[field] = Jsonb(changes[field])
        params: dict[str, Any] = {"at": e.timestamp, "id": e.originator_id}
        for field in EDITED:
            params[field] = changes.get(field)
            params[f"{field}_given"] = field in changes
        curs.execute(e.sql(UPDATE_KEY), params)

    handlers = {
        ApiKey.Issued: issued,
        ApiKey.Disabled: disabled,
        ApiKey.Enabled: enabled,
        ApiKey.Deleted: deleted,
        ApiKey.Changed: changed,
    }


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row)


GET_KEY = f"SELECT {COLUMNS} FROM {SCHEMA}.keys WHERE id = %s AND NOT deleted"


def get_key(curs: Cursor[Any], key_id: UUID, scope: UUID | None) -> dict[str, Any] | None:
    """A live (not deleted) key, limited to tenant ``scope`` when given."""
    return _in_scope(curs.execute(GET_KEY, (key_id,)).fetchone(), scope)


async def get_key_async(
    curs: AsyncCursor[Any], key_id: UUID, scope: UUID | None
) -> dict[str, Any] | None:
    """``get_key`` on the event loop."""
    await curs.execute(GET_KEY, (key_id,))
    return _in_scope(await curs.fetchone(), scope)


def _in_scope(row: dict[str, Any] | None, scope: UUID | None) -> dict[str, Any] | None:
    if row is None or (scope is not None and row["tenant_id"] != scope):
        return None
    return _public(row)


def list_keys(
    curs: Cursor[Any],
    tenant_id: UUID | None,
    limit: int,
    cursor: str | None,
    kind: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    filters: dict[str, Any] = {"tenant_id": tenant_id} if tenant_id is not None else {}
    if kind is not None:
        filters["kind"] = kind
    return keyset_page(
        curs, f"{SCHEMA}.keys", COLUMNS, filters, limit, cursor, _public, "NOT deleted"
    )
