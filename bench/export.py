"""Export figures: events per second streamed over HTTP, and the exporter's peak memory.

One tenant gets ``events`` events (usage batches of two records, written straight into the
event store in large saves); the export is measured at a tenth of them and at all of them.
Memory is the peak RSS of ``hostplane export`` (a process of its own): in constant memory it
stays flat while the event count grows tenfold.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from bench.ingest import ok
from bench.report import Figure
from bench.server import Server

SAVE = 500  # events per save
RUNS = 3  # exports of the full tenant, the median is reported
PEAK_RSS = """
import os, sys
from bench.server import vm_hwm
from interfaces.cli.main import main
code = main(["export", sys.argv[1], "-o", "/dev/null"])
print(vm_hwm(os.getpid()))
sys.exit(code)
"""


def open_container(server: Server) -> Any:
    from interfaces.bootstrap import Container
    from interfaces.settings import Settings

    settings = Settings.from_env({**server.env, "HOSTPLANE_DATABASE_URL": server.conninfo})
    return Container.open(settings)


def fill(container: Any, tenant_id: uuid.UUID, key_id: uuid.UUID, count: int) -> None:
    """``count`` usage batches of the tenant, each one event of two rated records."""
    from domain.base import Actor
    from domain.usage import UsageBatch, UsageInput

    actor = Actor(id="bench", ip=None)
    start = datetime.now(UTC) - timedelta(days=60)
    price = (Decimal("0.15"), Decimal("0.60"))
    done = 0
    while done < count:
        batches = []
        for i in range(done, min(done + SAVE, count)):
            at = start + timedelta(seconds=5 * i)
            rated = [
                (
                    UsageInput(
                        uuid.uuid4().hex, key_id, "llama-3.1-8b", 900 + r, 300, "success", 120, at
                    ),
                    *price,
                )
                for r in range(2)
            ]
            batches.append(UsageBatch.record(tenant_id, rated, actor))
        container.store.save(*batches)
        done += len(batches)


def caught_up(container: Any) -> None:
    head = container.runner.max_notification_id()
    if not container.runner.wait_for(["audit"], head, 3600):
        raise RuntimeError("the audit projection did not catch up within an hour")


EVENT_LINE = b'\n{"kind":"event"'


def stream_export(server: Server, tenant_id: str) -> tuple[float, float, int, int]:
    """(seconds to the first byte, total seconds, event lines, bytes) of one HTTP export.

    The client counts event lines in the raw bytes (no decoding, no line splitting in Python):
    on a shared 2-core machine a client's CPU is taken from the server it measures.
    """
    events = size = 0
    first = None
    tail = b"\n"  # the end of the previous chunk, for a line start split across chunks
    last = b""  # the last bytes received: the end line
    t0 = time.perf_counter()
    with (
        server.client(timeout=3600) as client,
        client.stream("GET", f"/tenants/{tenant_id}/export") as r,
    ):
        r.raise_for_status()
        for chunk in r.iter_raw():
            first = first or time.perf_counter() - t0
            size += len(chunk)
            data = tail + chunk
            events += data.count(EVENT_LINE)
            tail = data[1 - len(EVENT_LINE) :]  # too short to hold a whole line start again
            last = (last + chunk)[-4096:]
    seconds = time.perf_counter() - t0
    end = orjson.loads(last.rstrip(b"\n").rsplit(b"\n", 1)[-1])
    if end.get("kind") != "end" or end["events"] != events:
        raise RuntimeError(f"the export ended without its end line, or miscounted: {end}")
    return first or 0.0, seconds, events, size


def peak_rss(server: Server, tenant_id: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, tenant_id],
        env=server.env,
        cwd=Path(__file__).resolve().parent.parent,  # where ``bench`` imports from
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"hostplane export failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.split()[-1])


def read_rate(container: Any, tenant_id: str) -> float:
    """Events/s of reading the tenant's stored events as the export does, without replay or JSON."""
    from projections.reports.export import snapshot, stream_rows

    with container.pool.connection() as conn, conn.transaction():
        head = snapshot(conn)
        t0 = time.perf_counter()
        n = sum(1 for _ in stream_rows(conn, container.runner.source, uuid.UUID(tenant_id), head))
        return n / (time.perf_counter() - t0)


def export_figures(server: Server, events: int) -> list[Figure]:
    with server.client() as client:
        tenant_id = ok(client.post("/tenants", json={"name": "bench-export"}), 201)["id"]
        body = {"name": "export", "kind": "router"}
        key_id = ok(client.post(f"/tenants/{tenant_id}/keys", json=body), 201)["key"]["id"]
    container = open_container(server)
    figures: list[Figure] = []
    rss: dict[int, int] = {}
    try:
        stored = 0
        for target in (events // 10, events):
            fill(container, uuid.UUID(tenant_id), uuid.UUID(key_id), target - stored)
            stored = target
            caught_up(container)
            rss[stored] = peak_rss(server, tenant_id)
        # The median of a few runs: other jobs share this machine's cores.
        runs = sorted((stream_export(server, tenant_id) for _ in range(RUNS)), key=lambda r: r[1])
        first, seconds, lines, size = runs[len(runs) // 2]
        figures.append(
            Figure(
                "export",
                f"export over HTTP, {lines:,} events ({size / 2**20:,.0f} MB NDJSON)",
                lines / seconds,
                "events/s",
                target=50_000,
                baseline=read_rate(container, tenant_id),
                baseline_label="reading the same stored events, no replay or JSON",
                notes=f"median of {RUNS} exports: first byte after {first * 1000:,.0f} ms,"
                f" {seconds:,.1f} s in all",
            )
        )
    finally:
        container.close()
    small, large = sorted(rss)
    for n in (small, large):
        figures.append(
            Figure(
                "export",
                f"peak RSS of `hostplane export`, {n:,} events",
                rss[n] / 2**20,
                "MB",
                higher_is_better=False,
                notes="constant memory: flat while the events grow tenfold",
            )
        )
    return figures
