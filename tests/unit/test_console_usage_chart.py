"""The usage page's query and chart series, without a database: the midnight-UTC half-open
range, its bounds, and bars put in the bucket they belong to (empty buckets kept)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.base import InvalidValueError
from interfaces.console.usage_chart import UsageQuery, default_form, form_of, parse_query, series


def query(**fields: str) -> UsageQuery:
    form = {"from": "2026-03-01", "to": "2026-03-04", "interval": "day", "split": "model"}
    return parse_query({**form, **fields}, max_days=400)


def test_the_default_is_this_month_so_far_up_to_tomorrow_even_on_the_last_day_of_a_year():
    late = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert default_form(late) == {
        "from": "2026-12-01",
        "to": "2027-01-01",
        "interval": "day",
        "split": "model",
    }


def test_fields_left_empty_take_their_defaults_and_given_ones_are_kept_as_typed():
    now = datetime(2026, 5, 17, 8, tzinfo=UTC)
    form = form_of({"from": "", "split": "nonsense"}, now)
    assert form == {
        "from": "2026-05-01",
        "to": "2026-05-18",
        "interval": "day",
        "split": "nonsense",
    }


def test_dates_mean_midnight_utc_and_the_end_is_excluded():
    q = query()
    assert (q.start, q.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))
    assert series(q, [], str)["labels"] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert series(query(to="2026-03-01"), [], str)["labels"] == []  # the same date twice


def test_hours_are_limited_to_fourteen_days_and_days_to_the_apis_limit():
    assert len(series(query(to="2026-03-15", interval="hour"), [], str)["labels"]) == 14 * 24
    with pytest.raises(InvalidValueError, match="at most 14 days"):
        query(to="2026-03-16", interval="hour")
    with pytest.raises(InvalidValueError, match="at most 400 days"):
        query(**{"from": "2020-01-01"}, to="2026-01-01")
    with pytest.raises(InvalidValueError, match="to must not be before from"):
        query(to="2026-02-28")


def test_each_row_lands_in_its_bucket_per_split_value_busiest_first():
    q = query(interval="hour", to="2026-03-02")
    row = {"failures": 0, "prompt_tokens": 10, "completion_tokens": 5, "cost": "0.0001"}
    rows = [
        {**row, "at": datetime(2026, 3, 1, 2, tzinfo=UTC), "model": "a", "requests": 1},
        {**row, "at": datetime(2026, 3, 1, 23, tzinfo=UTC), "model": "b", "requests": 4},
    ]
    chart = series(q, rows, lambda m: f"model {m}")
    assert [s["label"] for s in chart["series"]] == ["model b", "model a"]
    b, a = chart["series"]
    assert a["requests"][2] == 1 and sum(a["requests"]) == 1
    assert b["requests"][23] == 4 and b["tokens"][23] == 15 and b["cost"][23] == "0.0001"
    assert a["cost"][0] == "0.00"
    assert chart["totals"] == {"requests": 5, "tokens": 30, "cost": "0.0002"}


def test_past_the_busiest_ten_the_split_values_are_one_others_series():
    q = query(to="2026-03-02")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    row = {"at": at, "failures": 1, "prompt_tokens": 1, "completion_tokens": 1}
    rows = [
        {**row, "model": f"m{n:02}", "requests": 100 - n, "cost": f"0.00{n}"} for n in range(13)
    ]
    chart = series(q, rows, str)
    assert [s["label"] for s in chart["series"]] == [f"m{n:02}" for n in range(10)] + ["others (3)"]
    rest = chart["series"][-1]
    assert rest["requests"] == [90 + 89 + 88] and rest["failures"] == [3]
    assert rest["tokens"] == [6] and rest["cost"] == ["0.0033"]  # 0.0010 + 0.0011 + 0.0012
    assert chart["totals"]["requests"] == sum(100 - n for n in range(13))
