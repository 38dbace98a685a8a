"""The console's billing and budgets pages in a real browser: what they show is the API's answer
for the same question, to the cent; the CSV download carries the same rows."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path

from freezegun import freeze_time

from domain.base import Actor
from interfaces.console.billing import csv_text
from interfaces.console.overview import month_of
from tests.browser.conftest import shot, sign_in_with_token
from tests.conftest import ADMIN_TOKEN
from tests.helpers import new_model, usage_record

AMOUNTS = ("requests", "prompt_tokens", "completion_tokens", "token_cost", "gpu_cost", "total_cost")


def fits_phone(page) -> bool:
    """The page's content is no wider than the phone: wide tables scroll inside their box."""
    return page.evaluate("document.querySelector('main').scrollWidth <= 390")


def ingest(tenant, records) -> None:
    r = tenant.api.post("/usage/events", json={"records": records})
    assert r.status_code == 200, r.text


def cells(page, table: str, item: str) -> list[str]:
    """A breakdown row's amounts, as the page shows them."""
    return page.locator(f"#{table} tr[data-item='{item}'] td").all_inner_texts()


def amounts(row: dict) -> list[str]:
    return [str(row[a]) for a in AMOUNTS]


def gpu_across_midnight(container, tenant) -> str:
    """An instance (0.85 EUR an hour) that ran from 22:00 on 10 March 2025 to 02:00 the next
    day: two hours billed to each day."""
    r = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"})
    assert r.status_code == 201, r.text
    instance_id = r.json()["id"]
    for status, when in (
        ("deploying", "2025-03-10T21:50:00Z"),
        ("running", "2025-03-10T22:00:00Z"),
        ("stopped", "2025-03-11T02:00:00Z"),
    ):
        with freeze_time(when):
            container.instances.transition_instance(uuid.UUID(instance_id), status, Actor.system())
    return instance_id


def usage_in_march(admin, container, tenant) -> tuple[str, str, str, str]:
    """Two models, two keys, an instance, two days of 10-12 March 2025, and a record either
    side of the range: at 23:59:59 the day before it, and at the midnight that ends it."""
    cheap, dear = new_model(admin), new_model(admin, "3.00", "9.00")
    router, _ = admin.new_key(tenant.id, "router")
    instance_id = gpu_across_midnight(container, tenant)
    key = tenant.key["id"]
    ingest(
        tenant,
        [
            usage_record(key, cheap, "2025-03-09T23:59:59Z"),  # the day before: not in range
            usage_record(key, cheap, "2025-03-10T00:00:00Z", instance_id=instance_id),
            usage_record(router["id"], dear, "2025-03-10T12:00:00Z", prompt_tokens=1234),
            usage_record(key, dear, "2025-03-11T23:59:59.999Z", completion_tokens=77),
            usage_record(key, cheap, "2025-03-12T00:00:00Z"),  # the end, excluded
        ],
    )
    return cheap, dear, router["id"], instance_id


def test_the_billing_page_shows_the_apis_summary_for_a_range(
    page, live_server, admin, container, tenant
):
    cheap, dear, router_id, instance_id = usage_in_march(admin, container, tenant)
    api = tenant.api.get(f"/team-billing/summary/{tenant.id}/2025-03-10/2025-03-12").json()
    # The range holds three of the five records: the boundaries are midnight UTC, end excluded.
    assert api["requests"] == 3
    assert [d["requests"] for d in api["by_day"]] == [2, 1]
    # GPU time across midnight is split at it: 2 hours at 0.85 EUR on each day.
    assert [d["gpu_cost"] for d in api["by_day"]] == ["1.70", "1.70"]
    assert [(i["instance_id"], i["gpu_seconds"]) for i in api["by_instance"]] == [
        (instance_id, "14400.00")
    ]

    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/billing")
    # By default, this month: its 1st to the 1st of the next.
    first, after = month_of(datetime.now(UTC))
    assert page.locator("input[name=start]").input_value() == first.date().isoformat()
    assert page.locator("input[name=end]").input_value() == after.date().isoformat()
    page.fill("input[name=start]", "2025-03-10")
    page.fill("input[name=end]", "2025-03-12")
    with page.expect_navigation():
        page.click("button:has-text('Show')")
    assert page.url.endswith("?start=2025-03-10&end=2025-03-12")
    assert "midnight UTC" in page.locator("#range-rule").inner_text()

    assert page.locator("#total-cost").inner_text() == f"{api['total_cost']} EUR"
    assert page.locator("#token-cost").inner_text() == f"{api['token_cost']} EUR"
    assert page.locator("#gpu-cost").inner_text() == f"{api['gpu_cost']} EUR"
    assert page.locator("#requests").inner_text() == str(api["requests"])
    assert page.locator("#tokens").inner_text() == (
        f"{api['prompt_tokens']} / {api['completion_tokens']}"
    )
    for table, rows, field in (
        ("by-day", api["by_day"], "date"),
        ("by-model", api["by_model"], "model"),
        ("by-key", api["by_key"], "key_id"),
        ("by-instance", api["by_instance"], "instance_id"),
    ):
        assert page.locator(f"#{table} tbody tr").count() == len(rows)
        for row in rows:
            shown = cells(page, table, row[field])
            if table == "by-instance":
                assert shown.pop(0) == row["gpu_seconds"]
            assert shown == amounts(row), (table, row)
    assert {m["model"] for m in api["by_model"]} == {cheap, dear}
    names = {
        k: page.locator(f"#by-key tr[data-item='{k}'] th").inner_text()
        for k in (tenant.key["id"], router_id)
    }
    assert names[tenant.key["id"]].startswith(tenant.key["name"])
    assert "2025-03-09" not in page.locator("#by-day").inner_text()
    shot(page, "billing")
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "billing-phone")
    assert fits_phone(page)


def test_the_billing_csv_has_the_apis_rows(page, live_server, admin, container, tenant):
    *_, instance_id = usage_in_march(admin, container, tenant)
    api = tenant.api.get(f"/team-billing/summary/{tenant.id}/2025-03-10/2025-03-12").json()
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/billing?start=2025-03-10&end=2025-03-12")
    with page.expect_download() as download:
        page.click("#download-csv")
    assert download.value.suggested_filename == (
        f"hostplane-billing-{tenant.id}-2025-03-10-2025-03-12.csv"
    )
    with Path(download.value.path()).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by = {(r["section"], r["item"]): r for r in rows}
    total = by[("total", "2025-03-10/2025-03-12")]
    assert [total[a] for a in AMOUNTS] == amounts(api)
    expected = (
        [("day", d["date"], d) for d in api["by_day"]]
        + [("model", m["model"], m) for m in api["by_model"]]
        + [("key", k["key_id"], k) for k in api["by_key"]]
        + [("instance", i["instance_id"], i) for i in api["by_instance"]]
    )
    assert len(rows) == 1 + len(expected)
    for section, item, row in expected:
        assert [by[(section, item)][a] for a in AMOUNTS] == amounts(row), (section, item)
    assert by[("key", tenant.key["id"])]["name"] == tenant.key["name"]
    assert by[("instance", instance_id)]["gpu_seconds"] == "14400.00"
    assert by[("day", "2025-03-10")]["gpu_seconds"] == ""  # only instances have GPU seconds


def test_a_name_that_looks_like_a_formula_is_written_as_text_in_the_csv():
    row = {a: "0" for a in AMOUNTS}
    day = datetime(2025, 3, 10, tzinfo=UTC)
    bill = {
        "summary": {**row, "start": day, "end": day, "by_day": [], "by_model": []},
        "by_key": [{**row, "key_id": "k", "name": "plain name"}],
        "by_instance": [{**row, "instance_id": "i", "name": '=HYPERLINK("x")', "gpu_seconds": "1"}],
    }
    rows = list(csv.DictReader(io.StringIO(csv_text(bill))))
    assert [(r["section"], r["name"]) for r in rows] == [
        ("total", ""),
        ("key", "plain name"),
        ("instance", '\'=HYPERLINK("x")'),
    ]


def test_a_range_the_api_refuses_is_a_400_page(page, live_server, tenant):
    sign_in_with_token(page, live_server, tenant.secret)
    base = live_server.url + f"/console/t/{tenant.id}/billing"
    for query, says in (
        ("?start=2025-03-12&end=2025-03-10", "end must not be before start"),
        ("?start=2020-01-01&end=2025-01-01", "at most 400 days"),
        ("?start=2025-3-1&end=2025-04-01", "YYYY-MM-DD"),
    ):
        response = page.goto(base + query)
        assert response.status == 400, query
        assert says in page.locator("[role=alert]").inner_text()
        assert page.request.get(base.replace("billing", "billing.csv") + query).status == 400
    shot(page, "billing-400")


def test_a_budget_made_in_the_page_shows_the_apis_spend(page, live_server, admin, tenant):
    model = new_model(admin)
    now = datetime.now(UTC).isoformat()
    ingest(tenant, [usage_record(tenant.key["id"], model, now) for _ in range(3)])
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/budgets")
    assert page.locator("#no-budgets").count() == 1
    form = page.locator("#new-budget")
    form.locator("input[name=limit_eur]").fill("0.02")
    form.locator("select[name=period]").select_option("monthly")
    form.locator("input[name=thresholds]").fill("0.25, 0.5")
    with page.expect_navigation():
        form.locator("button").click()

    listed = tenant.api.get("/budgets").json()["data"]
    assert len(listed) == 1
    api = tenant.api.get(f"/budgets/{listed[0]['id']}").json()
    assert api["spent"] != "0"  # three requests of 1,000 + 500 tokens at 1 and 2 EUR/Mtok
    card = page.locator(f"section.budget[data-budget-id='{api['id']}']")
    meter = card.locator("meter")
    assert meter.get_attribute("value") == api["spent"]
    assert meter.get_attribute("max") == api["limit_eur"] == "0.02"
    assert card.locator(".spent").inner_text() == api["spent"]
    assert card.locator(".remaining").inner_text() == api["remaining"]
    assert card.locator(".state").inner_text() == api["state"]
    assert card.locator(".thresholds").inner_text() == "0.25 (25 %), 0.5 (50 %)"
    assert api["thresholds"] == ["0.25", "0.5"]
    assert page.evaluate("e => e.value", meter.element_handle()) == float(api["spent"])
    shot(page, "budgets")
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "budgets-phone")
    assert fits_phone(page)
    page.set_viewport_size({"width": 1100, "height": 800})

    card.locator("summary").click()
    edit = card.locator("form.edit")
    edit.locator("input[name=limit_eur]").fill("5.50")
    edit.locator("select[name=period]").select_option("daily")
    with page.expect_navigation():
        edit.locator("button").click()
    api = tenant.api.get(f"/budgets/{api['id']}").json()
    assert (api["limit_eur"], api["period"]) == ("5.50", "daily")
    assert card.locator("meter").get_attribute("max") == "5.50"
    assert card.locator(".spent").inner_text() == api["spent"]

    # The schema's and the domain's refusals, as a 400 page; nothing changes.
    card.locator("summary").click()
    edit.locator("input[name=thresholds]").fill("0.5, 2")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        edit.locator("button").click()
    assert answer.value.status == 400
    assert "thresholds" in page.locator("[role=alert]").inner_text()
    assert tenant.api.get(f"/budgets/{api['id']}").json()["thresholds"] == api["thresholds"]

    page.goto(live_server.url + f"/console/t/{tenant.id}/budgets")
    page.on("dialog", lambda d: d.accept())
    card.locator("summary").click()
    with page.expect_navigation():
        card.locator("button:has-text('Delete budget')").click()
    assert tenant.api.get(f"/budgets/{api['id']}").status_code == 404
    assert page.locator("#no-budgets").count() == 1


def test_a_key_budget_covers_that_key(page, live_server, tenant):
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/budgets")
    form = page.locator("#new-budget")
    form.locator("input[name=limit_eur]").fill("3")
    form.locator("select[name=key_id]").select_option(tenant.key["id"])
    with page.expect_navigation():
        form.locator("button").click()
    (listed,) = tenant.api.get("/budgets").json()["data"]
    assert (listed["scope"], listed["key_id"]) == ("key", tenant.key["id"])
    assert tenant.key["name"] in page.locator("section.budget h2").inner_text()


def test_another_tenants_billing_and_budgets_are_not_found(page, live_server, tenant, other_tenant):
    r = other_tenant.api.post("/budgets", json={"limit_eur": "10"})
    assert r.status_code == 201, r.text
    theirs = r.json()["id"]
    sign_in_with_token(page, live_server, tenant.secret)
    base = live_server.url + f"/console/t/{other_tenant.id}"
    for path in ("billing", "budgets"):
        assert page.goto(f"{base}/{path}").status == 404, path
        assert other_tenant.tenant["name"] not in page.content()
    csv_answer = page.request.get(f"{base}/billing.csv?start=2025-03-10&end=2025-03-12")
    assert csv_answer.status == 404
    assert "attachment" not in csv_answer.headers.get("content-disposition", "")
    # Their budget, even under our own tenant's address, is not ours to change or delete.
    page.goto(live_server.url + f"/console/t/{tenant.id}/budgets")
    csrf = page.locator("#new-budget input[name=csrf]").get_attribute("value")
    ours = live_server.url + f"/console/t/{tenant.id}/budgets/{theirs}"
    form = {"csrf": csrf, "limit_eur": "1", "period": "monthly", "thresholds": ""}
    assert page.request.post(ours, form=form).status == 404
    assert page.request.post(ours + "/delete", form={"csrf": csrf}).status == 404
    assert other_tenant.api.get(f"/budgets/{theirs}").json()["limit_eur"] == "10"


def test_the_admin_sets_a_tenants_budget_and_reads_its_bill(page, live_server, admin, tenant):
    sign_in_with_token(page, live_server, ADMIN_TOKEN)
    page.goto(live_server.url + f"/console/t/{tenant.id}/budgets")
    form = page.locator("#new-budget")
    form.locator("input[name=limit_eur]").fill("7")
    with page.expect_navigation():
        form.locator("button").click()
    (listed,) = tenant.api.get("/budgets").json()["data"]
    assert (listed["tenant_id"], listed["limit_eur"]) == (tenant.id, "7")
    page.goto(live_server.url + f"/console/t/{tenant.id}/billing?start=2025-03-10&end=2025-03-10")
    api = admin.get(f"/team-billing/summary/{tenant.id}/2025-03-10/2025-03-10").json()
    assert page.locator("#total-cost").inner_text() == f"{api['total_cost']} EUR" == "0.00 EUR"
    assert page.locator("#by-day tbody").inner_text() == "An empty range."


def test_a_budget_is_made_and_a_range_chosen_from_the_keyboard(page, live_server, tenant):
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/budgets")

    def tab_to(selector: str) -> None:
        target = page.locator(selector)
        for _ in range(30):
            page.keyboard.press("Tab")
            if target.evaluate("e => e === document.activeElement"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#new-budget input[name=limit_eur]")
    page.keyboard.type("12.5")
    tab_to("#new-budget button")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    (listed,) = tenant.api.get("/budgets").json()["data"]
    assert listed["limit_eur"] == "12.5"

    page.goto(live_server.url + f"/console/t/{tenant.id}/billing")
    tab_to("input[name=start]")
    page.keyboard.type("03102025")  # the date field's own order (en-US: month, day, year)
    tab_to("input[name=end]")
    page.keyboard.type("03122025")
    tab_to("button:has-text('Show')")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("?start=2025-03-10&end=2025-03-12")
    tab_to("#download-csv")
