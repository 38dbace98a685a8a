"""One leader among the ``hostplane serve`` nodes on a database, elected with an advisory lock.

The leader runs what must run once per deployment (the projection worker, the cluster-wide
scheduled jobs). It holds a session-level ``pg_advisory_lock`` on a connection of its own; the
other nodes stand by and try for the lock every second. When the leader dies its connection
closes, PostgreSQL releases the lock, and a standby has it within a second or so. A node that
dies without closing its socket (a machine lost) is noticed by TCP keepalives, set short on
both ends of the connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

log = logging.getLogger("hostplane.leader")

# "hostplan" in ASCII: outside the int4 range of the hashtext() keys the projections lock.
LEADER_LOCK = 0x686F7374706C616E
RETRY_SECONDS = 1.0
# Dead peer detection on the lock's connection, both ends: ~5 s idle, then 3 probes 2 s apart.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
SERVER_KEEPALIVES = (
    "SELECT set_config('tcp_keepalives_idle', '5', false),"
    " set_config('tcp_keepalives_interval', '2', false),"
    " set_config('tcp_keepalives_count', '3', false)"
)


class Leadership:
    """Contends for the leader lock in a thread; ``on_lead`` runs when this node becomes the
    leader, ``on_standby`` when it stops being one (its connection lost, or ``stop``)."""

    def __init__(
        self,
        conninfo: str,
        on_lead: Callable[[], None],
        on_standby: Callable[[], None],
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.conninfo = conninfo
        self.on_lead = on_lead
        self.on_standby = on_standby
        self.retry_seconds = retry_seconds
        self.leading = False  # read by the scheduled jobs before each run
        self._stop = threading.Event()
        self._tried = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Contend from now on; returns after the first try, so a lone node leads at once."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)
        self._thread.start()
        self._tried.wait(timeout=10)

    def stop(self) -> None:
        """Stop leading (the work stops first, then the lock is released) and contending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        announced_standby = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.conninfo, autocommit=True, connect_timeout=10, **KEEPALIVES
                ) as conn:
                    conn.execute(SERVER_KEEPALIVES)
                    try:
                        announced_standby = self._hold(conn, announced_standby)
                    finally:
                        self._step_down()
            except Exception as e:  # the database went away: the lock went with it; try again
                self._tried.set()
                log.warning("leader election reconnecting: %s", type(e).__name__)
            self._stop.wait(self.retry_seconds)

    def _hold(self, conn: psycopg.Connection[tuple[object, ...]], announced_standby: bool) -> bool:
        """Try for the lock every ``retry_seconds``; once held, check the connection as often
        (an error there means the lock is lost). Returns when told to stop."""
        while not self._stop.is_set():
            if self.leading:
                conn.execute("SELECT 1")
            else:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
                self._tried.set()
                if row is not None and row[0]:
                    log.info("leader: this node runs the projections and the scheduled jobs")
                    self.leading = True
                    self.on_lead()
                elif not announced_standby:
                    log.info(
                        "standby: another node runs the projections and the scheduled jobs;"
                        " this one takes over if that one stops"
                    )
                    announced_standby = True
            self._stop.wait(self.retry_seconds)
        return announced_standby

    def _step_down(self) -> None:
        """Stop the leader's work before the lock's connection closes (and another takes it)."""
        if self.leading:
            self.leading = False
            if not self._stop.is_set():
                log.warning("leader: lost the database connection; standing by")
            self.on_standby()
