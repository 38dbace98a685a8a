"""The event store on real PostgreSQL: what is stored, how it round-trips, who did it."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import orjson
import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from application.errors import ConcurrentModificationError
from domain.apikey import ApiKey
from domain.base import Actor
from domain.budget import Budget
from domain.index import NameIndex
from domain.tenant import Tenant
from tests.conftest import ADMIN_TOKEN


def events_table(container: Any) -> str:
    recorder = container.store.recorder
    return f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'


def head(container: Any) -> int:
    with container.pool.connection() as conn:
        row = conn.execute(f"SELECT max(notification_id) AS m FROM {events_table(container)}")
        return row.fetchone()["m"] or 0


def stored_events_after(container: Any, position: int) -> list[Any]:
    """Every event written after ``position``, decoded by the application's own mapper."""
    with container.pool.connection() as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state"
            f" FROM {events_table(container)} WHERE notification_id > %s"
            " ORDER BY notification_id",
            (position,),
        ).fetchall()
    return [
        container.store.mapper.to_domain_event(
            StoredEvent(
                originator_id=r["originator_id"],
                originator_version=r["originator_version"],
                topic=r["topic"],
                state=bytes(r["state"]),
            )
        )
        for r in rows
    ]


def occurrences(container: Any, needle: str) -> int:
    """How many stored events hold ``needle`` anywhere in their serialised state."""
    with container.pool.connection() as conn:
        row = conn.execute(
            f"SELECT count(*) AS n FROM {events_table(container)}"
            " WHERE position(%s::bytea IN state) > 0",
            (needle.encode(),),
        ).fetchone()
        return row["n"]


def all_states(container: Any) -> list[bytes]:
    with container.pool.connection() as conn:
        rows = conn.execute(f"SELECT state FROM {events_table(container)}").fetchall()
    return [bytes(r["state"]) for r in rows]


def new_tenant(container: Any) -> Tenant:
    tenant = Tenant.register(
        name=f"t-{uuid4().hex[:10]}",
        weight=100,
        tokens_per_minute=None,
        group=None,
        wrapped_data_key=container.secret_box.new_wrapped_data_key(),
        actor=Actor(id="admin", ip="127.0.0.1"),
    )
    container.store.commit(tenant)
    return tenant


@pytest.fixture(scope="module")
def issued_secrets(admin: Any) -> dict[str, Any]:
    """Management and router keys issued over HTTP, and an instance whose key was fetched."""
    t = admin.new_tenant()
    keys = [admin.new_key(t["id"], kind) for kind in ("management", "router", "router")]
    own_api = admin.as_token(keys[0][1])
    keys.append(own_api.new_key(t["id"], "management"))
    r = admin.post("/instances", json={"tenant_id": t["id"], "model_id": "llama-3.1-8b"})
    assert r.status_code == 201, r.text
    instance = r.json()
    r = admin.get(f"/instances/{instance['id']}/api-key")
    assert r.status_code == 200, r.text
    return {"keys": keys, "instance": instance, "instance_key": r.json()["api_key"]}


def test_no_issued_key_secret_is_found_anywhere_in_the_events_table(container, issued_secrets):
    states = all_states(container)
    for _, secret in issued_secrets["keys"]:
        assert occurrences(container, secret) == 0
        assert not any(secret.encode() in state for state in states)


def test_the_instance_key_is_not_found_anywhere_in_the_events_table(container, issued_secrets):
    instance_key = issued_secrets["instance_key"]
    assert instance_key.startswith("hp_ik_")
    assert occurrences(container, instance_key) == 0
    assert not any(instance_key.encode() in state for state in all_states(container))


def test_the_admin_token_is_not_found_anywhere_in_the_events_table(container, issued_secrets):
    assert occurrences(container, ADMIN_TOKEN) == 0


def test_the_events_do_hold_each_keys_hash_and_display_prefix(container, issued_secrets):
    for key, secret in issued_secrets["keys"]:
        assert secret.startswith(key["key_prefix"])
        assert occurrences(container, key["key_prefix"]) >= 1
        assert occurrences(container, hashlib.sha256(secret.encode()).hexdigest()) == 1


def test_the_instance_event_holds_only_the_instance_keys_display_prefix(container, issued_secrets):
    prefix = issued_secrets["instance_key"][:16]
    assert occurrences(container, prefix) == 1


def test_a_budget_round_trips_through_postgresql_with_exact_decimals(container):
    budget = Budget.set(
        tenant_id=uuid4(),
        key_id=uuid4(),
        limit_eur=Decimal("12.345678"),
        period="monthly",
        thresholds=[Decimal("0.5"), Decimal("0.80"), Decimal("1.0")],
        actor=Actor(id="admin", ip="127.0.0.1"),
    )
    container.store.commit(budget)

    loaded = container.store.repository.get(budget.id)

    assert loaded.limit_eur == Decimal("12.345678")
    assert str(loaded.limit_eur) == "12.345678"
    assert type(loaded.limit_eur) is Decimal
    assert loaded.thresholds == [Decimal("0.5"), Decimal("0.80"), Decimal("1.0")]
    assert [str(t) for t in loaded.thresholds] == ["0.5", "0.80", "1.0"]
    assert all(type(t) is Decimal for t in loaded.thresholds)


def test_a_budget_round_trips_through_postgresql_with_uuids_and_utc_datetimes(container):
    tenant_id, key_id = uuid4(), uuid4()
    budget = Budget.set(
        tenant_id=tenant_id,
        key_id=key_id,
        limit_eur=Decimal("5"),
        period="daily",
        thresholds=[Decimal("1")],
        actor=Actor(id="admin", ip="127.0.0.1"),
    )
    container.store.commit(budget)

    loaded = container.store.repository.get(budget.id)

    assert isinstance(loaded.id, UUID) and loaded.id == budget.id
    assert isinstance(loaded.tenant_id, UUID) and loaded.tenant_id == tenant_id
    assert isinstance(loaded.key_id, UUID) and loaded.key_id == key_id
    for moment in (loaded.created_on, loaded.modified_on):
        assert isinstance(moment, datetime)
        assert moment.utcoffset() == timedelta(0)
    assert loaded.created_on == budget.created_on
    assert loaded.version == budget.version


def test_a_key_expiry_round_trips_through_postgresql_as_the_same_utc_instant(container):
    expires_at = datetime(2031, 5, 17, 23, 59, 58, 123456, tzinfo=UTC)
    key, _ = ApiKey.issue(
        tenant_id=uuid4(),
        name="expiring",
        kind="router",
        now=datetime.now(tz=UTC),
        actor=Actor(id="admin", ip="127.0.0.1"),
        expires_at=expires_at,
    )
    container.store.commit(key)

    loaded = container.store.repository.get(key.id)

    assert loaded.expires_at == expires_at
    assert loaded.expires_at.utcoffset() == timedelta(0)
    assert loaded.expires_at.isoformat() == expires_at.isoformat()


def test_every_event_made_over_http_records_its_actor_and_the_client_ip(container, admin):
    start = head(container)
    t = admin.new_tenant()
    key, secret = admin.new_key(t["id"], "management")
    own = admin.as_token(secret)
    assert admin.patch(f"/tenants/{t['id']}/weight", json={"weight": 7}).status_code == 200
    other, _ = own.new_key(t["id"], "router")
    r = own.post("/budgets", json={"key_id": other["id"], "limit_eur": "3.5"})
    assert r.status_code == 201, r.text
    r = own.post("/instances", json={"model_id": "llama-3.1-8b"})
    assert r.status_code == 201, r.text
    assert own.put(f"/keys/{other['id']}/disabled", json={"disabled": True}).status_code == 200
    assert own.delete(f"/keys/{other['id']}").status_code == 200

    events = stored_events_after(container, start)
    facts = events  # name-index bookkeeping included: every event carries its actor
    assert sum(isinstance(e, NameIndex.Event) for e in facts) >= 2
    assert len(facts) >= 11
    by_key = f"key:{key['id']}"
    for e in facts:
        assert isinstance(e.actor, Actor), type(e).__qualname__
        assert e.actor.id in ("admin", by_key), e.actor
        assert e.actor.ip == "127.0.0.1"
    assert {e.actor.id for e in facts} == {"admin", by_key}


def test_a_second_writer_of_the_same_tenant_gets_a_concurrent_modification_error(container):
    tenant = new_tenant(container)
    first = container.store.repository.get(tenant.id)
    second = container.store.repository.get(tenant.id)
    first.change_weight(11, actor=Actor(id="admin", ip=None))
    second.change_weight(22, actor=Actor(id="admin", ip=None))

    container.store.commit(first)
    with pytest.raises(ConcurrentModificationError):
        container.store.commit(second)

    assert container.store.repository.get(tenant.id).weight == 11


def floats_in(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in floats_in(v)]
    if isinstance(value, list):
        return [f for v in value for f in floats_in(v)]
    return []


def test_no_stored_event_holds_a_float(container, admin):
    t = admin.new_tenant()
    r = admin.post("/budgets", json={"tenant_id": t["id"], "limit_eur": "0.1"})
    assert r.status_code == 201, r.text

    for state in all_states(container):
        assert floats_in(orjson.loads(state)) == []


def test_a_write_that_conflicts_stores_none_of_its_events_or_request_ids(container):
    """The insert goes out in one round trip: a failing statement rolls back the whole write."""
    recorder = container.store.recorder
    aggregate, tenant = uuid4(), uuid4()

    def event(version: int) -> StoredEvent:
        return StoredEvent(aggregate, version, "test.Event", b"{}")

    ids = recorder.insert_events([event(1), event(2)], usage_request_ids={tenant: ["r1"]})
    assert len(ids) == 2 and ids[0] < ids[1]

    # A version conflict after a fresh request id: the id is not kept.
    with pytest.raises(IntegrityError):
        recorder.insert_events([event(3), event(2)], usage_request_ids={tenant: ["r2"]})
    # A repeated request id before fresh versions: the versions are not kept.
    with pytest.raises(IntegrityError):
        recorder.insert_events([event(3)], usage_request_ids={tenant: ["r1"]})

    assert [e.originator_version for e in recorder.select_events(aggregate)] == [1, 2]
    assert recorder.seen({tenant: ["r1", "r2"]}) == {tenant: {"r1"}}
    # The connection went back to the pool clean: the next write succeeds.
    assert len(recorder.insert_events([event(3)], usage_request_ids={tenant: ["r2"]})) == 1


@contextmanager
def one_connection_store(container: Any) -> Iterator[Any]:
    """An event store of its own on the test database whose pool holds one connection: every
    write goes through it."""
    from application.store import EventStore

    env = container.database.eventsourcing_env(pool_size=1)
    env["POSTGRES_MAX_OVERFLOW"] = "0"
    store = EventStore(env=env)
    try:
        yield store
    finally:
        store.close()


def test_a_write_succeeds_after_the_server_forgot_its_connections_prepared_statement(container):
    """The write is a statement prepared once per connection; a connection whose prepared
    statements the server dropped (``DEALLOCATE ALL``, as a pooler's reset does) prepares it
    again instead of failing the write."""
    with one_connection_store(container) as store:
        recorder = store.recorder
        aggregate = uuid4()
        recorder.insert_events([StoredEvent(aggregate, 1, "test.Event", b'{"n": 1}')])
        with recorder.datastore.get_connection() as conn:
            conn.execute("DEALLOCATE ALL")

        written = recorder.insert_events(
            [
                StoredEvent(aggregate, 2, "test.Event", b'{"n": 2}'),
                StoredEvent(aggregate, 3, "test.Event", b'{"n": 3}'),
            ]
        )

        assert len(written) == 2 and written[0] < written[1]
        stored = recorder.select_events(aggregate)
        assert [(e.originator_version, e.state) for e in stored] == [
            (1, b'{"n": 1}'),
            (2, b'{"n": 2}'),
            (3, b'{"n": 3}'),
        ]


def test_a_write_whose_connection_is_lost_while_it_waits_is_done_again_on_a_new_one(container):
    """The server ends the write's connection while the write waits for the table lock (an
    operator's ``pg_terminate_backend``, a failover): the write is sent again on a new
    connection and stored once; the caller sees no error."""
    with one_connection_store(container) as store:
        recorder = store.recorder
        aggregate, tenant = uuid4(), uuid4()
        recorder.insert_events([StoredEvent(aggregate, 1, "test.Event", b"{}")])
        with recorder.datastore.get_connection() as conn:
            writer = conn.info.backend_pid
        outcome: dict[str, Any] = {}

        def write() -> None:
            try:
                outcome["ids"] = recorder.insert_events(
                    [StoredEvent(aggregate, 2, "test.Event", b"{}")],
                    usage_request_ids={tenant: ["lost-once"]},
                )
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        with psycopg.connect(container.database.conninfo, autocommit=True) as admin_conn:
            locker = psycopg.connect(container.database.conninfo)
            try:
                locker.execute(f"LOCK TABLE {events_table(container)} IN EXCLUSIVE MODE")
                thread = threading.Thread(target=write)
                thread.start()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # until the write waits for the lock
                    row = admin_conn.execute(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (writer,)
                    ).fetchone()
                    if row and row[0] == "Lock":
                        break
                    time.sleep(0.01)
                else:
                    pytest.fail("the write never waited for the lock")
                admin_conn.execute("SELECT pg_terminate_backend(%s)", (writer,))
            finally:
                locker.rollback()
                locker.close()
            thread.join(30)

        assert "error" not in outcome, outcome.get("error")
        assert len(outcome["ids"]) == 1
        assert [e.originator_version for e in recorder.select_events(aggregate)] == [1, 2]
        assert recorder.seen({tenant: ["lost-once"]}) == {tenant: {"lost-once"}}


# -- the one-round-trip usage write ----------------------------------------------------------


def one_record(key_id: UUID, model: str, request_id: str) -> Any:
    from domain.usage import UsageInput

    return UsageInput(
        request_id=request_id,
        key_id=key_id,
        model=model,
        prompt_tokens=1000,
        completion_tokens=500,
        status="success",
        latency_ms=10,
        occurred_at=datetime.now(UTC) - timedelta(seconds=1),
        instance_id=None,
    )


@pytest.fixture
def metered(container: Any) -> tuple[Any, Any, UUID, str]:
    """The operator, a tenant's router key and a model, straight through the use cases."""
    from application.auth import Principal

    operator = Principal(kind="admin", actor=Actor(id="test", ip=None))
    tenant_id = container.tenants.create_tenant(operator, name=f"metered-{uuid4().hex[:8]}")
    key, _ = container.keys.issue_key(operator, tenant_id, "k", kind="router")
    slug = f"metered-{uuid4().hex[:8]}"
    container.pricing.register_model(
        operator, slug, "M", "chat", 8192, Decimal("1.00"), Decimal("2.00"), True
    )
    return container.usage, operator, key.id, slug


def test_a_request_id_sent_again_as_fresh_is_still_stored_once(metered):
    usage, operator, key_id, slug = metered
    request_id = uuid4().hex

    first = usage.ingest_usage(operator, [one_record(key_id, slug, request_id)], fresh_ids=True)
    again = usage.ingest_usage(operator, [one_record(key_id, slug, request_id)], fresh_ids=True)

    assert (first.accepted, first.duplicates) == (1, 0)
    assert (again.accepted, again.duplicates, again.batch_ids) == (0, 1, [])


def test_a_batch_rated_with_prices_changed_meanwhile_is_rated_again(container, metered):
    """Usage keeps models in memory; a price change made elsewhere (another process) is caught
    by the write itself, and the batch is stored at the new price."""
    usage, operator, key_id, slug = metered
    usage.ingest_usage(operator, [one_record(key_id, slug, uuid4().hex)])  # the model is kept
    container.pricing.update_model(
        operator,
        slug,
        "M",
        "chat",
        8192,
        True,
        Decimal("5.00"),
        Decimal("6.00"),
        effective_from=datetime.now(UTC) - timedelta(minutes=1),
    )

    result = usage.ingest_usage(operator, [one_record(key_id, slug, uuid4().hex)], fresh_ids=True)

    store = container.store
    (stored,) = store.recorder.select_events(result.batch_ids[0])
    assert store.mapper.to_domain_event(stored).rates == [[slug, "5.00", "6.00"]]


def test_each_write_notifies_its_last_notification_id_and_its_aggregates(
    container, database_conninfo
):
    """A listener that cares about some aggregates (the gateway's key versions) reads the log
    only after a write holding theirs: the notification says which, and up to which id."""
    import psycopg

    from interfaces.db.eventstore import parse_notification

    actor = Actor(id="admin", ip=None)
    with psycopg.connect(database_conninfo, autocommit=True) as listener:
        listener.execute(f'LISTEN "{container.store.recorder.channel_name}"')
        tenant = new_tenant(container)
        key, _ = ApiKey.issue(tenant.id, "notified", "router", datetime.now(UTC), actor)
        budget = Budget.set(
            tenant_id=tenant.id,
            key_id=None,
            limit_eur=Decimal("5"),
            period="monthly",
            thresholds=[Decimal("1.0")],
            actor=actor,
        )
        container.store.commit(key, budget)
        heard = [parse_notification(n.payload) for n in listener.notifies(timeout=5, stop_after=2)]

    with container.pool.connection() as conn:
        rows = conn.execute(
            f"SELECT originator_id, notification_id FROM {events_table(container)}"
            " WHERE originator_id = ANY(%s)",
            ([tenant.id, key.id, budget.id],),
        ).fetchall()
    at = {r["originator_id"]: r["notification_id"] for r in rows}
    assert heard == [
        (at[tenant.id], frozenset({"domain.tenant:Tenant"})),
        (
            max(at[key.id], at[budget.id]),
            frozenset({"domain.apikey:ApiKey", "domain.budget:Budget"}),
        ),
    ]


def test_usage_writes_are_not_notified_on_the_changes_channel(
    container, database_conninfo, metered
):
    """The gateway's key versions listen on the changes channel: hundreds of usage writes a
    second must not wake them, and every other write must."""
    import psycopg

    from interfaces.db.eventstore import parse_notification

    usage, operator, key_id, slug = metered
    recorder = container.store.recorder
    with (
        psycopg.connect(database_conninfo, autocommit=True) as everything,
        psycopg.connect(database_conninfo, autocommit=True) as changes,
    ):
        everything.execute(f'LISTEN "{recorder.channel_name}"')
        changes.execute(f'LISTEN "{recorder.changes_channel}"')
        metered_at = usage.ingest_usage(operator, [one_record(key_id, slug, uuid4().hex)]).position
        tenant = new_tenant(container)
        all_heard = [
            parse_notification(n.payload) for n in everything.notifies(timeout=5, stop_after=2)
        ]
        changes_heard = [
            parse_notification(n.payload) for n in changes.notifies(timeout=1, stop_after=2)
        ]

    with container.pool.connection() as conn:
        row = conn.execute(
            f"SELECT notification_id FROM {events_table(container)} WHERE originator_id = %s",
            (tenant.id,),
        ).fetchone()
    usage_write = (metered_at, frozenset({"domain.usage:UsageBatch"}))
    tenant_write = (row["notification_id"], frozenset({"domain.tenant:Tenant"}))
    assert all_heard == [usage_write, tenant_write]
    assert changes_heard == [tenant_write]
