"""Every statement a request runs is bounded by HOSTPLANE_STATEMENT_TIMEOUT_SECONDS; the
operator's commands (rebuilds, exports, reconciliation) run without one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import eventsourcing.persistence
import psycopg
import pytest

from interfaces.bootstrap import Container
from tests.conftest import make_settings

LONGER_THAN_THE_TIMEOUT = "SELECT pg_sleep(30)"


@pytest.fixture(scope="module")
def bounded(database_conninfo: str, data_dir: Any) -> Iterator[Container]:
    settings = make_settings(database_conninfo, data_dir, statement_timeout_seconds=2)
    container = Container.open(settings)
    yield container
    container.close()


def test_a_statement_longer_than_the_timeout_is_cancelled_on_the_api_pool(bounded):
    with pytest.raises(psycopg.errors.QueryCanceled), bounded.pool.connection() as conn:
        conn.execute(LONGER_THAN_THE_TIMEOUT)


def test_a_statement_longer_than_the_timeout_is_cancelled_on_the_event_loops_pool(bounded):
    async def run() -> None:
        async with bounded.async_pool() as pool, pool.connection() as conn:
            await conn.execute(LONGER_THAN_THE_TIMEOUT)

    with pytest.raises(psycopg.errors.QueryCanceled):
        asyncio.run(run())


def test_a_statement_longer_than_the_timeout_is_cancelled_in_the_event_store(bounded):
    datastore = bounded.store.recorder.datastore  # type: ignore[attr-defined]
    with (
        pytest.raises(eventsourcing.persistence.OperationalError) as raised,
        datastore.get_connection() as conn,
    ):
        conn.execute(LONGER_THAN_THE_TIMEOUT)
    assert isinstance(raised.value.__cause__, psycopg.errors.QueryCanceled)


def test_the_default_timeout_is_thirty_seconds(container):
    with container.pool.connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "30s"


def test_the_operators_commands_run_without_a_statement_timeout(database_conninfo, data_dir):
    settings = make_settings(database_conninfo, data_dir).for_operator()
    container = Container.open(settings)
    try:
        with container.pool.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "0"
        with container.store.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "0"
    finally:
        container.close()
