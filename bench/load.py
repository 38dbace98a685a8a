"""The management API under concurrent load, and read-your-writes latency."""

from __future__ import annotations

import itertools
import random
import time

import orjson

from bench import client
from bench.client import LoadStats, Request
from bench.ingest import Dataset, ok
from bench.report import Figure, percentile
from bench.server import Server

READS_PER_SECOND = 1000  # the targets: this many reads/s, and writes/s, each at p99 ≤ 50 ms
WRITES_PER_SECOND = 300
P99_MS = 50


def run_load(
    server: Server,
    data: Dataset,
    request: Request,
    expected: int,
    clients: int,
    seconds: float,
    rate: float | None = None,
) -> LoadStats:
    """``clients`` connections, each with a management key of its own, for ``seconds``; in a
    closed loop, or paced at ``rate`` requests/s (``bench.client``).
    """
    tokens = [secret for _, secret in data.management_tokens]
    return client.run(server.base_url, tokens, request, expected, clients, seconds, rate)


def load_figures(server: Server, data: Dataset, clients: int, seconds: float) -> list[Figure]:
    """Health (the HTTP stack's ceiling), key reads and key creation, each for ``seconds``:
    first in a closed loop, for the most the server does; then paced at the target rates, for
    the latency a user sees at those rates.

    The p99 target is judged at the target rates. In a closed loop of 32 clients the mean
    latency is 32 ÷ the throughput (Little's law), so there the p99 measures how far the
    server is saturated, not what one request costs; it is shown beside, without a target.
    """
    names = itertools.count()

    def health(c: int) -> tuple[str, str, bytes | None]:
        return "GET", "/health", None

    def read(c: int) -> tuple[str, str, bytes | None]:
        tenant = data.management_tokens[c % len(data.management_tokens)][0]
        return "GET", f"/keys/{random.choice(data.keys[tenant])}", None

    def write(c: int) -> tuple[str, str, bytes | None]:
        tenant = data.management_tokens[c % len(data.management_tokens)][0]
        body = orjson.dumps({"name": f"load-{next(names)}", "kind": "router"})
        return "POST", f"/tenants/{tenant}/keys", body

    def load(request: Request, expected: int, rate: float | None = None) -> LoadStats:
        return run_load(server, data, request, expected, clients, seconds, rate)

    base, reads, writes = load(health, 200), load(read, 200), load(write, 201)
    paced_base = load(health, 200, READS_PER_SECOND)
    paced_reads = load(read, 200, READS_PER_SECOND)
    paced_writes = load(write, 201, WRITES_PER_SECOND)

    def note(s: LoadStats) -> str:
        return (
            f"{s.requests:,} requests in {s.seconds:.1f} s, {s.errors} errors,"
            f" p50 {s.p50_ms:.1f} ms, p99 {s.p99_ms:.1f} ms"
        )

    def figures(route: str, per_second: str, closed: LoadStats, paced: LoadStats) -> list[Figure]:
        """Throughput in the closed loop, p99 paced at the target rate, p99 in the closed loop."""
        rate = paced.offered or 0
        return [
            Figure(
                "load",
                f"{route} {per_second} ({clients} clients, closed loop, {seconds:g} s)",
                closed.rate,
                "req/s",
                target=rate,
                baseline=base.rate,
                baseline_label="GET /health",
                notes=f"{note(closed)}; /health: {note(base)}",
                extra={"closed": closed.__dict__, "health": base.__dict__},
            ),
            Figure(
                "load",
                f"{route} p99 at {rate:,.0f} req/s ({clients} clients, paced)",
                paced.p99_ms,
                "ms",
                target=P99_MS,
                higher_is_better=False,
                baseline=paced_base.p99_ms,
                baseline_label=f"GET /health at {paced_base.offered:,.0f}/s",
                notes=f"{note(paced)}; /health: {note(paced_base)}",
                extra={"paced": paced.__dict__, "health": paced_base.__dict__},
            ),
            Figure(
                "load",
                f"{route} p99, closed loop (saturated)",
                closed.p99_ms,
                "ms",
                higher_is_better=False,
                baseline=base.p99_ms,
                baseline_label="GET /health",
                notes=(
                    f"no target: {clients} clients in a closed loop wait {clients} ÷ throughput"
                    " on average"
                ),
            ),
        ]

    return [
        *figures("GET /keys/{id}", "reads/s", reads, paced_reads),
        *figures("POST /tenants/{id}/keys", "writes/s", writes, paced_writes),
    ]


def read_your_writes_figures(server: Server, data: Dataset, samples: int) -> list[Figure]:
    """Sequentially: create a key, then read it until 200; p50 of the read after the write."""
    tenant = data.tenants[0]
    after: list[float] = []
    total: list[float] = []
    misses = 0
    with server.client() as client:
        for n in range(samples):
            t0 = time.perf_counter()
            body = {"name": f"ryw-{n}", "kind": "router"}
            key_id = ok(client.post(f"/tenants/{tenant}/keys", json=body), 201)["key"]["id"]
            t1 = time.perf_counter()
            while (status := client.get(f"/keys/{key_id}").status_code) != 200:
                if status != 404:
                    raise RuntimeError(f"GET /keys/{key_id} -> {status}")
                misses += 1
            t2 = time.perf_counter()
            after.append((t2 - t1) * 1000)
            total.append((t2 - t0) * 1000)
    return [
        Figure(
            "ryw",
            "read-your-writes: POST key returned → GET /keys/{id} 200, p50",
            percentile(after, 50),
            "ms",
            target=20,
            higher_is_better=False,
            notes=(
                f"{samples} sequential samples, {misses} reads answered 404 first; the POST"
                " answers from the key as saved, so this read is the one that waits for the"
                " projection"
            ),
        ),
        Figure(
            "ryw",
            "write + read round trip (POST key, then GET until 200), p50",
            percentile(total, 50),
            "ms",
        ),
    ]
