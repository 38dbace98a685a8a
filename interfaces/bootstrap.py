"""Wires hostplane together: database, event store, projections, stores and background jobs."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import AsyncCursor, Cursor
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from application.hostplane import Hostplane
from interfaces.crypto import AesGcmSecretBox, checked_master_key
from interfaces.db import stores
from interfaces.db.database import Database, open_database
from interfaces.db.pools import AsyncCheckedPool, CheckedPool, connection_settings, with_options
from interfaces.jobs.leadership import Leadership
from interfaces.jobs.webhooks import WebhookDispatcher
from interfaces.providers import ProviderRegistry
from interfaces.providers.probe import HttpProber
from interfaces.providers.simulated import SimulatedProvider
from interfaces.settings import Settings
from projections.engine.base import live_schema
from projections.engine.runner import EventSource, ProjectionRunner
from projections.readmodels import budgets, instances
from projections.readmodels.owned import OwnedListings
from projections.readmodels.registry import all_projections
from projections.reports import billing

log = logging.getLogger(__name__)

# The log's head, set by a request's authentication when every read model had reached it then.
request_head: ContextVar[int | None] = ContextVar("request_head", default=None)

# Read models hold timestamptz: read them back in UTC whatever the server's zone.
CONNECTION_KWARGS = {"autocommit": True, "row_factory": dict_row, "options": "-c TimeZone=UTC"}


def pool_settings(settings: Settings) -> dict[str, Any]:
    """What the API's pools share: connection settings, and how long a request waits for a
    connection before it answers 503 (``DatabaseUnavailableError``)."""
    timeout = settings.db_connect_timeout
    return {
        "kwargs": with_options(
            CONNECTION_KWARGS, connection_settings(timeout, settings.statement_timeout_seconds)
        ),
        "timeout": timeout,
        # Given up on after this, a failed connection is tried again at the next request, not
        # after a back-off grown long over a long outage.
        "reconnect_timeout": timeout,
    }


@dataclass
class Container:
    """Everything a running hostplane holds; built by ``open``, released by ``close``."""

    settings: Settings
    database: Database
    pool: ConnectionPool[Any]
    app: Hostplane
    runner: ProjectionRunner
    rate_limiter: stores.RateLimiter
    idempotency: stores.IdempotencyStore
    scheduler: Any = None
    leadership: Leadership | None = None  # in the first process of ``hostplane serve``
    provider: SimulatedProvider | None = None
    webhooks: WebhookDispatcher | None = None
    first_admin_token: str | None = None
    _closed: bool = field(default=False, repr=False)
    _watched: set[UUID] = field(default_factory=set, repr=False)
    _watch_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, settings: Settings, database: Database | None = None) -> Container:
        owned = database is None
        database = database or open_database(settings.database_url, settings.data_dir)
        try:
            return cls._assemble(settings, database)
        except BaseException:
            if owned:
                database.close()  # don't leave an embedded server running behind a failed start
            raise

    @classmethod
    def _assemble(cls, settings: Settings, database: Database) -> Container:
        master_key = checked_master_key(database.conninfo, settings.master_key, settings.data_dir)
        secret_box = AesGcmSecretBox(master_key)
        app = Hostplane(
            env=database.eventsourcing_env(
                settings.pool_size, settings.db_connect_timeout, settings.statement_timeout_seconds
            ),
            secret_box=secret_box,
            admin_token=settings.admin_token,
        )
        app.request_ids = app.recorder  # type: ignore[assignment]
        app.versions = app.recorder  # type: ignore[assignment]
        pool: ConnectionPool[Any] = CheckedPool(
            database.conninfo,
            min_size=1,
            # A request holds one at a time (authentication usually goes through the event
            # loop's own pool). Connections per process: this pool, the event store's (twice
            # this size at most), the event loop's and two listeners: about 4 x pool_size + 2,
            # which must fit in the server's max_connections for every process of
            # ``serve --workers`` together (the embedded server allows 300).
            max_size=settings.pool_size,
            open=True,
            **pool_settings(settings),
        )
        recorder: Any = app.recorder
        source = EventSource(
            table=f'"{recorder.datastore.schema}"."{recorder.events_table_name}"',
            channel=recorder.channel_name,
            mapper=app.mapper,
        )
        runner = ProjectionRunner(pool, source, all_projections(), database.conninfo)
        runner.create_all()
        stores.create_tables(pool)
        container = cls(
            settings=settings,
            database=database,
            pool=pool,
            app=app,
            runner=runner,
            rate_limiter=stores.RateLimiter(
                pool,
                settings.rate_limit_per_minute,
                source.table,
                source.current_head_sql([live_schema(n) for n in runner.projections]),
            ),
            idempotency=stores.IdempotencyStore(
                pool, secret_box, timedelta(seconds=settings.idempotency_lease_seconds)
            ),
        )
        container.webhooks = WebhookDispatcher(pool, app, settings)
        container.provider = SimulatedProvider(
            pool,
            deploy_seconds=settings.simulated_deploy_seconds,
            refuse=settings.simulated_refuse,
            failure_rate=settings.simulated_failure_rate,
            port=settings.simulated_port,
        )
        app.providers = ProviderRegistry(container.provider)
        app.prober = HttpProber()
        app.deploy_timeout = timedelta(seconds=settings.deploy_timeout_seconds)
        app.directory = ReadModelDirectory(container)
        app.spend = ReadModelSpend(container)
        container.first_admin_token = app.ensure_admin_token()
        app.load_default_catalog()
        return container

    def start_background(self) -> None:
        """Projection workers and the scheduler (``hostplane serve`` runs both).

        Of several nodes on one database, one leads (``interfaces.jobs.leadership``): it runs the
        projection worker and the cluster-wide jobs; the others stand by, follow its commits
        for read-your-writes, and take over when it dies.
        """
        from interfaces.jobs.scheduler import start_scheduler

        self.runner.follow()
        if self.provider is not None:
            self.provider.start()
        leadership = Leadership(
            self.database.conninfo, on_lead=self.runner.start, on_standby=self.runner.stand_by
        )
        self.leadership = leadership
        leadership.start()
        self.scheduler = start_scheduler(self, leading=lambda: leadership.leading)

    def start_api_process(self) -> None:
        """What an extra API process of ``hostplane serve --workers`` runs in the background:
        no projection worker or scheduled job of its own (the first process runs those), only
        wake-ups for read-your-writes and the evaluation of budgets its usage touched."""
        from interfaces.jobs.scheduler import start_scheduler

        self.runner.follow()
        self.scheduler = start_scheduler(self, budgets_only=True)

    @contextmanager
    def reading(self, *names: str) -> Iterator[Cursor[Any]]:
        """A cursor on read models that already reflect every write committed before this call.

        This gives read-your-writes: a client's next read waits (bounded) for its last write.
        A read model stalled by an event it cannot apply raises ``ReadModelStalledError`` at
        once (HTTP 503); only a read that finds the read models behind pays for that check.
        """
        current = request_head.get()
        if current is not None:
            if self._current_since_authentication(current):
                with self.pool.connection() as conn, conn.cursor() as curs:
                    yield curs
                    return
            target = self.app.last_written
        else:
            with self.pool.connection() as conn, conn.cursor() as curs:
                # Usually the read models are at the head already: one query says so, and the
                # read goes on on the same connection.
                behind = self.runner.head_if_behind(curs, names)
                if behind is None:
                    yield curs
                    return
                target = behind
        self._wait_for(names, target)
        with self.pool.connection() as conn, conn.cursor() as curs:
            yield curs

    def async_pool(self) -> AsyncConnectionPool[Any]:
        """A connection pool for one server's event loop; open it on that loop."""
        return AsyncCheckedPool(
            self.database.conninfo,
            min_size=1,
            max_size=self.settings.pool_size,
            open=False,
            **pool_settings(self.settings),
        )

    @asynccontextmanager
    async def reading_async(
        self, apool: AsyncConnectionPool[Any], *names: str
    ) -> AsyncIterator[AsyncCursor[Any]]:
        """``reading`` for the event loop: the query, and any wait for the read models, run on
        ``apool`` without a thread.

        Usually (the request's authentication saw every read model at the head, and this
        process wrote nothing since) nothing is waited for.
        """
        current = request_head.get()
        if not self._current_since_authentication(current):
            if current is not None:
                target: int | None = self.app.last_written
            else:
                async with apool.connection() as conn, conn.cursor() as curs:
                    target = await self.runner.head_if_behind_async(curs, names)
            if target is not None:  # waited for with no connection held
                await self._wait_for_async(apool, names, target)
        async with apool.connection() as conn, conn.cursor() as curs:
            yield curs

    def _current_since_authentication(self, head: int | None) -> bool:
        """Whether the read models hold every write, given the head the request's
        authentication saw them at (``None``: they were behind it then).

        Only writes made in this process since (its own, say) can be missing, and the highest
        of those is known here without asking the database.
        """
        return head is not None and self.app.last_written <= head

    def _wait_for(self, names: Sequence[str], target: int) -> None:
        # A read model stalled by an event it cannot apply answers at once: waiting is in vain.
        timeout = self.settings.read_your_writes_timeout
        if not self.runner.wait_for(names, target, timeout, fail_if_stalled=True):
            log.warning("read models %s lag behind position %s", names, target)

    async def _wait_for_async(
        self, apool: AsyncConnectionPool[Any], names: Sequence[str], target: int
    ) -> None:
        timeout = self.settings.read_your_writes_timeout
        if not await self.runner.wait_for_async(
            apool, names, target, timeout, fail_if_stalled=True
        ):
            log.warning("read models %s lag behind position %s", names, target)

    def watch_budgets(self, tenant_ids: set[UUID]) -> None:
        """Note the tenants whose usage changed; the scheduler evaluates their budgets soon."""
        with self._watch_lock:
            self._watched.update(tenant_ids)

    def watch_all_budgets(self) -> None:
        with self.reading("budgets") as curs:
            tenant_ids = budgets.tenants_with_budgets(curs)
        with self._watch_lock:
            self._watched.update(tenant_ids)

    def evaluate_watched_budgets(self) -> int:
        with self._watch_lock:
            tenant_ids, self._watched = self._watched, set()
        return sum(self.app.evaluate_budgets(t) for t in tenant_ids)

    def deliver_due_webhooks(self) -> int:
        """Attempt the webhook deliveries that are due (the scheduler calls this every second)."""
        return self.webhooks.deliver_due() if self.webhooks else 0

    def provision(self, statuses: tuple[str, ...] = ("pending", "deploying")) -> int:
        """One provisioning step for every GPU instance in ``statuses`` (the scheduler's job)."""
        with self.reading("instances") as curs:
            ids = instances.ids_in_status(curs, statuses)
        for instance_id in ids:
            self.app.advance_quietly(instance_id)
        return len(ids)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.leadership is not None:
            self.leadership.stop()  # the worker stops first, then another node may lead
        if self.provider is not None:
            self.provider.stop()
        self.runner.stop()
        self.pool.close()
        self.app.close()
        self.database.close()


class ReadModelDirectory:
    """Implements the ``TenantDirectory`` port with the listing read models."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.listings = OwnedListings(container.runner.projections.values())

    def owned_ids(self, tenant_id: UUID) -> dict[str, list[UUID]]:
        with self.container.reading(*self.listings.read_models) as curs:
            return self.listings.owned_ids(curs, tenant_id)


class ReadModelSpend:
    """Implements the ``SpendReader`` port with the usage and costs read models."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def spent(
        self, tenant_id: UUID, key_id: UUID | None, start: datetime, end: datetime | None
    ) -> Decimal:
        with self.container.reading("usage", "costs") as curs:
            return billing.spent(curs, tenant_id, key_id, start, end, datetime.now(UTC))
