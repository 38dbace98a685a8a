"""Read model: the model catalog with current prices, and GPU rates."""

from __future__ import annotations

from typing import Any

from psycopg import Cursor

from domain.pricing import DEFAULT_CACHE_TTL_SECONDS, GpuRate, Model
from projections.engine.base import Projection, live_schema

SCHEMA = live_schema("pricebook")

CREATE_MODELS = """
CREATE TABLE IF NOT EXISTS {s}.models (
    id text PRIMARY KEY,
    display_name text NOT NULL,
    modality text NOT NULL,
    context_length integer NOT NULL,
    input_eur_per_mtok numeric NOT NULL,
    output_eur_per_mtok numeric NOT NULL,
    price_effective_from timestamptz,
    serveable boolean NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
)"""
CREATE_PRICES = """
CREATE TABLE IF NOT EXISTS {s}.prices (
    model text NOT NULL, version integer NOT NULL, effective_from timestamptz,
    input_eur_per_mtok numeric NOT NULL, output_eur_per_mtok numeric NOT NULL,
    PRIMARY KEY (model, version)
)"""
CREATE_GPU_RATES = """
CREATE TABLE IF NOT EXISTS {s}.gpu_rates (
    instance_type text NOT NULL, region text NOT NULL, eur_per_hour numeric NOT NULL,
    updated_at timestamptz NOT NULL, PRIMARY KEY (instance_type, region)
)"""
# Columns added after the table: a read model kept from before gains them with the values
# every model had then (no vendor; the response cache off, the default TTL).
WIDEN_MODELS = [
    "ALTER TABLE {s}.models ADD COLUMN IF NOT EXISTS vendor text",
    "ALTER TABLE {s}.models ADD COLUMN IF NOT EXISTS cache_enabled boolean NOT NULL DEFAULT false",
    "ALTER TABLE {s}.models ADD COLUMN IF NOT EXISTS cache_ttl_seconds integer NOT NULL"
    f" DEFAULT {DEFAULT_CACHE_TTL_SECONDS}",
]
CREATE_IDS = "CREATE TABLE IF NOT EXISTS {s}.ids (id uuid PRIMARY KEY, slug text NOT NULL)"

INSERT_MODEL = """
INSERT INTO {s}.models (id, display_name, modality, context_length, input_eur_per_mtok,
    output_eur_per_mtok, serveable, vendor, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_ID = "INSERT INTO {s}.ids (id, slug) VALUES (%s, %s)"
SLUG_OF = "SELECT slug FROM {s}.ids WHERE id = %s"
INSERT_PRICE = "INSERT INTO {s}.prices VALUES (%s, %s, %s, %s, %s)"
DESCRIBE = """
UPDATE {s}.models SET display_name = %s, modality = %s, context_length = %s, serveable = %s,
    updated_at = %s WHERE id = %s"""
# The listed price is the latest change by effective time (the one new usage is rated at).
REPRICE = """
UPDATE {s}.models m SET input_eur_per_mtok = p.input_eur_per_mtok,
    output_eur_per_mtok = p.output_eur_per_mtok, price_effective_from = p.effective_from,
    updated_at = %s
FROM (SELECT * FROM {s}.prices WHERE model = %s
      ORDER BY effective_from DESC NULLS LAST, version DESC LIMIT 1) p
WHERE m.id = %s"""
CONFIGURE_CACHE = """
UPDATE {s}.models SET cache_enabled = %s, cache_ttl_seconds = %s, updated_at = %s WHERE id = %s"""
DELETE = "UPDATE {s}.models SET deleted = true, updated_at = %s WHERE id = %s"
UPSERT_RATE = """
INSERT INTO {s}.gpu_rates (instance_type, region, eur_per_hour, updated_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (instance_type, region) DO UPDATE SET eur_per_hour = EXCLUDED.eur_per_hour,
    updated_at = EXCLUDED.updated_at"""
RATE_IDS = """
CREATE TABLE IF NOT EXISTS {s}.rate_ids (id uuid PRIMARY KEY, instance_type text, region text)"""

MODEL_COLUMNS = (
    "id, display_name, modality, context_length, input_eur_per_mtok, output_eur_per_mtok,"
    " price_effective_from, serveable, vendor, cache_enabled, cache_ttl_seconds, created_at,"
    " updated_at"
)


class PricebookProjection(Projection):
    name = "pricebook"
    tables = [CREATE_MODELS, *WIDEN_MODELS, CREATE_PRICES, CREATE_GPU_RATES, CREATE_IDS, RATE_IDS]

    def registered(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(
            e.sql(INSERT_MODEL),
            (
                e.slug,
                e.display_name,
                e.modality,
                e.context_length,
                e.input_eur_per_mtok,
                e.output_eur_per_mtok,
                e.serveable,
                getattr(e, "vendor", None),
                e.timestamp,
                e.timestamp,
            ),
        )
        curs.execute(e.sql(INSERT_ID), (e.originator_id, e.slug))
        curs.execute(
            e.sql(INSERT_PRICE),
            (e.slug, e.originator_version, None, e.input_eur_per_mtok, e.output_eur_per_mtok),
        )

    def _slug(self, curs: Cursor[Any], e: Any) -> str:
        return curs.execute(e.sql(SLUG_OF), (e.originator_id,)).fetchone()["slug"]

    def described(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(
            e.sql(DESCRIBE),
            (
                e.display_name,
                e.modality,
                e.context_length,
                e.serveable,
                e.timestamp,
                self._slug(curs, e),
            ),
        )

    def price_changed(self, curs: Cursor[Any], e: Any) -> None:
        slug = self._slug(curs, e)
        curs.execute(
            e.sql(INSERT_PRICE),
            (
                slug,
                e.originator_version,
                e.effective_from,
                e.input_eur_per_mtok,
                e.output_eur_per_mtok,
            ),
        )
        curs.execute(e.sql(REPRICE), (e.timestamp, slug, slug))

    def cache_configured(self, curs: Cursor[Any], e: Any) -> None:
        row = (e.enabled, e.ttl_seconds, e.timestamp, self._slug(curs, e))
        curs.execute(e.sql(CONFIGURE_CACHE), row)

    def deleted(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(DELETE), (e.timestamp, self._slug(curs, e)))

    def rate_set(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(UPSERT_RATE), (e.instance_type, e.region, e.eur_per_hour, e.timestamp))
        curs.execute(
            e.sql("INSERT INTO {s}.rate_ids VALUES (%s, %s, %s)"),
            (e.originator_id, e.instance_type, e.region),
        )

    def rate_changed(self, curs: Cursor[Any], e: Any) -> None:
        row = curs.execute(
            e.sql("SELECT instance_type, region FROM {s}.rate_ids WHERE id = %s"),
            (e.originator_id,),
        ).fetchone()
        curs.execute(
            e.sql(UPSERT_RATE), (row["instance_type"], row["region"], e.eur_per_hour, e.timestamp)
        )

    handlers = {
        Model.Registered: registered,
        Model.Described: described,
        Model.PriceChanged: price_changed,
        Model.CacheConfigured: cache_configured,
        Model.Deleted: deleted,
        GpuRate.Set: rate_set,
        GpuRate.Changed: rate_changed,
    }


def get_model(curs: Cursor[Any], slug: str) -> dict[str, Any] | None:
    row = curs.execute(
        f"SELECT {MODEL_COLUMNS} FROM {SCHEMA}.models WHERE id = %s AND NOT deleted", (slug,)
    ).fetchone()
    if row is None:
        return None
    row = shaped(row)
    row["prices"] = curs.execute(
        f"SELECT effective_from, input_eur_per_mtok, output_eur_per_mtok FROM {SCHEMA}.prices"
        " WHERE model = %s ORDER BY version",
        (slug,),
    ).fetchall()
    return row


def list_models(curs: Cursor[Any]) -> list[dict[str, Any]]:
    rows = curs.execute(
        f"SELECT {MODEL_COLUMNS} FROM {SCHEMA}.models WHERE NOT deleted ORDER BY id"
    ).fetchall()
    return [shaped(r) for r in rows]


def shaped(row: dict[str, Any]) -> dict[str, Any]:
    """A model's row with its cache settings together, as ``cache``."""
    row = dict(row)
    row["cache"] = {
        "enabled": row.pop("cache_enabled"),
        "ttl_seconds": row.pop("cache_ttl_seconds"),
    }
    return row


def list_gpu_rates(curs: Cursor[Any]) -> list[dict[str, Any]]:
    return curs.execute(
        f"SELECT instance_type, region, eur_per_hour, updated_at FROM {SCHEMA}.gpu_rates"
        " ORDER BY instance_type, region"
    ).fetchall()
