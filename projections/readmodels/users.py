"""Read model: the users of tenants (each email kept only as its tenant-key ciphertext)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.user import User
from projections.engine.base import Handler, keyset_page, live_schema
from projections.readmodels.owned import OwnedListing

SCHEMA = live_schema("users")

CREATE_USERS = """
CREATE TABLE IF NOT EXISTS {s}.users (
    id uuid PRIMARY KEY, tenant_id uuid NOT NULL, email_ciphertext bytea NOT NULL,
    removed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"""
CREATE_USERS_ORDER = "CREATE INDEX IF NOT EXISTS users_tenant_order ON {s}.users (tenant_id, created_at DESC, id DESC)"
INSERT_USER = """
INSERT INTO {s}.users (id, tenant_id, email_ciphertext, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s)"""
TOUCH_USER = "UPDATE {s}.users SET updated_at = %s WHERE id = %s"
REMOVE_USER = "UPDATE {s}.users SET removed = true, updated_at = %s WHERE id = %s"
COLUMNS = "id, tenant_id, email_ciphertext, created_at, updated_at"


class UsersProjection(OwnedListing):
    name = "users"
    lists = User
    live_ids_sql = "SELECT id FROM {s}.users WHERE tenant_id = %s AND NOT removed"
    tables = [CREATE_USERS, CREATE_USERS_ORDER]

    def registered(self, curs: Cursor[Any], e: Any) -> None:
        row = (e.originator_id, e.tenant_id, e.email_ciphertext, e.timestamp, e.timestamp)
        curs.execute(e.sql(INSERT_USER), row)

    def password_changed(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(TOUCH_USER), (e.timestamp, e.originator_id))

    def removed(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(REMOVE_USER), (e.timestamp, e.originator_id))

    handlers: dict[type, Handler] = {
        User.Registered: registered,
        User.PasswordChanged: password_changed,
        User.Removed: removed,
    }


def get_user(curs: Cursor[Any], user_id: UUID, scope: UUID | None) -> dict[str, Any] | None:
    """A user not removed, limited to tenant ``scope`` when given."""
    row = curs.execute(
        f"SELECT {COLUMNS} FROM {SCHEMA}.users WHERE id = %s AND NOT removed", (user_id,)
    ).fetchone()
    if row is None or (scope is not None and row["tenant_id"] != scope):
        return None
    return dict(row)


def list_users(
    curs: Cursor[Any], tenant_id: UUID | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    filters = {"tenant_id": tenant_id} if tenant_id is not None else {}
    return keyset_page(
        curs, f"{SCHEMA}.users", COLUMNS, filters, limit, cursor, dict, "NOT removed"
    )
