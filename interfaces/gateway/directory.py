"""What the gateway reads to decide: the catalog, a tenant's instances, instance keys.

Read from the read models on the event loop's own pool and kept per process for about a
second (``FRESH_SECONDS``, ``interfaces.gateway.kept``), so that a busy key costs no query for
them and never waits for one; a request about to be refused reads afresh first (``fresh=True``),
so a just-started instance serves at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from application.gateway import CatalogModel, Target
from interfaces.gateway.kept import FRESH_SECONDS, Kept
from projections.readmodels.instances import SCHEMA as INSTANCES
from projections.readmodels.pricebook import SCHEMA as PRICEBOOK
from projections.readmodels.project_configs import SCHEMA as PROJECT_CONFIGS

__all__ = ["FRESH_SECONDS", "GatewayDirectory"]

SELECT_MODELS = (
    "SELECT id, serveable, vendor, modality, created_at, cache_enabled, cache_ttl_seconds"
    f" FROM {PRICEBOOK}.models WHERE NOT deleted"
)
TARGET_COLUMNS = "id, tenant_id, kind, model_id, region, provider, status, endpoint_url, created_at"
SELECT_TENANT = (
    f"SELECT {TARGET_COLUMNS} FROM {INSTANCES}.instances"
    " WHERE tenant_id = %s AND status <> 'destroyed'"
)
SELECT_ONE = f"SELECT {TARGET_COLUMNS} FROM {INSTANCES}.instances WHERE id = %s"
SELECT_BY_PREFIX = (
    f"SELECT id, tenant_id FROM {INSTANCES}.instances"
    " WHERE api_key_prefix = %s AND kind = 'gpu' AND status <> 'destroyed'"
)

SELECT_PROJECT_CONFIG = (
    f"SELECT allow_overwrite, settings FROM {PROJECT_CONFIGS}.configs WHERE tenant_id = %s"
)
NO_PROJECT_CONFIG: tuple[bool, dict[str, Any]] = (True, {})  # each request's settings stand


def _target(row: dict[str, Any]) -> Target:
    return Target(
        instance_id=row["id"],
        tenant_id=row["tenant_id"],
        kind=row["kind"],
        model_id=row["model_id"],
        region=row["region"],
        vendor=row["provider"] if row["kind"] == "byok" else None,
        status=row["status"],
        endpoint_url=row["endpoint_url"],
        created_at=row["created_at"],
    )


class GatewayDirectory:
    def __init__(self, pool: Callable[[], AsyncConnectionPool[Any]]) -> None:
        self._pool = pool  # the event loop's pool, opened with the app
        self._models: Kept[None, dict[str, CatalogModel]] = Kept("catalog")
        self._tenants: Kept[UUID, list[Target]] = Kept("instances")
        self._configs: Kept[UUID, tuple[bool, dict[str, Any]]] = Kept("project settings")

    async def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with self._pool().connection() as conn:
            cursor = await conn.execute(sql, args)
            return await cursor.fetchall()

    async def models(self, fresh: bool = False) -> dict[str, CatalogModel]:
        return await self._models.get(None, self._load_models, fresh)

    async def _load_models(self) -> dict[str, CatalogModel]:
        rows = await self._rows(SELECT_MODELS)
        return {
            r["id"]: CatalogModel(
                slug=r["id"],
                serveable=r["serveable"],
                vendor=r["vendor"],
                created=int(r["created_at"].timestamp()),
                modality=r["modality"],
                cache_ttl=r["cache_ttl_seconds"] if r["cache_enabled"] else None,
            )
            for r in rows
        }

    async def model(self, slug: object, fresh: bool = False) -> CatalogModel | None:
        if not isinstance(slug, str):
            return None
        found = (await self.models(fresh)).get(slug)
        if found is None and not fresh:
            found = (await self.models(True)).get(slug)
        return found

    async def targets(self, tenant_id: UUID, fresh: bool = False) -> list[Target]:
        """The tenant's instances and BYOK upstreams that are not destroyed."""

        async def load() -> list[Target]:
            return [_target(r) for r in await self._rows(SELECT_TENANT, (tenant_id,))]

        return await self._tenants.get(tenant_id, load, fresh)

    async def project_config(self, tenant_id: UUID) -> tuple[bool, dict[str, Any]]:
        """The tenant's project configuration (seed 002): ``allow_overwrite`` and settings."""

        async def load() -> tuple[bool, dict[str, Any]]:
            rows = await self._rows(SELECT_PROJECT_CONFIG, (tenant_id,))
            return (rows[0]["allow_overwrite"], rows[0]["settings"]) if rows else NO_PROJECT_CONFIG

        return await self._configs.get(tenant_id, load)

    async def target(self, instance_id: UUID) -> Target | None:
        """Any instance by id (whoever's: to tell another tenant's key from none)."""
        rows = await self._rows(SELECT_ONE, (instance_id,))
        return _target(rows[0]) if rows else None

    async def instances_with_prefix(self, prefix: str) -> list[tuple[UUID, UUID]]:
        """(instance id, tenant id) of the live GPU instances whose key starts so."""
        return [(r["id"], r["tenant_id"]) for r in await self._rows(SELECT_BY_PREFIX, (prefix,))]
