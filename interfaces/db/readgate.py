"""Read-your-writes: a read of the read models waits (bounded) for the writes before it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any, Final

from psycopg import AsyncCursor, Cursor
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from application.store import EventStore
from projections.engine.runner import ProjectionRunner

log = logging.getLogger(__name__)

# The log's head, set by a request's authentication when every read model had reached it then.
request_head: ContextVar[int | None] = ContextVar("request_head", default=None)


class _Ask:
    """What to wait for is not known here: the read models' positions must be asked."""


ASK: Final = _Ask()


class ReadGate:
    """Cursors on read models that already reflect every write committed before the read.

    ``reading`` (in a thread) and ``reading_async`` (on the event loop) differ only in their
    I/O: what to wait for is decided once, in ``_known_target`` and ``_after_wait``. A read
    model stalled by an event it cannot apply raises ``ReadModelStalledError`` at once (HTTP
    503); only a read that finds the read models behind pays for that check.
    """

    def __init__(
        self,
        pool: ConnectionPool[Any],
        runner: ProjectionRunner,
        store: EventStore,
        timeout: float,
    ) -> None:
        self.pool = pool
        self.runner = runner
        self.store = store
        self.timeout = timeout

    def _known_target(self) -> int | None | _Ask:
        """The position to wait for, as far as it is known without a query.

        ``None`` when the request's authentication saw every read model at the log's head and
        this process wrote nothing since (usually: no query, no wait); the highest position
        this process wrote when it wrote since, the only writes that can be missing then
        (known here without asking the database); ``ASK`` when authentication saw them behind
        (or there was none): then one query on the read's own connection tells.
        """
        head = request_head.get()
        if head is None:
            return ASK
        written = self.store.last_written
        return None if written <= head else written

    def _after_wait(self, names: Sequence[str], target: int, reached: bool) -> None:
        if not reached:  # the read goes on: a stale answer beats none
            log.warning("read models %s lag behind position %s", names, target)

    @contextmanager
    def reading(self, *names: str) -> Iterator[Cursor[Any]]:
        """A cursor on read models that reflect every write committed before this call."""
        target = self._known_target()
        if target is ASK:
            with self.pool.connection() as conn, conn.cursor() as curs:
                # Usually the read models are at the head already: one query says so, and the
                # read goes on on the same connection.
                target = self.runner.head_if_behind(curs, names)
                if target is None:
                    yield curs
                    return
        if target is not None:
            assert isinstance(target, int)
            reached = self.runner.wait_for(names, target, self.timeout, fail_if_stalled=True)
            self._after_wait(names, target, reached)
        with self.pool.connection() as conn, conn.cursor() as curs:
            yield curs

    @asynccontextmanager
    async def reading_async(
        self, apool: AsyncConnectionPool[Any], *names: str
    ) -> AsyncIterator[AsyncCursor[Any]]:
        """``reading`` for the event loop: the query, and any wait, on ``apool`` without a
        thread (the wait holds no connection)."""
        target = self._known_target()
        if target is ASK:
            async with apool.connection() as conn, conn.cursor() as curs:
                target = await self.runner.head_if_behind_async(curs, names)
                if target is None:
                    yield curs
                    return
        if target is not None:
            assert isinstance(target, int)
            reached = await self.runner.wait_for_async(
                apool, names, target, self.timeout, fail_if_stalled=True
            )
            self._after_wait(names, target, reached)
        async with apool.connection() as conn, conn.cursor() as curs:
            yield curs
