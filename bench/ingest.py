"""Bench data, usage ingestion through HTTP, its COPY baseline and the projection rebuild."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from bench.report import Figure, percentile
from bench.server import Server

MODELS = ["llama-3.1-8b", "mistral-nemo-12b", "gpt-4o-mini", "deepseek-v3"]
DAY = 86_400
BATCH = 1000  # records per HTTP batch
RAW_COLUMNS = (
    "tenant_id, request_id, key_id, model, prompt_tokens, completion_tokens, status,"
    " latency_ms, occurred_at"
)
CREATE_RAW = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.raw_usage (
    tenant_id uuid NOT NULL, request_id text NOT NULL, key_id uuid NOT NULL, model text NOT NULL,
    prompt_tokens int NOT NULL, completion_tokens int NOT NULL, status text NOT NULL,
    latency_ms int NOT NULL, occurred_at timestamptz NOT NULL)"""
INDEX_RAW = (
    "CREATE INDEX IF NOT EXISTS raw_usage_tenant_at ON bench.raw_usage (tenant_id, occurred_at)"
)
# One record of ``Dataset.body``, compact as orjson would write it.
RECORD = (
    '{"request_id":"%s","key_id":"%s","model":"%s","prompt_tokens":%d,'
    '"completion_tokens":%d,"status":"%s","latency_ms":%d,"occurred_at":"%s"}'
)


@dataclass
class Dataset:
    """Tenants with router keys, and usage record ``i`` as a pure function of ``i``.

    Each run of ``BATCH`` consecutive records spans ``BATCH`` seconds, as a router's batch of
    recent requests would, mixing tenants, keys and models; the runs are scattered over the
    ``days`` days before ``end``, so that any 31 days hold data at every volume.
    """

    tenants: list[str]
    keys: dict[str, list[str]]  # router keys per tenant
    end: datetime
    days: int = 60
    management_tokens: list[tuple[str, str]] = field(default_factory=list)  # (tenant, secret)
    audit_tenant: str = ""
    audit_key: str = ""

    def __post_init__(self) -> None:
        self._end = int(self.end.timestamp())

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    def _fields(
        self, i: int, minutes: dict[int, str]
    ) -> tuple[str, str, str, str, int, int, str, int, str]:
        """Record ``i``; ``minutes`` keeps each minute's formatted prefix (a run of records
        spans consecutive seconds, and ``strftime`` per record cost the client much CPU)."""
        t = len(self.tenants)
        tenant = self.tenants[i % t]
        keys = self.keys[tenant]
        batch, n = divmod(i, BATCH)
        offset = (batch * 2_654_435_761) % (self.days * DAY - BATCH) + BATCH - n
        minute, second = divmod(self._end - offset, 60)
        prefix = minutes.get(minute)
        if prefix is None:
            prefix = minutes[minute] = time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))
        return (
            tenant,
            f"bench-{i}",
            keys[(i // t) % len(keys)],
            MODELS[(i // 7) % len(MODELS)],
            50 + (i * 7919) % 2000,
            10 + (i * 104_729) % 800,
            "error" if i % 50 == 0 else "success",
            20 + (i * 31) % 3000,
            f"{prefix}{second:02d}Z",
        )

    def body(self, lo: int, hi: int) -> bytes:
        """The JSON body ``{"records": [...]}`` of records ``lo..hi``, each from one format."""
        minutes: dict[int, str] = {}
        records = (RECORD % self._fields(i, minutes)[1:] for i in range(lo, hi))
        return ('{"records":[' + ",".join(records) + "]}").encode()

    def rows(self, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
        minutes: dict[int, str] = {}
        return (self._fields(i, minutes) for i in range(lo, hi))

    def expected_requests(self, hi: int) -> dict[str, int]:
        """Records ``0..hi`` per tenant."""
        t = len(self.tenants)
        return {tenant: hi // t + (1 if n < hi % t else 0) for n, tenant in enumerate(self.tenants)}

    def full_range(self) -> tuple[date, date]:
        return (self.start - timedelta(days=1)).date(), (self.end + timedelta(days=1)).date()


def create_dataset(
    client: httpx.Client, tenants: int = 10, keys_per_tenant: int = 3, clients: int = 32
) -> Dataset:
    """Tenants, router keys, one management key per load client and a tenant for audit entries."""

    def tenant(name: str) -> str:
        return ok(client.post("/tenants", json={"name": name}), 201)["id"]

    def key(tenant_id: str, name: str, kind: str = "router") -> dict[str, Any]:
        body = {"name": name, "kind": kind}
        return ok(client.post(f"/tenants/{tenant_id}/keys", json=body), 201)

    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    data = Dataset(tenants=[tenant(f"bench-{n}") for n in range(tenants)], keys={}, end=end)
    for tid in data.tenants:
        data.keys[tid] = [key(tid, f"r{k}")["key"]["id"] for k in range(keys_per_tenant)]
    for c in range(clients):
        tid = data.tenants[c % tenants]
        data.management_tokens.append((tid, key(tid, f"client-{c}", "management")["secret"]))
    data.audit_tenant = tenant("bench-audit")
    data.audit_key = key(data.audit_tenant, "audited")["key"]["id"]
    return data


def ok(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} -> {response.status_code}: "
            f"{response.text[:500]}"
        )
    return response.json()


@dataclass
class IngestStats:
    records: int
    seconds: float  # first POST to every record visible in the billing summaries
    posted_seconds: float  # first POST to last POST answered
    batch_p50_ms: float
    batch_p99_ms: float
    clients: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def ingest_http(
    server: Server, data: Dataset, lo: int, hi: int, threads: int = 4, batch: int = BATCH
) -> IngestStats:
    """POST records ``lo..hi`` in batches from ``threads`` clients; wait until billing shows them.

    The bodies are built before the clock starts: the client shares the 2 cores with the
    server, and building them as it went took ~10% of the machine's CPU during the run (a
    router would build them on machines of its own). They take ~215 bytes per record
    (~2.1 GB at full scale).
    """
    spans = [(a, min(a + batch, hi)) for a in range(lo, hi, batch)]
    bodies = iter([(span, data.body(*span)) for span in spans])
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def worker() -> None:
        with server.client() as client:
            while not errors:
                with lock:
                    item = next(bodies, None)
                if item is None:
                    return
                span, body = item
                t0 = time.perf_counter()
                r = client.post(
                    "/usage/events", content=body, headers={"content-type": "application/json"}
                )
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200 or r.json()["accepted"] != span[1] - span[0]:
                    errors.append(f"{r.status_code}: {r.text[:300]}")

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    posted = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"usage ingestion failed: {errors[0]}")
    wait_visible(server, data, hi)
    seconds = time.perf_counter() - t0
    return IngestStats(
        records=hi - lo,
        seconds=seconds,
        posted_seconds=posted,
        batch_p50_ms=percentile(latencies, 50) * 1000,
        batch_p99_ms=percentile(latencies, 99) * 1000,
        clients=threads,
    )


def wait_visible(server: Server, data: Dataset, hi: int, timeout: float = 1800) -> None:
    """Poll each tenant's billing summary until its ``requests`` count every record."""
    expected = data.expected_requests(hi)
    start, end = data.full_range()
    deadline = time.monotonic() + timeout
    with server.client() as client:
        pending = dict(expected)
        while pending:
            for tid, want in list(pending.items()):
                got = ok(client.get(f"/team-billing/summary/{tid}/{start}/{end}"))["requests"]
                if got == want:
                    del pending[tid]
                elif got > want:
                    raise RuntimeError(f"tenant {tid}: {got} requests billed, expected {want}")
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"usage not visible after {timeout}s: {pending}")
                time.sleep(0.05)


def copy_baseline(server: Server, data: Dataset, lo: int, hi: int) -> float:
    """Seconds to COPY records ``lo..hi`` (same rows, generated the same way) into a plain table."""
    with server.connect() as conn:
        conn.execute(CREATE_RAW)
        t0 = time.perf_counter()
        copy_sql = f"COPY bench.raw_usage ({RAW_COLUMNS}) FROM STDIN"
        with conn.transaction(), conn.cursor() as curs, curs.copy(copy_sql) as copy:
            for row in data.rows(lo, hi):
                copy.write_row(row)
        return time.perf_counter() - t0


def index_raw(server: Server) -> None:
    with server.connect() as conn:
        conn.execute(INDEX_RAW)
        conn.execute("ANALYZE bench.raw_usage")


def ingestion_figures(stats: IngestStats, copy_seconds: float) -> list[Figure]:
    copy_rate = stats.records / copy_seconds
    return [
        Figure(
            "ingest",
            f"usage ingestion, {stats.records:,} records via HTTP (batches of 1,000,"
            f" {stats.clients} clients) until billed",
            stats.rate,
            "rec/s",
            target=50_000,
            baseline=copy_rate,
            baseline_label="COPY into plain table",
            notes=(
                f"{stats.seconds:.1f} s in all; POSTs done after {stats.posted_seconds:.1f} s;"
                f" batch POST p50 {stats.batch_p50_ms:.0f} ms, p99 {stats.batch_p99_ms:.0f} ms;"
                f" COPY took {copy_seconds:.1f} s; bodies built before the clock starts"
            ),
            extra={**stats.__dict__, "copy_seconds": copy_seconds},
        )
    ]


def rebuild_figures(server: Server, baseline_events: int) -> list[Figure]:
    """Time ``hostplane projections rebuild --all``; baseline: the library's ProjectionRunner."""
    from bench.baseline import library_runner_rate

    with server.connect() as conn:
        events = conn.execute("SELECT count(*) FROM public.hostplane_events").fetchone()[0]
        query = "SELECT coalesce(sum(requests), 0)::bigint FROM rm_usage.daily"
        records = conn.execute(query).fetchone()[0]
    startup, _ = server.cli("projections", "status")
    wall, out = server.cli("projections", "rebuild", "--all")
    seconds = max(wall - startup, 1e-6)
    lines = [line for line in out.splitlines() if line.startswith("rebuilt ")]
    applied = sum(int(line.split(": ")[1].split()[0]) for line in lines)
    raw_seconds, raw_events = read_log_raw(server)
    library_rate, library_events = library_runner_rate(server, baseline_events)
    rate = events / seconds
    note = (
        f"{events:,} events ({len(lines)} read models, {applied:,} event applications) in"
        f" {wall:.1f} s wall, {seconds:.1f} s net of CLI start-up ({startup:.1f} s, timed by"
        " `projections status`); baseline: eventsourcing's ProjectionRunner writing one row and"
        f" its tracking per event, one transaction each, over the first {library_events:,}"
        f" events; reading the log raw (no decoding) ran at {raw_events / raw_seconds:,.0f} ev/s"
    )
    return [
        Figure(
            "rebuild",
            "projection rebuild --all, events/s",
            rate,
            "ev/s",
            target=20_000,
            baseline=library_rate,
            baseline_label="library ProjectionRunner",
            notes=note,
            extra={
                "events": events,
                "wall_seconds": wall,
                "startup_seconds": startup,
                "applied": applied,
                "projections": len(lines),
                "raw_read_seconds": raw_seconds,
                "raw_read_rate": raw_events / raw_seconds,
                "library_runner_events": library_events,
            },
        ),
        Figure(
            "rebuild",
            "rebuild time for 1,000,000 events"
            + ("" if events >= 1_000_000 else " (extrapolated)"),
            1_000_000 / rate,
            "s",
            target=60,
            higher_is_better=False,
            baseline=1_000_000 / library_rate,
            baseline_label="library ProjectionRunner",
        ),
        Figure(
            "rebuild",
            f"usage records replayed/s in rebuild ({records:,} records)",
            records / seconds,
            "rec/s",
        ),
    ]


def read_log_raw(server: Server) -> tuple[float, int]:
    with server.connect() as conn, conn.transaction():
        t0 = time.perf_counter()
        n = 0
        with conn.cursor(name="log") as curs:
            curs.itersize = 10_000
            curs.execute("SELECT state FROM public.hostplane_events ORDER BY notification_id")
            for _ in curs:
                n += 1
        return time.perf_counter() - t0, n


def drop_raw_index(server: Server) -> None:
    with server.connect() as conn:
        conn.execute("DROP INDEX IF EXISTS bench.raw_usage_tenant_at")
