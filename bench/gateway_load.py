"""Chat completions under load, non-streamed and streamed: the loads of ``bench.client`` (a closed
loop, or paced with latencies from when each request was due), reading chunked SSE answers
too and timing their first body byte.

One asyncio thread drives every connection, as in ``bench.client``, so that the load
generator takes little of the CPU that the proxies it measures need.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from bench.client import encode
from bench.gateway_upstream import run_loop
from bench.report import percentile

GRACE = 5.0  # a paced run that has fallen this far behind its last due time stops sending


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    ttfb_p50_ms: float | None = None  # first body byte (streamed answers only)
    ttfb_p99_ms: float | None = None
    offered: float | None = None  # the paced rate, req/s; None for a closed loop
    unsent: int = 0  # paced requests never sent: the target fell more than GRACE behind
    cpu_seconds: float | None = None  # of the target's processes, filled in by the caller
    first_error: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.cpu_seconds is None or not self.requests:
            return None
        return self.cpu_seconds * 1e6 / self.requests

    def summary(self) -> str:
        text = (
            f"{self.requests:,} requests in {self.seconds:.1f} s ({self.rate:,.0f}/s),"
            f" {self.errors} errors, p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms"
        )
        if self.ttfb_p50_ms is not None:
            text += f", first byte p50 {self.ttfb_p50_ms:.2f} ms p99 {self.ttfb_p99_ms:.2f} ms"
        if self.offered and self.rate < 0.95 * self.offered:
            text += f"; fell behind the offered {self.offered:,.0f}/s"
        if self.unsent:
            text += f", {self.unsent:,} never sent (more than {GRACE:g} s late)"
        return text


def chat_body(model: str, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say something short."}],
        "max_tokens": 32,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, float | None, bytes]:
    """Send one request and read its whole answer, plain or chunked.

    Returns the status, when the first body chunk of a chunked answer arrived
    (``perf_counter``), and the answer's last bytes (where a stream's ``[DONE]`` is).
    """
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    if not chunked:
        return status, None, await reader.readexactly(length) if length else b""
    first: float | None = None
    tail = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are expected
            return status, first, tail
        if first is None:
            first = time.perf_counter()
        data = await reader.readexactly(size + 2)
        tail = (tail + data[:-2])[-64:]


def run(
    base_url: str,
    token: str,
    body: bytes,
    clients: int,
    seconds: float,
    rate: float | None = None,
) -> Result:
    """``clients`` keep-alive connections POST ``body`` to ``{base_url}/chat/completions`` for
    ``seconds``: in a closed loop, or paced at ``rate`` requests/s. A request counts as an
    error unless it is answered 200 (and, when streamed, ends with ``data: [DONE]``).
    """
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    raw = encode(host, "POST", url.path.rstrip("/") + "/chat/completions", token, body)
    streamed = b'"stream":true' in body
    latencies: list[float] = []
    firsts: list[float] = []
    errors = 0
    unsent = 0
    first_error = ""

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, t0: float) -> None:
        nonlocal errors, first_error
        status, first, tail = await exchange(reader, writer, raw)
        latencies.append(time.perf_counter() - t0)
        if first is not None:
            firsts.append(first - t0)
        if status != 200 or (streamed and b"[DONE]" not in tail):
            errors += 1
            first_error = first_error or f"{status}: {tail[-64:]!r}"

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        status, _, tail = await exchange(reader, writer, raw)  # warm up outside the window
        if status != 200:
            raise RuntimeError(f"warm-up request answered {status}: {tail!r}")
        return reader, writer

    async def client(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, start: float, end: float
    ) -> None:
        nonlocal unsent
        while True:
            if rate is None:
                if time.perf_counter() >= end:
                    break
                await one(reader, writer, time.perf_counter())
                continue
            due = start + next(slots) / rate
            if due >= end:
                break
            now = time.perf_counter()
            if now > end + GRACE:
                unsent += 1
                continue
            if due > now:
                await asyncio.sleep(due - now)
            await one(reader, writer, due)
        writer.close()

    async def main() -> float:
        connections = await asyncio.gather(*(connect() for _ in range(clients)))
        t0 = time.perf_counter()
        await asyncio.gather(*(client(r, w, t0, t0 + seconds) for r, w in connections))
        return time.perf_counter() - t0

    slots = itertools.count()
    gc.disable()  # see bench.client
    try:
        elapsed = run_loop(main())
    finally:
        gc.enable()
    ms = [x * 1000 for x in latencies] or [float("nan")]
    first_ms = [x * 1000 for x in firsts]
    return Result(
        requests=len(latencies),
        errors=errors,
        seconds=elapsed,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        ttfb_p50_ms=percentile(first_ms, 50) if first_ms else None,
        ttfb_p99_ms=percentile(first_ms, 99) if first_ms else None,
        offered=rate,
        unsent=unsent,
        first_error=first_error,
    )
