"""A ``hostplane serve`` killed (``kill -9``) in the middle of an idempotent create.

The crash is made to land at the worst moment, deterministically, from the outside: a trigger
that this test puts in the database makes the server's statement wait on an advisory lock that
the test holds; once a backend of the server waits there, the test kills the server and
terminates that backend (the statement of a dead process never commits), then removes the
trigger. The retry goes to a freshly started server on the same database, as after a restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from tests.conftest import ADMIN_TOKEN, MASTER_KEY, free_port

LEASE_SECONDS = 2
HOLD_LOCK = 731_016  # the advisory lock the trigger waits on


class Served:
    """One ``hostplane serve`` process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(command, env=env)
        deadline = time.monotonic() + 60
        while not self._healthy():
            assert self.proc.poll() is None, "hostplane serve exited"
            assert time.monotonic() < deadline, "hostplane serve did not start"
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def post(self, path: str, body: dict[str, Any], key: str, token: str = ADMIN_TOKEN) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30)

    def get(self, path: str, token: str = ADMIN_TOKEN) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)


class Database:
    """The database the servers share, as the test sees it."""

    def __init__(self, conninfo: str, tmp: Path) -> None:
        self.conninfo = conninfo
        self.env = {
            **os.environ,
            "HOSTPLANE_DATABASE_URL": conninfo,
            "HOSTPLANE_DATA_DIR": str(tmp),
            "HOSTPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
            "HOSTPLANE_MASTER_KEY": MASTER_KEY,
            "HOSTPLANE_RATE_LIMIT_PER_MINUTE": "100000",
            "HOSTPLANE_IDEMPOTENCY_LEASE_SECONDS": str(LEASE_SECONDS),
            "HOSTPLANE_PROVISION_INTERVAL_SECONDS": "0",
        }
        self.server: Served | None = None

    def serve(self) -> Served:
        self.server = Served(self.env)
        return self.server

    @contextmanager
    def killed_while_waiting(self, table: str, when: str) -> Iterator[None]:
        """Kill the server when a statement of it on ``table`` (rows matching ``when``) waits.

        The block sends the request (in a thread: it never gets an answer).
        """
        assert self.server is not None
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(
                "CREATE OR REPLACE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS"
                f" $$ BEGIN PERFORM pg_advisory_xact_lock({HOLD_LOCK}); RETURN NEW; END $$"
            )
            conn.execute(
                f"CREATE TRIGGER test_hold BEFORE INSERT OR UPDATE ON {table}"
                f" FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION test_hold()"
            )
            conn.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
            try:
                yield
                waiting = self._wait_for_holder(conn)
                self.server.proc.kill()  # kill -9
                self.server.proc.wait(timeout=30)
                conn.execute("SELECT pg_terminate_backend(%s)", (waiting,))
            finally:
                conn.execute(f"DROP TRIGGER test_hold ON {table}")
                conn.execute("SELECT pg_advisory_unlock(%s)", (HOLD_LOCK,))

    def _wait_for_holder(self, conn: psycopg.Connection[Any]) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
                " AND NOT granted",
                (HOLD_LOCK,),
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
        raise AssertionError("the request never reached the held statement")

    def events_table(self) -> str:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            return conn.execute("SELECT to_regclass('hostplane_events')::text").fetchone()[0]


@pytest.fixture(scope="module")
def database(
    database_conninfo: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    dbname = f"hostplane_crash_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    db = Database(with_dbname(database_conninfo, dbname), tmp_path_factory.mktemp("crash"))
    try:
        db.serve()
        yield db
    finally:
        if db.server is not None:
            db.server.stop()
        drop_database(database_conninfo, dbname)


def in_background(send: Any) -> threading.Thread:
    """Send a request that the crash will cut off."""

    def run() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server dies under it
            send()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def server(database: Database) -> Served:
    """The running server (a new one if a test killed the last)."""
    if database.server is None or database.server.proc.poll() is not None:
        return database.serve()
    return database.server


def test_a_key_whose_server_died_before_answering_is_returned_with_its_secret_on_retry(
    database,
):
    api = server(database)
    tenant = api.post("/tenants", {"name": f"crash-{uuid.uuid4().hex[:8]}"}, uuid.uuid4().hex)
    assert tenant.status_code == 201, tenant.text
    tenant_id, key = tenant.json()["id"], uuid.uuid4().hex
    path, body = (
        f"/tenants/{tenant_id}/keys",
        {"name": "made-before-the-crash", "kind": "management"},
    )

    # The key is saved, then the server dies as it stores its response.
    with database.killed_while_waiting("hostplane_idempotency", "NEW.status IS NOT NULL"):
        sent = in_background(lambda: api.post(path, body, key))
    sent.join(30)

    retry = database.serve().post(path, body, key)
    assert retry.status_code == 201, retry.text
    created = retry.json()
    listed = database.server.get(f"/keys?tenant_id={tenant_id}").json()["data"]
    assert [k["id"] for k in listed] == [created["key"]["id"]]  # one key, and this one
    # Its secret is the key's own: it authenticates.
    assert database.server.get("/tenants", token=created["secret"]).status_code == 200


def test_a_tenant_whose_server_died_before_answering_is_returned_on_retry(database):
    api = server(database)
    key, body = uuid.uuid4().hex, {"name": f"crash-{uuid.uuid4().hex[:8]}"}

    with database.killed_while_waiting("hostplane_idempotency", "NEW.status IS NOT NULL"):
        sent = in_background(lambda: api.post("/tenants", body, key))
    sent.join(30)

    retry = database.serve().post("/tenants", body, key)
    assert retry.status_code == 201, retry.text
    assert retry.json()["name"] == body["name"]
    names = [t["name"] for t in database.server.get("/tenants?limit=500").json()["data"]]
    assert names.count(body["name"]) == 1
    # And again: the same tenant.
    again = database.server.post("/tenants", body, key)
    assert (again.status_code, again.json()["id"]) == (201, retry.json()["id"])


def test_a_tenant_whose_server_died_before_saving_it_is_created_once_by_a_retry(database):
    api = server(database)
    key, body = uuid.uuid4().hex, {"name": f"crash-{uuid.uuid4().hex[:8]}"}

    # The server dies while its save waits: nothing is stored.
    with database.killed_while_waiting(database.events_table(), "true"):
        sent = in_background(lambda: api.post("/tenants", body, key))
    sent.join(30)

    retried = database.serve()
    answers = []
    for _ in range(10):  # a client honouring Retry-After
        r = retried.post("/tenants", body, key)
        answers.append(r.status_code)
        if r.status_code != 409:
            break
        assert r.json()["error"]["code"] == "idempotency_conflict"
        time.sleep(int(r.headers.get("Retry-After", "1")))
    assert answers[-1] == 201, answers
    names = [t["name"] for t in retried.get("/tenants?limit=500").json()["data"]]
    assert names.count(body["name"]) == 1


def test_a_webhook_whose_server_died_before_answering_is_returned_with_its_secret_on_retry(
    database,
):
    api = server(database)
    tenant = api.post("/tenants", {"name": f"crash-{uuid.uuid4().hex[:8]}"}, uuid.uuid4().hex)
    tenant_id, key = tenant.json()["id"], uuid.uuid4().hex
    body = {"tenant_id": tenant_id, "url": "http://127.0.0.1:9/hook", "events": ["key.revoked"]}

    with database.killed_while_waiting("hostplane_idempotency", "NEW.status IS NOT NULL"):
        sent = in_background(lambda: api.post("/webhooks", body, key))
    sent.join(30)

    retry = database.serve().post("/webhooks", body, key)
    assert retry.status_code == 201, retry.text
    listed = database.server.get(f"/webhooks?tenant_id={tenant_id}").json()["data"]
    assert [w["id"] for w in listed] == [retry.json()["id"]]
    assert retry.json()["secret"].startswith("whsec_")
