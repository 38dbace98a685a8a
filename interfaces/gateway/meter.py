"""Group commit of the gateway's usage records: many requests, one event-store write.

Each request hands its record to ``Meter.record`` and awaits it: the record is durable (its
usage batch committed, through ``Usage.ingest_usage``, the path of ``POST /usage/events``)
when the await returns. One thread per process writes: it takes what has queued up and
ingests it all at once. A record that arrives alone is written at once; when others are
queued beside it, the write waits a little (2 ms) for more. Measured (bench --only gateway,
one process): a fixed 2 ms gather added ~1.4 ms at p50 to every answer at one client; no
gather at all cost ~20% of the throughput at 32 clients (smaller batches, more commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from typing import Any

from application.auth import Principal
from application.usage import Usage
from domain.base import Actor
from domain.usage import MAX_BATCH, UsageBatchInvalidError, UsageInput
from interfaces.metrics import USAGE_BATCH_RECORDS, USAGE_BATCH_SECONDS

log = logging.getLogger("hostplane.gateway")

# The gateway records for every tenant (like the operator's token on POST /usage/events).
GATEWAY = Principal(kind="admin", actor=Actor(id="gateway", ip=None))
GATHER_SECONDS = 0.002  # how long a write under load waits for more records


class MeteringError(Exception):
    """A record could not be made durable (the database is down, say)."""


Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Future[int | None]]


class Meter:
    def __init__(self, usage: Usage, gather_seconds: float = GATHER_SECONDS) -> None:
        self.usage = usage
        self.gather_seconds = gather_seconds
        self._queue: queue.SimpleQueue[tuple[UsageInput, Waiter] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gateway-meter", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop (after the server drained its requests)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    async def record(self, record: UsageInput) -> int | None:
        """Return once ``record`` is durable; ``MeteringError`` if it could not be.

        Returns the notification id its usage event was written at (or below, when others were
        written with it): the read models have counted it once their position reaches that.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int | None] = loop.create_future()
        self._queue.put((record, (loop, done)))
        return await done

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                stopping = True
                items: list[tuple[UsageInput, Waiter]] = []
            else:
                items = [item]
            # Alone, a record is written at once; when others queued beside it (load), the
            # write waits up to ``gather_seconds`` for more, so batches grow with the load.
            busy = self._queue.qsize() > 0
            deadline = time.monotonic() + (self.gather_seconds if busy else 0.0)
            while len(items) < MAX_BATCH:
                try:
                    wait = deadline - time.monotonic()
                    more = self._queue.get_nowait() if wait <= 0 else self._queue.get(timeout=wait)
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    continue  # write what came before, and whatever is still queued
                items.append(more)
            if stopping:
                while True:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is not None:
                        items.append(more)
            for start in range(0, len(items), MAX_BATCH):
                self._write(items[start : start + MAX_BATCH])

    def _write(self, items: list[tuple[UsageInput, Waiter]]) -> None:
        if not items:
            return
        started = time.perf_counter()
        try:
            # The gateway's request ids are new UUIDs: not looked up before the write.
            result = self.usage.ingest_usage(
                GATEWAY, [r for r, _ in items], fresh_ids=True, instance_keys=True
            )
            USAGE_BATCH_SECONDS.observe(time.perf_counter() - started)
            USAGE_BATCH_RECORDS.observe(len(items))
        except UsageBatchInvalidError:
            if len(items) > 1:  # one bad record must not refuse the others: one by one
                for item in items:
                    self._write([item])
                return
            log.warning("a gateway usage record was refused: %s", items[0][0].request_id)
            self._settle(items, MeteringError("the usage record was refused"))
            return
        except Exception as exc:  # noqa: BLE001 - said to every waiting request
            log.warning("gateway usage records could not be written: %r", type(exc).__name__)
            self._settle(items, MeteringError("usage could not be recorded"))
            return
        self._settle(items, None, result.position)

    @staticmethod
    def _settle(
        items: list[tuple[UsageInput, Waiter]], error: Exception | None, position: int | None = None
    ) -> None:
        for _, (loop, done) in items:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, done, error, position)


def _resolve(done: asyncio.Future[Any], error: Exception | None, position: int | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(position)
    else:
        done.set_exception(error)
