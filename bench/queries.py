"""Read-side queries: the billing summary and the audit log, each against plain SQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.ingest import Dataset, ok
from bench.report import Figure, percentile
from bench.server import Server

RAW_SUM = """
SELECT date_trunc('day', occurred_at, 'UTC') AS day, key_id, model, count(*) AS requests,
       count(*) FILTER (WHERE status = 'success') AS successes,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens
FROM bench.raw_usage WHERE tenant_id = %s AND occurred_at >= %s AND occurred_at < %s
GROUP BY 1, 2, 3"""
AUDIT_OFFSET = """
SELECT position, at, actor, client_ip, tenant_id, action, target_type, target_id, changes
FROM rm_audit.entries WHERE tenant_id = %s ORDER BY position DESC LIMIT %s OFFSET %s"""


def timed(fn: Callable[[], Any], samples: int, warmup: int = 5) -> list[float]:
    """Milliseconds of ``samples`` sequential calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def billing_range(data: Dataset) -> tuple[datetime, datetime]:
    """31 whole days well inside the data."""
    start = datetime.combine((data.end - timedelta(days=45)).date(), datetime.min.time(), UTC)
    return start, start + timedelta(days=31)


def billing_latencies(server: Server, data: Dataset, samples: int) -> dict[str, Any]:
    """Summary latencies over HTTP, and the same sums over the raw rows in SQL."""
    tenant = data.tenants[0]
    start, end = billing_range(data)
    path = f"/team-billing/summary/{tenant}/{start.date()}/{end.date()}"
    with server.client() as client:
        answer = ok(client.get(path))
        http = timed(lambda: ok(client.get(path)), samples)
    with server.connect() as conn:
        rows = conn.execute(RAW_SUM, (tenant, start, end)).fetchall()
        sql = timed(lambda: conn.execute(RAW_SUM, (tenant, start, end)).fetchall(), samples)
        stored = conn.execute("SELECT count(*) FROM bench.raw_usage").fetchone()[0]
    raw_requests = sum(r[3] for r in rows)
    return {
        "stored": stored,
        "requests_in_range": answer["requests"],
        "raw_requests_in_range": raw_requests,
        "http_p50": percentile(http, 50),
        "http_p99": percentile(http, 99),
        "sql_p50": percentile(sql, 50),
        "sql_p99": percentile(sql, 99),
    }


def billing_figures(small: dict[str, Any], large: dict[str, Any] | None = None) -> list[Figure]:
    figures = []
    for r in [small, large] if large else [small]:
        agree = "" if r["requests_in_range"] == r["raw_requests_in_range"] else " MISMATCH"
        note = (
            f"{r['requests_in_range']:,} requests in range (raw SQL: {r['raw_requests_in_range']:,}"
            f"{agree}); the target is for 10M stored; baseline: GROUP BY day, key, model over"
            " raw rows indexed on"
            " (tenant_id, occurred_at), run in-process via psycopg (no HTTP)"
        )
        stored = f"{r['stored']:,} records stored"
        figures += [
            Figure(
                "billing",
                f"billing summary 31 d, one tenant, p50 ({stored})",
                r["http_p50"],
                "ms",
                baseline=r["sql_p50"],
                baseline_label="SQL sum of raw rows",
                higher_is_better=False,
            ),
            Figure(
                "billing",
                f"billing summary 31 d, one tenant, p99 ({stored})",
                r["http_p99"],
                "ms",
                target=25,
                higher_is_better=False,
                baseline=r["sql_p99"],
                baseline_label="SQL sum of raw rows",
                notes=note,
                extra=r,
            ),
        ]
    if large:
        figures.append(
            Figure(
                "billing",
                "billing p99 growth: p99(large) / p99(small)",
                large["http_p99"] / small["http_p99"],
                "×",
                target=2,
                higher_is_better=False,
                baseline=large["sql_p99"] / small["sql_p99"],
                baseline_label="raw SQL's growth",
            )
        )
    return figures


def audit_figures(server: Server, data: Dataset, depth: int, samples: int) -> list[Figure]:
    """First page and the page ``depth`` entries deep, by cursor; baseline OFFSET in SQL."""
    limit = 50
    params = {"tenant_id": data.audit_tenant, "limit": limit}
    with server.client() as client:
        first = client.get("/audit", params=params)
        if first.status_code == 404:
            return [Figure("audit", "audit query", None, "ms", notes="GET /audit is 404: skipped")]
        ok(first)
        cursor, skipped = None, 0
        while skipped < depth:
            page = ok(
                client.get("/audit", params={**params, "cursor": cursor} if cursor else params)
            )
            if not page["next_cursor"]:
                raise RuntimeError(
                    f"only {skipped + len(page['data'])} audit entries; need {depth}"
                )
            cursor, skipped = page["next_cursor"], skipped + len(page["data"])
        first_ms = timed(lambda: ok(client.get("/audit", params=params)), samples)
        deep_ms = timed(
            lambda: ok(client.get("/audit", params={**params, "cursor": cursor})), samples
        )
    with server.connect() as conn:
        total = conn.execute("SELECT count(*) FROM rm_audit.entries").fetchone()[0]
        args = (data.audit_tenant, limit)
        off_first = timed(lambda: conn.execute(AUDIT_OFFSET, (*args, 0)).fetchall(), samples)
        off_deep = timed(lambda: conn.execute(AUDIT_OFFSET, (*args, depth)).fetchall(), samples)
    note = (
        f"{total:,} audit entries stored (target scale: 1M); filter tenant_id, limit {limit};"
        " baseline: the same query with OFFSET, in-process via psycopg (no HTTP)"
    )
    return [
        Figure(
            "audit",
            "audit query, filtered, first page p99",
            percentile(first_ms, 99),
            "ms",
            target=25,
            higher_is_better=False,
            baseline=percentile(off_first, 99),
            baseline_label="SQL OFFSET 0",
            notes=note,
            extra={"total_entries": total},
        ),
        Figure(
            "audit",
            f"audit query, filtered, page {depth:,} entries deep p99",
            percentile(deep_ms, 99),
            "ms",
            target=25,
            higher_is_better=False,
            baseline=percentile(off_deep, 99),
            baseline_label=f"SQL OFFSET {depth:,}",
        ),
    ]
