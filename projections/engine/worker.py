"""The runner's live side: a worker thread woken by the event store, and readers waiting for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import AsyncCursor, Cursor
from psycopg.rows import dict_row

from projections.engine.base import Projection, live_schema
from projections.engine.errors import ProjectionFailedError, Stall
from projections.engine.source import EventSource
from projections.engine.stalls import check_not_stalled, with_stalls

log = logging.getLogger("projections.engine.runner")

POLL_SECONDS = 0.02  # how often a read-your-writes wait asks the database
# At most one catch-up this often while writes keep coming. Each catch-up costs a transaction
# of ~8 statements whatever it applies: at one gateway client (a usage write every ~3 ms), one
# per write cost ~1 ms of CPU per request in the projections process and its database
# connection, on a machine whose two cores the requests need. At 500 gateway requests/s, one
# per 10 ms still cost ~0.47 ms of the projections process's CPU and ~0.8 ms of the database's
# per request; one per 50 ms, ~0.23 and ~0.55 ms. Usage reaches the read models at most this
# much later under a stream (budgets stay exact: the gateway counts what it settled until the
# usage read model has).
CATCH_UP_EVERY = 0.05
# NOTIFYed when a worker commits a batch, for processes that wait on read models they don't run.
POSITIONS_CHANNEL = "hostplane_positions"

Target = tuple[Projection, str]  # a projection and the schema it writes into


class Worker:
    """Background catch-up, status and read-your-writes waits (mixed into ``ProjectionRunner``)."""

    pool: Any
    source: EventSource
    projections: dict[str, Projection]
    conninfo: str
    last_error: BaseException | None
    _wake: threading.Event
    _advanced: threading.Condition
    _stop: threading.Event  # stops the worker's threads
    _unfollow: threading.Event  # stops the follower's
    _threads: list[threading.Thread]
    _working: list[threading.Thread]  # the worker's threads, among ``_threads``
    _committed: dict[str, int]
    _stalled: dict[str, int]
    _loop_events: dict[asyncio.AbstractEventLoop, asyncio.Event]
    _waiters: int  # read-your-writes waits running now
    _batch_began: float  # when the last batch began (``time.monotonic()``)
    _behind: bool  # the last batch stopped short of the log's head (a backlog)
    _hurry: threading.Event  # a write to apply at once came (or the worker stops): no pause
    _waiters_lock: threading.Lock

    def catch_up_many(
        self, targets: Sequence[Target], pace: Callable[[], None] | None = None
    ) -> dict[str, int]:
        raise NotImplementedError

    def apply_alone(self, name: str) -> Stall | None:
        raise NotImplementedError

    # -- status and waiting ---------------------------------------------------------------

    def position(self, name: str) -> int:
        return self.positions([name])[name]

    def max_notification_id(self) -> int:
        with self.pool.connection() as conn:
            return conn.execute(self.source.max_id_sql()).fetchone()["m"] or 0

    def log_size(self) -> tuple[int, int]:
        """The events in the log and its head, in one statement (O(events): for operators)."""
        with self.pool.connection() as conn:
            row = conn.execute(self.source.log_size_sql()).fetchone()
            return row["count"], row["head"] or 0

    def status(self) -> list[dict[str, Any]]:
        """Each projection's position, the log's head and the lag, in one query; and, for a
        read model stalled by an event it cannot apply, that event (``projections.engine.stalls``)."""
        out = []
        for name, r in self._positions(self.projections).items():
            head = r["head"] or 0
            stalled = None
            if r["stalled_at"] is not None:
                stalled = {
                    "position": r["stalled_at"],
                    "topic": r["stalled_topic"],
                    "error": r["stalled_error"],
                    "since": r["stalled_since"],
                }
            out.append(
                {
                    "name": name,
                    "position": r["position"],
                    "head": head,
                    "lag": head - r["position"],
                    "stalled": stalled,
                }
            )
        return out

    def positions(self, names: Sequence[str]) -> dict[str, int]:
        """The live positions of several projections, in one query."""
        return {name: r["position"] for name, r in self._positions(names).items()}

    def _positions(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Each projection's ``_positions_sql`` row (its position, the head, any stall)."""
        names = list(names)
        with self.pool.connection() as conn:
            rows = {r["schema"]: r for r in conn.execute(self._positions_sql(names)).fetchall()}
        return {name: rows[live_schema(name)] for name in names}

    def _positions_sql(self, names: Iterable[str]) -> str:
        """``EventSource.positions_sql`` of these projections' live schemas, with their stalls."""
        return with_stalls(self.source.positions_sql([live_schema(n) for n in names]))

    def head_if_behind(self, curs: Cursor[Any], names: Sequence[str]) -> int | None:
        """The log's head if any of these read models is behind it, else ``None``; one query.

        ``ReadModelStalledError`` if one is stalled: waiting for it would be in vain.
        """
        if not names:
            return None
        return head_if_behind(curs.execute(self._positions_sql(names)).fetchall())

    async def head_if_behind_async(
        self, curs: AsyncCursor[Any], names: Sequence[str]
    ) -> int | None:
        """``head_if_behind`` on the event loop."""
        if not names:
            return None
        await curs.execute(self._positions_sql(names))
        return head_if_behind(await curs.fetchall())

    def wait_for(
        self, names: Sequence[str], target: int, timeout: float, fail_if_stalled: bool = False
    ) -> bool:
        """Wait (bounded) until the projections have processed the log up to ``target``.

        A batch committed by this process's worker wakes the waiters at once; a short poll
        covers workers in other processes. With ``fail_if_stalled``, a read model stalled by an
        event it cannot apply ends the wait at once with ``ReadModelStalledError``.
        """
        deadline = time.monotonic() + timeout
        schemas = [live_schema(n) for n in names]

        def done_here() -> bool:
            return all(self._committed.get(s, -1) >= target for s in schemas)

        dismissed: set[tuple[str, int]] = set()

        def stalled_here() -> bool:
            return fail_if_stalled and self._stalled_here(schemas, target, dismissed)

        # The database is asked at most every POLL_SECONDS (for workers in other processes);
        # with a worker in this process, only after it had a first chance: when it commits,
        # every waiter wakes, and asking then would cost a query per waiter per batch.
        now = time.monotonic()
        # Without a worker here, the follower reads positions only while a wait runs: the
        # first look is the database's.
        next_poll = now + POLL_SECONDS if self._working else now
        with self._waiting():
            while True:
                if done_here():
                    return True
                now = time.monotonic()
                if now >= next_poll or stalled_here():  # the database confirms a stall found here
                    rows = list(self._positions(names).values())
                    if self._reached(rows, target, fail_if_stalled, dismissed):
                        return True
                    next_poll = now + POLL_SECONDS
                remaining = deadline - now
                if remaining <= 0:
                    return False
                self._wake.set()
                with self._advanced:
                    if done_here():  # under the lock: a commit can't slip in before the wait
                        return True
                    if stalled_here():
                        continue
                    self._advanced.wait(timeout=min(remaining, next_poll - now))

    async def wait_for_async(
        self,
        apool: Any,
        names: Sequence[str],
        target: int,
        timeout: float,
        fail_if_stalled: bool = False,
    ) -> bool:
        """``wait_for`` on the event loop, without a thread: a batch committed by this process's
        worker (or seen by its follower) wakes the waiting tasks; ``apool`` (an async pool)
        serves the poll for workers elsewhere."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        schemas = [live_schema(n) for n in names]
        # Nothing in this process will wake the wait, or only a follower that reads positions
        # while a wait runs: the first look is the database's.
        poll = not self._working
        dismissed: set[tuple[str, int]] = set()
        with self._waiting():
            while True:
                advanced = self._loop_event(loop)  # taken before the check: no wake-up is missed
                if all(self._committed.get(s, -1) >= target for s in schemas):
                    return True
                if poll or (fail_if_stalled and self._stalled_here(schemas, target, dismissed)):
                    async with apool.connection() as conn, conn.cursor() as curs:
                        await curs.execute(self._positions_sql(names))
                        rows = await curs.fetchall()
                    if self._reached(rows, target, fail_if_stalled, dismissed):
                        return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                self._wake.set()
                try:
                    await asyncio.wait_for(advanced.wait(), min(remaining, POLL_SECONDS))
                    poll = False
                except TimeoutError:
                    poll = True

    def _stalled_here(
        self, schemas: Sequence[str], target: int, dismissed: set[tuple[str, int]]
    ) -> bool:
        """Whether this process's worker found one of these schemas stalled at or before
        ``target``, and no poll of the database has shown otherwise since (``dismissed``: a
        rebuild in another process, say). The database has the last word: a wait that sees
        this asks it at once, instead of at its next poll."""
        for schema in schemas:
            position = self._stalled.get(schema)
            if position is not None and position <= target and (schema, position) not in dismissed:
                return True
        return False

    def _reached(
        self,
        rows: Sequence[dict[str, Any]],
        target: int,
        fail_if_stalled: bool,
        dismissed: set[tuple[str, int]],
    ) -> bool:
        """Of a wait's poll (``_positions_sql`` rows): whether every position reached
        ``target``; with ``fail_if_stalled``, ``ReadModelStalledError`` if one is stalled
        before it, and this process's findings the database no longer has are ``dismissed``."""
        if fail_if_stalled:
            check_not_stalled(rows, target)
            for r in rows:
                position = self._stalled.get(r["schema"])
                if position is not None and r["stalled_at"] is None:
                    dismissed.add((r["schema"], position))
        return all(r["position"] >= target for r in rows)

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[None]:
        """Counts a read-your-writes wait while it runs (a follower reads positions only then:
        otherwise each batch the worker commits elsewhere cost this process a query). A
        worker of this process pausing between batches (``_pace``) goes on at once."""
        with self._waiters_lock:
            self._waiters += 1
        self._hurry.set()
        try:
            yield
        finally:
            with self._waiters_lock:
                self._waiters -= 1

    def _loop_event(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """The event the next advance sets for tasks of ``loop`` (called on that loop)."""
        event = self._loop_events.get(loop)
        if event is None or event.is_set():
            event = self._loop_events[loop] = asyncio.Event()
        return event

    def _advance(self) -> None:
        """Wake every wait, in threads and on event loops, after ``_committed`` moved."""
        with self._advanced:
            self._advanced.notify_all()
        for loop, event in list(self._loop_events.items()):
            if event.is_set():
                continue
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                self._loop_events.pop(loop, None)

    # -- background threads ---------------------------------------------------------------

    def start(self) -> None:
        """Run the worker in this process (the leader's); see ``stand_by``."""
        for thread in self._working:  # a worker told to stand by may still finish a batch
            thread.join(timeout=30)
        self._stop.clear()
        self._working = []
        targets = [self._listen, self._work]
        if self.source.changes_channel is not None:
            targets.append(self._listen_changes)
        for target in targets:
            thread = threading.Thread(
                target=target, name=f"projections-{target.__name__}", daemon=True
            )
            thread.start()
            self._working.append(thread)
            self._threads.append(thread)
        self._wake.set()

    def stand_by(self) -> None:
        """Stop this process's worker (another node's runs now); a follower goes on."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        for thread in self._working:
            thread.join(timeout=5)
            if thread in self._threads:
                self._threads.remove(thread)

    def stop(self) -> None:
        self._stop.set()
        self._hurry.set()
        self._unfollow.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def follow(self) -> None:
        """Wake read-your-writes waits when a worker in another process commits (API processes
        of ``hostplane serve --workers``, which run no worker of their own, and the first
        process of a node on standby)."""
        self._unfollow.clear()
        thread = threading.Thread(target=self._follow, name="projections-follow", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _follow(self) -> None:
        names = list(self.projections)

        def notified(conn: psycopg.Connection[Any]) -> None:
            if not any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                return
            if self._working and not self._stop.is_set():
                return  # this process's worker committed it, and woke the waits
            if not self._waiters:
                return  # no wait runs: a wait's first look is the database's
            for name, position in self.positions(names).items():
                schema = live_schema(name)
                if position > self._committed.get(schema, -1):
                    self._committed[schema] = position
            self._advance()

        self._listening(POSITIONS_CHANNEL, notified, self._unfollow, "follower")

    def _listen(self) -> None:
        """Wake the worker whenever the event store NOTIFYs a write (from any process).

        With a changes channel (``EventSource.changes_channel``), ``_listen_changes`` wakes it
        at once for the writes applied at once; this channel's notifications are then mostly
        usage batches (hundreds a second under traffic), which the worker takes once per
        ``CATCH_UP_EVERY`` anyway (``_pace``): after a wake, the ones that follow are read
        together ``CATCH_UP_EVERY`` later, not a wake-up of this thread (and of its database
        session) for each.
        """
        paced = self.source.changes_channel is not None

        def notified(conn: psycopg.Connection[Any]) -> None:
            notices = list(conn.notifies(timeout=0.5, stop_after=1))
            if not notices:
                return
            if paced:
                for _ in conn.notifies(timeout=0):  # all that came meanwhile: read together
                    pass
                self._wake.set()
                self._stop.wait(CATCH_UP_EVERY)
                return
            if any(self.source.at_once(n.payload) for n in notices):
                self._hurry.set()
            self._wake.set()

        self._listening(self.source.channel, notified, self._stop, "listener")

    def _listen_changes(self) -> None:
        """Wake the worker at once, without its pause, for a write it applies at once (every
        write but the usage batches is notified on the changes channel)."""
        assert self.source.changes_channel is not None

        def notified(conn: psycopg.Connection[Any]) -> None:
            notices = list(conn.notifies(timeout=0.5, stop_after=1))
            if any(self.source.at_once(n.payload) for n in notices):
                self._hurry.set()
            if notices:
                self._wake.set()

        self._listening(self.source.changes_channel, notified, self._stop, "listener")

    def _listening(
        self,
        channel: str,
        notified: Callable[[psycopg.Connection[Any]], None],
        stop: threading.Event,
        who: str,
    ) -> None:
        """LISTEN on ``channel`` and call ``notified`` (which waits for notifications, briefly)
        until ``stop`` is set; reconnect if the database goes away (meanwhile the worker and
        the waits still poll)."""
        while not stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, row_factory=dict_row) as conn:
                    conn.execute(f'LISTEN "{channel}"')
                    while not stop.is_set():
                        notified(conn)
            except Exception as e:  # the database went away: retry
                log.warning("projection %s reconnecting: %s", who, type(e).__name__)
                stop.wait(1.0)

    def _work(self) -> None:
        retry_at: dict[str, float] = {}  # projections whose last batch failed
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._pace()
            self._wake.clear()
            if self._stop.is_set():
                return
            for name, when in list(retry_at.items()):
                if when <= time.monotonic():
                    del retry_at[name]
            failed_now = self._catch_up_healthy(set(retry_at))
            for name in failed_now:
                retry_at[name] = time.monotonic() + 1.0
            if not retry_at:
                self.last_error = None

    def _pace(self) -> None:
        """Under a stream of writes, one batch per ``CATCH_UP_EVERY`` takes all that came
        meanwhile. Applied at once: a write after a quiet moment, a backlog (a batch that did
        not reach the log's head), a write someone reads right after (``EventSource.at_once``:
        a key, say, not a usage batch) and whatever a read-your-writes wait of this process
        waits for."""
        pause = self._batch_began + CATCH_UP_EVERY - time.monotonic()
        if pause > 0 and not self._behind and not self._waiters:
            self._hurry.wait(pause)

    def _catch_up_healthy(self, skip: set[str]) -> set[str]:
        """Catch up every projection not in ``skip`` together; returns those that failed.

        A failing projection's batch rolls back (with the others' part of it), then the others
        go on without it: nothing half-applied, and one broken read model holds back no other.
        """
        # A stalled read model is retried alone, event by event: until it gets past its event,
        # it would fail every batch it shared with the others.
        failed = {n for n in self.projections if n not in skip and self._still_stalled(n)}
        while True:
            targets = [
                (p, p.schema()) for n, p in self.projections.items() if n not in skip | failed
            ]
            if not targets:
                return failed
            try:
                self.catch_up_many(targets, pace=self._pace)
                return failed
            except ProjectionFailedError as e:
                self.last_error = e.__cause__
                if self._retry_alone(e.name, e.__cause__):
                    failed.add(e.name)
            except Exception as e:  # the database went away: retry everything after a pause
                self.last_error = e
                log.exception("projections: batch failed; will retry")
                return failed | {p.name for p, _ in targets}

    def _still_stalled(self, name: str) -> bool:
        """Whether a read model this worker found stalled still is (it is retried alone)."""
        return live_schema(name) in self._stalled and self._retry_alone(name)

    def _retry_alone(self, name: str, cause: BaseException | None = None) -> bool:
        """Apply a read model's events alone, one by one, after its batch failed (``cause``)
        or while it is stalled: the events before the first it cannot apply are kept, and
        that one is reported. Whether it still fails."""
        known = self._stalled.get(live_schema(name))
        try:
            stall = self.apply_alone(name)
        except Exception as e:  # the database went away: retry later
            self.last_error = e
            log.error("projection %s: batch failed; will retry", name, exc_info=cause or e)
            return True
        if stall is None:
            if cause is not None:
                log.warning(
                    "projection %s: a batch failed, its events one by one did not",
                    name,
                    exc_info=cause,
                )
            elif known is not None:
                log.info("read model %s got past event %s: it is no longer stalled", name, known)
            return False
        self.last_error = stall.cause
        if stall.position != known:  # reported once; retried every second, quietly
            log.error(
                "read model %s %s; it stays at position %s and reads that need it answer 503"
                " until it can (fix the cause, then `hostplane projections rebuild %s`)",
                name,
                stall.describe(),
                stall.position - 1,
                name,
                exc_info=stall.cause,
            )
        return True


def head_if_behind(rows: Sequence[dict[str, Any]]) -> int | None:
    """Of ``Worker._positions_sql``'s rows: the head if any position is behind it.

    ``ReadModelStalledError`` if one of them is stalled: it won't reach the head.
    """
    head = rows[0]["head"] or 0
    if all(r["position"] >= head for r in rows):
        return None
    check_not_stalled(rows, head)
    return head
