"""``LoopWriter``: one connection of its own, driven from the event loop through libpq's
asynchronous calls, that runs one prepared statement.

For the gateway's usage writes (``interfaces.gateway.meter``). Through a thread, each write cost
two hops between the event loop and the thread (~0.4 ms of CPU on a 2-core VM, in task
switching); through psycopg's async cursor, its query machinery cost about as much (session
13). Here the statement goes out with ``send_query_prepared`` and its result is read when the
socket is readable (``loop.add_reader``), with no thread and no per-query Python beyond that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import pq

from interfaces.db.eventstore import check


class LoopWriter:
    """Runs ``statement`` (prepared as ``name`` on its connection, with parameters in
    ``formats``) from the event loop it is first used on.

    One statement at a time (the caller serialises its writes). A failure raises as psycopg
    would (``check``); then the connection is closed, and the next write opens another: after a
    failure the caller cannot tell whether the statement committed, so it must be safe to run
    again (the usage writes' request ids make it so). ``timeout`` bounds a write's wait for the
    server, a lost network say (the server's own timeouts bound its work).
    """

    def __init__(
        self,
        conninfo: str,
        name: bytes,
        statement: bytes,
        formats: Sequence[int],
        connect_kwargs: dict[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.conninfo = conninfo
        self.name = name
        self.statement = statement
        self.formats = formats
        self.connect_kwargs = connect_kwargs or {}
        self.timeout = timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def run(self, params: Sequence[bytes | None]) -> list[int]:
        """Run the statement; the first column of its rows, as integers."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._run(params)
        except BaseException:
            await self.close()  # its state is unknown: the next write opens another
            raise

    async def _run(self, params: Sequence[bytes | None]) -> list[int]:
        pgconn = await self._connection()
        pgconn.send_query_prepared(self.name, params, self.formats)
        result = await self._result(pgconn)
        return [int(result.get_value(row, 0) or 0) for row in range(result.ntuples)]

    async def _connection(self) -> pq.abc.PGconn:
        if self._conn is not None and not self._conn.closed:
            return self._conn.pgconn
        kwargs = {**self.connect_kwargs, "autocommit": True}
        conn = await psycopg.AsyncConnection.connect(self.conninfo, **kwargs)
        self._conn = conn
        pgconn = conn.pgconn
        pgconn.nonblocking = 1  # sends never block the loop: ``flush`` says what is left
        pgconn.send_prepare(self.name, self.statement)
        await self._result(pgconn)
        return pgconn

    async def _result(self, pgconn: pq.abc.PGconn) -> pq.abc.PGresult:
        """Send what is queued, then wait for the statement's result (and the end of its
        results); raises for a failed one."""
        loop = asyncio.get_running_loop()
        fd = pgconn.socket
        while pgconn.flush() != 0:  # a large batch: wait until the socket takes the rest
            writable = loop.create_future()
            loop.add_writer(fd, writable.set_result, None)
            try:
                await writable
            finally:
                loop.remove_writer(fd)
        pgconn.consume_input()
        if pgconn.is_busy():
            ready = loop.create_future()

            def readable() -> None:
                try:
                    pgconn.consume_input()
                except Exception as exc:  # noqa: BLE001 - the connection failed: said to the writer
                    if not ready.done():
                        ready.set_exception(exc)
                    return
                if not pgconn.is_busy() and not ready.done():
                    ready.set_result(None)

            loop.add_reader(fd, readable)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
        first = pgconn.get_result()
        while pgconn.get_result() is not None:  # the end of this statement's results
            pass
        if first is None:
            raise psycopg.OperationalError("the server sent no result")
        check(pgconn, first)
        return first

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
