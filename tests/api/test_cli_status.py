"""``hostplane status`` against a served hostplane, and the admin route it reads."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tests.conftest import free_port
from tests.integration.test_cli import PROJECTIONS, hostplane

# "<name>  <position>  <head>  <lag>", as under the "read model" header.
ROW = re.compile(r"^(?P<name>\w+)\s+(?P<position>\d+)\s+(?P<head>\d+)\s+(?P<lag>\d+)$")


def events_in_store(container: Any) -> int:
    """The events in the store, asked of PostgreSQL directly."""
    with container.pool.connection() as conn:
        sql = f"SELECT count(*) AS n FROM {container.runner.source.table}"
        return conn.execute(sql).fetchone()["n"]


def status(url: str, database: str, data_dir: Any, **kwargs: Any) -> Any:
    return hostplane("status", "--url", url, database=database, data_dir=data_dir, **kwargs)


def test_status_prints_health_each_read_model_the_jobs_and_the_stores_event_count(
    live_server, admin, container, database_conninfo, tmp_path
):
    admin.new_tenant()
    before = events_in_store(container)

    result = status(live_server.url, database_conninfo, tmp_path)

    after = events_in_store(container)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout.splitlines()
    assert out[0] == f"hostplane at {live_server.url}"
    assert "health     ok, ready" in out
    (events,) = [x for x in out if x.startswith("events ")]
    count = int(events.split()[1])
    assert before <= count <= after
    rows = {m["name"]: m for m in map(ROW.match, out) if m}
    assert sorted(rows) == sorted(PROJECTIONS)
    for m in rows.values():
        assert int(m["lag"]) == int(m["head"]) - int(m["position"]) >= 0
    header = next(i for i, x in enumerate(out) if x.startswith("job "))
    jobs = dict(x.split()[:2] for x in out[header + 1 :])
    assert {"budgets", "prune", "all-budgets", "webhooks"} <= set(jobs)
    for when in jobs.values():  # the next run, in UTC, within the longest interval (a minute)
        next_run = datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs((next_run - datetime.now(UTC)).total_seconds()) <= 61


def test_status_exits_non_zero_and_says_so_when_nothing_listens_on_the_port(
    database_conninfo, tmp_path
):
    url = f"http://127.0.0.1:{free_port()}"

    result = status(url, database_conninfo, tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    assert f"hostplane at {url} is down or unreachable" in result.stderr


def test_status_without_the_admin_token_prints_health_and_says_what_it_needs(
    live_server, database_conninfo, tmp_path
):
    result = status(live_server.url, database_conninfo, tmp_path, admin_token=None)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "health     ok, ready" in result.stdout
    assert "set HOSTPLANE_ADMIN_TOKEN" in result.stdout


def test_status_with_a_wrong_admin_token_exits_2(live_server, database_conninfo, tmp_path):
    result = status(live_server.url, database_conninfo, tmp_path, admin_token="hp_admin_wrong")

    assert result.returncode == 2
    assert "the admin token was refused" in result.stderr


def test_the_status_route_is_the_admins_alone(anonymous, tenant, admin, container):
    assert anonymous.get("/status").status_code == 401
    assert tenant.api.get("/status").status_code == 403
    before = events_in_store(container)
    r = admin.get("/status")
    after = events_in_store(container)
    assert r.status_code == 200, r.text
    body = r.json()
    assert before <= body["events"]["count"] <= after
    assert body["events"]["head"] >= body["events"]["count"]
    assert body["leader"] is True
    assert [m["name"] for m in body["read_models"]] == PROJECTIONS
