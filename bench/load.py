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


def run_load(
    server: Server, data: Dataset, request: Request, expected: int, clients: int, seconds: float
) -> LoadStats:
    """``clients`` connections, each with a management key of its own, for ``seconds``."""
    tokens = [secret for _, secret in data.management_tokens]
    return client.run(server.base_url, tokens, request, expected, clients, seconds)


def load_figures(server: Server, data: Dataset, clients: int, seconds: float) -> list[Figure]:
    """Health (the HTTP stack's ceiling), key reads and key creation, each for ``seconds``."""
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

    base = run_load(server, data, health, 200, clients, seconds)
    reads = run_load(server, data, read, 200, clients, seconds)
    writes = run_load(server, data, write, 201, clients, seconds)

    def note(s: LoadStats) -> str:
        return f"{s.requests:,} requests in {s.seconds:.1f} s, {s.errors} errors, p50 {s.p50_ms:.1f} ms"

    label = f"{clients} clients, {seconds:g} s"
    base_label = "GET /health"
    return [
        Figure(
            "load",
            f"GET /keys/{{id}} reads/s ({label})",
            reads.rate,
            "req/s",
            target=1000,
            baseline=base.rate,
            baseline_label=base_label,
            notes=note(reads) + f"; /health: {note(base)}",
            extra={"reads": reads.__dict__, "health": base.__dict__},
        ),
        Figure(
            "load",
            "GET /keys/{id} p99 under load",
            reads.p99_ms,
            "ms",
            target=50,
            higher_is_better=False,
            baseline=base.p99_ms,
            baseline_label=base_label,
        ),
        Figure(
            "load",
            f"POST /tenants/{{id}}/keys writes/s ({label})",
            writes.rate,
            "req/s",
            target=300,
            baseline=base.rate,
            baseline_label=base_label,
            notes=note(writes),
            extra={"writes": writes.__dict__},
        ),
        Figure(
            "load",
            "POST /tenants/{id}/keys p99 under load",
            writes.p99_ms,
            "ms",
            target=50,
            higher_is_better=False,
            baseline=base.p99_ms,
            baseline_label=base_label,
        ),
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
