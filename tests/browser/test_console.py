"""The web console in a real browser: Playwright driving Debian's Chromium (never a downloaded
one). Skipped, with the reason, when /usr/bin/chromium is missing (.ci/run installs it).

Screenshots of each page go to ``test-artifacts/console/`` (git-ignored).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.browser.conftest import PASSWORD, registered, shot, sign_in_with_token
from tests.conftest import ADMIN_TOKEN
from tests.helpers import new_model, usage_record


def test_sign_in_with_a_password_shows_the_tenants_overview(page, live_server):
    user = registered(live_server)
    page.goto(live_server.url + "/console/login")
    shot(page, "login")
    page.fill("input[name=email]", user["email"])
    page.fill("input[name=password]", PASSWORD)
    page.locator("form:has(input[name=email]) button").click()
    tenant_id = user["user"]["tenant_id"]
    page.wait_for_url(f"**/console/t/{tenant_id}/overview")
    assert page.locator("h1").inner_text().endswith("overview")
    cookie = next(c for c in page.context.cookies() if c["name"] == "hostplane_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert user["token"] not in cookie["value"]  # sealed, not the JWT in clear

    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/console/login")
    page.goto(live_server.url + f"/console/t/{tenant_id}/overview")
    assert page.url.endswith("/console/login")


def test_a_wrong_password_is_refused(page, live_server):
    user = registered(live_server)
    page.goto(live_server.url + "/console/login")
    page.fill("input[name=email]", user["email"])
    page.fill("input[name=password]", "not-the-password-1234")
    page.locator("form:has(input[name=email]) button").click()
    assert page.locator("[role=alert]").inner_text() != ""
    assert page.url.endswith("/console/login")


def test_a_new_keys_secret_is_shown_once_then_only_its_prefix(page, live_server, tenant):
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/keys")
    page.fill("input[name=name]", "from the console")
    page.click("button:has-text('Create key')")
    secret = page.locator("#new-secret").inner_text()
    assert secret.startswith("hp_")
    shot(page, "keys-created")
    # A reload shows the list (the address was replaced): the prefix, never the secret.
    page.reload()
    assert page.locator("#new-secret").count() == 0
    assert secret not in page.content()
    row = page.locator("tr", has_text="from the console")
    prefix = row.locator("code.prefix").inner_text().rstrip("…")
    assert secret.startswith(prefix) and len(prefix) < len(secret)
    # The API agrees: the key exists and works.
    r = httpx.get(live_server.url + "/api/v1/keys", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code in (200, 403)  # a router key is refused on management routes

    row.locator("button:has-text('Disable')").click()
    assert page.locator("tr", has_text="from the console").locator("td").nth(3).inner_text() == (
        "disabled"
    )
    page.on("dialog", lambda d: d.accept())
    page.locator("tr", has_text="from the console").locator("button:has-text('Delete')").click()
    page.wait_for_load_state()
    assert page.locator("tr", has_text="from the console").count() == 0
    shot(page, "keys")


def test_a_tenant_cannot_reach_another_tenants_pages(page, live_server, tenant, other_tenant):
    sign_in_with_token(page, live_server, tenant.secret)
    for path in ("overview", "keys"):
        response = page.goto(live_server.url + f"/console/t/{other_tenant.id}/{path}")
        assert response.status == 404
        assert other_tenant.tenant["name"] not in page.content()
    shot(page, "not-found")


def test_a_form_without_its_csrf_token_is_refused(page, live_server, tenant):
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/keys")
    # The page's own form, its CSRF field removed: the browser sends its session cookie.
    page.evaluate("document.querySelector('form.card input[name=csrf]').remove()")
    page.fill("input[name=name]", "forged")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("button:has-text('Create key')")
    assert answer.value.status == 403
    assert "did not come from this console" in page.locator("[role=alert]").inner_text()
    page.goto(live_server.url + f"/console/t/{tenant.id}/keys")
    assert page.locator("tr", has_text="forged").count() == 0
    # Every other form too, posted with the session's cookie but a missing or wrong token.
    base = live_server.url + "/console"
    for path in (f"/t/{tenant.id}/keys/{tenant.key['id']}/disable", "/logout", "/login"):
        for form in ({}, {"csrf": "0" * 64}):
            assert page.request.post(base + path, form=form).status == 403, path
    page.goto(live_server.url + f"/console/t/{tenant.id}/keys")
    row = page.locator("tr", has_text=tenant.key["name"])
    assert row.locator("td").nth(3).inner_text() == "enabled"


def test_the_overview_charts_ingested_usage(page, live_server, admin, tenant):
    model = new_model(admin)
    now = datetime.now(UTC)
    records = [usage_record(tenant.key["id"], model, now.isoformat()) for _ in range(3)]
    r = tenant.api.post("/usage/events", json={"records": records})
    assert r.status_code == 200, r.text
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/overview")
    today = datetime.now(UTC).date().isoformat()
    point = page.locator(f"#requests-chart rect.point[data-date='{today}']")
    assert point.get_attribute("data-requests") == "3"
    assert point.get_attribute("data-tokens") == str(3 * 1500)
    assert float(point.get_attribute("height")) > 0
    assert page.locator("#requests").inner_text() == "3"
    # The month's spend is the billing API's answer for the same range, to the cent.
    start = now.date().replace(day=1)
    end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    api = tenant.api.get(f"/team-billing/summary/{tenant.id}/{start}/{end}").json()
    assert page.locator("#total-cost").inner_text() == f"{api['total_cost']} EUR"
    assert page.locator("#top-models tr", has_text=model).locator("td").nth(1).inner_text() == "3"
    top_key = page.locator("#top-keys tbody tr").first.locator("td")
    assert top_key.nth(0).inner_text() == tenant.key["name"]
    shot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "overview-phone")


def test_the_admin_picks_a_tenant(page, live_server, tenant):
    sign_in_with_token(page, live_server, ADMIN_TOKEN)
    page.wait_for_url("**/console")
    shot(page, "tenants")
    page.locator("tr", has_text=tenant.tenant["name"]).locator("a:has-text('Keys')").click()
    page.wait_for_url(f"**/console/t/{tenant.id}/keys")
    assert page.locator("tr", has_text=tenant.key["name"]).count() == 1


def test_signing_in_and_moving_between_pages_works_from_the_keyboard(page, live_server, tenant):
    page.goto(live_server.url + "/console/login")
    field = page.locator("input[name=token]")
    for _ in range(20):  # Tab until the token field has the focus
        page.keyboard.press("Tab")
        if field.evaluate("e => e === document.activeElement"):
            break
    page.keyboard.type(tenant.secret)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/t/{tenant.id}/overview")
    keys_link = page.locator("nav a:has-text('Keys')")
    for _ in range(10):
        page.keyboard.press("Tab")
        if keys_link.evaluate("e => e === document.activeElement"):
            break
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(f"/console/t/{tenant.id}/keys")
