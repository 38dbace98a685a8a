"""A long history in little time: events written through the application, many per save.

A million single-record usage batches through HTTP would take the bench most of an hour (each
is its own save under the events table's lock), so they are built by the same domain code the
ingest use case runs (``UsageBatch.record``, rated at the model's price) and saved in groups,
with their request ids registered as ingestion does.

The live server's projection worker is held off meanwhile (``workers_held``), then timed while
it catches up with the backlog: that is the catch-up figure. Caught up while the saves went on,
it could only keep pace with this one writer (8,000–11,000 events/s in full runs), which it did.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.conninfo import conninfo_to_dict

from application.store import EventStore
from bench.ingest import Dataset
from bench.report import Figure
from bench.server import Server
from domain.base import Actor
from domain.pricing import Model
from domain.usage import UsageBatch, UsageInput
from interfaces.db.database import Database
from projections.engine.runner import SQL_LOCK_MANY

PER_SAVE = 500
MODEL = "llama-3.1-8b"


def open_app(server: Server) -> EventStore:
    env = Database(server.conninfo).eventsourcing_env(pool_size=2)
    env["POSTGRES_HOST"] = str(conninfo_to_dict(server.conninfo).get("host"))
    return EventStore(env=env)


def seed_usage_batches(server: Server, data: Dataset, count: int) -> float:
    """``count`` one-record usage batches (one event, one audit entry each); returns seconds."""
    app = open_app(server)
    try:
        tenant, key = UUID(data.audit_tenant), UUID(data.audit_key)
        model = app.find(Model, Model.create_id(MODEL))
        assert model is not None
        at = data.end
        price = model.price_at(at)
        actor = Actor(id=f"key:{key}", ip="127.0.0.1")
        t0 = time.perf_counter()
        for lo in range(0, count, PER_SAVE):
            ids = [f"seed-{i}" for i in range(lo, min(lo + PER_SAVE, count))]
            batches = [
                UsageBatch.record(
                    tenant,
                    [
                        (
                            usage(request_id, key, at),
                            price.input_eur_per_mtok,
                            price.output_eur_per_mtok,
                        )
                    ],
                    actor,
                )
                for request_id in ids
            ]
            app.save(*batches, usage_request_ids={tenant: list(ids)})
        return time.perf_counter() - t0
    finally:
        app.close()


def usage(request_id: str, key: UUID, at: datetime) -> UsageInput:
    return UsageInput(
        request_id=request_id,
        key_id=key,
        model=MODEL,
        prompt_tokens=10,
        completion_tokens=5,
        status="success",
        latency_ms=5,
        occurred_at=at,
    )


def live_schemas(conn: Any) -> list[str]:
    """The schemas of the live read models (not a rebuild's copies)."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rm\\_%' AND nspname NOT LIKE"
            " '%\\_\\_rebuild' ORDER BY nspname"
        ).fetchall()
    ]


@contextmanager
def workers_held(server: Server) -> Iterator[None]:
    """No projection worker applies a batch meanwhile: this takes the per-read-model locks a
    worker takes for each batch, with the worker's own statement, so the worker waits."""
    with server.connect() as conn, conn.transaction():
        conn.execute(SQL_LOCK_MANY, (live_schemas(conn),))
        yield


def wait_caught_up(server: Server, timeout: float = 3600) -> float:
    """Seconds until every live read model has reached the head of the log."""
    t0 = time.perf_counter()
    with server.connect() as conn:
        schemas = live_schemas(conn)
        union = " UNION ALL ".join(f"SELECT position FROM {s}.tracking" for s in schemas)
        query: Any = f"SELECT (SELECT max(notification_id) FROM public.hostplane_events), min(position) FROM ({union}) t"
        while True:
            head, lowest = conn.execute(query).fetchone()
            if lowest >= (head or 0):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"read models at {lowest}, head {head}, after {timeout}s")
            time.sleep(0.01)  # the figure at small scale is a fraction of a second


def catch_up_figure(count: int, written: float, caught_up: float) -> Figure:
    """Events/s of the running server's worker through a backlog of ``count`` new events."""
    return Figure(
        "audit",
        f"live projection catch-up of a backlog of {count:,} new events, events/s",
        count / caught_up,
        "ev/s",
        target=20_000,
        baseline=count / written,
        baseline_label="the saves themselves",
        notes=(
            f"{count:,} one-record usage batches saved {PER_SAVE} per save in {written:.1f} s"
            " while the server's projection worker was held off; once released, it brought every"
            f" read model to the head in {caught_up:.1f} s"
        ),
    )
