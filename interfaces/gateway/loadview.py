"""What ``GET /stats`` and ``GET /fairshare/live`` show: the serving processes' snapshots summed.

Each process upserts its snapshot into ``hostplane_gateway_load`` every ``REFRESH_SECONDS``
(``scheduler.py``); the rows seen within ``STALE_SECONDS`` are the processes serving now.
"""

from __future__ import annotations

from typing import Any

from psycopg.errors import UndefinedTable
from psycopg_pool import AsyncConnectionPool

from interfaces.gateway.scheduler import LOAD_TABLE, STALE_SECONDS

SELECT_LIVE = f"""
SELECT process, hostname, pid, in_flight, queued, max_in_flight, tenants, updated_at
FROM {LOAD_TABLE} WHERE updated_at >= now() - make_interval(secs => %s)
ORDER BY hostname, pid, process"""
COUNTS = ("in_flight", "queued", "admitted_last_minute")


async def live_processes(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    """The snapshots of the serving processes seen within ``STALE_SECONDS``."""
    try:
        async with pool.connection() as conn:
            cursor = await conn.execute(SELECT_LIVE, (STALE_SECONDS,))
            return list(await cursor.fetchall())
    except UndefinedTable:  # no serving process has reported yet
        return []


def stats(processes: list[dict[str, Any]]) -> dict[str, Any]:
    per = [
        {k: p[k] for k in ("hostname", "pid", "in_flight", "queued", "max_in_flight")}
        | {"process": str(p["process"]), "updated_at": p["updated_at"]}
        for p in processes
    ]
    return {
        "in_flight": sum(p["in_flight"] for p in processes),
        "queued": sum(p["queued"] for p in processes),
        "max_in_flight": sum(p["max_in_flight"] for p in processes),
        "processes": per,
    }


def _active(row: dict[str, Any]) -> bool:
    return bool(row["in_flight"] or row["queued"])


def fair_share(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """Per group, and per tenant within it: weight, counts summed over processes, and share.

    ``share`` is the part of capacity its weight entitles it to among those active now (in
    flight or queued): a group's weight over the active groups' weights, times, for a tenant,
    its weight over its active group mates'. A tenant without a group is a group alone
    (``group`` null).
    """
    tenants: dict[str, dict[str, Any]] = {}
    for process in processes:
        for tenant_id, t in process["tenants"].items():
            row = tenants.get(tenant_id)
            if row is None:
                tenants[tenant_id] = row = {"tenant_id": tenant_id, **dict.fromkeys(COUNTS, 0)}
            row.update(weight=t["weight"], group=t["group"], group_weight=t["group_weight"])
            for k in COUNTS:
                row[k] += t[k]
    groups: dict[str, dict[str, Any]] = {}
    for tenant_id, t in sorted(tenants.items()):
        key = f"group:{t['group']}" if t["group"] is not None else f"tenant:{tenant_id}"
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"group": t["group"], "weight": t["group_weight"], "tenants": []}
            g.update(dict.fromkeys(COUNTS, 0))
        for k in COUNTS:
            g[k] += t[k]
        g["tenants"].append({k: v for k, v in t.items() if k not in ("group", "group_weight")})
    active_weight = sum(g["weight"] for g in groups.values() if _active(g))
    for g in groups.values():
        g["share"] = g["weight"] / active_weight if _active(g) else 0.0
        mates = sum(t["weight"] for t in g["tenants"] if _active(t))
        for t in g["tenants"]:
            t["share"] = g["share"] * t["weight"] / mates if _active(t) else 0.0
    ordered = sorted(groups.values(), key=lambda g: (g["group"] is None, g["group"] or ""))
    return {
        "in_flight": sum(g["in_flight"] for g in ordered),
        "queued": sum(g["queued"] for g in ordered),
        "processes": len(processes),
        "groups": ordered,
    }
