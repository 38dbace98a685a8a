"""The console's usage page in a real browser, over usage that went through the gateway: chat
requests sent with the official ``openai`` SDK to a served hostplane whose BYOK vendors are the
fake upstream (``tests/fake_upstream.py``); the chart must draw what the upstream reported, and
the table must be the API's answer.

The chart is read as data, from Chart.js itself (``Chart.getChart(canvas)``): its datasets, and
the bars it laid out for them (a drawn bar has a height), not just a canvas on the page.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import Gateway, GatewayTenant
from tests.api.test_lifecycle import DEPLOY, FAST
from tests.browser.conftest import shot, sign_in_with_token
from tests.conftest import ADMIN_TOKEN

# Everything Chart.js holds for the usage chart: labels, each dataset's values and the height
# of each bar it drew.
READ_CHART = """() => {
  const chart = Chart.getChart(document.getElementById('usage-chart'));
  return {
    labels: chart.data.labels,
    datasets: chart.data.datasets.map((d, n) => ({
      label: d.label,
      data: d.data,
      heights: chart.getDatasetMeta(n).data.map(bar => bar.height),
    })),
  };
}"""


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    """The provisioning jobs on, with short simulated delays: a GPU instance runs in a second."""
    return FAST


def words(n: int) -> list[dict[str, str]]:
    """A prompt of ``n`` words (so that each request reports other prompt tokens)."""
    return [{"role": "user", "content": " ".join(f"w{i}" for i in range(n))}]


def chart_of(page: Any) -> dict[str, Any]:
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.getElementById('usage-chart'))"
    )
    return page.evaluate(READ_CHART)


def dataset(chart: dict[str, Any], label: str) -> dict[str, Any]:
    return next(d for d in chart["datasets"] if d["label"] == label)


def usage_url(gateway: Gateway, tenant_id: str, **query: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{gateway.url}/console/t/{tenant_id}/usage" + (f"?{q}" if q else "")


def sign_in(page: Any, gateway: Gateway, t: GatewayTenant) -> None:
    sign_in_with_token(page, gateway.server, t.api.token)


def errors_of(page: Any) -> list[str]:
    """The page's console errors (a script refused by the CSP would be one), but for the
    browser's own asking for /favicon.ico (the console has none)."""
    seen: list[str] = []

    def console(m: Any) -> None:
        if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico"):
            seen.append(f"{m.text} {m.location}")

    page.on("console", console)
    page.on("pageerror", lambda e: seen.append(str(e)))
    page.on("response", lambda r: seen.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return seen


def test_the_chart_draws_the_requests_and_tokens_the_upstream_reported(page, gateway: Gateway):
    t = gateway.new_tenant()
    t.byok("openai")
    ok, broken = gateway.model("openai"), gateway.model("openai")
    gateway.fake.script(ok, words=7)
    gateway.fake.script(broken, status=500)
    _, secret = t.router_key()
    client = gateway.client(secret)
    for n in (3, 5, 11):
        client.chat.completions.create(model=ok, messages=words(n))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=broken, messages=words(2))
    answered = [r for r in gateway.fake.requests_for(ok) if r.status == 200]
    assert len(answered) == 3
    tokens = sum(r.usage["prompt_tokens"] + r.usage["completion_tokens"] for r in answered)
    t.wait_billed(4)

    errors = errors_of(page)
    sign_in(page, gateway, t)
    page.goto(usage_url(gateway, t.id))  # this month so far, per day, by model: the defaults
    now = datetime.now(UTC)
    today, tomorrow = now.date(), now.date() + timedelta(days=1)
    assert page.locator("input[name=from]").input_value() == today.replace(day=1).isoformat()
    assert page.locator("input[name=to]").input_value() == tomorrow.isoformat()
    assert "up to, not including," in page.locator("#range-rule").inner_text()

    chart = chart_of(page)
    day = chart["labels"].index(today.isoformat())
    assert chart["labels"][0] == today.replace(day=1).isoformat()
    drawn = dataset(chart, ok)
    assert drawn["data"][day] == 3
    assert drawn["heights"][day] > 0  # a bar, drawn
    assert dataset(chart, broken)["data"][day] == 1

    # The switch redraws the same bars as tokens, as failures, as cost (the API's exact string).
    page.get_by_label("tokens").check()
    assert dataset(chart_of(page), ok)["data"][day] == tokens
    page.get_by_label("failures").check()
    chart = chart_of(page)
    assert (dataset(chart, ok)["data"][day], dataset(chart, broken)["data"][day]) == (0, 1)
    api = t.api.get(
        "/usage",
        params={"group_by": "model", "from": str(today.replace(day=1)), "to": str(tomorrow)},
    )
    assert api.status_code == 200, api.text
    page.get_by_label("cost (EUR)").check()
    by_model = {r["model"]: r for r in api.json()["data"]}
    assert dataset(chart_of(page), ok)["data"][day] == by_model[ok]["cost"]

    # The table is GET /usage?group_by=model for the same range, figure for figure.
    rows = page.locator("#usage-table tbody tr")
    assert rows.count() == len(by_model) == 2
    for model, row in by_model.items():
        cells = page.locator(f"#usage-table tr[data-split='{model}'] > *").all_inner_texts()
        assert cells == [
            model,
            *(str(row[k]) for k in ("requests", "successes", "failures")),
            *(str(row[k]) for k in ("prompt_tokens", "completion_tokens")),
            row["cost"],
        ]
    assert page.locator("#usage-requests").inner_text() == "4"
    assert errors == []
    page.get_by_label("requests").check()
    shot(page, "usage")
    page.set_viewport_size({"width": 390, "height": 800})
    # The page's own part fits, once the chart has followed the resize (the tables scroll
    # sideways in their own box; a timeout here is the failure).
    page.wait_for_function("() => document.getElementById('main').scrollWidth <= 390")
    shot(page, "usage-phone")


def test_split_by_key_shows_each_keys_name(page, gateway: Gateway):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    (first, one), (second, two) = t.router_key(), t.router_key()
    for secret, n in ((one, 2), (two, 3)):
        for _ in range(n):
            gateway.client(secret).chat.completions.create(model=model, messages=words(4))
    t.wait_billed(5)

    sign_in(page, gateway, t)
    page.goto(usage_url(gateway, t.id))
    assert [d["label"] for d in chart_of(page)["datasets"]] == [model]
    # From the keyboard: the chart's switch is a group of radio buttons (arrow keys move).
    page.focus("input[name=metric][value=requests]")
    page.keyboard.press("ArrowRight")
    assert page.locator("#usage-chart").get_attribute("data-metric") == "failures"
    assert sum(dataset(chart_of(page), model)["data"]) == 0
    page.select_option("select[name=split]", "key")
    with page.expect_navigation():
        page.click("button:has-text('Show')")
    assert "split=key" in page.url
    chart = chart_of(page)
    day = chart["labels"].index(datetime.now(UTC).date().isoformat())
    assert {d["label"]: d["data"][day] for d in chart["datasets"]} == {
        first["name"]: 2,
        second["name"]: 3,
    }
    shown = {
        row.locator("th").inner_text(): row.locator("td").first.inner_text()
        for row in page.locator("#usage-table tbody tr").all()
    }
    assert shown == {first["name"]: "2", second["name"]: "3"}
    shot(page, "usage-by-key")


def test_the_admin_sees_the_pages_tenant_only(page, gateway: Gateway):
    t, other = gateway.new_tenant(), gateway.new_tenant()
    model = gateway.model("openai")
    for tenant, n in ((t, 2), (other, 5)):
        tenant.byok("openai")
        _, secret = tenant.router_key()
        for _ in range(n):
            gateway.client(secret).chat.completions.create(model=model, messages=words(4))
        tenant.wait_billed(n)
    sign_in_with_token(page, gateway.server, ADMIN_TOKEN)
    page.goto(usage_url(gateway, t.id))
    assert page.locator("#usage-requests").inner_text() == "2"
    assert page.locator(f"#usage-table tr[data-split='{model}'] td").first.inner_text() == "2"


def test_per_hour_the_current_hour_has_its_point(page, gateway: Gateway):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    _, secret = t.router_key()
    before = datetime.now(UTC)
    for _ in range(3):
        gateway.client(secret).chat.completions.create(model=model, messages=words(4))
    after = datetime.now(UTC)
    t.wait_billed(3)

    sign_in(page, gateway, t)
    today = after.date()
    page.goto(usage_url(gateway, t.id, **{"from": str(today), "to": str(today + timedelta(1))}))
    page.select_option("select[name=interval]", "hour")
    with page.expect_navigation():
        page.click("button:has-text('Show')")
    chart = chart_of(page)
    assert len(chart["labels"]) == 24 and chart["labels"][0] == f"{today} 00:00"
    drawn = dataset(chart, model)
    # The requests were sent within one hour, or (at the turn of an hour) across two.
    hours = sorted({f"{x:%Y-%m-%d %H}:00" for x in (before, after) if x.date() == today})
    points = [drawn["data"][chart["labels"].index(h)] for h in hours]
    assert sum(points) == 3
    assert all(
        drawn["heights"][chart["labels"].index(h)] > 0
        for h, p in zip(hours, points, strict=True)
        if p
    )
    assert sum(drawn["data"]) == 3  # and no other hour has any
    shot(page, "usage-hourly")


def test_another_tenants_usage_page_is_not_found(page, gateway: Gateway):
    t, other = gateway.new_tenant(), gateway.new_tenant()
    name = gateway.admin.get(f"/tenants/{other.id}").json()["name"]
    sign_in(page, gateway, t)
    for query in ({}, {"split": "nonsense"}):  # a bad query must not tell whether it exists
        response = page.goto(usage_url(gateway, other.id, **query))
        assert response.status == 404
        assert name not in page.content()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"from": "2026-03-10", "to": "2026-03-01"}, "to must not be before from"),
        ({"split": "colour"}, "split must be model, key, instance or vendor"),
        ({"interval": "minute"}, "interval must be hour or day"),
        ({"from": "2026-02-30"}, "from must be a date YYYY-MM-DD"),
        ({"from": "2026-01-01", "to": "2026-02-01", "interval": "hour"}, "at most 14 days"),
        ({"from": "0001-01-01", "to": "9999-12-31"}, "at most 400 days"),
    ],
)
def test_a_bad_query_is_a_400_with_its_reason(page, gateway: Gateway, query, message):
    t = gateway.new_tenant()
    sign_in(page, gateway, t)
    response = page.goto(usage_url(gateway, t.id, **query))
    assert response.status == 400
    assert message in page.locator("#usage-error").inner_text()
    assert page.locator("form.usage-query").count() == 1  # the form again, to correct it
    if "from" in query:
        assert page.locator("input[name=from]").input_value() in (query["from"], "")
    shot(page, "usage-bad-range")


def test_the_same_date_twice_is_an_empty_range(page, gateway: Gateway):
    t = gateway.new_tenant()
    sign_in(page, gateway, t)
    today = str(datetime.now(UTC).date())
    response = page.goto(usage_url(gateway, t.id, **{"from": today, "to": today}))
    assert response.status == 200
    assert page.locator("#usage-requests").inner_text() == "0"
    assert chart_of(page)["labels"] == []


def test_split_by_instance_and_by_vendor_shows_the_apis_figures(page, gateway: Gateway):
    t = gateway.new_tenant()
    upstream, _ = t.byok("openai")  # a BYOK upstream is an instance too (kind "byok")
    byok_model = gateway.model("openai")
    _, secret = t.router_key()
    gateway.client(secret).chat.completions.create(model=byok_model, messages=words(4))
    r = t.api.post("/instances", json=DEPLOY)
    assert r.status_code == 201, r.text
    instance = r.json()
    deadline = time.monotonic() + 20
    while (instance := t.api.get(f"/instances/{instance['id']}").json())["status"] != "running":
        assert time.monotonic() < deadline, instance
        time.sleep(0.05)
    key = t.api.get(f"/instances/{instance['id']}/api-key").json()["api_key"]
    for _ in range(2):
        gateway.client(key, "/api/v1").chat.completions.create(
            model=DEPLOY["model_id"], messages=words(3)
        )
    # Destroyed, its GPU cost stops growing: the page and the API must then agree to the cent.
    assert t.api.delete(f"/instances/{instance['id']}").status_code in (200, 204)
    t.wait_billed(3)
    today = datetime.now(UTC).date()
    days = {"from": str(today), "to": str(today + timedelta(days=1))}

    sign_in(page, gateway, t)
    page.goto(usage_url(gateway, t.id, split="instance", **days))
    costs = {
        c["instance"]: c
        for c in t.api.get("/costs", params={"group_by": "instance", **days}).json()["data"]
    }
    used = {
        u["instance_id"]: u
        for u in t.api.get("/usage", params={"group_by": "instance", **days}).json()["data"]
    }
    assert set(costs) == set(used) == {instance["id"], upstream["id"]}
    gpu_row = page.locator(f"#usage-table tr[data-split='{instance['id']}'] > *").all_inner_texts()
    assert gpu_row[0] == f"{instance['name'] or DEPLOY['model_id']} (gpu)"
    assert gpu_row[1] == "2" == str(used[instance["id"]]["requests"])
    assert gpu_row[-3:] == [
        used[instance["id"]]["cost"],
        costs[instance["id"]]["gpu_cost"],
        costs[instance["id"]]["total_cost"],
    ]
    assert Decimal(costs[instance["id"]]["gpu_cost"]) > 0
    gpu = sum(Decimal(c["gpu_cost"]) for c in costs.values())
    assert Decimal(page.locator("#usage-gpu-cost").inner_text()) == gpu
    byok_row = page.locator(f"#usage-table tr[data-split='{upstream['id']}'] > *").all_inner_texts()
    assert byok_row[:2] == [f"{upstream['name']} (byok)", "1"]
    assert byok_row[-3:] == [
        used[upstream["id"]]["cost"],
        "0.00",
        costs[upstream["id"]]["total_cost"],
    ]
    chart = chart_of(page)
    assert {d["label"]: d["data"][0] for d in chart["datasets"]} == {
        gpu_row[0]: 2,
        byok_row[0]: 1,
    }
    shot(page, "usage-by-instance")

    page.goto(usage_url(gateway, t.id, split="vendor", **days))
    vendors = t.api.get("/usage", params={"group_by": "vendor", **days}).json()["data"]
    shown = {
        row.locator("th").inner_text(): row.locator("td").first.inner_text()
        for row in page.locator("#usage-table tbody tr").all()
    }
    assert shown == {
        (v["vendor"] or "none named (GPU instance)"): str(v["requests"]) for v in vendors
    }
    assert shown == {"openai": "1", "none named (GPU instance)": "2"}
