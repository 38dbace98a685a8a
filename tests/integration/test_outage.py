"""A database outage is answered (503 with Retry-After), and nothing fails once it is over.

These tests stop and start a PostgreSQL of their own (embedded, in a data dir of its own), so
the session's database, which the other tests share, stays up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest

from interfaces.db.database import Database
from tests.conftest import ADMIN_TOKEN, make_settings, served_on_own_database

# Long enough for any answer on a loaded machine, short enough that a hang fails the test
# instead of stalling the run (before the fix, requests waited as long as the outage lasted).
CLIENT_TIMEOUT = 60.0


@dataclass
class Outage:
    """A served hostplane on its own embedded PostgreSQL, which the test can stop and start."""

    database: Database
    http: httpx.Client

    def stop_database(self) -> None:
        self.database.server.stop()

    def start_database(self) -> None:
        self.database.server.start()


@pytest.fixture
def outage() -> Iterator[Outage]:
    with served_on_own_database("hostplane-outage-", partial(make_settings, None)) as served:
        server, _, database = served
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(
            base_url=server.url + "/api/v1", headers=headers, timeout=CLIENT_TIMEOUT
        ) as http:
            yield Outage(database, http)


def assert_database_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["type"] == "service_unavailable"
    assert int(r.headers["Retry-After"]) >= 1
    assert "socket" not in error["message"] and "postgres" not in error["message"].lower()


def new_tenant(http: httpx.Client, name: str) -> httpx.Response:
    return http.post("/tenants", json={"name": name})


def test_requests_during_a_database_outage_answer_503_database_unavailable(outage):
    created = new_tenant(outage.http, "before-the-outage")
    assert created.status_code == 201, created.text
    tenant_id = created.json()["id"]

    outage.stop_database()

    assert_database_unavailable(outage.http.get(f"/tenants/{tenant_id}"))
    assert_database_unavailable(outage.http.get("/tenants"))
    assert_database_unavailable(new_tenant(outage.http, "during-the-outage"))
    assert_database_unavailable(outage.http.post(f"/tenants/{tenant_id}/keys", json={"name": "k"}))


def test_readiness_answers_503_while_the_database_is_down_and_health_stays_cheap(outage):
    ready = outage.http.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["database"] == "ok"

    outage.stop_database()

    assert_database_unavailable(outage.http.get("/health/ready"))
    # Liveness: the process serves; the load balancer's readiness check is /health/ready.
    health = outage.http.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


@pytest.mark.parametrize("asked_during_the_outage", [False, True])
def test_after_the_database_returns_every_read_and_write_succeeds(outage, asked_during_the_outage):
    created = new_tenant(outage.http, "before-the-outage")
    assert created.status_code == 201, created.text
    tenant_id = created.json()["id"]
    outage.http.get("/tenants")  # pooled connections, which the restart closes

    outage.stop_database()
    if asked_during_the_outage:
        assert outage.http.get(f"/tenants/{tenant_id}").status_code == 503
    outage.start_database()

    statuses: list[Any] = []
    for i in range(20):
        statuses.append(outage.http.get(f"/tenants/{tenant_id}").status_code)
        statuses.append(outage.http.get("/tenants").status_code)
        made = new_tenant(outage.http, f"after-the-outage-{i}")
        statuses.append(made.status_code)
        if made.status_code == 201:
            key = outage.http.post(f"/tenants/{made.json()['id']}/keys", json={"name": "k"})
            statuses.append(key.status_code)
    assert set(statuses) <= {200, 201}, statuses
    assert outage.http.get("/health/ready").status_code == 200


def test_a_write_that_answered_503_can_be_made_once_the_database_is_back(outage):
    outage.stop_database()
    assert_database_unavailable(new_tenant(outage.http, "retried-after-the-outage"))
    outage.start_database()

    made = new_tenant(outage.http, "retried-after-the-outage")
    assert made.status_code == 201, made.text
    read = outage.http.get(f"/tenants/{made.json()['id']}")
    assert read.status_code == 200, read.text
    assert read.json()["name"] == "retried-after-the-outage"
