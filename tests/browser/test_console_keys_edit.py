"""Editing a key's name and restrictions in the console, in a real browser: the page posts what
PATCH /api/v1/keys/{id} takes, the API then answers with it, and the gateway applies it."""

from __future__ import annotations

import time
from typing import Any

import openai

from tests.browser.conftest import shot, sign_in_with_token
from tests.conftest import ADMIN_TOKEN
from tests.helpers import new_model

HELLO = [{"role": "user", "content": "hello"}]


def refused_code(client: openai.OpenAI, model: str) -> str | None:
    """The gateway's error code for a chat with ``model`` (``None``: it answered)."""
    try:
        client.chat.completions.create(model=model, messages=HELLO)
    except openai.APIStatusError as e:
        return e.code
    return None


def until_refused(client: openai.OpenAI, model: str, code: str) -> None:
    """A key's change reaches every process within a second (and a new model the catalog's
    cache): allow a few."""
    deadline = time.monotonic() + 5
    while (seen := refused_code(client, model)) != code:
        assert time.monotonic() < deadline, f"still {seen!r}, never {code!r}"
        time.sleep(0.1)


def open_edit_page(page: Any, live_server: Any, tenant: Any, key: dict[str, Any]) -> None:
    page.goto(live_server.url + f"/console/t/{tenant.id}/keys")
    page.locator("tr", has_text=key["name"]).locator("a:has-text('Edit')").click()
    page.wait_for_url(f"**/console/t/{tenant.id}/keys/{key['id']}")


def test_allowed_models_edited_in_the_page_are_the_apis_and_the_gateway_refuses_another(
    page, live_server, admin, tenant
):
    allowed, other = new_model(admin), new_model(admin)
    key, secret = admin.new_key(tenant.id, "router")
    client = openai.OpenAI(
        base_url=live_server.url + "/v1", api_key=secret, max_retries=0, timeout=30
    )
    assert refused_code(client, other) != "model_not_allowed"  # every model, before the edit

    sign_in_with_token(page, live_server, tenant.secret)
    open_edit_page(page, live_server, tenant, key)
    page.fill("textarea[name=allowed_models]", allowed)
    page.fill("input[name=rpm_limit]", "120")
    page.fill("textarea[name=ip_allowlist]", "10.0.0.0/8\n127.0.0.1")
    page.click("button:has-text('Save')")
    page.wait_for_url(f"**/keys/{key['id']}?saved=1")
    assert page.locator("[role=status]").inner_text() == "Saved."
    shot(page, "key-edit")

    api = tenant.api.get(f"/keys/{key['id']}").json()
    assert api["allowed_models"] == [allowed]
    assert api["rpm_limit"] == 120
    assert api["ip_allowlist"] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert (api["name"], api["sovereignty_mode"], api["expires_at"]) == (key["name"], False, None)
    # The page shows what the API now answers.
    assert page.input_value("textarea[name=allowed_models]") == allowed
    assert page.input_value("textarea[name=ip_allowlist]") == "10.0.0.0/8\n127.0.0.1/32"
    assert page.input_value("input[name=rpm_limit]") == "120"

    until_refused(client, other, "model_not_allowed")
    with_allowed = refused_code(client, allowed)
    assert with_allowed != "model_not_allowed"  # refused, if at all, for want of a target

    # Emptied, the list lifts the restriction: null in the API, as a PATCH with null.
    page.fill("textarea[name=allowed_models]", "")
    page.click("button:has-text('Save')")
    page.wait_for_url(f"**/keys/{key['id']}?saved=1")
    assert tenant.api.get(f"/keys/{key['id']}").json()["allowed_models"] is None


def test_a_new_name_and_expiry_saved_in_the_page_are_audited_as_the_only_changes(
    page, live_server, admin, tenant
):
    key, _ = admin.new_key(tenant.id, "router", rpm_limit=30)
    sign_in_with_token(page, live_server, tenant.secret)
    open_edit_page(page, live_server, tenant, key)
    page.fill("input[name=name]", key["name"] + "-renamed")
    page.fill("input[name=expires_at]", "2099-01-02T03:04:05")
    page.check("input[name=sovereignty_mode]")
    page.click("button:has-text('Save')")
    page.wait_for_url(f"**/keys/{key['id']}?saved=1")
    api = tenant.api.get(f"/keys/{key['id']}").json()
    assert api["name"] == key["name"] + "-renamed"
    assert api["expires_at"] == "2099-01-02T03:04:05Z"  # the field is UTC, as its label says
    assert api["sovereignty_mode"] is True and api["rpm_limit"] == 30
    assert page.locator("h1").inner_text().endswith(f"“{key['name']}-renamed”")
    audit = tenant.api.get("/audit", params={"target_id": key["id"]}).json()["data"]
    changed = [e for e in audit if e["action"] == "key.changed"]
    assert len(changed) == 1, audit
    assert set(changed[0]["changes"]["changes"]) == {"name", "expires_at", "sovereignty_mode"}


def test_a_bad_value_is_a_400_naming_the_field_and_changes_nothing(page, live_server, tenant):
    sign_in_with_token(page, live_server, tenant.secret)
    key = tenant.key
    cases = [
        ("input[name=rpm_limit]", "lots", "rpm_limit"),
        ("input[name=expires_at]", "2001-01-01T00:00:00", "expires_at"),
        ("textarea[name=ip_allowlist]", "not-an-address", "ip_allowlist"),
    ]
    for field, value, name in cases:
        open_edit_page(page, live_server, tenant, key)
        page.fill(field, value)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("button:has-text('Save')")
        assert answer.value.status == 400, name
        assert name in page.locator("[role=alert]").inner_text()
    shot(page, "key-edit-refused")
    api = tenant.api.get(f"/keys/{key['id']}").json()
    assert (api["rpm_limit"], api["expires_at"], api["ip_allowlist"]) == (None, None, [])


def test_another_tenants_key_is_not_found_and_a_form_without_csrf_is_refused(
    page, live_server, tenant, other_tenant
):
    sign_in_with_token(page, live_server, tenant.secret)
    theirs = other_tenant.key["id"]
    for path in (f"/t/{other_tenant.id}/keys/{theirs}", f"/t/{tenant.id}/keys/{theirs}"):
        response = page.goto(live_server.url + "/console" + path)
        assert response.status == 404, path
        assert other_tenant.key["name"] not in page.content()
        posted = page.request.post(live_server.url + "/console" + path, form={"name": "x"})
        assert posted.status in (403, 404), path
    # Its own key, posted without its CSRF token or with a wrong one: 403, nothing changed.
    mine = live_server.url + f"/console/t/{tenant.id}/keys/{tenant.key['id']}"
    for form in ({"name": "forged"}, {"name": "forged", "csrf": "0" * 64}):
        assert page.request.post(mine, form=form).status == 403
    assert tenant.api.get(f"/keys/{tenant.key['id']}").json()["name"] == tenant.key["name"]


def test_the_admin_on_one_tenants_page_cannot_edit_another_tenants_key(
    page, live_server, tenant, other_tenant
):
    sign_in_with_token(page, live_server, ADMIN_TOKEN)
    path = f"/console/t/{tenant.id}/keys/{other_tenant.key['id']}"
    assert page.goto(live_server.url + path).status == 404
    page.goto(live_server.url + f"/console/t/{other_tenant.id}/keys/{other_tenant.key['id']}")
    csrf = page.locator("#restrictions input[name=csrf]").input_value()
    posted = page.request.post(live_server.url + path, form={"csrf": csrf, "name": "moved"})
    assert posted.status == 404
    assert other_tenant.api.get(f"/keys/{other_tenant.key['id']}").json()["name"] != "moved"


def test_restrictions_are_edited_from_the_keyboard_at_phone_width(page, live_server, admin, tenant):
    key, _ = admin.new_key(tenant.id, "router")
    page.set_viewport_size({"width": 390, "height": 800})
    sign_in_with_token(page, live_server, tenant.secret)
    open_edit_page(page, live_server, tenant, key)
    assert page.evaluate("document.querySelector('main').scrollWidth <= window.innerWidth")
    shot(page, "key-edit-phone")
    page.focus("input[name=name]")
    fields = ["allowed_models", "sovereignty_mode", "expires_at", "ip_allowlist", "rpm_limit"]
    page.keyboard.press("Tab")  # the allowed models
    page.keyboard.type("model-a\nmodel-b")
    while page.evaluate("document.activeElement.name") != "rpm_limit":
        assert page.evaluate("document.activeElement.name") in fields  # in the page's order
        page.keyboard.press("Tab")
    page.keyboard.type("7")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Save"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    api = tenant.api.get(f"/keys/{key['id']}").json()
    assert (api["allowed_models"], api["rpm_limit"]) == (["model-a", "model-b"], 7)
