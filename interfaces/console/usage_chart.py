"""The usage page's pure parts: its query (a half-open range of midnight-UTC dates, an interval,
a split) and the chart's series built from the read model's rows, one bucket per hour or day."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.base import InvalidValueError
from domain.timewindow import DAY, HOUR, check_span, parse_day
from projections.reports.billing import money

# The dimension a split names, and the read model's column it is grouped by.
SPLITS = {"model": "model", "key": "key_id", "instance": "instance_id", "vendor": "vendor"}
INTERVALS = ("day", "hour")
METRICS = ("requests", "failures", "tokens", "cost")
# A chart keeps its legend readable and the page its size (many keys over 400 days would be
# megabytes): the busiest split values get a series each, the rest one "others" series.
SHOWN = 10
# 14 days of hours is 336 bars: about as many as a screen can show side by side.
HOURLY_MAX_DAYS = 14


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """What the page shows: ``[start 00:00Z, end 00:00Z)`` per ``interval``, split by ``split``."""

    start: datetime
    end: datetime
    interval: str
    split: str


def default_form(now: datetime) -> dict[str, str]:
    """This month so far: from the 1st up to, not including, tomorrow; per day, by model."""
    today = now.astimezone(UTC).date()
    tomorrow = today + timedelta(days=1)
    return {
        "from": today.replace(day=1).isoformat(),
        "to": tomorrow.isoformat(),
        "interval": "day",
        "split": "model",
    }


def form_of(params: Mapping[str, str], now: datetime) -> dict[str, str]:
    """The form's fields as given (defaults for those left out), to parse and to show again."""
    defaults = default_form(now)
    return {k: params.get(k) or v for k, v in defaults.items()}


def parse_query(form: dict[str, str], max_days: int) -> UsageQuery:
    """The query, or an ``InvalidValueError`` (a 400) naming the field that is wrong.

    The same rules as the API's ranges: ``to`` is excluded, the same date twice is an empty
    range, ``to`` before ``from`` is refused, and a range holds a bounded number of buckets.
    """
    if form["interval"] not in INTERVALS:
        raise InvalidValueError("interval", "interval must be hour or day")
    if form["split"] not in SPLITS:
        raise InvalidValueError("split", "split must be model, key, instance or vendor")
    start, end = parse_day(form["from"], "from"), parse_day(form["to"], "to")
    if end < start:
        raise InvalidValueError("to", "to must not be before from")
    days = HOURLY_MAX_DAYS if form["interval"] == "hour" else max_days
    try:
        check_span(start, end, days, "from", "to")
    except InvalidValueError:
        per = "hour" if form["interval"] == "hour" else "day"
        raise InvalidValueError(
            "to", f"per {per}, a range is at most {days} days: choose a later from or an earlier to"
        ) from None
    return UsageQuery(start, end, form["interval"], form["split"])


def buckets(q: UsageQuery) -> list[datetime]:
    """Every hour or day of the range, empty ones included (a chart shows the gaps)."""
    step = HOUR if q.interval == "hour" else DAY
    out, t = [], q.start
    while t < q.end:
        out.append(t)
        t += step
    return out


def bucket_label(t: datetime, interval: str) -> str:
    return t.strftime("%Y-%m-%d %H:00") if interval == "hour" else t.date().isoformat()


def metrics_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """One bucket's values as the chart plots them; the cost stays an exact decimal string."""
    return {
        "requests": row["requests"],
        "failures": row["failures"],
        "tokens": row["prompt_tokens"] + row["completion_tokens"],
        "cost": row["cost"],
    }


def series(
    q: UsageQuery, rows: list[dict[str, Any]], label_of: Callable[[Any], str]
) -> dict[str, Any]:
    """The chart's data: the bucket labels, and per split value (the busiest ``SHOWN``, then
    the others together) each metric per bucket.

    ``rows`` are the API's shaped rows (``at`` in UTC, ``cost`` an exact string), one per bucket
    and split value that had usage.
    """
    times = buckets(q)
    index = {t: i for i, t in enumerate(times)}
    column = SPLITS[q.split]
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        value = row[column]
        s = out.get(value)
        if s is None:
            s = {"key": value, "label": label_of(value)}
            s |= {m: [0] * len(times) for m in METRICS}
            s["cost"] = ["0.00"] * len(times)
            out[value] = s
        i = index[row["at"]]
        for m, v in metrics_of(row).items():
            s[m][i] = v
    ordered = sorted(out.values(), key=lambda s: (-sum(s["requests"]), s["label"]))
    return {
        "interval": q.interval,
        "split": q.split,
        "labels": [bucket_label(t, q.interval) for t in times],
        "series": ordered[:SHOWN] + ([others(ordered[SHOWN:])] if ordered[SHOWN:] else []),
        "totals": {
            "requests": sum(sum(s["requests"]) for s in ordered),
            "tokens": sum(sum(s["tokens"]) for s in ordered),
            "cost": money(sum((Decimal(c) for s in ordered for c in s["cost"]), Decimal(0))),
        },
    }


def others(rest: list[dict[str, Any]]) -> dict[str, Any]:
    """The split values past the busiest ``SHOWN``, summed into one series."""
    merged: dict[str, Any] = {"key": None, "label": f"others ({len(rest)})"}
    for m in METRICS:
        columns = zip(*(s[m] for s in rest), strict=True)
        if m == "cost":
            merged[m] = [money(sum((Decimal(c) for c in col), Decimal(0))) for col in columns]
        else:
            merged[m] = [sum(col) for col in columns]
    return merged
