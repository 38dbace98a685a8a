"""Billing computed from the events themselves: per UTC day, then per calendar month.

The same rules as the usage and costs read models, applied to events instead of rows:
token cost from the prices a usage batch was rated at, GPU cost from the hourly rate fixed at
deploy and the running intervals, split and rounded per hour bucket; credits when added.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.instance import Instance
from domain.pricing import gpu_cost, token_cost
from domain.tenant import Tenant
from domain.timewindow import floor_day, split_hours
from domain.usage import DAY_US, UsageBatch, from_us
from projections.reports.billing import Tally, money

ZERO = Decimal(0)


@dataclass(slots=True)
class Sums(Tally):
    """What one day (or month) bills: a billing summary's tally, and the credits added."""

    credits: Decimal = ZERO

    def add(self, other: Sums) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def shaped(self) -> dict[str, Any]:
        return {
            **Tally.shaped(self),
            "gpu_seconds": money(Decimal(self.gpu_microseconds) / 1_000_000),
            "credits": money(self.credits),
        }


@dataclass
class Run:
    eur_per_hour: Decimal
    running_since: datetime | None = None


def month_of(day: datetime) -> str:
    return f"{day.year:04d}-{day.month:02d}"


@dataclass(slots=True)
class Tokens:
    """Usage gathered at one day and price, not yet rated."""

    requests: int
    prompt_tokens: int
    completion_tokens: int


@dataclass
class EventBilling:
    """Fed a tenant's events in global order; answers its bill per day and per month."""

    days: dict[datetime, Sums] = field(default_factory=lambda: defaultdict(Sums))
    runs: dict[UUID, Run] = field(default_factory=dict)
    # Usage not yet in ``days``, per (UTC day number, input EUR/Mtok, output EUR/Mtok). Token
    # cost is linear and exact, so it is rated once per group when settled instead of once
    # per record; as many groups as days times prices.
    tokens: dict[tuple[int, str, str], Tokens] = field(default_factory=dict)

    def add_usage(self, rates: list[list[str]], records: list[list[Any]]) -> None:
        """A usage batch's records as stored: ``rates`` and ``records`` of ``UsageBatch.Recorded``."""
        tokens = self.tokens
        # Unpacked in ``StoredRecord``'s order: an export reads every record the tenant ever
        # sent, and ``StoredRecord._make`` measured 0.44 ms per 1,000 records against 0.19 ms.
        for _rid, _key, idx, prompt, completion, _cached, _ok, _latency, at, _inst, *_ in records:
            _, input_price, output_price = rates[idx]
            key = (at // DAY_US, input_price, output_price)
            sums = tokens.get(key)
            if sums is None:
                tokens[key] = Tokens(1, prompt, completion)
            else:
                sums.requests += 1
                sums.prompt_tokens += prompt
                sums.completion_tokens += completion

    def settle(self) -> None:
        """Move the usage gathered by ``add_usage`` into ``days``, rated."""
        for (day_number, input_price, output_price), sums in self.tokens.items():
            day = self.days[from_us(day_number * DAY_US)]
            day.requests += sums.requests
            day.prompt_tokens += sums.prompt_tokens
            day.completion_tokens += sums.completion_tokens
            day.token_cost += token_cost(
                sums.prompt_tokens,
                sums.completion_tokens,
                Decimal(input_price),
                Decimal(output_price),
            )
        self.tokens.clear()

    def apply(self, event: Any) -> None:
        if isinstance(event, UsageBatch.Recorded):
            self.add_usage(event.rates, event.records)
        elif isinstance(event, Instance.DeployRequested):
            self.runs[event.originator_id] = Run(event.hourly_rate_eur)
        elif isinstance(event, Instance.StatusChanged):
            run = self.runs.get(event.originator_id)
            if run is None:  # not a GPU deployment: nothing runs at an hourly rate
                return
            if event.status == "running" and run.running_since is None:
                run.running_since = event.timestamp
            elif event.status != "running" and run.running_since is not None:
                self._bill_gpu(run, event.timestamp)
                run.running_since = None
        elif isinstance(event, Tenant.CreditsAdded):
            self.days[floor_day(event.timestamp.astimezone(UTC))].credits += event.amount_eur

    def _bill_gpu(self, run: Run, until: datetime) -> None:
        assert run.running_since is not None
        for hour, us in split_hours(run.running_since.astimezone(UTC), until.astimezone(UTC)):
            day = self.days[floor_day(hour)]
            day.gpu_cost += gpu_cost(run.eur_per_hour, us)
            day.gpu_microseconds += us

    def close(self, until: datetime) -> None:
        """Rate the instances still running up to ``until``, as the read models do for "now".

        Settles the usage too: ``days`` is complete afterwards.
        """
        self.settle()
        for run in self.runs.values():
            if run.running_since is not None and run.running_since < until:
                self._bill_gpu(run, until)
                run.running_since = until

    def by_day(self) -> dict[datetime, Sums]:
        self.settle()
        return dict(sorted(self.days.items()))

    def by_month(self) -> dict[str, Sums]:
        self.settle()
        months: dict[str, Sums] = defaultdict(Sums)
        for day, sums in sorted(self.days.items()):
            months[month_of(day)].add(sums)
        return dict(months)

    def lines(self) -> Iterator[dict[str, Any]]:
        """One export line per calendar month (UTC) with any activity."""
        for month, sums in self.by_month().items():
            yield {"kind": "billing", "month": month, "currency": "EUR", **sums.shaped()}
