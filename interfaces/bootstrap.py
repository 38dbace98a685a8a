"""Wires hostplane together, in order: database, event store, pools and read models, the
read-your-writes gate, the ports, the use cases, background jobs. Every part receives what it
needs in its constructor; ``bootstrap`` returns them assembled in a ``Container``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from application.authentication import Authenticator
from application.budgets import Budgets
from application.byok import Upstreams
from application.capacity import CapacityControl
from application.fairshare import Fairshare
from application.instances import Instances
from application.keys import Keys
from application.mcp_servers import McpServers
from application.offboarding import Offboarding
from application.ports import SecretBox, SystemClock
from application.pricing import Pricing
from application.project_configs import ProjectConfigs
from application.provisioning import Provisioning
from application.store import EventStore
from application.tenants import Tenants
from application.usage import Usage
from application.users import Users
from application.webhooks import Webhooks
from domain.usage import UsageBatch
from interfaces.crypto import AesGcmSecretBox, checked_master_key
from interfaces.db import stores
from interfaces.db.database import Database, open_database
from interfaces.db.directory import ReadModelDirectory, ReadModelSpend
from interfaces.db.eventstore import (
    INSERT_FORMATS,
    INSERT_NAME,
    HostplaneRecorder,
    aggregate_name,
    parse_notification,
)
from interfaces.db.loopwriter import LoopWriter
from interfaces.db.pools import AsyncCheckedPool, CheckedPool, connection_settings, with_options
from interfaces.db.readgate import ReadGate
from interfaces.gateway import ledger
from interfaces.gateway.probe import GatewayProber
from interfaces.http.creating import CreateOnce
from interfaces.http.shown import Replays
from interfaces.jobs.background import Background
from interfaces.jobs.budgets import BudgetWatcher
from interfaces.jobs.provisioning import ProvisioningRounds
from interfaces.jobs.scheduler import Jobs
from interfaces.jobs.webhooks import WebhookDispatcher
from interfaces.providers import ProviderRegistry
from interfaces.providers.simulated import SimulatedProvider
from interfaces.settings import Settings
from interfaces.signin import Argon2Passwords, JwtTokens, checked_jwt_secret
from projections.engine.base import live_schema
from projections.engine.runner import EventSource, ProjectionRunner
from projections.readmodels.registry import all_projections

# Read models hold timestamptz: read them back in UTC whatever the server's zone.
CONNECTION_KWARGS = {"autocommit": True, "row_factory": dict_row, "options": "-c TimeZone=UTC"}


# Writes that come in streams and that nobody reads right after: their catch-up is paced.
STREAMED = frozenset({aggregate_name(UsageBatch)})


def applied_at_once(payload: str) -> bool:
    """Whether the projections apply a write at once, by its notification (``Worker._pace``):
    all but the gateway's and ``POST /usage/events``' usage batches."""
    notice = parse_notification(payload)
    return notice is None or not notice.holds_only(STREAMED)


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


@dataclass(frozen=True)
class Container:
    """Everything a running hostplane holds; built by ``bootstrap``, released by ``close``."""

    settings: Settings
    database: Database
    pool: ConnectionPool[Any]
    store: EventStore
    secret_box: SecretBox
    runner: ProjectionRunner
    gate: ReadGate
    rate_limiter: stores.RateLimiter
    idempotency: stores.IdempotencyStore
    create_once: CreateOnce
    replays: Replays
    # The use cases.
    auth: Authenticator
    tenants: Tenants
    offboarding: Offboarding
    keys: Keys
    instances: Instances
    upstreams: Upstreams
    provisioning: Provisioning
    budgets: Budgets
    pricing: Pricing
    project_configs: ProjectConfigs
    usage: Usage
    webhooks: Webhooks
    mcp_servers: McpServers
    capacity: CapacityControl
    fairshare: Fairshare
    users: Users
    # What runs in the background.
    provider: SimulatedProvider
    providers: ProviderRegistry
    budget_watch: BudgetWatcher
    deliveries: WebhookDispatcher
    background: Background
    first_admin_token: str | None = None
    _closed: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def open(cls, settings: Settings, database: Database | None = None) -> Container:
        return bootstrap(settings, database)

    def start_background(self) -> None:
        """Projection workers and the scheduler (``hostplane serve`` runs both)."""
        self.background.start()

    def start_api_process(self) -> None:
        """The background work of an extra API process of ``hostplane serve --workers``."""
        self.background.start_api_process()

    @property
    def recorder(self) -> HostplaneRecorder:
        """The event store's recorder (``bootstrap`` checked its class)."""
        recorder = self.store.recorder
        assert isinstance(recorder, HostplaneRecorder)
        return recorder

    def async_pool(self) -> AsyncConnectionPool[Any]:
        """A connection pool for one server's event loop; open it on that loop."""
        return AsyncCheckedPool(
            self.database.conninfo,
            min_size=1,
            max_size=self.settings.pool_size,
            open=False,
            **pool_settings(self.settings),
        )

    def usage_writer(self, application_name: str) -> LoopWriter:
        """A connection of its own, for one server's event loop, that runs the event store's
        insert (the gateway meter's usage writes), with the API's connection settings."""
        return LoopWriter(
            self.database.conninfo,
            INSERT_NAME,
            self.recorder.insert_statement,
            INSERT_FORMATS,
            connect_kwargs={
                **pool_settings(self.settings)["kwargs"],
                "application_name": application_name,
            },
        )

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.background.stop()
        self.pool.close()
        self.store.close()
        self.database.close()


def bootstrap(settings: Settings, database: Database | None = None) -> Container:
    """hostplane assembled on ``database`` (by default the one ``settings`` name, or an
    embedded one, which a failed start stops again)."""
    owned = database is None
    database = database or open_database(settings.database_url, settings.data_dir)
    try:
        return _assemble(settings, database)
    except BaseException:
        if owned:
            database.close()  # don't leave an embedded server running behind a failed start
        raise


def _assemble(settings: Settings, database: Database) -> Container:
    master_key = checked_master_key(database.conninfo, settings.master_key, settings.data_dir)
    secret_box = AesGcmSecretBox(master_key)
    user_tokens = JwtTokens(checked_jwt_secret(database.conninfo, settings.jwt_secret, master_key))
    store = EventStore(
        env=database.eventsourcing_env(
            settings.pool_size, settings.db_connect_timeout, settings.statement_timeout_seconds
        ),
        secret_box=secret_box,
    )
    recorder = store.recorder
    if not isinstance(recorder, HostplaneRecorder):  # it registers usage request ids
        raise TypeError(f"the event store's recorder is a {type(recorder).__name__}")
    recorder.streamed = STREAMED  # usage writes are not notified on its changes channel
    pool: ConnectionPool[Any] = CheckedPool(
        database.conninfo,
        min_size=1,
        # A request holds one at a time (authentication usually goes through the event
        # loop's own pool). Connections per process: this pool, the event store's (twice
        # this size at most), the event loop's and two listeners (three in the process that
        # runs the projections): about 4 x pool_size + 3, which must fit in the server's
        # max_connections for every process of ``serve --workers`` together (the embedded
        # server allows 300).
        max_size=settings.pool_size,
        open=True,
        **pool_settings(settings),
    )
    source = EventSource(
        table=f'"{recorder.datastore.schema}"."{recorder.events_table_name}"',
        channel=recorder.channel_name,
        mapper=store.mapper,
        at_once=applied_at_once,
        changes_channel=recorder.changes_channel,
    )
    runner = ProjectionRunner(pool, source, all_projections(), database.conninfo)
    runner.create_all()
    stores.create_tables(pool)
    ledger.create_ledger(pool)
    gate = ReadGate(pool, runner, store, settings.read_your_writes_timeout)
    # Ports answered by read models (through the gate) and by the outside world.
    clock = SystemClock()
    directory = ReadModelDirectory(gate, runner.projections.values())
    spend = ReadModelSpend(gate)
    provider = SimulatedProvider(
        pool,
        deploy_seconds=settings.simulated_deploy_seconds,
        refuse=settings.simulated_refuse,
        failure_rate=settings.simulated_failure_rate,
        port=settings.simulated_port,
    )
    providers = ProviderRegistry(provider)
    # The use cases, each given its collaborators.
    instances = Instances(store, secret_box, providers)
    provisioning = Provisioning(
        store,
        secret_box,
        instances,
        providers,
        GatewayProber(settings.gateway_connect_timeout),
        timedelta(seconds=settings.deploy_timeout_seconds),
    )
    budgets = Budgets(store, clock, directory, spend)
    budget_watch = BudgetWatcher(budgets, gate)
    webhooks = Webhooks(store, secret_box)
    pricing = Pricing(store, clock)
    keys = Keys(store, clock, directory)
    auth = Authenticator(store, settings.admin_token, user_tokens)
    rate_limiter = stores.RateLimiter(
        pool,
        settings.rate_limit_per_minute,
        source.table,
        source.current_head_sql([live_schema(n) for n in runner.projections]),
    )
    idempotency = stores.IdempotencyStore(
        pool, secret_box, timedelta(seconds=settings.idempotency_lease_seconds)
    )
    deliveries = WebhookDispatcher(pool, webhooks, settings)
    rounds = ProvisioningRounds(provisioning, gate)

    def prune() -> None:
        rate_limiter.prune()
        idempotency.prune()
        ledger.prune_ledger(pool, datetime.now(UTC))

    jobs = Jobs(
        evaluate_watched_budgets=budget_watch.evaluate_watched,
        watch_all_budgets=budget_watch.watch_all,
        prune=prune,
        deliver_webhooks=deliveries.deliver_due,
        provision=rounds.run,
        provision_interval_seconds=settings.provision_interval_seconds,
        status_sync_seconds=settings.status_sync_seconds,
    )
    first_admin_token = auth.ensure_admin_token()
    pricing.load_default_catalog()
    return Container(
        settings=settings,
        database=database,
        pool=pool,
        store=store,
        secret_box=secret_box,
        runner=runner,
        gate=gate,
        rate_limiter=rate_limiter,
        idempotency=idempotency,
        create_once=CreateOnce(idempotency, store),
        replays=Replays(store, runner, pool, settings.read_your_writes_timeout),
        auth=auth,
        tenants=Tenants(store, secret_box),
        offboarding=Offboarding(store, directory, instances),
        keys=keys,
        instances=instances,
        upstreams=Upstreams(store, secret_box),
        provisioning=provisioning,
        budgets=budgets,
        pricing=pricing,
        project_configs=ProjectConfigs(store),
        usage=Usage(store, clock, recorder, recorder, budget_watch),
        webhooks=webhooks,
        mcp_servers=McpServers(store, secret_box),
        capacity=CapacityControl(store, settings.max_in_flight),
        fairshare=Fairshare(store),
        users=Users(
            store,
            secret_box,
            secret_box,
            Argon2Passwords(),
            user_tokens,
            clock,
            signup_open=settings.signup == "open",
            keys=keys,
        ),
        provider=provider,
        providers=providers,
        budget_watch=budget_watch,
        deliveries=deliveries,
        background=Background(runner, database.conninfo, jobs, provider),
        first_admin_token=first_admin_token,
    )
