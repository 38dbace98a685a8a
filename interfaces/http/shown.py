"""Exports and past states on the running hostplane: checks first, then lines from a snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from psycopg_pool import ConnectionPool

from application.auth import Principal
from application.errors import NotFoundError
from application.store import EventStore
from domain.apikey import ApiKey
from domain.base import utc
from domain.tenant import Tenant
from projections.engine.runner import ProjectionRunner
from projections.readmodels.audit import is_secret
from projections.reports.export import export_lines, snapshot
from projections.reports.replay import public_fields, state_at

# Lines are sent in chunks: one hop from the worker thread to the event loop per chunk.
CHUNK_BYTES = 1 << 18


class ExportNotReadyError(Exception):
    """The audit read model (the index of what a tenant owns) lags behind the log."""


class Replays:
    """Exports and past states, replayed from the event store.

    An export waits (up to ``timeout`` seconds) for the audit read model, its index of what a
    tenant owns, then reads from one snapshot of ``pool``.
    """

    def __init__(
        self,
        store: EventStore,
        runner: ProjectionRunner,
        pool: ConnectionPool[Any],
        timeout: float,
    ) -> None:
        self.store = store
        self.runner = runner
        self.pool = pool
        self.timeout = timeout

    def check_exportable(self, principal: Principal | None, tenant_id: UUID) -> None:
        """Admin, or the tenant's own management key; another tenant's export is "not found"."""
        if principal is not None:
            principal.check_tenant(tenant_id, "tenant", tenant_id)
        if self.store.find(Tenant, tenant_id) is None:
            raise NotFoundError("tenant", tenant_id)

    def open_export(
        self,
        principal: Principal | None,
        tenant_id: UUID,
        as_of: datetime | None = None,
        now: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Check the request and wait for the index now; the returned lines are read lazily.

        ``principal`` is ``None`` for the operator's command line.
        """
        self.check_exportable(principal, tenant_id)
        target = self.runner.max_notification_id()
        if not self.runner.wait_for(["audit"], target, self.timeout, fail_if_stalled=True):
            raise ExportNotReadyError("the audit log is catching up; retry the export shortly")
        return self._lines(tenant_id, as_of and utc(as_of), now or datetime.now(UTC))

    def _lines(
        self, tenant_id: UUID, as_of: datetime | None, now: datetime
    ) -> Iterator[dict[str, Any]]:
        source = self.runner.source
        with self.pool.connection() as conn, conn.transaction():
            head = snapshot(conn)
            yield from export_lines(conn, source, tenant_id, as_of, now, head)

    def key_as_of(self, principal: Principal, key_id: UUID, as_of: datetime) -> dict[str, Any]:
        """A key as it was at ``as_of``, replayed from its events; "not found" if it wasn't live."""
        key = state_at(self.store.events.get(key_id), utc(as_of))
        if not isinstance(key, ApiKey) or key.deleted:
            raise NotFoundError("key", key_id)
        principal.check_tenant(key.tenant_id, "key", key_id)
        return key_shown(key)

    def tenant_as_of(
        self, principal: Principal, tenant_id: UUID, as_of: datetime
    ) -> dict[str, Any]:
        """A tenant as it was at ``as_of``, replayed from its events."""
        principal.check_tenant(tenant_id, "tenant", tenant_id)
        tenant = state_at(self.store.events.get(tenant_id), utc(as_of))
        if not isinstance(tenant, Tenant):
            raise NotFoundError("tenant", tenant_id)
        return {
            **shown_fields(tenant),
            "id": tenant.id,
            "status": "offboarded" if tenant.offboarded else "active",
            "created_at": tenant.created_on,
            "updated_at": tenant.modified_on,
        }


def ndjson_chunks(lines: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """The lines as NDJSON, in chunks of about ``CHUNK_BYTES``."""
    buffer: list[bytes] = []
    size = 0
    for line in lines:
        data = orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        buffer.append(data)
        size += len(data)
        if size >= CHUNK_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


def shown_fields(aggregate: Any) -> dict[str, Any]:
    """An aggregate's attributes without its secrets (hashes, ciphertexts, wrapped keys)."""
    return {k: v for k, v in public_fields(aggregate).items() if not is_secret(k)}


def key_shown(key: ApiKey) -> dict[str, Any]:
    """A key's fields as ``GET /keys/{id}`` shows them (the keys read model's row)."""
    return {
        **shown_fields(key),
        "id": key.id,
        "created_at": key.created_on,
        "updated_at": key.modified_on,
    }
