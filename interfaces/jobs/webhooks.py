"""Webhook delivery: signed JSON POSTs from the outbox, retried with exponential backoff.

Any number of workers (threads, processes) may run ``deliver_due`` at once: a due row is
claimed with ``FOR UPDATE SKIP LOCKED`` and leased by pushing its ``next_attempt_at`` past
the request timeout, so no two workers send it together; a worker that dies mid-send leaves
the row to be retried when the lease runs out (delivery is at least once; receivers dedupe
on ``Hostplane-Event-Id``).
"""

from __future__ import annotations

import http.cookiejar
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from psycopg_pool import ConnectionPool

from application.webhooks import DeliveryTarget, Webhooks
from domain.webhook import SIGNATURE_HEADER, retry_delay, signature
from interfaces.settings import Settings
from projections.readmodels.webhook_outbox import OUTBOX

log = logging.getLogger(__name__)

CLAIM = f"""
UPDATE {OUTBOX} d SET next_attempt_at = %(lease)s
FROM (SELECT id FROM {OUTBOX} WHERE status = 'pending' AND next_attempt_at <= %(now)s
      ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED) due
WHERE d.id = due.id
RETURNING d.id, d.webhook_id, d.tenant_id, d.event_id, d.event_type, d.data, d.created_at,
          d.attempts, d.enqueued_at"""
ANY_DUE = f"SELECT 1 FROM {OUTBOX} WHERE status = 'pending' AND next_attempt_at <= %s LIMIT 1"
RECORD = f"""
UPDATE {OUTBOX} SET status = %(status)s, attempts = attempts + 1,
    last_status_code = %(code)s, last_error = %(error)s, last_attempt_at = %(now)s,
    next_attempt_at = %(next)s, delivered_at = %(delivered)s
WHERE id = %(id)s AND status = 'pending'"""
USER_AGENT = "hostplane-webhooks/1"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def envelope(row: dict[str, Any]) -> bytes:
    """The body POSTed: ``{id, type, created_at, tenant_id, data}``, exactly as signed."""
    return orjson.dumps(
        {
            "id": str(row["event_id"]),
            "type": row["event_type"],
            "created_at": iso(row["created_at"]),
            "tenant_id": str(row["tenant_id"]),
            "data": row["data"],
        }
    )


@dataclass
class Attempt:
    ok: bool
    status_code: int | None = None
    error: str | None = None


def no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that keeps none. One client sends a run's deliveries, every tenant's, and
    a receiver's host may serve several tenants: a cookie it set in answer to one delivery
    must go with no later one."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class WebhookDispatcher:
    """Sends due deliveries and records each attempt."""

    def __init__(self, pool: ConnectionPool[Any], webhooks: Webhooks, settings: Settings) -> None:
        self.pool = pool
        self.webhooks = webhooks  # the signing secrets
        self.settings = settings  # read on every run: retry timings may be tuned live

    def deliver_due(self, limit: int = 200, concurrency: int = 4) -> int:
        """Attempt due deliveries (up to ``limit``) on a few threads; returns how many.

        Each row is claimed alone, just before it is sent, so its lease only has to cover one
        request: a slow or dead endpoint never lets another worker send a row twice.
        """
        with self.pool.connection() as conn:
            if conn.execute(ANY_DUE, (datetime.now(UTC),)).fetchone() is None:
                return 0  # the common case, every second: no client, no threads
        with (
            httpx.Client(
                timeout=self.settings.webhook_timeout_seconds, cookies=no_cookies()
            ) as client,
            ThreadPoolExecutor(concurrency, thread_name_prefix="webhooks") as threads,
        ):
            share = max(1, limit // concurrency)
            return sum(threads.map(lambda _: self._drain(client, share), range(concurrency)))

    def _drain(self, client: httpx.Client, limit: int) -> int:
        sent = 0
        while sent < limit:
            row = self.claim()
            if row is None:
                break
            target = self.webhooks.delivery_target(row["webhook_id"])
            self.record(row, self.send(client, target, row))
            sent += 1
        return sent

    def claim(self) -> dict[str, Any] | None:
        """Lease the most overdue delivery for the length of one request, or ``None``."""
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=self.settings.webhook_timeout_seconds * 4 + 5)
        with self.pool.connection() as conn, conn.transaction():
            return conn.execute(CLAIM, {"now": now, "lease": lease}).fetchone()

    def send(
        self, client: httpx.Client, target: DeliveryTarget | None, row: dict[str, Any]
    ) -> Attempt:
        if target is None:
            return Attempt(ok=False, error="webhook or its signing key no longer exists")
        body = envelope(row)
        sent_at = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Hostplane-Event-Id": str(row["event_id"]),
            "Hostplane-Event-Type": row["event_type"],
            SIGNATURE_HEADER: signature(target.secret, int(sent_at.timestamp()), body),
        }
        try:
            response = client.post(target.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Attempt(ok=False, error="timed out")
        except httpx.HTTPError as e:
            return Attempt(ok=False, error=f"{type(e).__name__}: {e}"[:500])
        if 200 <= response.status_code < 300:
            return Attempt(ok=True, status_code=response.status_code)
        return Attempt(
            ok=False, status_code=response.status_code, error=f"HTTP {response.status_code}"
        )

    def record(self, row: dict[str, Any], attempt: Attempt) -> None:
        now = datetime.now(UTC)
        values: dict[str, Any] = {"id": row["id"], "now": now, "code": attempt.status_code}
        values |= {"error": attempt.error, "next": None, "delivered": None}
        if attempt.ok:
            values |= {"status": "delivered", "delivered": now}
        else:
            attempts = row["attempts"] + 1
            next_at = now + retry_delay(attempts, self.settings.webhook_retry_base_seconds)
            max_age = timedelta(seconds=self.settings.webhook_max_age_seconds)
            given_up = next_at > row["enqueued_at"] + max_age
            values |= {"status": "failed" if given_up else "pending"}
            values |= {"next": None if given_up else next_at}
            log.info(
                "webhook delivery %s attempt %s failed: %s", row["id"], attempts, attempt.error
            )
        with self.pool.connection() as conn:
            conn.execute(RECORD, values)
