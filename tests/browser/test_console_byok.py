"""BYOK upstreams in the console, in a real browser: added in the page, listed by the API as the
page lists them, and the upstream's key shown by neither (only its last four characters)."""

from __future__ import annotations

import uuid

from tests.browser.conftest import shot, sign_in_with_token


def external_key() -> str:
    return "sk-console-" + uuid.uuid4().hex + uuid.uuid4().hex


def test_an_upstream_added_in_the_page_is_the_apis_and_its_key_is_shown_nowhere(
    page, live_server, tenant
):
    secret, label = external_key(), f"Mistral {uuid.uuid4().hex[:6]}"
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/byok")
    assert page.get_attribute("input[name=external_key]", "type") == "password"
    page.select_option("select[name=upstream]", "mistral")
    page.fill("input[name=name]", label)
    page.fill("input[name=external_key]", secret)
    with page.expect_navigation():
        page.click("button:has-text('Add upstream')")
    assert page.url.endswith(f"/console/t/{tenant.id}/byok")  # a redirect: a reload posts nothing
    row = page.locator("#upstreams tr", has_text=label)
    cells = row.locator("td")
    assert cells.nth(1).inner_text() == "mistral"
    assert cells.nth(2).inner_text() == "…" + secret[-4:]
    assert cells.nth(3).inner_text() == "active"
    assert secret not in page.content()
    assert page.input_value("input[name=external_key]") == ""
    shot(page, "byok")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.querySelector('main').scrollWidth <= window.innerWidth")
    shot(page, "byok-phone")
    page.set_viewport_size({"width": 1100, "height": 800})

    listed = tenant.api.get("/byok")
    assert listed.status_code == 200, listed.text
    assert secret not in listed.text
    (api,) = [u for u in listed.json()["data"] if u["name"] == label]
    assert (api["vendor"], api["key_last4"], api["is_active"]) == ("mistral", secret[-4:], True)
    assert row.get_attribute("data-upstream-id") == api["id"]

    page.on("dialog", lambda d: d.accept())
    with page.expect_navigation():
        row.locator("button:has-text('Delete')").click()
    row = page.locator("#upstreams tr", has_text=label)
    assert row.locator("td").nth(3).inner_text() == "inactive"
    assert row.locator("button").count() == 0
    assert tenant.api.get(f"/byok/{api['id']}").json()["is_active"] is False


def test_a_refused_upstream_key_is_a_400_naming_the_field_without_repeating_the_key(
    page, live_server, tenant
):
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/byok")
    csrf = page.locator("#attach input[name=csrf]").input_value()
    url = live_server.url + f"/console/t/{tenant.id}/byok"
    bad = "has a space " + uuid.uuid4().hex
    form = {"csrf": csrf, "name": "bad", "upstream": "openai", "external_key": bad}
    answer = page.request.post(url, form=form)
    assert answer.status == 400
    assert "external_key" in answer.text() and bad not in answer.text()
    unknown = page.request.post(url, form={**form, "upstream": "nobody", "external_key": "x" * 20})
    assert unknown.status == 400 and "upstream" in unknown.text()
    assert tenant.api.get("/byok").json()["data"] == []


def test_another_tenants_upstreams_are_not_found_and_forms_without_csrf_are_refused(
    page, live_server, tenant, other_tenant
):
    r = other_tenant.api.post(
        "/byok", json={"name": "theirs", "upstream": "openai", "external_key": external_key()}
    )
    assert r.status_code == 201, r.text
    theirs = r.json()["id"]
    sign_in_with_token(page, live_server, tenant.secret)
    response = page.goto(live_server.url + f"/console/t/{other_tenant.id}/byok")
    assert response.status == 404 and "theirs" not in page.content()
    shot(page, "byok-not-found")

    page.goto(live_server.url + f"/console/t/{tenant.id}/byok")
    csrf = page.locator("#attach input[name=csrf]").input_value()
    mine = live_server.url + f"/console/t/{tenant.id}/byok"
    # Their upstream, through my tenant's page with my session's token: not found, still active.
    assert page.request.post(f"{mine}/{theirs}/delete", form={"csrf": csrf}).status == 404
    assert other_tenant.api.get(f"/byok/{theirs}").json()["is_active"] is True
    # My forms without their CSRF token, or with a wrong one: 403, nothing added.
    add = {"name": "forged", "upstream": "openai", "external_key": external_key()}
    for token in ({}, {"csrf": "0" * 64}):
        assert page.request.post(mine, form={**add, **token}).status == 403
    assert tenant.api.get("/byok").json()["data"] == []
    r = tenant.api.post(
        "/byok", json={"name": "mine", "upstream": "openai", "external_key": external_key()}
    )
    for token in ({}, {"csrf": "0" * 64}):
        assert page.request.post(f"{mine}/{r.json()['id']}/delete", form=token).status == 403
    assert tenant.api.get(f"/byok/{r.json()['id']}").json()["is_active"] is True
