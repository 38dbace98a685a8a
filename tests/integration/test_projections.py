"""Read models on real PostgreSQL: catching up, rebuilding, surviving a crash mid-batch."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from psycopg.rows import tuple_row

from domain.pricing import token_cost
from domain.usage import UsageInput
from interfaces.gateway.meter import GATEWAY
from projections.engine.base import live_schema
from projections.engine.runner import ProjectionFailedError, ProjectionRunner
from projections.engine.worker import CATCH_UP_EVERY
from projections.readmodels.audit import AuditProjection
from projections.readmodels.keys import KeysProjection
from projections.readmodels.registry import all_projections
from projections.readmodels.tenants import TenantsProjection
from tests.helpers import ensure_group, new_model

# Every read model hostplane keeps; the listings are among them.
PROJECTIONS = [p.name for p in all_projections()]
LISTINGS = ["tenants", "keys", "instances", "budgets", "mcp_servers", "users"]
# Read models the history below must leave with rows, so that their rebuild compares something.
FILLED = [*LISTINGS, "capacity", "fairshare", "usage", "usage_cache"]


def caught_up(container: Any, timeout: float = 10.0) -> None:
    """Wait until every live projection has processed the whole event log."""
    target = container.runner.max_notification_id()
    assert container.runner.wait_for(PROJECTIONS, target, timeout), container.runner.status()


def tables(container: Any, schema: str) -> list[str]:
    with container.pool.connection() as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
            " ORDER BY table_name",
            (schema,),
        ).fetchall()
    return [r["table_name"] for r in rows]


def texts(copy: dict[str, list[tuple[Any, ...]]], table: str) -> set[str]:
    """The text forms of a snapshot's rows of ``table``."""
    return {row[-1] for row in copy.get(table, [])}


def snapshot(container: Any, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in ``schema``, ordered by all columns, with its text form."""
    out = {}
    with (
        container.pool.connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=tuple_row) as curs,
    ):
        # One snapshot of all the tables: the worker may commit a batch between two SELECTs.
        curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for table in tables(container, schema):
            curs.execute(f"SELECT * FROM {schema}.{table} LIMIT 0")
            width = len(curs.description)
            order = ", ".join(str(i) for i in range(1, width + 1))
            curs.execute(f"SELECT t.*, t::text FROM {schema}.{table} AS t ORDER BY {order}")
            out[table] = curs.fetchall()
    return out


@pytest.fixture(scope="module")
def history(admin: Any, container: Any) -> None:
    """Writes that touch every read model with every kind of event."""
    group = ensure_group(admin, "gold", weight=2)
    assert admin.patch(f"/fairshare/groups/{group}/weight", json={"weight": 3}).is_success
    for value in (5, container.settings.max_in_flight):  # set back: other tests share it
        assert admin.put("/capacity", json={"max_in_flight": value}).is_success
    model = new_model(admin)
    for enabled in (True, False):
        body = {"enabled": enabled, "ttl_seconds": 90}
        assert admin.put(f"/models/{model}/cache", json=body).is_success
    for _ in range(2):
        t = admin.new_tenant(tokens_per_minute=1000)
        assert admin.patch(f"/tenants/{t['id']}/weight", json={"weight": 5}).status_code == 200
        assert admin.put(f"/tenants/{t['id']}/quota", json={"tokens_per_minute": None}).is_success
        assert admin.patch(f"/tenants/{t['id']}/group", json={"group": group}).is_success
        key, _ = admin.new_key(t["id"], "management", allowed_models=["llama-3.1-8b", "gpt-4o"])
        router, _ = admin.new_key(t["id"], "router", ip_allowlist=["10.0.0.0/8"], rpm_limit=60)
        assert admin.put(f"/keys/{router['id']}/disabled", json={"disabled": True}).is_success
        assert admin.put(f"/keys/{router['id']}/disabled", json={"disabled": False}).is_success
        change = {"name": f"k-{t['id'][:8]}", "allowed_models": None, "rpm_limit": 30}
        assert admin.patch(f"/keys/{key['id']}", json=change).is_success
        users = []
        for _ in range(2):
            email = f"u-{uuid.uuid4().hex[:10]}@example.com"
            body = {"email": email, "password": "correct horse battery"}
            r = admin.post(f"/tenants/{t['id']}/users", json=body)
            assert r.status_code == 201, r.text
            users.append(r.json()["id"])
        assert admin.delete(f"/users/{users[1]}").is_success
        r = admin.post(
            "/budgets", json={"tenant_id": t["id"], "key_id": key["id"], "limit_eur": "1.25"}
        )
        assert r.status_code == 201, r.text
        budget = r.json()
        body = {"limit_eur": "99.999999", "period": "weekly", "thresholds": ["0.25", "1"]}
        assert admin.put(f"/budgets/{budget['id']}", json=body).is_success
        r = admin.post("/budgets", json={"tenant_id": t["id"], "limit_eur": "10"})
        assert r.status_code == 201, r.text
        assert admin.delete(f"/budgets/{r.json()['id']}").is_success
        for model in ("llama-3.1-8b", "mistral-nemo-12b"):
            r = admin.post("/instances", json={"tenant_id": t["id"], "model_id": model})
            assert r.status_code == 201, r.text
        assert admin.delete(f"/instances/{r.json()['id']}").is_success
        assert admin.delete(f"/keys/{router['id']}").is_success
        servers = []
        for name in ("tools", "search"):
            body = {"tenant_id": t["id"], "name": name, "url": "https://mcp.example.com"}
            r = admin.post("/mcp-servers", json={**body, "headers": {"X-Token": "t"}})
            assert r.status_code == 201, r.text
            servers.append(r.json()["id"])
        change = {"name": "tools-2", "transport": "sse", "enabled": False, "headers": {}}
        assert admin.put(f"/mcp-servers/{servers[0]}", json=change).is_success
        assert admin.delete(f"/mcp-servers/{servers[1]}").is_success
    offboarded = admin.new_tenant()
    admin.new_key(offboarded["id"], "router")
    body = {"email": f"u-{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse battery"}
    assert admin.post(f"/tenants/{offboarded['id']}/users", json=body).status_code == 201
    assert admin.delete(f"/tenants/{offboarded['id']}").is_success
    # Usage of a model while its response cache is on, as the gateway records it: a hit and a
    # miss (usage_cache); the hit is rated at zero prices (usage).
    cached = new_model(admin)
    body = {"enabled": True, "ttl_seconds": 60}
    assert admin.put(f"/models/{cached}/cache", json=body).is_success
    t = admin.new_tenant()
    router, _ = admin.new_key(t["id"], "router")
    now = datetime.now(UTC)
    records = [
        UsageInput(uuid4().hex, UUID(router["id"]), cached, 10, 5, "success", 1, now, cache_hit=hit)
        for hit in (False, True)
    ]
    container.usage.ingest_usage(GATEWAY, records)


def test_every_projections_lag_reaches_zero_after_writes(container, admin, history):
    admin.new_tenant()
    deadline = time.monotonic() + 10
    while True:
        status = container.runner.status()
        if all(row["lag"] == 0 for row in status) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert sorted(row["name"] for row in status) == sorted(PROJECTIONS)
    assert set(LISTINGS) <= set(PROJECTIONS)
    assert [row["lag"] for row in status] == [0] * len(status)
    assert all(row["position"] == row["head"] > 0 for row in status)


@pytest.mark.parametrize("name", PROJECTIONS)
def test_a_rebuild_from_position_zero_yields_identical_rows(container, history, name):
    schema = live_schema(name)
    # The session's server runs its scheduled jobs (status sync, budget checks), which may
    # write an event while the rebuild runs: they are paused (one already running may still
    # write, and then both copies are taken again). The head is read before the live copy is
    # waited for: an event written between the wait and the read would be in the rebuilt copy
    # only, with the head unchanged at the end.
    container.background.scheduler.pause()
    try:
        for _attempt in range(10):
            head = container.runner.max_notification_id()
            assert container.runner.wait_for(PROJECTIONS, head, 10.0), container.runner.status()
            before = snapshot(container, schema)
            if name in FILLED:
                assert sum(len(rows) for t, rows in before.items() if t != "tracking") > 0

            container.runner.rebuild(name)
            after = snapshot(container, schema)
            if container.runner.max_notification_id() == head:
                break
        else:
            pytest.fail("events were written during every one of 10 rebuilds")
    finally:
        container.background.scheduler.resume()

    # The rows that differ, by their text form (each row's last column; hashable, unlike a
    # row holding a jsonb value).
    differing = {
        table: {
            "live only": sorted(texts(before, table) - texts(after, table)),
            "rebuilt only": sorted(texts(after, table) - texts(before, table)),
        }
        for table in sorted(set(before) | set(after))
        if before.get(table) != after.get(table)
    }
    assert after == before, differing
    assert tables(container, f"{schema}__rebuild") == []


def test_rebuilds_of_one_projection_started_together_all_succeed_with_identical_rows(
    container, history
):
    caught_up(container)
    before = snapshot(container, live_schema("keys"))
    errors: list[BaseException] = []

    def rebuild() -> None:
        try:
            container.runner.rebuild("keys")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=rebuild) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert snapshot(container, live_schema("keys")) == before


def test_the_api_keeps_answering_while_every_projection_is_rebuilt(container, admin, history):
    caught_up(container)
    statuses: list[int] = []
    stop = threading.Event()

    def read_listings() -> None:
        client = admin.as_token(admin.token)
        paths = ["/keys", "/tenants", "/instances", "/budgets"]
        while not stop.is_set():
            statuses.append(client.get(paths[len(statuses) % len(paths)]).status_code)

    reader = threading.Thread(target=read_listings)
    reader.start()
    try:
        for _ in range(3):
            for name in PROJECTIONS:
                container.runner.rebuild(name)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert len(statuses) >= 4
    assert set(statuses) == {200}


def every_page(api: Any, path: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        rows += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return rows


def test_writes_made_during_a_rebuild_all_reach_the_rebuilt_read_model(container, admin, history):
    t = admin.new_tenant()
    made: list[str] = []
    stop = threading.Event()

    def write_keys() -> None:
        client = admin.as_token(admin.token)
        while not stop.is_set():
            made.append(client.new_key(t["id"], "router")[0]["id"])

    writer = threading.Thread(target=write_keys)
    writer.start()
    try:
        for _ in range(3):
            container.runner.rebuild("keys")
    finally:
        stop.set()
        writer.join(timeout=30)
    assert made
    for key_id in made:
        assert admin.get(f"/keys/{key_id}").status_code == 200
    assert sorted(k["id"] for k in every_page(admin, "/keys", tenant_id=t["id"])) == sorted(made)


def crash_on(projection: Any, originator_id: Any) -> Callable[[], None]:
    """Make ``projection`` fail on one event, like a crash in the middle of a batch.

    Returns a function that removes the fault.
    """
    handle = projection.handle

    def faulty(curs: Any, event: Any, *args: Any) -> None:
        if event.originator_id == originator_id:
            raise RuntimeError("simulated crash")
        handle(curs, event, *args)

    projection.handle = faulty
    return lambda: setattr(projection, "handle", handle)


@pytest.fixture
def scratch(container: Any) -> Any:
    schema = "rm_scratch_keys"
    with container.pool.connection() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    yield schema
    with container.pool.connection() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def keys_topic_events(container: Any) -> list[dict[str, Any]]:
    topics = KeysProjection.topics()
    with container.pool.connection() as conn:
        return conn.execute(
            f"SELECT notification_id, originator_id FROM {container.runner.source.table}"
            " WHERE topic = ANY(%s) ORDER BY notification_id",
            (topics,),
        ).fetchall()


def test_a_crash_mid_batch_keeps_rows_and_position_together_and_resumes_exactly(
    container, admin, history, scratch
):
    t = admin.new_tenant()
    made = [admin.new_key(t["id"], "router")[0]["id"] for _ in range(9)]
    events = keys_topic_events(container)
    # The last nine events of the keys projection issue the nine keys just made.
    assert [str(e["originator_id"]) for e in events[-9:]] == made
    batch_size = 3
    failing = len(events) - 5
    batch_start = failing - failing % batch_size
    failed_batch = events[batch_start : batch_start + batch_size]
    expected_position = events[batch_start - 1]["notification_id"] if batch_start else 0

    projection = KeysProjection()
    remove_fault = crash_on(projection, events[failing]["originator_id"])
    runner = ProjectionRunner(
        container.pool,
        container.runner.source,
        [projection],
        container.runner.conninfo,
        batch_size=batch_size,
    )
    runner.create_schema(projection, scratch)

    with pytest.raises(RuntimeError, match="simulated crash"):
        runner.catch_up("keys", scratch)

    with container.pool.connection() as conn:
        position = conn.execute(f"SELECT position FROM {scratch}.tracking").fetchone()["position"]
        ids = {r["id"] for r in conn.execute(f"SELECT id FROM {scratch}.keys").fetchall()}
    assert position == expected_position
    assert not ids & {e["originator_id"] for e in failed_batch}
    assert ids == {e["originator_id"] for e in events[:batch_start]}

    remove_fault()
    runner.catch_up("keys", scratch)

    caught_up(container)
    live = snapshot(container, live_schema("keys"))
    assert snapshot(container, scratch) == live


def test_a_created_key_is_readable_on_the_very_next_request(admin):
    t = admin.new_tenant()
    for _ in range(20):
        key, _ = admin.new_key(t["id"], "router")
        r = admin.get(f"/keys/{key['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == key["id"]


def test_a_deleted_key_is_gone_on_the_very_next_request(admin):
    t = admin.new_tenant()
    for _ in range(10):
        key, _ = admin.new_key(t["id"], "router")
        assert admin.delete(f"/keys/{key['id']}").status_code == 200
        assert admin.get(f"/keys/{key['id']}").status_code == 404


def test_a_changed_budget_shows_its_new_limit_on_the_very_next_request(admin):
    t = admin.new_tenant()
    r = admin.post("/budgets", json={"tenant_id": t["id"], "limit_eur": "1"})
    assert r.status_code == 201, r.text
    budget_id = r.json()["id"]
    for cents in range(101, 111):
        limit = str(Decimal(cents).scaleb(-2))
        body = {"limit_eur": limit, "period": "monthly", "thresholds": ["1"]}
        assert admin.put(f"/budgets/{budget_id}", json=body).status_code == 200
        assert admin.get(f"/budgets/{budget_id}").json()["limit_eur"] == limit


class ScratchTenants(TenantsProjection):
    name = "scratch_tenants"


class ScratchKeys(KeysProjection):
    name = "scratch_keys_bg"


@pytest.fixture
def scratch_runner(container: Any) -> Any:
    """A background runner of its own, keeping two read models in scratch schemas."""
    projections = [ScratchTenants(), ScratchKeys()]

    def drop() -> None:
        with container.pool.connection() as conn:
            for p in projections:
                conn.execute(f"DROP SCHEMA IF EXISTS {p.schema()} CASCADE")

    drop()
    runner = ProjectionRunner(
        container.pool, container.runner.source, projections, container.runner.conninfo
    )
    runner.create_all()
    yield runner
    runner.stop()
    drop()


def test_a_read_model_that_keeps_failing_does_not_hold_back_the_others(admin, scratch_runner):
    t = admin.new_tenant()
    remove_fault = crash_on(scratch_runner.projections["scratch_tenants"], UUID(t["id"]))
    scratch_runner.start()
    key, _ = admin.new_key(t["id"], "router")
    head = scratch_runner.max_notification_id()

    assert scratch_runner.wait_for(["scratch_keys_bg"], head, 10)
    with scratch_runner.pool.connection() as conn:
        row = conn.execute(
            f"SELECT name FROM {ScratchKeys.schema()}.keys WHERE id = %s", (UUID(key["id"]),)
        ).fetchone()
    assert row is not None and row["name"] == key["name"]
    assert scratch_runner.position("scratch_tenants") < head
    assert isinstance(scratch_runner.last_error, RuntimeError)

    remove_fault()
    assert scratch_runner.wait_for(["scratch_tenants"], head, 10)


class ScratchAudit(AuditProjection):
    name = "scratch_audit"


def fail_writing(projection: Any) -> Callable[[], None]:
    """Make ``projection`` fail when it writes a folded batch (on a rebuild's writer thread)."""
    detach = projection.detach

    def faulty(schema: str) -> Callable[[Any], None]:
        detach(schema)

        def write(curs: Any) -> None:
            raise RuntimeError("simulated write failure")

        return write

    projection.detach = faulty
    return lambda: setattr(projection, "detach", detach)


@pytest.mark.parametrize("where", ["fold", "write"])
def test_a_rebuild_that_fails_leaves_the_live_copy_as_it_was_and_names_the_read_model(
    container, admin, history, where
):
    projection = ScratchAudit()
    runner = ProjectionRunner(
        container.pool, container.runner.source, [projection], container.runner.conninfo
    )
    schema = projection.schema()
    with container.pool.connection() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    try:
        runner.create_all()
        runner.catch_up("scratch_audit")
        before = snapshot(container, schema)
        t = admin.new_tenant()
        if where == "fold":
            remove_fault = crash_on(projection, UUID(t["id"]))
        else:
            remove_fault = fail_writing(projection)

        with pytest.raises(ProjectionFailedError, match="scratch_audit"):
            runner.rebuild("scratch_audit")

        assert snapshot(container, schema) == before
        remove_fault()
        runner.rebuild("scratch_audit")
        position = runner.position("scratch_audit")
        with container.pool.connection() as conn:
            rebuilt = conn.execute(f"SELECT * FROM {schema}.entries ORDER BY position").fetchall()
            caught_up(container)
            live = conn.execute(
                "SELECT * FROM rm_audit.entries WHERE position <= %s ORDER BY position",
                (position,),
            ).fetchall()
        assert rebuilt == live
        assert any(r["target_id"] == UUID(t["id"]) for r in rebuilt)
    finally:
        with container.pool.connection() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"DROP SCHEMA IF EXISTS {schema}__rebuild CASCADE")


def test_usage_buckets_of_one_key_spelled_two_ways_are_merged_into_one_row():
    from projections.readmodels.usage import canonical
    from projections.readmodels.usage_cost import add_cost, cost_of, rate, zero

    def bucket(requests: int, prompt: int, completion: int, price: str) -> list[Any]:
        sums = zero()
        sums[0], sums[3], sums[4] = requests, prompt, completion
        add_cost(sums, prompt, completion, rate("m", price, price))
        return sums

    key = UUID("12345678-1234-5678-1234-567812345678")
    tenant = str(UUID(int=7))
    raw = {
        (tenant, 0, str(key), "m", None): bucket(1, 10, 5, "0.10"),
        (tenant, 0, key.hex.upper(), "m", ""): bucket(2, 20, 5, "2.5"),
        (tenant, 0, str(key), "m", str(key)): bucket(1, 1, 1, "0"),
    }

    merged = canonical(raw, set())

    assert list(merged) == [(tenant, 0, str(key), "m", None), (tenant, 0, str(key), "m", str(key))]
    one = merged[(tenant, 0, str(key), "m", None)]
    assert one[:7] == [3, 0, 0, 30, 10, 0, 0]
    assert str(cost_of(one)) == str(
        token_cost(10, 5, Decimal("0.10"), Decimal("0.10"))
        + token_cost(20, 5, Decimal("2.5"), Decimal("2.5"))
    )
    assert canonical(merged, set()) is merged  # canonical already: kept as it is


def test_a_usage_read_model_made_before_the_vendor_buckets_fills_them_from_its_own(
    container, scratch
):
    """An upgrade needs no rebuild: the old buckets' records named no vendor."""
    from projections.readmodels.usage import CREATE_DAILY, CREATE_HOURLY, UsageProjection

    tenant = uuid4()
    with container.pool.connection() as conn:
        conn.execute(f"CREATE SCHEMA {scratch}")
        for create in (CREATE_HOURLY, CREATE_DAILY):
            conn.execute(create.format(s=scratch))
        for table, at in (("hourly", "2025-10-30T10:00:00Z"), ("daily", "2025-10-30T00:00:00Z")):
            for key, requests in ((uuid4(), 2), (uuid4(), 3)):
                conn.execute(
                    f"INSERT INTO {scratch}.{table} VALUES"
                    " (%s, %s, %s, 'm', %s, %s, %s, 0, 10, 5, 0, 100, 0.25)",
                    (at, tenant, key, UUID(int=0), requests, requests),
                )

    for _ in range(2):  # and only once: every start runs the schema's statements
        container.runner.create_schema(UsageProjection(), scratch)

    with container.pool.connection() as conn:
        for table in ("vendor_hourly", "vendor_daily"):
            rows = conn.execute(
                f"SELECT tenant_id, vendor, model, requests, successes, cost, streamed"
                f" FROM {scratch}.{table}"
            ).fetchall()
            assert [tuple(r.values()) for r in rows] == [
                (tenant, "", "m", 5, 5, Decimal("0.50"), 0)
            ], table


def test_usage_cache_judges_each_record_by_the_cache_setting_of_its_place_in_the_log(
    container, admin
):
    """The usage_cache read model sums a batch of events before writing it: a miss is still a
    successful answer of a model whose cache was on *at that record's place in the log*, live
    and in a rebuild (which reads the whole log in one batch)."""
    model = new_model(admin)
    tenant = admin.new_tenant()
    router, _ = admin.new_key(tenant["id"], "router")

    def record(*hits: bool) -> None:
        now = datetime.now(UTC)
        records = [
            UsageInput(
                uuid4().hex, UUID(router["id"]), model, 10, 5, "success", 1, now, cache_hit=h
            )
            for h in hits
        ]
        container.usage.ingest_usage(GATEWAY, records)

    def cache(enabled: bool) -> None:
        body = {"enabled": enabled, "ttl_seconds": 60}
        assert admin.put(f"/models/{model}/cache", json=body).is_success

    record(False, False)  # the cache is off: no misses
    cache(True)
    record(False, True, True)  # one miss, two hits
    cache(False)
    record(False)  # off again: no miss

    def stats() -> tuple[int, int, int]:
        caught_up(container)
        r = admin.get("/usage/cache", params={"tenant_id": tenant["id"]})
        assert r.status_code == 200, r.text
        (row,) = r.json()["data"]
        return row["hits"], row["misses"], row["prompt_tokens_saved"]

    assert stats() == (2, 1, 20)
    container.background.scheduler.pause()
    try:
        container.runner.rebuild("usage_cache")
    finally:
        container.background.scheduler.resume()
    assert stats() == (2, 1, 20)


def test_a_stream_of_usage_writes_wakes_the_worker_once_per_pause_and_a_key_write_at_once(
    container,
):
    """The worker takes usage batches once per ``CATCH_UP_EVERY`` (``_pace``): its listener
    reads their notifications (hundreds a second under traffic) together, once per pause,
    instead of waking for each; a write applied at once (a key), notified on the changes
    channel, still wakes it at once and without a pause."""
    source = container.runner.source
    assert source.changes_channel is not None
    runner = ProjectionRunner(container.pool, source, [], container.runner.conninfo)
    wakes: list[float] = []

    class Counted(threading.Event):
        def set(self) -> None:
            wakes.append(time.monotonic())
            super().set()

    runner._wake = Counted()
    listeners = [
        threading.Thread(target=runner._listen, daemon=True),
        threading.Thread(target=runner._listen_changes, daemon=True),
    ]
    for thread in listeners:
        thread.start()
    try:
        with container.pool.connection() as conn:
            time.sleep(0.3)  # both LISTENing
            started = time.monotonic()
            for i in range(100):  # 100 usage writes over ~0.2 s
                conn.execute("SELECT pg_notify(%s, %s)", (source.channel, f"{i} usage:UsageBatch"))
                time.sleep(0.002)
            streamed = time.monotonic() - started
            # Until the wakes stop (each wake reads every notification that came: one left
            # unread would wake it again, one more per pause, for seconds).
            deadline = time.monotonic() + 10
            while True:
                seen = len(wakes)
                time.sleep(4 * CATCH_UP_EVERY)
                if len(wakes) == seen or time.monotonic() > deadline:
                    break
            assert len(wakes) == seen
            # At most one wake per pause while they came, and one for the last ones.
            assert 1 <= len(wakes) <= streamed / CATCH_UP_EVERY + 3
            assert not runner._hurry.is_set()

            conn.execute("SELECT pg_notify(%s, %s)", (source.channel, "200 usage:UsageBatch"))
            key = "201 domain.apikey:ApiKey"
            conn.execute("SELECT pg_notify(%s, %s)", (source.changes_channel, key))
            conn.execute("SELECT pg_notify(%s, %s)", (source.channel, key))
            assert runner._hurry.wait(5)
    finally:
        runner._stop.set()
        for thread in listeners:
            thread.join(5)
