"""A lean load generator: keep-alive HTTP/1.1 connections driven by asyncio in one thread.

A thread per client with httpx costs about half a millisecond of CPU per request, which on a
2-core machine takes a core away from the server it measures; this client costs a tenth of
that, so the figures are the server's, not the load generator's.

Two ways to load the server:

- closed loop (``rate=None``): each client sends its next request as soon as the previous one
  is answered. This finds the most the server can do, and its latency is mostly queueing: with
  32 clients the mean latency is 32 ÷ the throughput, whatever a request costs.
- paced (``rate=R``): requests are due at a fixed rate of R per second, shared by the clients,
  and each latency is measured from when its request was due, not from when it was sent. A
  request due while every client is still waiting for an answer waits for one, and that wait
  counts, so a server that falls behind the rate shows it in every percentile (no coordinated
  omission).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.report import percentile

# What client ``c`` (its index) sends next: method, path under the API, JSON body or None.
Request = Callable[[int], tuple[str, str, bytes | None]]


@dataclass
class LoadStats:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    offered: float | None = None  # the paced rate, req/s; None for a closed loop

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def encode(host: str, method: str, path: str, token: str, body: bytes | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    """Send one request, read its whole response; returns the status."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise RuntimeError("chunked responses are not expected here")
    if length:
        await reader.readexactly(length)
    return status


def run(
    base_url: str,
    tokens: list[str],
    request: Request,
    expected: int,
    clients: int,
    seconds: float,
    rate: float | None = None,
) -> LoadStats:
    """``clients`` connections, client ``c`` with ``tokens[c % len(tokens)]``, for ``seconds``;
    in a closed loop, or paced at ``rate`` requests per second (see the module's docstring).
    """
    url = urlsplit(base_url)
    host, port, prefix = url.hostname or "127.0.0.1", url.port or 80, url.path.rstrip("/")
    latencies: list[float] = []
    errors = 0

    async def client(
        c: int, ready: asyncio.Barrier, go: asyncio.Event, window: list[float]
    ) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        token = tokens[c % len(tokens)]

        def raw() -> bytes:
            method, path, body = request(c)
            return encode(host, method, prefix + path, token, body)

        await exchange(reader, writer, raw())  # connect and warm up outside the timed window
        await ready.wait()
        await go.wait()
        start, end = window
        while True:
            if rate is None:
                if time.perf_counter() >= end:
                    break
            else:
                due = start + next(slots) / rate
                if due >= end:
                    break
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
            message = raw()
            t0 = time.perf_counter() if rate is None else due
            status = await exchange(reader, writer, message)
            latencies.append(time.perf_counter() - t0)
            errors += status != expected
        writer.close()

    async def main() -> float:
        ready, go = asyncio.Barrier(clients + 1), asyncio.Event()
        window: list[float] = []
        tasks = [asyncio.create_task(client(c, ready, go, window)) for c in range(clients)]
        await ready.wait()  # every client is connected and warmed up
        t0 = time.perf_counter()
        window[:] = [t0, t0 + seconds]
        go.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - t0

    slots = itertools.count()
    # The generator's own collector passes (~15 ms each, over the bench's data) would show as
    # the server's latency; the latencies are plain floats, freed by reference counting.
    gc.disable()
    try:
        elapsed = asyncio.run(main())
    finally:
        gc.enable()
    ms = [x * 1000 for x in latencies]
    return LoadStats(len(ms), errors, elapsed, percentile(ms, 50), percentile(ms, 99), rate)
