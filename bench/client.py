"""A lean load generator: keep-alive HTTP/1.1 connections driven by asyncio in one thread.

A thread per client with httpx costs about half a millisecond of CPU per request, which on a
2-core machine takes a core away from the server it measures; this client costs a tenth of
that, so the figures are the server's, not the load generator's.
"""

from __future__ import annotations

import asyncio
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
) -> LoadStats:
    """``clients`` connections, client ``c`` with ``tokens[c % len(tokens)]``, for ``seconds``."""
    url = urlsplit(base_url)
    host, port, prefix = url.hostname or "127.0.0.1", url.port or 80, url.path.rstrip("/")
    latencies: list[float] = []
    errors = 0

    async def client(c: int, ready: asyncio.Barrier, window: list[float]) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        token = tokens[c % len(tokens)]

        def raw() -> bytes:
            method, path, body = request(c)
            return encode(host, method, prefix + path, token, body)

        await exchange(reader, writer, raw())  # connect and warm up outside the timed window
        await ready.wait()
        while time.perf_counter() < window[0]:
            message = raw()
            t0 = time.perf_counter()
            status = await exchange(reader, writer, message)
            latencies.append(time.perf_counter() - t0)
            errors += status != expected
        writer.close()

    async def main() -> float:
        ready = asyncio.Barrier(clients + 1)
        window = [float("inf")]
        tasks = [asyncio.create_task(client(c, ready, window)) for c in range(clients)]
        await ready.wait()
        t0 = time.perf_counter()
        window[0] = t0 + seconds
        await asyncio.gather(*tasks)
        return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    ms = [x * 1000 for x in latencies]
    return LoadStats(len(ms), errors, elapsed, percentile(ms, 50), percentile(ms, 99))
