"""Prometheus metrics (``GET /metrics``), correct across ``hostplane serve --workers N``.

``hostplane serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a directory under the data dir, emptied
at start) before anything imports this module: every process then keeps its values in files
there, and a scrape, whichever process answers it, sums them (``MultiProcessCollector``).
Without it (the tests' in-process server) the values live in this process's default registry.

Labels take only bounded values: route templates, HTTP statuses, refusal codes, fixed names.
Never a tenant, a key, a model or a raw path. On the request path a counter's ``inc`` or a
histogram's ``observe`` is all that runs; gauges (in flight, queued, pools) are sampled once a
second by each process (``sample``), summed over the live processes (``livesum``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("hostplane.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
SAMPLE_SECONDS = 1.0

# Request latencies, from a cache hit (sub-millisecond) to a long completion.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WRITE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 10000)

HTTP_REQUESTS = Counter(
    "hostplane_http_requests",
    "HTTP requests answered, by method, route template and status (gateway paths included)",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "hostplane_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
GATEWAY_REQUESTS = Counter(
    "hostplane_gateway_requests",
    "Inference requests the gateway answered, by route and HTTP status",
    ["route", "status"],
)
GATEWAY_UPSTREAM_LATENCY = Histogram(
    "hostplane_gateway_upstream_duration_seconds",
    "Time an upstream took to answer a non-streamed call (or to start a streamed one)",
    ["kind"],
    buckets=LATENCY_BUCKETS,
)
GATEWAY_TTFT = Histogram(
    "hostplane_gateway_time_to_first_token_seconds",
    "Time from a streamed request's arrival to its first content",
    buckets=LATENCY_BUCKETS,
)
GATEWAY_TOKENS = Counter(
    "hostplane_gateway_tokens",
    "Tokens of metered gateway requests: direction=in (prompt) or out (completion)",
    ["direction"],
)
# The labelled series the request path uses, made once (``labels()`` costs ~2 µs, ``inc`` ~1).
TOKENS_IN = GATEWAY_TOKENS.labels("in")
TOKENS_OUT = GATEWAY_TOKENS.labels("out")
UPSTREAM_LATENCY = {
    kind: GATEWAY_UPSTREAM_LATENCY.labels(kind) for kind in ("chat/completions", "embeddings")
}
GATEWAY_REFUSALS = Counter(
    "hostplane_gateway_admission_refusals",
    "Requests the gateway refused with 429 or 503, by the error's code",
    ["reason"],
)
GATEWAY_IN_FLIGHT = Gauge(
    "hostplane_gateway_in_flight",
    "Gateway requests being served (sampled each second, summed over the processes)",
    multiprocess_mode="livesum",
)
GATEWAY_QUEUED = Gauge(
    "hostplane_gateway_queued",
    "Gateway requests waiting for an upstream place (sampled each second)",
    multiprocess_mode="livesum",
)
USAGE_BATCH_RECORDS = Histogram(
    "hostplane_usage_batch_records",
    "Usage records per group-committed write of the gateway's meter",
    buckets=BATCH_BUCKETS,
)
USAGE_BATCH_SECONDS = Histogram(
    "hostplane_usage_batch_write_seconds",
    "Time of one group-committed usage write of the gateway's meter",
    buckets=WRITE_BUCKETS,
)
EVENT_WRITE_SECONDS = Histogram(
    "hostplane_event_store_write_seconds",
    "Time of one event-store write (one statement, one transaction)",
    buckets=WRITE_BUCKETS,
)
POOL_CONNECTIONS = Gauge(
    "hostplane_db_pool_connections",
    "Database pool connections: state=open, idle, or waiting (requests waiting for one)",
    ["pool", "state"],
    multiprocess_mode="livesum",
)


def process_gone(pid: int) -> None:
    """An API process stopped: its live gauges no longer count."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class ReadModelPositions(Collector):
    """Each read model's position and lag behind the log, read at scrape time."""

    def __init__(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        position = GaugeMetricFamily(
            "hostplane_projection_position",
            "The last event a read model applied",
            labels=["read_model"],
        )
        lag = GaugeMetricFamily(
            "hostplane_projection_lag_events",
            "Events in the log a read model has not applied yet",
            labels=["read_model"],
        )
        try:
            rows = self.status()
        except Exception as e:  # noqa: BLE001 - the database is down: the rest still answers
            log.warning("read model positions could not be read: %s", type(e).__name__)
            return
        for row in rows:
            position.add_metric([row["name"]], row["position"])
            lag.add_metric([row["name"]], row["lag"])
        yield position
        yield lag


def scrape(collectors: Iterable[Collector] = ()) -> bytes:
    """The text exposition: this process's values (or all processes', in multiprocess
    mode), then what ``collectors`` read now."""
    extra = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        extra.register(collector)
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed)
        return generate_latest(summed) + generate_latest(extra)
    return generate_latest(REGISTRY) + generate_latest(extra)


def pool_stats(name: str, stats: dict[str, int]) -> None:
    size = stats.get("pool_size", 0)
    idle = stats.get("pool_available", 0)
    POOL_CONNECTIONS.labels(name, "open").set(size)
    POOL_CONNECTIONS.labels(name, "idle").set(idle)
    POOL_CONNECTIONS.labels(name, "waiting").set(stats.get("requests_waiting", 0))


async def sample(
    in_flight: Callable[[], int],
    queued: Callable[[], int],
    pools: Callable[[], dict[str, Any]],
    every: float = SAMPLE_SECONDS,
) -> None:
    """Each ``every`` seconds, this process's gauges (until cancelled)."""
    while True:
        with contextlib.suppress(Exception):  # a pool closing at shutdown, say
            GATEWAY_IN_FLIGHT.set(in_flight())
            GATEWAY_QUEUED.set(queued())
            for name, pool in pools().items():
                pool_stats(name, pool.get_stats())
        await asyncio.sleep(every)
