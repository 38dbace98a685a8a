"""What the gateway keeps per process: a busy key never waits for a reload, a change is seen
within the freshness bound, and one load per key runs at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from interfaces.gateway.kept import Kept

SECONDS = 0.2  # the freshness bound of these tests (the gateway's is a second)


class Source:
    """A value that changes, read by loads that can be held back or made to fail."""

    def __init__(self) -> None:
        self.value = 1
        self.loads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def load(self) -> int:
        self.loads += 1
        value = self.value  # what the query sees when it begins
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("database unreachable")
        return value


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


def test_a_value_in_use_is_reloaded_in_the_background_and_its_callers_do_not_wait():
    async def scenario() -> None:
        kept: Kept[str, int] = Kept("test", SECONDS)
        source = Source()
        assert await kept.get("k", source.load) == 1
        source.value = 2
        source.gate.clear()  # reloads are held back
        await asyncio.sleep(SECONDS * 0.6)  # older than half the bound
        # Served from memory at once, while the reload it started waits for the database.
        assert await asyncio.wait_for(kept.get("k", source.load), 1) == 1
        assert await asyncio.wait_for(kept.get("k", source.load), 1) == 1
        assert source.loads == 2  # one reload, not one per caller
        source.gate.set()
        await asyncio.sleep(0.01)
        assert await kept.get("k", source.load) == 2
        assert source.loads == 2

    run(scenario())


def test_a_value_nobody_asked_for_within_the_bound_is_loaded_while_its_caller_waits():
    async def scenario() -> None:
        kept: Kept[str, int] = Kept("test", SECONDS)
        source = Source()
        assert await kept.get("k", source.load) == 1
        source.value = 2
        await asyncio.sleep(SECONDS * 1.2)
        assert await kept.get("k", source.load) == 2  # never the value older than the bound

    run(scenario())


def test_fresh_reads_what_a_load_begun_after_the_call_saw():
    async def scenario() -> None:
        kept: Kept[str, int] = Kept("test", SECONDS)
        source = Source()
        source.gate.clear()
        first = asyncio.ensure_future(kept.get("k", source.load))
        await asyncio.sleep(0.01)  # its load has read 1 and waits
        source.value = 2  # e.g. an instance started now
        fresh = asyncio.ensure_future(kept.get("k", source.load, fresh=True))
        plain = asyncio.ensure_future(kept.get("k", source.load))
        await asyncio.sleep(0.01)
        source.gate.set()
        assert await first == 1
        assert await plain == 1  # joined the load under way
        assert await fresh == 2  # waited for a load that began after it was asked
        assert source.loads == 2

    run(scenario())


def test_concurrent_callers_of_a_key_share_one_load():
    async def scenario() -> None:
        kept: Kept[str, int] = Kept("test", SECONDS)
        source = Source()
        source.gate.clear()
        callers = [asyncio.ensure_future(kept.get("k", source.load)) for _ in range(50)]
        await asyncio.sleep(0.01)
        source.gate.set()
        assert await asyncio.gather(*callers) == [1] * 50
        assert source.loads == 1

    run(scenario())


def test_a_failed_reload_keeps_the_value_within_the_bound_and_then_the_caller_sees_the_error():
    async def scenario() -> None:
        kept: Kept[str, int] = Kept("test", SECONDS)
        source = Source()
        assert await kept.get("k", source.load) == 1
        source.fail = True
        await asyncio.sleep(SECONDS * 0.6)
        assert await kept.get("k", source.load) == 1  # its reload fails in the background
        await asyncio.sleep(0.01)
        assert await kept.get("k", source.load) == 1  # still within the bound
        await asyncio.sleep(SECONDS * 0.5)
        with pytest.raises(ConnectionError):
            await kept.get("k", source.load)
        source.fail = False
        assert await kept.get("k", source.load) == 1

    run(scenario())


def test_a_caller_that_goes_away_does_not_cancel_the_load_others_wait_for():
    async def scenario() -> None:
        kept: Kept[str, int] = Kept("test", SECONDS)
        source = Source()
        source.gate.clear()
        leaving = asyncio.ensure_future(kept.get("k", source.load))
        staying = asyncio.ensure_future(kept.get("k", source.load))
        await asyncio.sleep(0.01)
        leaving.cancel()  # a client that disconnected
        await asyncio.sleep(0.01)
        source.gate.set()
        assert await staying == 1
        assert source.loads == 1

    run(scenario())
