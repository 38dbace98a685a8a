"""The built-in ``simulated`` GPU provider: the whole deploy path on one machine.

It stands for an outside system, so its state lives outside hostplane's events: in its own
table (a real provider keeps its own database), and it survives hostplane restarts. An
allocation becomes ready after ``deploy_seconds``; it fails when its model or instance type is
in ``refuse`` or by chance (``failure_rate``). Each running instance answers OpenAI-compatible
chat completions on loopback at ``{endpoint_url}/chat/completions`` with an echo, authenticated
with the instance's own key.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from application.ports import Deployment, DeploySpec
from domain.base import sha256_hex
from interfaces.providers.echo import EchoServer

log = logging.getLogger(__name__)

TABLES = [
    """CREATE TABLE IF NOT EXISTS hostplane_simulated_gpus (
        instance_id uuid PRIMARY KEY,
        model_id text NOT NULL,
        region text NOT NULL,
        instance_type text NOT NULL,
        key_hash text NOT NULL,
        attempt integer NOT NULL,
        ready_at timestamptz NOT NULL,
        failure text,
        released_at timestamptz,
        log jsonb NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS hostplane_simulated_endpoint (
        id boolean PRIMARY KEY DEFAULT true CHECK (id), port integer NOT NULL
    )""",
]
ALLOCATE = """
INSERT INTO hostplane_simulated_gpus AS g (instance_id, model_id, region, instance_type,
    key_hash, attempt, ready_at, failure, log)
VALUES (%(id)s, %(model)s, %(region)s, %(type)s, %(key)s, 1, %(ready)s, %(failure)s, %(log)s)
ON CONFLICT (instance_id) DO UPDATE SET
    attempt = g.attempt + 1, ready_at = EXCLUDED.ready_at, failure = EXCLUDED.failure,
    released_at = NULL, key_hash = EXCLUDED.key_hash, log = g.log || EXCLUDED.log
WHERE g.failure IS NOT NULL OR g.released_at IS NOT NULL"""
LOG_LIMIT = 200


def _now() -> datetime:
    return datetime.now(UTC)


def _line(at: datetime, message: str) -> dict[str, str]:
    return {"at": at.isoformat(), "message": message}


class SimulatedProvider:
    """Implements the ``Provider`` port on loopback."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        deploy_seconds: float = 3.0,
        refuse: frozenset[str] = frozenset(),
        failure_rate: float = 0.0,
        port: int = 0,
    ) -> None:
        self.pool = pool
        self.deploy_seconds = deploy_seconds
        self.refuse = set(refuse)
        self.failure_rate = failure_rate
        self.wanted_port = port
        self.server: EchoServer | None = None
        self._random = random.Random()
        with pool.connection() as conn:
            for ddl in TABLES:
                conn.execute(ddl)

    # -- the endpoint server --------------------------------------------------------------

    def start(self) -> None:
        """Serve the instances' endpoints; on the port used before a restart when it is free."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT port FROM hostplane_simulated_endpoint").fetchone()
            port = self.wanted_port or (row["port"] if row else 0)
            self.server = EchoServer(self, port)
            if self.server.port != port:
                conn.execute(
                    "INSERT INTO hostplane_simulated_endpoint (port) VALUES (%s)"
                    " ON CONFLICT (id) DO UPDATE SET port = EXCLUDED.port",
                    (self.server.port,),
                )

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def endpoint_url(self, instance_id: UUID) -> str:
        if self.server is not None:
            port = self.server.port
        else:  # another process of ``hostplane serve --workers`` serves the endpoints
            with self.pool.connection() as conn:
                row = conn.execute("SELECT port FROM hostplane_simulated_endpoint").fetchone()
            port = row["port"] if row else 0
        return f"http://127.0.0.1:{port}/instances/{instance_id}/v1"

    # -- the Provider port ----------------------------------------------------------------

    def allocate(self, spec: DeploySpec) -> None:
        now = _now()
        failure = None
        for refused in (spec.model_id, spec.instance_type):
            if refused in self.refuse:
                failure = f"simulated provider refuses {refused!r}"
        if failure is None and self._random.random() < self.failure_rate:
            failure = "simulated GPU allocation failure"
        lines = [
            _line(now, f"allocating a {spec.instance_type} GPU in {spec.region}"),
            _line(now, f"pulling model {spec.model_id}"),
        ]
        with self.pool.connection() as conn:
            conn.execute(
                ALLOCATE,
                {
                    "id": spec.instance_id,
                    "model": spec.model_id,
                    "region": spec.region,
                    "type": spec.instance_type,
                    "key": sha256_hex(spec.api_key),
                    "ready": now + timedelta(seconds=self.deploy_seconds),
                    "failure": failure,
                    "log": Jsonb(lines),
                },
            )

    def _row(self, instance_id: UUID) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT * FROM hostplane_simulated_gpus WHERE instance_id = %s", (instance_id,)
            ).fetchone()

    def status(self, instance_id: UUID) -> Deployment:
        row = self._row(instance_id)
        return self._deployment(row, _now()) if row else Deployment("unknown")

    def _deployment(self, row: dict[str, Any], now: datetime) -> Deployment:
        if row["released_at"] is not None:
            return Deployment("released", reason="the GPU was released")
        if now < row["ready_at"]:
            return Deployment("allocating")
        if row["failure"]:
            return Deployment("failed", reason=row["failure"])
        return Deployment("running", endpoint_url=self.endpoint_url(row["instance_id"]))

    def logs(self, instance_id: UUID, limit: int) -> list[dict[str, object]]:
        row = self._row(instance_id)
        if row is None:
            return []
        lines = list(row["log"])
        now = _now()
        ready = row["ready_at"]
        if now >= ready and row["released_at"] is None:
            # The outcome of the latest attempt shows once its time has come.
            outcome = f"error: {row['failure']}" if row["failure"] else "vLLM ready"
            lines.append(_line(ready, f"attempt {row['attempt']}: {outcome}"))
        lines.sort(key=lambda line: line["at"])
        return [
            {"at": datetime.fromisoformat(line["at"]), "message": line["message"]}
            for line in lines[-limit:]
        ]

    def release(self, instance_id: UUID) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE hostplane_simulated_gpus SET released_at = %s,"
                " log = log || %s WHERE instance_id = %s AND released_at IS NULL",
                (_now(), Jsonb([_line(_now(), "GPU released")]), instance_id),
            )

    # -- used by the endpoint server ------------------------------------------------------

    def serving(self, instance_id: UUID, api_key: str) -> tuple[int, str | None, str]:
        """(HTTP status, error, model) for a request to the instance's endpoint."""
        row = self._row(instance_id)
        if row is None or self._deployment(row, _now()).state != "running":
            return 503, "this instance is not running", ""
        if sha256_hex(api_key) != row["key_hash"]:
            return 401, "invalid instance API key", ""
        return 200, None, row["model_id"]

    def note(self, instance_id: UUID, message: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE hostplane_simulated_gpus SET log = CASE"
                f" WHEN jsonb_array_length(log) >= {LOG_LIMIT} THEN (log - 0) || %s"
                " ELSE log || %s END WHERE instance_id = %s",
                (line := Jsonb([_line(_now(), message)]), line, instance_id),
            )
