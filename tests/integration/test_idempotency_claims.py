"""An Idempotency-Key claim against real PostgreSQL: what a retry finds, whatever the first did.

The crash itself (a ``hostplane serve`` killed mid-request) is in tests/api/test_idempotency_crash.py;
these tests drive ``IdempotencyStore`` directly, with the real commands and event store.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.auth import Principal
from application.idempotency import ClaimLostError, Created
from domain.base import Actor
from domain.index import NameIndex
from interfaces.db.stores import IdempotencyConflictError, IdempotencyStore

ADMIN = Principal(kind="admin", actor=Actor(id="admin", ip=None))


def store(container: Any, lease: timedelta = timedelta(seconds=30)) -> IdempotencyStore:
    return IdempotencyStore(container.pool, container.secret_box, lease)


def name() -> str:
    return f"idem-{uuid4().hex[:10]}"


def create_tenant(container: Any, tenant_name: str) -> tuple[int, Any]:
    return 201, {"id": str(container.tenants.create_tenant(ADMIN, tenant_name))}


def recovered(created: Created) -> tuple[int, Any]:
    return 201, {"recovered": [str(i) for i in created.ids]}


def tenant_named(container: Any, tenant_name: str) -> UUID | None:
    index = container.store.find(NameIndex, NameIndex.create_id("tenant", tenant_name.lower()))
    return None if index is None else index.owner_id


def test_a_request_that_failed_after_its_save_keeps_its_key_and_the_retry_answers_with_it(
    container,
):
    idempotency, key, tenant_name = store(container), uuid4().hex, name()

    def create_then_fail() -> tuple[int, Any]:
        create_tenant(container, tenant_name)
        raise RuntimeError("the process died here")

    with pytest.raises(RuntimeError):
        idempotency.run("admin", key, {"n": 1}, create_then_fail, recovered)
    status, body = idempotency.run(
        "admin", key, {"n": 1}, lambda: create_tenant(container, "x"), recovered
    )
    assert status == 201
    assert str(tenant_named(container, tenant_name)) in body["recovered"]


def test_a_request_still_within_its_lease_answers_409_with_how_long_to_wait(container):
    idempotency, key = store(container, timedelta(seconds=30)), uuid4().hex
    started, go = threading.Event(), threading.Event()

    def slow() -> tuple[int, Any]:
        started.set()
        go.wait(30)
        return 201, {}

    first = threading.Thread(target=idempotency.run, args=("admin", key, {}, slow, recovered))
    first.start()
    try:
        started.wait(30)
        with pytest.raises(IdempotencyConflictError, match="in progress") as caught:
            idempotency.run("admin", key, {}, slow, recovered)
        assert 1 <= caught.value.retry_after <= 30
    finally:
        go.set()
        first.join()


def test_a_retry_that_takes_over_an_expired_claim_refuses_the_first_requests_late_save(
    container,
):
    # The lease has run out at once: the retry takes the claim while the first still runs.
    idempotency, key = store(container, timedelta(0)), uuid4().hex
    first_name, retry_name = name(), name()
    started, go = threading.Event(), threading.Event()
    outcome: list[BaseException | tuple[int, Any]] = []

    def slow_first() -> tuple[int, Any]:
        started.set()
        go.wait(30)
        return create_tenant(container, first_name)

    def first_request() -> None:
        try:
            outcome.append(idempotency.run("admin", key, {}, slow_first, recovered))
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            outcome.append(e)

    first = threading.Thread(target=first_request)
    first.start()
    started.wait(30)
    status, body = idempotency.run(
        "admin", key, {}, lambda: create_tenant(container, retry_name), recovered
    )
    go.set()
    first.join()

    assert status == 201
    assert body["id"] == str(tenant_named(container, retry_name))
    assert isinstance(outcome[0], ClaimLostError)
    assert tenant_named(container, first_name) is None  # its save was refused: one tenant
    # And a third try gets the retry's answer.
    assert (
        idempotency.run("admin", key, {}, lambda: create_tenant(container, name()), recovered)[1]
        == body
    )
