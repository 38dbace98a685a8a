"""The latest stored version of every API key and user, kept fresh by the event stream, so that
the gateway authenticates a request without a database round trip.

Before, each gateway request read its key's version (``max(originator_version)``) from the
event store: one round trip per request, the largest single cost of the gateway's own request
path in a profile (~16% of its event loop's samples at 32 clients). Now this process follows
the store's writes: the store NOTIFYs its changes channel on every write but the usage batches
(``HostplaneRecorder.changes_channel``: those come hundreds a second and hold no key); one
thread here then reads the new key and user events' ids and versions (never their state) and
keeps the latest version of each key and user. A key or user loaded while the stream was
followed is reused as long as no later version was seen.

How soon a change is seen: a change made through this process (the management API of the same
``hostplane serve`` process, the console) is noted when its write commits, before the command
answers (``EventStore.on_commit``): the next request is refused. A change made through another
process is seen once its notification arrives and its events are read: a few milliseconds, at
most ``POLL_SECONDS`` if a notification were lost. Until the stream is followed (start-up, or
while the database is unreachable and the follower reconnects), the gateway reads the version
per request as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from domain.apikey import ApiKey
from domain.user import User
from interfaces.db.eventstore import aggregate_name, parse_notification

log = logging.getLogger("hostplane.gateway")

# The aggregates whose versions are followed: what authentication depends on.
FOLLOWED = frozenset(aggregate_name(c) for c in (ApiKey, User))
TOPICS = tuple(f"{name}.%" for name in sorted(FOLLOWED))
POLL_SECONDS = 1.0  # read the stream this often even with no notification
GATHER_SECONDS = 0.002  # after a notification, wait this long for more (one read for many)
PAGE = 10_000  # events read at most per query (a backlog is read page by page)
MAX_KEPT = 500_000  # versions kept at most (then all are forgotten, and reloaded when used)


class StreamVersions:
    """Latest versions of keys and users, from the event store's stream (one per process)."""

    def __init__(
        self,
        conninfo: str,
        table: str,
        channel: str,
        on_commit: list[Callable[[list[Any]], None]],
    ) -> None:
        self.conninfo = conninfo
        self.on_commit = on_commit  # the event store's: this process's own saves
        self.table = table  # schema-qualified, quoted
        self.channel = channel
        self._versions: dict[UUID, int] = {}
        self._trusted: dict[UUID, int] = {}  # loaded while followed: the version loaded
        self._lock = threading.Lock()
        self._following = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.position = 0

    # -- what the gateway asks ------------------------------------------------------------

    def following(self) -> bool:
        return self._following.is_set()

    def is_current(self, aggregate_id: UUID, version: int) -> bool:
        """Whether ``version`` of this key or user, loaded while the stream was followed, is
        still its latest: no later version written since."""
        if not self._following.is_set():
            return False
        with self._lock:
            trusted = self._trusted.get(aggregate_id)
            latest = self._versions.get(aggregate_id)
        return trusted == version and (latest is None or latest <= version)

    def loaded(self, aggregate_id: UUID, version: int, position: int) -> None:
        """A key or user was loaded at ``version``, after the stream had reached ``position``
        (read before the load): every later change will be seen."""
        if not self._following.is_set() or position < self._start:
            return
        with self._lock:
            if len(self._trusted) >= MAX_KEPT:
                self._trusted.clear()
            self._trusted[aggregate_id] = version

    def noted(self, aggregate_id: UUID, version: int) -> None:
        """A change this process just committed (``EventStore.on_commit``)."""
        with self._lock:
            if version > self._versions.get(aggregate_id, 0):
                self._versions[aggregate_id] = version

    def note_saved(self, aggregates: Sequence[Any]) -> None:
        """``EventStore.on_commit``: the keys and users among what this process just saved."""
        for aggregate in aggregates:
            if isinstance(aggregate, ApiKey | User):
                self.noted(aggregate.id, aggregate.version)

    # -- following the stream -------------------------------------------------------------

    @staticmethod
    def skippable(payloads: Iterable[str]) -> int | None:
        """The last notification id of these writes if none of them holds an event of a key
        or a user (``None``: read them).

        Each write's notification says its last id and its aggregates
        (``interfaces.db.eventstore.write_tag``). Writes are notified in the order of their
        ids (one lock orders every write and its commit) and every write committed since the
        LISTEN that holds anything but usage batches is notified on the changes channel, so
        what lies between the position and that id needs no read.
        """
        head = 0
        for payload in payloads:
            notice = parse_notification(payload)
            if notice is None or notice.may_hold(FOLLOWED):
                return None
            head = max(head, notice.last_id)
        return head

    _start = 1 << 62  # no load counts before the stream is followed

    def start(self) -> None:
        if self._thread is None:
            self.on_commit.append(self.note_saved)
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="key-versions", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._following.clear()
        if self.note_saved in self.on_commit:
            self.on_commit.remove(self.note_saved)
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, row_factory=dict_row) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    self._follow(conn)
            except Exception as e:  # the database went away: per-request reads until back
                self._following.clear()
                log.warning("key versions: reconnecting to the stream: %s", type(e).__name__)
                self._stop.wait(1.0)

    def _latest(self, conn: psycopg.Connection[Any]) -> int:
        """The last notification id written."""
        row = conn.execute(f"SELECT coalesce(max(notification_id), 0) AS m FROM {self.table}")
        return row.fetchone()["m"]  # type: ignore[index]

    def _follow(self, conn: psycopg.Connection[Any]) -> None:
        if not self._following.is_set():
            # Versions before this point are not known here: only what is loaded from now on
            # is trusted (a reconnect starts afresh: changes may have been missed meanwhile).
            self.position = self._latest(conn)
            with self._lock:
                self._trusted.clear()
            self._start = self.position
            self._following.set()
        # Up to the head read first: one lock orders every write and its commit, so every
        # write up to the head is committed and read (usage writes, not notified here, lie
        # in between: the database filters them out).
        select = (
            f"SELECT notification_id, originator_id, originator_version FROM {self.table}"
            " WHERE notification_id > %s AND notification_id <= %s AND topic LIKE ANY(%s)"
            " ORDER BY notification_id LIMIT %s"
        )
        while not self._stop.is_set():
            notified = list(conn.notifies(timeout=POLL_SECONDS, stop_after=1))
            if notified:
                notified += conn.notifies(timeout=0, stop_after=1000)
                head = self.skippable(n.payload for n in notified)
                if head is not None:  # none of these writes holds a key or a user: no read
                    self.position = max(self.position, head)
                    continue
                time.sleep(GATHER_SECONDS)
                for _ in conn.notifies(timeout=0, stop_after=1000):  # the read covers these
                    pass
            until = self._latest(conn)
            while True:
                rows = conn.execute(select, (self.position, until, list(TOPICS), PAGE)).fetchall()
                if rows:
                    with self._lock:
                        if len(self._versions) >= MAX_KEPT:  # forget all; reload what is used
                            self._versions.clear()
                            self._trusted.clear()
                        for r in rows:
                            key, version = r["originator_id"], r["originator_version"]
                            if version > self._versions.get(key, 0):
                                self._versions[key] = version
                if len(rows) < PAGE:
                    self.position = max(self.position, until)
                    break
                self.position = rows[-1]["notification_id"]
