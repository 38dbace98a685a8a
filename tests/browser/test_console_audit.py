"""The console's audit log and export pages in a real browser: the same entries, pages and
export lines as the API's, secrets never shown, another tenant's not found."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from tests.browser.conftest import shot, sign_in_with_token


def fits_phone(page) -> bool:
    """The page's content is no wider than the phone: wide tables scroll inside their box."""
    return page.evaluate("document.querySelector('main').scrollWidth <= 390")


def shown_ids(page) -> list[int]:
    return [
        int(i)
        for i in page.locator("li.entry").evaluate_all("es => es.map(e => e.dataset.entryId)")
    ]


def api_ids(tenant, **query) -> tuple[list[int], str | None]:
    r = tenant.api.get("/audit", params=query)
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()["data"]], r.json()["next_cursor"]


def test_the_audit_log_filters_by_action_and_pages_by_cursor(page, live_server, admin, tenant):
    secrets = [admin.new_key(tenant.id, "router")[1] for _ in range(2)]
    tenant.api.post("/budgets", json={"limit_eur": "10"})
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/audit")
    everything, _ = api_ids(tenant, limit=50)
    assert shown_ids(page) == everything

    page.fill("input[name=action]", "key.issued")
    with page.expect_navigation():
        page.click("button:has-text('Filter')")
    issued, _ = api_ids(tenant, action="key.issued")
    assert len(issued) == 3 and shown_ids(page) == issued
    assert set(page.locator("li.entry .action").all_inner_texts()) == {"key.issued"}
    # Each entry's changed fields, the key's hash redacted; no secret anywhere on the page.
    first = page.locator(f"li.entry[data-entry-id='{issued[-1]}']")
    fields = dict(
        zip(
            first.locator("dt").all_inner_texts(),
            first.locator("dd").all_inner_texts(),
            strict=True,
        )
    )
    assert fields["name"] == tenant.key["name"]
    assert fields["token_hash"] == "[redacted]"
    assert fields["key_prefix"] and tenant.secret.startswith(fields["key_prefix"])
    content = page.content()
    assert not any(s in content for s in [tenant.secret, *secrets])
    shot(page, "audit")

    # Two a page: the first page, then the next by its cursor, as the API pages them.
    since = "2000-01-01T00:00:00.5Z"
    page.goto(
        live_server.url + f"/console/t/{tenant.id}/audit?action=key.issued&limit=2&since={since}"
    )
    one, cursor = api_ids(tenant, action="key.issued", limit=2)
    assert shown_ids(page) == one
    with page.expect_navigation():
        page.click("#next-page")
    two, last = api_ids(tenant, action="key.issued", limit=2, cursor=cursor)
    assert shown_ids(page) == two and len(two) == 1 and last is None
    assert page.locator("#next-page").count() == 0
    assert page.locator("input[name=action]").input_value() == "key.issued"
    assert "since=2000-01-01T00%3A00%3A00.5Z" in page.url  # the filter as given, kept
    with page.expect_navigation():
        page.click("#first-page")
    assert shown_ids(page) == one
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "audit-phone")
    assert fits_phone(page)


def test_the_audit_log_filters_by_actor_target_and_time(page, live_server, tenant):
    r = tenant.api.post("/budgets", json={"limit_eur": "10"})
    budget_id = r.json()["id"]
    sign_in_with_token(page, live_server, tenant.secret)
    base = live_server.url + f"/console/t/{tenant.id}/audit"
    page.goto(base)
    page.fill("input[name=actor]", f"key:{tenant.key['id']}")
    page.select_option("select[name=target_type]", "budget")
    page.fill("input[name=target_id]", budget_id)
    with page.expect_navigation():
        page.click("button:has-text('Filter')")
    ids, _ = api_ids(
        tenant, actor=f"key:{tenant.key['id']}", target_type="budget", target_id=budget_id
    )
    assert ids and shown_ids(page) == ids
    assert set(page.locator("li.entry .target").all_inner_texts()) == {budget_id}

    page.fill("input[name=until]", "2000-01-01T00:00:00")
    with page.expect_navigation():
        page.click("button:has-text('Filter')")
    assert page.locator("#no-entries").count() == 1
    page.goto(base + "?since=2000-01-01")
    # The date alone means its midnight UTC, shown in the picker (which drops ":00" seconds).
    assert page.locator("input[name=since]").input_value() == "2000-01-01T00:00"
    assert shown_ids(page) == api_ids(tenant, since="2000-01-01")[0]

    for query, says in (
        ("?target_id=nope", "target_id"),
        ("?since=2025-02-01&until=2025-01-01", "until must not be before since"),
        ("?cursor=!!", "cursor"),
        ("?limit=0", "limit"),
    ):
        assert page.goto(base + query).status == 400, query
        assert says in page.locator("[role=alert]").inner_text()


def export_lines(path: str) -> list[dict]:
    lines = [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]
    assert lines[0]["kind"] == "header" and lines[-1]["kind"] == "end"
    lines[0].pop("generated_at")  # the one thing that differs between two exports
    return lines


def api_export(tenant, **query) -> list[dict]:
    r = tenant.api.get(f"/tenants/{tenant.id}/export", params=query)
    assert r.status_code == 200, r.text
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    lines[0].pop("generated_at")
    return lines


def test_the_export_downloads_the_apis_ndjson_now_and_as_of_a_past_moment(
    page, live_server, tenant
):
    time.sleep(1.1)  # the moment below comes after every event of the tenant's set-up
    moment = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.1)
    budget_id = tenant.api.post("/budgets", json={"limit_eur": "10"}).json()["id"]

    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/export")
    shot(page, "export")
    with page.expect_download() as download:
        page.click("#download-now")
    assert download.value.suggested_filename == f"hostplane-export-{tenant.id}.ndjson"
    now_lines = export_lines(download.value.path())
    assert now_lines == api_export(tenant)
    assert budget_id in orjson.dumps(now_lines).decode()
    assert tenant.secret not in Path(download.value.path()).read_text()

    page.fill("input[name=as_of]", moment.strftime("%Y-%m-%dT%H:%M:%S"))
    with page.expect_download() as download:
        page.click("button:has-text('Download export')")
    then_lines = export_lines(download.value.path())
    assert then_lines == api_export(tenant, as_of=moment.isoformat().replace("+00:00", "Z"))
    assert budget_id not in orjson.dumps(then_lines).decode()
    assert tenant.key["id"] in orjson.dumps(then_lines).decode()
    refused = page.request.get(live_server.url + f"/console/t/{tenant.id}/export.ndjson?as_of=soon")
    assert refused.status == 400 and "as_of" in refused.text()


def test_the_downloads_need_a_session(browser, live_server, tenant):
    context = browser.new_context()
    try:
        for path in ("export.ndjson", "billing.csv", "audit", "budgets", "billing"):
            url = live_server.url + f"/console/t/{tenant.id}/{path}"
            answer = context.request.get(url, max_redirects=0)
            assert answer.status == 303, path
            assert answer.headers["location"] == "/console/login"
    finally:
        context.close()


def test_another_tenants_audit_and_export_are_not_found(page, live_server, tenant, other_tenant):
    sign_in_with_token(page, live_server, tenant.secret)
    base = live_server.url + f"/console/t/{other_tenant.id}"
    for path in ("audit", "export"):
        assert page.goto(f"{base}/{path}").status == 404, path
        assert other_tenant.tenant["name"] not in page.content()
    answer = page.request.get(f"{base}/export.ndjson")
    assert answer.status == 404
    assert other_tenant.key["id"] not in answer.text()
    # Our own audit page never lists their entries, whatever the filter says.
    page.goto(live_server.url + f"/console/t/{tenant.id}/audit?target_id={other_tenant.id}")
    assert page.locator("#no-entries").count() == 1
