"""Connection pools that answer a database outage within a bound, and recover without errors.

psycopg_pool waits for a connection as long as its ``timeout`` (30 s by default) and hands out
idle connections unchecked. So, with PostgreSQL down, a request waited; once it was back, each
connection that had been idle across the restart failed its next query ("terminating
connection due to administrator command"). These pools give up after a short timeout with
``DatabaseUnavailableError`` (answered 503), and drop an idle connection that the server has
closed before handing it out.
"""

from __future__ import annotations

import math
import select
from time import monotonic
from typing import Any

import eventsourcing.persistence
import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout


class DatabaseUnavailableError(Exception):
    """No connection to the database within the bound (it is down, restarting or saturated)."""


# The database could not serve: down, restarting, saturated, or too slow (a statement timeout,
# psycopg.errors.QueryCanceled, is an OperationalError); the eventsourcing library wraps
# psycopg's errors in its own. The API and the gateway answer these 503 ``database_unavailable``
# with Retry-After and a fixed message (a driver's own names hosts, sockets and SQL), never 500.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DatabaseUnavailableError,
    psycopg.OperationalError,  # PoolTimeout, AdminShutdown, a connection lost mid-query
    psycopg.InterfaceError,  # a connection already closed
    eventsourcing.persistence.OperationalError,
    eventsourcing.persistence.InterfaceError,
)
DATABASE_RETRY_AFTER = 2  # seconds
DATABASE_UNAVAILABLE_MESSAGE = "the database is unavailable or too busy; retry shortly"


def connection_settings(connect_timeout: float, statement_timeout: float) -> dict[str, Any]:
    """libpq settings for a pool's connections: how long one connection attempt may take,
    and the statement timeout (``0``: none) that bounds each statement a request runs."""
    settings: dict[str, Any] = {"connect_timeout": max(2, math.ceil(connect_timeout))}
    if statement_timeout > 0:
        settings["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    return settings


def with_options(kwargs: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` and ``extra`` together, their ``options`` (``-c name=value ...``) joined."""
    options = " ".join(o for o in (kwargs.get("options"), extra.get("options")) if o)
    merged = {**kwargs, **extra}
    if options:
        merged["options"] = options
    return merged


def hung_up(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server has closed this idle connection (it restarted, say).

    An idle connection in a pool is sent nothing, unless the server is ending it: a message
    waiting on its socket (one poll, no round trip) says so. Only then is the server asked, so
    that a notice that might be waiting costs no healthy connection. A round trip on every
    checkout (``ConnectionPool.check_connection``) would cost ~80 µs per query here.
    """
    return conn.closed or (_readable(conn) and not _answers(conn))


async def hung_up_async(conn: psycopg.AsyncConnection[Any]) -> bool:
    """``hung_up`` for an async connection."""
    if conn.closed:
        return True
    if not _readable(conn):
        return False
    try:
        await conn.execute("")
    except psycopg.Error:
        return True
    return False


def _readable(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    poller = select.poll()  # not select(): a busy process has file descriptors past 1024
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _answers(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("")
    except psycopg.Error:
        return False
    return True


def _unavailable(waited: float) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"no database connection within {waited:g} s")


class CheckedPool(ConnectionPool[Any]):
    """A ``ConnectionPool`` whose ``getconn`` skips closed connections and fails fast."""

    def getconn(self, timeout: float | None = None) -> Any:
        bound = self.timeout if timeout is None else timeout
        deadline = monotonic() + bound
        while True:
            try:
                conn = super().getconn(max(0.0, deadline - monotonic()))
            except PoolTimeout as e:
                raise _unavailable(bound) from e
            if not hung_up(conn):
                return conn
            conn.close()  # the pool discards it and opens another
            self.putconn(conn)


class AsyncCheckedPool(AsyncConnectionPool[Any]):
    """``CheckedPool`` for the event loop."""

    async def getconn(self, timeout: float | None = None) -> Any:
        bound = self.timeout if timeout is None else timeout
        deadline = monotonic() + bound
        while True:
            try:
                conn = await super().getconn(max(0.0, deadline - monotonic()))
            except PoolTimeout as e:
                raise _unavailable(bound) from e
            if not await hung_up_async(conn):
                return conn
            await conn.close()
            await self.putconn(conn)
