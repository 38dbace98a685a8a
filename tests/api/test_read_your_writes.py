"""Reads reflect every write committed before them, wherever the write was made."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from application.auth import Principal
from domain.base import Actor
from tests.conftest import make_settings


@pytest.fixture
def other_process(database_conninfo: str, tmp_path: Any) -> Any:
    """A second hostplane on the same database (as another API process would be)."""
    from interfaces.bootstrap import Container

    other = Container.open(make_settings(database_conninfo, tmp_path))
    yield other
    other.close()


def test_a_key_written_elsewhere_is_read_after_the_read_models_catch_up_never_as_a_404(
    admin, tenant, other_process, database_conninfo
):
    operator = Principal(kind="admin", actor=Actor(id="admin", ip=None))
    answers: list[int] = []
    with psycopg.connect(database_conninfo, autocommit=True) as hold:
        # Stall the projection workers on the keys read model, as a slow worker would be.
        hold.execute("SELECT pg_advisory_lock(hashtext('rm_keys'))")
        key, _ = other_process.keys.issue_key(
            operator, uuid.UUID(tenant.id), "written-elsewhere", "router"
        )
        reader = threading.Thread(
            target=lambda: answers.append(admin.get(f"/keys/{key.id}").status_code)
        )
        reader.start()
        time.sleep(0.3)  # the read has started and must wait rather than answer from behind
        hold.execute("SELECT pg_advisory_unlock(hashtext('rm_keys'))")
    reader.join(timeout=30)

    assert answers == [200]


def test_a_key_created_over_http_is_read_back_at_once_many_times(tenant):
    for n in range(20):
        r = tenant.api.post(f"/tenants/{tenant.id}/keys", json={"name": f"k{n}", "kind": "router"})
        assert r.status_code == 201, r.text

        assert tenant.api.get(f"/keys/{r.json()['key']['id']}").status_code == 200
