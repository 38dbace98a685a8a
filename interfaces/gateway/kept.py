"""What the gateway reads per request and keeps per process for a moment (``FRESH_SECONDS``).

One place for the pattern every such read follows (the catalog, a tenant's instances, its
project settings, quotas, budgets, prices): a value is served from memory while it is younger
than ``FRESH_SECONDS`` (its age counted from when its query *began*), so a change is seen by every
request at most that long after it is written. A value in use is reloaded in the background once
it is half that old, so a busy key never waits for the database; only a value nobody asked for in
a while is loaded while its request waits. One load per key at a time: whoever needs a load joins
the one under way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger("hostplane.gateway")

FRESH_SECONDS = 1.0
MAX_KEPT = 10_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Load(Generic[V]):
    started: float  # time.monotonic() when its query began
    task: asyncio.Task[V]


class Kept(Generic[K, V]):
    """Values by key, each loaded by the ``load`` its first caller gives."""

    def __init__(self, what: str, seconds: float = FRESH_SECONDS, most: int = MAX_KEPT) -> None:
        self.what = what  # named in the log when a reload in the background fails
        self.seconds = seconds
        self.most = most
        self._values: dict[K, tuple[float, V]] = {}
        self._loads: dict[K, _Load[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]], fresh: bool = False) -> V:
        """The value, at most ``seconds`` old; with ``fresh``, read after this call began."""
        called = time.monotonic()
        kept = self._values.get(key)
        if kept is not None and not fresh and called - kept[0] <= self.seconds:
            if called - kept[0] >= self.seconds / 2 and key not in self._loads:
                self._start(key, load).task.add_done_callback(self._failed_unseen)
            return kept[1]
        while True:
            current = self._loads.get(key) or self._start(key, load)
            if not fresh or current.started >= called:
                return await asyncio.shield(current.task)
            # A load that began before this call: wait for it, then for one that begins after.
            await asyncio.wait([current.task])
            kept = self._values.get(key)
            if kept is not None and kept[0] >= called:
                return kept[1]

    def _start(self, key: K, load: Callable[[], Awaitable[V]]) -> _Load[V]:
        started = time.monotonic()
        task = asyncio.ensure_future(self._loaded(key, load, started))
        task.add_done_callback(_retrieved)  # its waiters may all have gone (disconnected)
        self._loads[key] = current = _Load(started, task)
        return current

    async def _loaded(self, key: K, load: Callable[[], Awaitable[V]], started: float) -> V:
        try:
            value = await load()
            kept = self._values.get(key)
            if kept is None or kept[0] < started:
                if kept is None and len(self._values) >= self.most:
                    self._values.clear()
                self._values[key] = (started, value)
            return value
        finally:
            current = self._loads.get(key)
            if current is not None and current.task is asyncio.current_task():
                del self._loads[key]

    def _failed_unseen(self, task: asyncio.Task[V]) -> None:
        """A reload in the background that failed: the kept value serves until it is too old."""
        if not task.cancelled() and task.exception() is not None:
            log.warning("reloading the kept %s failed: %r", self.what, task.exception())


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
