"""Capacity and weighted fair share: the upstream places of one serving process.

At most ``max_in_flight`` upstream requests run at once in a process; beyond it requests wait,
and a freed place goes to the next one in weighted fair order (``fairqueue.py``: hierarchical
start-time fair queueing, groups by group weight, then tenants by tenant weight). The queue is
bounded in length (429 ``queue_full``) and in wait (503 ``queue_timeout``); a client that goes
away while it waits leaves the queue.

Every ``REFRESH_SECONDS`` a background task reads the capacity, the group weights and the
weights and groups of the tenants it knows from the read models (so ``PUT /capacity`` applies
in every process within about a second, without a restart), and upserts the process's snapshot
into the UNLOGGED table ``hostplane_gateway_load``, which ``GET /stats`` and
``GET /fairshare/live`` read (rows older than ``STALE_SECONDS`` are processes gone).
Nothing here queries the database on a request's path, except once for a tenant the process has
never seen when that request has to wait (its weight and group decide its place).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson
from psycopg_pool import AsyncConnectionPool

from application.gateway import GatewayCaller, GatewayRefusal
from interfaces.gateway.admission import CLIENT_GONE, Receive
from interfaces.gateway.fairqueue import FairQueue
from interfaces.settings import Settings
from projections.readmodels.capacity import SCHEMA as CAPACITY
from projections.readmodels.fairshare import SCHEMA as FAIRSHARE
from projections.readmodels.tenants import SCHEMA as TENANTS

log = logging.getLogger("hostplane.gateway")

REFRESH_SECONDS = 0.5
STALE_SECONDS = 5.0  # a process whose snapshot is older is gone (or stuck): not counted
PRUNE_SECONDS = 3600.0  # rows of processes gone this long are deleted
MINUTE_BUCKETS = 60  # admissions counted per second over the last minute
DEFAULT_WEIGHT = 100  # a tenant not yet in the read model (domain/tenant.py's default)
RETRY_AFTER = 1

LOAD_TABLE = "hostplane_gateway_load"
CREATE_LOAD = f"""
CREATE UNLOGGED TABLE IF NOT EXISTS {LOAD_TABLE} (
    process uuid PRIMARY KEY, hostname text NOT NULL, pid integer NOT NULL,
    in_flight integer NOT NULL, queued integer NOT NULL, max_in_flight integer NOT NULL,
    tenants jsonb NOT NULL, updated_at timestamptz NOT NULL)"""
LOCK_SCHEMA = "SELECT pg_advisory_xact_lock(hashtext('hostplane-schema'))"
UPSERT_LOAD = f"""
INSERT INTO {LOAD_TABLE} (process, hostname, pid, in_flight, queued, max_in_flight, tenants,
    updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (process) DO UPDATE SET in_flight = EXCLUDED.in_flight, queued = EXCLUDED.queued,
    max_in_flight = EXCLUDED.max_in_flight, tenants = EXCLUDED.tenants,
    updated_at = EXCLUDED.updated_at"""
DELETE_LOAD = f"DELETE FROM {LOAD_TABLE} WHERE process = %s"
PRUNE_LOAD = f"DELETE FROM {LOAD_TABLE} WHERE updated_at < now() - make_interval(secs => %s)"
SELECT_LIVE = f"""
SELECT process, hostname, pid, in_flight, queued, max_in_flight, tenants, updated_at
FROM {LOAD_TABLE} WHERE updated_at >= now() - make_interval(secs => %s)
ORDER BY hostname, pid, process"""
SELECT_CAPACITY = f"SELECT max_in_flight FROM {CAPACITY}.capacity"
SELECT_GROUPS = f"SELECT name, weight FROM {FAIRSHARE}.groups"
SELECT_TENANTS = f"SELECT id, weight, grp FROM {TENANTS}.tenants WHERE id = ANY(%s)"


def queue_full(length: int) -> GatewayRefusal:
    return GatewayRefusal(
        429,
        "queue_full",
        f"the gateway is at capacity and {length} requests already wait: retry later",
        "rate_limit_error",
        retry_after=RETRY_AFTER,
    )


def queue_timeout(seconds: float) -> GatewayRefusal:
    return GatewayRefusal(
        503,
        "queue_timeout",
        f"the gateway is at capacity: no place freed within {seconds:g} seconds",
        "service_unavailable",
        retry_after=RETRY_AFTER,
    )


def client_gone() -> GatewayRefusal:
    return GatewayRefusal(CLIENT_GONE, "client_closed", "the client went away while queued")


@dataclass(slots=True)
class _Load:
    """What one tenant has in this process: running, waiting, admitted per second."""

    in_flight: int = 0
    queued: int = 0
    admitted: list[int] = field(default_factory=lambda: [0] * MINUTE_BUCKETS)
    seconds: list[int] = field(default_factory=lambda: [0] * MINUTE_BUCKETS)

    def count(self, now: int) -> None:
        i = now % MINUTE_BUCKETS
        if self.seconds[i] != now:
            self.seconds[i], self.admitted[i] = now, 0
        self.admitted[i] += 1

    def last_minute(self, now: int) -> int:
        return sum(n for n, s in zip(self.admitted, self.seconds, strict=True) if now - s < 60)


def _group_key(tenant: UUID, group: str | None, groups: dict[str, int]) -> tuple[str, Any]:
    """A named group that exists, else the tenant alone (its own group, of its weight)."""
    return ("group", group) if group is not None and group in groups else ("tenant", tenant)


class _Place:
    """One request's place: waited for on entry, given back on exit. A class rather than an
    ``asynccontextmanager``, whose generator measured about twice the scheduler's own work."""

    __slots__ = ("load", "receive", "scheduler", "tenant")

    def __init__(self, scheduler: FairShareScheduler, tenant: UUID, receive: Receive | None):
        self.scheduler, self.tenant, self.receive = scheduler, tenant, receive
        self.load: _Load | None = None

    async def __aenter__(self) -> None:
        self.load = await self.scheduler._enter(self.tenant, self.receive)

    async def __aexit__(self, *exc: object) -> None:
        assert self.load is not None
        self.scheduler._leave(self.load)


class FairShareScheduler:
    """The ``Slots`` of ``admission.py``: one per serving process."""

    def __init__(
        self,
        pool: Callable[[], AsyncConnectionPool[Any]],
        default_max_in_flight: int,
        max_queue: int,
        max_wait: float,
    ) -> None:
        self._pool = pool
        self.default_max_in_flight = default_max_in_flight
        self.max_in_flight = default_max_in_flight
        self.max_queue = max_queue
        self.max_wait = max_wait
        self.in_flight = 0
        self.queue = FairQueue()
        self.loads: dict[UUID, _Load] = {}
        self.weights: dict[UUID, tuple[int, str | None]] = {}  # tenant: (weight, group name)
        self.groups: dict[str, int] = {}
        self.process = uuid.uuid4()
        self.hostname = socket.gethostname()
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._created = False  # the load table, by this process

    @classmethod
    def of(
        cls, settings: Settings, pool: Callable[[], AsyncConnectionPool[Any]]
    ) -> FairShareScheduler:
        return cls(
            pool,
            settings.max_in_flight,
            settings.queue_max_length,
            settings.queue_max_wait_seconds,
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        with contextlib.suppress(Exception):  # the database may be away: the loop retries
            await self.refresh()
        self._task = asyncio.create_task(self._run(), name="fair-share refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            async with self._pool().connection() as conn:
                await conn.execute(DELETE_LOAD, (self.process,))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception as e:  # noqa: BLE001 - the database went away: keep what we have
                log.warning("fair-share refresh failed: %s", type(e).__name__)

    async def refresh(self) -> None:
        """Read capacity and weights; publish this process's snapshot; forget idle tenants."""
        now = int(time.time())
        for tenant in [t for t, load in self.loads.items() if self._idle(load, now)]:
            del self.loads[tenant]
            self.weights.pop(tenant, None)
            self.queue.forget(tenant)
        known = list(self.loads)
        async with self._pool().connection() as conn:
            if not self._created:
                async with conn.transaction():
                    await conn.execute(LOCK_SCHEMA)
                    await conn.execute(CREATE_LOAD)
                self._created = True
            row = await (await conn.execute(SELECT_CAPACITY)).fetchone()
            groups = await (await conn.execute(SELECT_GROUPS)).fetchall()
            tenants = await (await conn.execute(SELECT_TENANTS, (known,))).fetchall()
            self.groups = {g["name"]: g["weight"] for g in groups}
            for t in tenants:
                self._place(t["id"], t["weight"], t["grp"])
            self.set_max_in_flight(
                self.default_max_in_flight if row is None else row["max_in_flight"]
            )
            await conn.execute(
                UPSERT_LOAD,
                (
                    self.process,
                    self.hostname,
                    os.getpid(),
                    self.in_flight,
                    self.queue.length,
                    self.max_in_flight,
                    orjson.dumps(self.snapshot(now)).decode(),
                ),
            )
            if time.monotonic() - self._pruned_at > 60:
                self._pruned_at = time.monotonic()
                await conn.execute(PRUNE_LOAD, (PRUNE_SECONDS,))

    @staticmethod
    def _idle(load: _Load, now: int) -> bool:
        return not load.in_flight and not load.queued and not load.last_minute(now)

    def set_max_in_flight(self, value: int) -> None:
        """A new cap: raised, waiting requests start at once; lowered, running ones finish."""
        self.max_in_flight = value
        self._dispatch()

    def _place(self, tenant: UUID, weight: int, group: str | None) -> None:
        self.weights[tenant] = (weight, group)
        key = _group_key(tenant, group, self.groups)
        group_weight = self.groups[group] if key[0] == "group" else weight
        self.queue.place(tenant, key, weight, group_weight)

    async def _load_tenant(self, tenant: UUID) -> None:
        """Read a tenant's weight and group before it waits (the default if that fails)."""
        rows: list[dict[str, Any]] = []
        try:
            async with self._pool().connection() as conn:
                rows = await (await conn.execute(SELECT_TENANTS, ([tenant],))).fetchall()
        except Exception as e:  # noqa: BLE001 - it waits at the default weight meanwhile
            log.warning("reading a tenant's fair-share weight failed: %s", type(e).__name__)
        if tenant not in self.weights:  # not read meanwhile by another request
            weight, group = (rows[0]["weight"], rows[0]["grp"]) if rows else (DEFAULT_WEIGHT, None)
            self._place(tenant, weight, group)

    # -- places ---------------------------------------------------------------------------

    def slot(self, caller: GatewayCaller, receive: Receive | None = None) -> _Place:
        return _Place(self, caller.tenant_id, receive)

    def _load(self, tenant: UUID) -> _Load:
        load = self.loads.get(tenant)
        if load is None:
            load = self.loads[tenant] = _Load()
        return load

    def _admit(self, load: _Load) -> None:
        self.in_flight += 1
        load.in_flight += 1
        load.count(int(time.time()))

    def _leave(self, load: _Load) -> None:
        self.in_flight -= 1
        load.in_flight -= 1
        if self.queue.length:
            self._dispatch()

    def _dispatch(self) -> None:
        while self.in_flight < self.max_in_flight:
            popped = self.queue.pop()
            if popped is None:
                return
            tenant, future = popped
            load = self._load(tenant)
            load.queued -= 1
            if future.done():  # expired, left or cancelled, not yet taken out: skip it
                continue
            self._admit(load)
            future.set_result(None)

    def _free(self) -> bool:
        return not self.queue.length and self.in_flight < self.max_in_flight

    async def _enter(self, tenant: UUID, receive: Receive | None) -> _Load:
        load = self._load(tenant)  # known from now on: the refresh reads its weight
        if self._free():
            if not self.queue.charge(tenant):  # alone for now: its weight is read next refresh
                self.queue.place(tenant, ("tenant", tenant), DEFAULT_WEIGHT, DEFAULT_WEIGHT)
                self.queue.charge(tenant)
            self._admit(load)
            return load
        if self.queue.length >= self.max_queue:
            raise queue_full(self.queue.length)
        if tenant not in self.weights:  # its weight decides its place: read it first
            await self._load_tenant(tenant)
            load = self._load(tenant)  # a refresh meanwhile may have found it idle
            if self._free():
                self.queue.charge(tenant)
                self._admit(load)
                return load
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.queue.push(tenant, future)
        load.queued += 1
        # The future ends admitted (a result), expired or left (an exception); plain awaits and
        # a timer: asyncio.wait measured about twice the cost of the whole queueing.
        timer = loop.call_later(self.max_wait, _end, future, _Expired)
        watch = None if receive is None else loop.create_task(_watch(receive, future))
        try:
            await future
        except BaseException as e:  # expired, left, or cancelled: leave the queue (or the place)
            self._abandon(tenant, load, future)
            if isinstance(e, _Left):
                raise client_gone() from None
            if isinstance(e, _Expired):
                raise queue_timeout(self.max_wait) from None
            raise
        finally:
            timer.cancel()
            if watch is not None:
                watch.cancel()
        return load

    def _abandon(self, tenant: UUID, load: _Load, future: asyncio.Future[None]) -> None:
        if future.done() and not future.cancelled() and future.exception() is None:
            self._leave(load)  # admitted just as it gave up
            return
        future.cancel()
        if self.queue.remove(tenant, future):
            load.queued -= 1

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(self, now: int | None = None) -> dict[str, Any]:
        """Per tenant: weight, group (and its weight), in flight, queued, admitted last minute."""
        now = int(time.time()) if now is None else now
        out: dict[str, Any] = {}
        for tenant, load in self.loads.items():
            weight, group = self.weights.get(tenant, (DEFAULT_WEIGHT, None))
            named = group is not None and group in self.groups
            out[str(tenant)] = {
                "weight": weight,
                "group": group if named else None,
                "group_weight": self.groups[group] if named and group else weight,
                "in_flight": load.in_flight,
                "queued": load.queued,
                "admitted_last_minute": load.last_minute(now),
            }
        return out


class _Expired(Exception):
    """Waited ``max_wait`` without a place."""


class _Left(Exception):
    """The client went away while it waited."""


def _end(future: asyncio.Future[None], why: type[Exception]) -> None:
    if not future.done():
        future.set_exception(why())


async def _watch(receive: Receive, future: asyncio.Future[None]) -> None:
    """Ends the wait once the client has gone (the body was read: nothing else can come)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    _end(future, _Left)
