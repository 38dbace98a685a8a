"""A read model that meets an event it cannot apply: it is reported, no other read model waits
for it, reads that need it answer 503 at once, and a fixed read model gets past the event."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from domain.apikey import ApiKey
from domain.base import Actor
from interfaces.bootstrap import Container
from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from projections.engine import stalls
from projections.engine.runner import ProjectionFailedError, ProjectionRunner
from projections.readmodels.keys import KeysProjection
from tests.conftest import ADMIN_TOKEN, Api, LiveServer, make_settings
from tests.integration.test_cli import hostplane
from tests.integration.test_projections import crash_on

PLACEHOLDER = "placeholder-model-" + uuid.uuid4().hex
ISSUED_TOPIC = "domain.apikey:ApiKey.Issued"


@pytest.fixture
def own_server(database_conninfo: str, tmp_path: Path) -> Iterator[tuple[Container, Api, str]]:
    """hostplane served on a database of its own: a stalled read model in the shared one would
    make every later test's reads of it answer 503."""
    server_conninfo = with_dbname(database_conninfo, "postgres")
    dbname = f"hostplane_stall_{uuid.uuid4().hex[:12]}"
    create_database_if_missing(server_conninfo, dbname)
    conninfo = with_dbname(database_conninfo, dbname)
    # A long read-your-writes bound: a read that waited for the stalled read model, instead of
    # answering at once, would keep this test waiting for a minute per read.
    container = Container.open(make_settings(conninfo, tmp_path, read_your_writes_timeout=60))
    server = None
    try:
        container.start_background()
        server = LiveServer(container).start()
        yield container, Api(server.url, ADMIN_TOKEN), conninfo
    finally:
        if server is not None:
            server.stop()
        container.close()
        drop_database(server_conninfo, dbname)


def store_key_with_a_nul(container: Container, tenant_id: UUID) -> int:
    """Write a key whose allowed model holds a NUL straight into the event store, as an event
    stored before input validation refused it would be; returns its position in the log.

    The key is issued with a placeholder model, and the placeholder is swapped for ``x\\0`` in
    the stored event itself: below any validation the domain does now or will do.
    """
    key, _ = ApiKey.issue(
        tenant_id=tenant_id,
        name=f"evil-{uuid.uuid4().hex[:8]}",
        kind="router",
        now=datetime.now(UTC),
        actor=Actor(id="test", ip=None),
        allowed_models=[PLACEHOLDER],
    )
    stored = []
    for event in key.collect_events():
        s = container.store.mapper.to_stored_event(event)
        assert PLACEHOLDER.encode() in s.state  # stored as plain JSON: the swap can work
        state = s.state.replace(PLACEHOLDER.encode(), b"x\\u0000")
        stored.append(StoredEvent(s.originator_id, s.originator_version, s.topic, state))
    ids = container.store.recorder.insert_events(stored)
    assert ids
    return ids[-1]


def stall_of(container: Container, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the worker has reported ``name`` stalled; its status row."""
    deadline = time.monotonic() + timeout
    while True:
        row = {r["name"]: r for r in container.runner.status()}[name]
        if row["stalled"] is not None or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def caught_up(container: Container, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until ``name`` has reached the log's head; its status row."""
    deadline = time.monotonic() + timeout
    while True:
        row = {r["name"]: r for r in container.runner.status()}[name]
        if row["lag"] == 0 or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def status_lines(output: str) -> dict[str, str]:
    """``projections status``: each read model's row with the lines that follow it."""
    rows: dict[str, str] = {}
    name = None
    for line in output.splitlines()[1:]:
        if line and not line[0].isspace():
            name = line.split()[0]
            rows[name] = line
        elif name is not None:
            rows[name] += "\n" + line
    return rows


class Scrubbed:
    """An event whose strings are read with each NUL replaced by U+FFFD."""

    def __init__(self, event: Any) -> None:
        self._event = event

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._event, name)
        if isinstance(value, str):
            return value.replace("\0", "\ufffd")
        if isinstance(value, list):
            return [v.replace("\0", "\ufffd") if isinstance(v, str) else v for v in value]
        return value


def fix_the_keys_read_model(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an upgrade with a fixed ``keys`` read model does: it can store the event."""
    projection = container.runner.projections["keys"]
    handlers = dict(type(projection).handlers)
    issued = handlers[ApiKey.Issued]
    handlers[ApiKey.Issued] = lambda self, curs, e: issued(self, curs, Scrubbed(e))
    monkeypatch.setattr(projection, "handlers", handlers)


def test_a_read_model_that_cannot_apply_an_event_is_reported_and_answers_503_until_fixed(
    own_server, tmp_path, monkeypatch
):
    container, admin, conninfo = own_server
    t = admin.new_tenant()
    good, _ = admin.new_key(t["id"], "router")
    assert admin.get(f"/keys/{good['id']}").status_code == 200

    position = store_key_with_a_nul(container, UUID(t["id"]))
    # A read at once: it waits for the worker, which finds that it cannot apply the event.
    r = admin.get(f"/keys/{good['id']}")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "read_model_stalled"
    row = stall_of(container, "keys")

    # The failure is reported: the exact event, its type and the error, to every process.
    assert row["stalled"] is not None, row
    assert row["stalled"]["position"] == position
    assert row["position"] == position - 1
    assert row["stalled"]["topic"] == ISSUED_TOPIC
    result = hostplane("projections", "status", database=conninfo, data_dir=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    keys_status = status_lines(result.stdout)["keys"]
    assert "stalled" in keys_status
    assert str(position) in keys_status
    assert ISSUED_TOPIC in keys_status
    assert "Unicode" in keys_status  # PostgreSQL's "unsupported Unicode escape sequence"
    assert "rebuild keys" in keys_status

    # The other read models keep going: a tenant created now is readable at once.
    other = admin.new_tenant()
    r = admin.get(f"/tenants/{other['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == other["name"]

    # Reads that need the stalled read model answer 503 at once, on both kinds of route.
    for path in (f"/keys/{good['id']}", f"/keys?tenant_id={t['id']}"):
        r = admin.get(path)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "read_model_stalled"
        assert r.json()["error"]["type"] == "service_unavailable"
        assert int(r.headers["Retry-After"]) > 0

    # A rebuild with the read model as it is cannot get past the event: it says so, plainly.
    result = hostplane("projections", "rebuild", "keys", database=conninfo, data_dir=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert str(position) in result.stdout
    assert ISSUED_TOPIC in result.stdout
    assert "Unicode" in result.stdout

    # The way out: a fixed read model gets past the event, and reads answer again.
    fix_the_keys_read_model(container, monkeypatch)
    row = caught_up(container, "keys")
    assert row["stalled"] is None and row["lag"] == 0, row
    r = admin.get(f"/keys?tenant_id={t['id']}")
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2
    container.runner.rebuild("keys")
    assert admin.get(f"/keys/{good['id']}").status_code == 200
    assert {r["name"]: r for r in container.runner.status()}["keys"]["stalled"] is None


class ScratchKeys(KeysProjection):
    name = "scratch_keys_stall"


@pytest.fixture
def scratch_keys(container: Any) -> Iterator[ProjectionRunner]:
    """A runner (no worker thread) of a keys read model in a scratch schema of the shared
    database, which no other test reads."""
    schema = ScratchKeys.schema()

    def drop() -> None:
        with container.pool.connection() as conn:
            for s in (schema, f"{schema}__rebuild"):
                conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
            conn.execute(f"DELETE FROM {stalls.TABLE} WHERE schema = %s", (schema,))

    drop()
    runner = ProjectionRunner(
        container.pool, container.runner.source, [ScratchKeys()], container.runner.conninfo
    )
    runner.create_all()
    runner.catch_up(ScratchKeys.name)
    yield runner
    drop()


def key_ids(runner: ProjectionRunner) -> set[UUID]:
    with runner.pool.connection() as conn:
        rows = conn.execute(f"SELECT id FROM {ScratchKeys.schema()}.keys").fetchall()
    return {r["id"] for r in rows}


def test_a_failing_batch_keeps_the_events_before_the_one_the_read_model_cannot_apply(
    scratch_keys, admin
):
    runner, name = scratch_keys, ScratchKeys.name
    t = admin.new_tenant()
    first, second, third = (UUID(admin.new_key(t["id"], "router")[0]["id"]) for _ in range(3))
    with runner.pool.connection() as conn:
        position = conn.execute(
            f"SELECT notification_id FROM {runner.source.table}"
            " WHERE originator_id = %s AND originator_version = 1",
            (second,),
        ).fetchone()["notification_id"]
    remove_fault = crash_on(runner.projections[name], second)

    with pytest.raises(RuntimeError):  # the batch of all three keys rolls back
        runner.catch_up(name)
    assert key_ids(runner) & {first, second, third} == set()

    stall = runner.apply_alone(name)
    assert stall is not None and stall.position == position
    assert "simulated crash" in stall.error
    row = {r["name"]: r for r in runner.status()}[name]
    assert row["position"] == position - 1
    assert row["stalled"]["position"] == position
    assert row["stalled"]["topic"] == ISSUED_TOPIC
    assert key_ids(runner) & {first, second, third} == {first}
    with pytest.raises(ProjectionFailedError) as failed:
        runner.rebuild(name)
    assert failed.value.stall is not None and failed.value.stall.position == position

    remove_fault()
    assert runner.apply_alone(name) is None
    runner.catch_up(name)
    assert key_ids(runner) >= {first, second, third}
    assert {r["name"]: r for r in runner.status()}[name]["stalled"] is None
