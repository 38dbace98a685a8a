"""Billing answers built from the usage and costs read models (O(buckets in range))."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.timewindow import DAY, floor_day
from projections.readmodels import costs, usage

ZERO = Decimal(0)


def money(amount: Decimal) -> str:
    """An exact decimal string: at least two places, no exponent, no needless zeros."""
    normal = amount.normalize()
    if normal.as_tuple().exponent > -2:  # type: ignore[operator]
        normal = normal.quantize(Decimal("0.01"))
    return f"{normal:f}"


@dataclass(slots=True)
class Tally:
    """What one day, model, key or instance of a billing summary counts and costs."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    token_cost: Decimal = ZERO
    gpu_cost: Decimal = ZERO
    gpu_microseconds: int = 0

    def shaped(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "token_cost": money(self.token_cost),
            "gpu_cost": money(self.gpu_cost),
            "total_cost": money(self.token_cost + self.gpu_cost),
        }


def summary(
    curs: Cursor[Any], tenant_id: UUID, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """Seed 001's team billing summary for ``[start, end)`` (midnight UTC boundaries)."""
    days: dict[datetime, Tally] = {}
    day = start
    while day < end:
        days[day] = Tally()
        day += DAY
    by_model: dict[str, Tally] = defaultdict(Tally)
    by_key: dict[UUID, Tally] = defaultdict(Tally)
    by_instance: dict[UUID, Tally] = defaultdict(Tally)
    if start < end:
        for r in usage.summary_totals(curs, tenant_id, start, end):
            by = r["by"]
            if by == "at":
                target = days[r["at"]]
            elif by == "model":
                target = by_model[r["model"]]
            elif by == "key_id":
                target = by_key[r["key_id"]]
            elif r["instance_id"] != usage.NO_INSTANCE:
                target = by_instance[r["instance_id"]]
            else:
                continue
            target.requests += r["requests"]
            target.prompt_tokens += r["prompt_tokens"]
            target.completion_tokens += r["completion_tokens"]
            target.token_cost += r["cost"]
        for g in costs.gpu_rows(curs, tenant_id, start, end, now):
            days[floor_day(g["at"].astimezone(UTC))].gpu_cost += g["cost"]
            inst = by_instance[g["instance_id"]]
            inst.gpu_cost += g["cost"]
            inst.gpu_microseconds += g["microseconds"]
    token_cost = sum((d.token_cost for d in days.values()), ZERO)
    gpu_cost = sum((d.gpu_cost for d in days.values()), ZERO)
    return {
        "tenant_id": str(tenant_id),
        "start": start,
        "end": end,
        "currency": "EUR",
        "requests": sum(d.requests for d in days.values()),
        "prompt_tokens": sum(d.prompt_tokens for d in days.values()),
        "completion_tokens": sum(d.completion_tokens for d in days.values()),
        "token_cost": money(token_cost),
        "gpu_cost": money(gpu_cost),
        "total_cost": money(token_cost + gpu_cost),
        "by_day": [
            {"date": day.date().isoformat(), **d.shaped()} for day, d in sorted(days.items())
        ],
        "by_model": [{"model": m, **v.shaped()} for m, v in sorted(by_model.items())],
        "by_key": [{"key_id": str(k), **v.shaped()} for k, v in sorted(by_key.items())],
        "by_instance": [
            {
                "instance_id": str(i),
                "gpu_seconds": money(Decimal(v.gpu_microseconds) / 1_000_000),
                **v.shaped(),
            }
            for i, v in sorted(by_instance.items())
        ],
    }


def spent(
    curs: Cursor[Any],
    tenant_id: UUID,
    key_id: UUID | None,
    start: datetime,
    end: datetime | None,
    now: datetime,
) -> Decimal:
    """A budget's spend: its key's token cost, or its tenant's token and GPU cost."""
    total = usage.spent(curs, tenant_id, key_id, start, end)
    if key_id is None:
        total += sum((g["cost"] for g in costs.gpu_rows(curs, tenant_id, start, end, now)), ZERO)
    return total


def balance(curs: Cursor[Any], tenant_id: UUID, now: datetime) -> Decimal:
    """Credits minus all spend so far."""
    return costs.credits_of(curs, tenant_id) - spent(
        curs, tenant_id, None, datetime.min.replace(tzinfo=now.tzinfo), None, now
    )


def cost_breakdown(
    curs: Cursor[Any],
    scope: UUID | None,
    group_by: str,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Token versus GPU cost per model, key, instance or tenant."""
    groups: dict[Any, dict[str, Decimal]] = defaultdict(lambda: {"token": ZERO, "gpu": ZERO})
    for r in usage.totals(curs, scope, [group_by], start, end):
        groups[r[usage.GROUPS[group_by]]]["token"] += r["cost"]
    if group_by in ("instance", "tenant"):
        column = "instance_id" if group_by == "instance" else "tenant_id"
        for g in costs.gpu_rows(curs, scope, start, end, now):
            groups[g[column]]["gpu"] += g["cost"]
    out = []
    for ident, v in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if group_by == "instance" and ident == usage.NO_INSTANCE:
            ident = None
        out.append(
            {
                group_by: str(ident) if ident is not None else None,
                "token_cost": money(v["token"]),
                "gpu_cost": money(v["gpu"]),
                "total_cost": money(v["token"] + v["gpu"]),
            }
        )
    return out


def instance_costs(
    curs: Cursor[Any], instances: list[tuple[UUID, UUID]], now: datetime
) -> dict[UUID, Decimal]:
    """GPU cost so far of each ``(tenant_id, instance_id)``: closed hours plus the open run."""
    totals: dict[UUID, Decimal] = {i: ZERO for _, i in instances}
    for tenant_id in {t for t, _ in instances}:
        ids = [i for t, i in instances if t == tenant_id]
        for row in curs.execute(
            f"SELECT instance_id, sum(cost) AS cost FROM {costs.SCHEMA}.gpu_hourly"
            " WHERE tenant_id = %s AND instance_id = ANY(%s) GROUP BY instance_id",
            (tenant_id, ids),
        ).fetchall():
            totals[row["instance_id"]] += row["cost"]
    for run in curs.execute(
        f"SELECT instance_id, eur_per_hour, running_since FROM {costs.SCHEMA}.runs"
        " WHERE instance_id = ANY(%s) AND running_since IS NOT NULL",
        ([i for _, i in instances],),
    ).fetchall():
        for _, _, cost in costs.gpu_pieces(run["eur_per_hour"], run["running_since"], now):
            totals[run["instance_id"]] += cost
    return totals
