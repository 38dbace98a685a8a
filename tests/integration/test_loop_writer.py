"""``LoopWriter``: the event store's insert run from an event loop on a connection of its own
(the gateway's usage writes), against real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from interfaces.db.loopwriter import LoopWriter


def writer(container: Any, timeout: float = 60.0) -> LoopWriter:
    """The gateway meter's kind of writer, with ``timeout``."""
    w = container.usage_writer("hostplane loop writer test")
    w.timeout = timeout
    return w


def events_table(container: Any) -> str:
    recorder = container.recorder
    return f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'


def test_a_write_stores_the_events_in_order_and_returns_their_notification_ids(container):
    recorder = container.recorder
    aggregate, tenant = uuid4(), uuid4()
    events = [StoredEvent(aggregate, v, "test.Event", b'{"v": %d}' % v) for v in (1, 2, 3)]
    params = recorder.insert_params(events, usage_request_ids={tenant: ["loop-1"]})

    async def run() -> list[int]:
        w = writer(container)
        try:
            return await w.run(params)
        finally:
            await w.close()

    ids = asyncio.run(run())

    assert len(ids) == 3 and ids == sorted(ids)
    stored = recorder.select_events(aggregate)
    assert [(e.originator_version, e.state) for e in stored] == [
        (e.originator_version, e.state) for e in events
    ]
    assert recorder.seen({tenant: ["loop-1"]}) == {tenant: {"loop-1"}}


def test_a_refused_write_raises_as_psycopg_would_and_the_next_one_succeeds(container):
    recorder = container.recorder
    aggregate, tenant = uuid4(), uuid4()

    def event(version: int) -> StoredEvent:
        return StoredEvent(aggregate, version, "test.Event", b"{}")

    async def run() -> list[int]:
        w = writer(container)
        try:
            await w.run(recorder.insert_params([event(1)], usage_request_ids={tenant: ["r"]}))
            with pytest.raises(psycopg.errors.UniqueViolation):  # the request id again
                await w.run(recorder.insert_params([event(2)], usage_request_ids={tenant: ["r"]}))
            return await w.run(recorder.insert_params([event(2)]))
        finally:
            await w.close()

    assert len(asyncio.run(run())) == 1
    assert [e.originator_version for e in recorder.select_events(aggregate)] == [1, 2]


def test_a_write_that_waits_past_its_timeout_gives_up_and_the_next_uses_a_new_connection(
    container,
):
    """A write that waits longer than its ``timeout`` (here for the write lock that another
    transaction holds) raises ``TimeoutError`` and leaves its connection; the next write opens
    another. (The abandoned statement may still commit once the lock is free: the meter's
    request ids make writing it again safe.)"""
    recorder = container.recorder
    aggregate = uuid4()

    async def run(locker: psycopg.Connection[Any]) -> list[int]:
        w = writer(container, timeout=0.3)
        try:
            with pytest.raises(TimeoutError):
                await w.run(recorder.insert_params([StoredEvent(uuid4(), 1, "test.Event", b"{}")]))
            locker.rollback()  # the lock is free again
            return await w.run(
                recorder.insert_params([StoredEvent(aggregate, 1, "test.Event", b"{}")])
            )
        finally:
            await w.close()

    with psycopg.connect(container.database.conninfo) as locker:
        locker.execute(f"LOCK TABLE {events_table(container)} IN EXCLUSIVE MODE")
        written = asyncio.run(run(locker))

    assert len(written) == 1
    assert [e.originator_version for e in recorder.select_events(aggregate)] == [1]
