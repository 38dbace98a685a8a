"""``python -m bench [--scale small|full] [--only NAME,...] [--json PATH]``: print the figures."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import export, gateway, ingest, load, queries, seed
from bench.ingest import Dataset
from bench.report import Figure, machine, table, write_json
from bench.server import Server

GROUPS = ("ingest", "billing", "rebuild", "ryw", "load", "audit", "export", "rss", "gateway")
DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"


@dataclass(frozen=True)
class Scale:
    records: int  # usage records stored for the billing figure "small"
    large_records: int | None  # and then for "large" (full scale only)
    ingest_threads: int  # clients posting batches: two per API process of `serve --workers 2`
    samples: int  # sequential samples per latency figure
    clients: int
    load_seconds: float
    audit_depth: int
    export_events: int = 20_000  # events of one tenant for the export figures
    audit_entries: int = 2_500  # one-record usage batches for the audit and catch-up figures
    baseline_events: int = 20_000  # events the library's one-transaction-per-event runner replays
    gateway_seconds: float = 3.0  # each of the gateway's 6 loads, per target


SCALES = {
    "small": Scale(100_000, None, 4, 200, 32, 10, 2_000),
    "full": Scale(
        100_000,
        10_000_000,
        4,
        500,
        32,
        30,
        10_000,
        export_events=1_000_000,
        audit_entries=1_000_000,
        baseline_events=30_000,
        gateway_seconds=10.0,
    ),
}


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def guarded(name: str, figures: list[Figure], step: Callable[[], list[Figure]]) -> None:
    """Run one figure group; a failure is reported in the table and the run goes on."""
    try:
        figures += step()
    except Exception as e:
        say(f"{name} failed: {e!r}")
        traceback.print_exc()
        figures.append(Figure(name, f"{name}: FAILED", None, "", notes=f"{type(e).__name__}: {e}"))


def usage_figures(scale: Scale, only: set[str], server: Server, data: Dataset) -> list[Figure]:
    """Ingestion (and its COPY baseline), then billing latencies at each stored volume."""
    say(f"ingesting {scale.records:,} usage records over HTTP")
    stats = ingest.ingest_http(server, data, 0, scale.records, threads=scale.ingest_threads)
    say(f"  {stats.rate:,.0f} records/s; COPY baseline")
    copy_seconds = ingest.copy_baseline(server, data, 0, scale.records)
    small = large = None
    if "billing" in only:
        ingest.index_raw(server)
        say("billing summary latencies")
        small = queries.billing_latencies(server, data, scale.samples)
    if scale.large_records:
        n = scale.large_records
        say(f"ingesting up to {n:,} usage records over HTTP")
        stats = ingest.ingest_http(server, data, scale.records, n, threads=scale.ingest_threads)
        say(f"  {stats.rate:,.0f} records/s; COPY baseline")
        ingest.drop_raw_index(server)
        copy_seconds = ingest.copy_baseline(server, data, scale.records, n)
        if "billing" in only:
            ingest.index_raw(server)
            say("billing summary latencies")
            large = queries.billing_latencies(server, data, scale.samples)
    figures = []
    if "ingest" in only:
        figures += ingest.ingestion_figures(stats, copy_seconds)
    if small:
        figures += queries.billing_figures(small, large)
    return figures


def audit_figures(scale: Scale, server: Server, data: Dataset) -> list[Figure]:
    count = scale.audit_entries
    say(f"writing {count:,} events (one-record usage batches, one audit entry each)")
    seed.wait_caught_up(server)  # the backlog is only these events
    with seed.workers_held(server):
        written = seed.seed_usage_batches(server, data, count)
    say(f"  written in {written:.1f} s; timing the read models' catch-up")
    caught_up = seed.wait_caught_up(server)
    say(f"  caught up in {caught_up:.1f} s; audit query latencies")
    return [
        seed.catch_up_figure(count, written, caught_up),
        *queries.audit_figures(server, data, scale.audit_depth, scale.samples),
    ]


def run(scale: Scale, only: set[str], server: Server) -> list[Figure]:
    figures: list[Figure] = []
    with server.client() as client:
        say("creating tenants and keys")
        data = ingest.create_dataset(client, clients=scale.clients)
    if only & {"ingest", "billing", "rebuild"}:
        guarded("ingest", figures, lambda: usage_figures(scale, only, server, data))
    if "ryw" in only:
        say("read-your-writes")
        guarded("ryw", figures, lambda: load.read_your_writes_figures(server, data, scale.samples))
    if "load" in only:
        say(f"management API load: {scale.clients} clients, 6 × {scale.load_seconds:g} s")
        guarded(
            "load",
            figures,
            lambda: load.load_figures(server, data, scale.clients, scale.load_seconds),
        )
    if "audit" in only:
        guarded("audit", figures, lambda: audit_figures(scale, server, data))
    if "export" in only:
        say(f"exporting a tenant of {scale.export_events:,} events")
        guarded("export", figures, lambda: export.export_figures(server, scale.export_events))
    if "rebuild" in only:
        say("rebuilding every read model")
        guarded("rebuild", figures, lambda: ingest.rebuild_figures(server, scale.baseline_events))
    return figures


def rss_figure(server: Server) -> Figure:
    peak = server.read_peak_rss()
    return Figure(
        "rss",
        "peak RSS of `hostplane serve` during the runs above",
        None if peak is None else peak / 2**20,
        "MB",
        target=400,
        higher_is_better=False,
        notes="VmHWM of the serve processes, summed; the embedded PostgreSQL's processes are not counted",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(GROUPS)}")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument(
        "--database-url",
        help="use a fresh database on this PostgreSQL server instead of the embedded one",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="API processes of `hostplane serve --workers` (default 2, one per core here)",
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(GROUPS)
    if unknown := only - set(GROUPS):
        parser.error(f"unknown figure group(s) {sorted(unknown)}; known: {', '.join(GROUPS)}")
    scale = SCALES[args.scale]

    started = datetime.now(UTC)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    figures: list[Figure] = []
    postgres = None
    if only - {"gateway"}:
        server = Server(args.database_url, workers=args.workers)
        say(
            f"starting hostplane serve --workers {args.workers} on port {server.port},"
            f" data in {server.data_dir}"
        )
        try:
            server.start()
            with server.connect() as conn:
                postgres = conn.execute("SELECT version()").fetchone()[0]
            figures = run(scale, only, server)
            if "rss" in only:
                figures.append(rss_figure(server))
        finally:
            say("stopping hostplane serve (SIGINT)")
            server.stop(keep=args.keep)
    if "gateway" in only:
        # its own servers: the fake upstream, the proxies, hostplane with one and two processes
        guarded(
            "gateway",
            figures,
            lambda: gateway.gateway_figures(scale.gateway_seconds, args.database_url),
        )

    load_after = os.getloadavg()
    print(table(figures))
    cpus = os.cpu_count() or 1
    busy = load_before[0] > cpus / 2
    print(
        f"\nmachine: {cpus} CPUs; load average (1 min) before the run {load_before[0]:.1f},"
        f" after it {load_after[0]:.1f}"
        + (" (the machine was already busy: these figures are pessimistic)" if busy else "")
    )
    meta = {
        "scale": args.scale,
        "only": sorted(only),
        "started_at": started.isoformat(),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
        "postgres": postgres,
        "load_average": {"start": load_before, "end": load_after},
        "database": "external" if args.database_url else "embedded",
        "workers": args.workers,
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    }
    write_json(args.json, figures, meta)
    say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
