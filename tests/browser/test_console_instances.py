"""Instances in the console, in a real browser: deploy in the page and watch the status move to
``running`` without a reload, the logs, a test call, destroy.

The session's server has the provisioning jobs off (other tests step instances by hand), so the
live-status test runs a server of its own, on a database of its own, with the jobs on and a
simulated deploy slow enough (five seconds) to see the page before the instance runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from interfaces.bootstrap import Container
from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from tests.browser.conftest import shot, sign_in_with_token
from tests.conftest import ADMIN_TOKEN, Api, LiveServer, make_settings

MODEL = "llama-3.1-8b"
PROVISIONING = {
    "provision_interval_seconds": 0.2,
    "status_sync_seconds": 0.5,
    "simulated_deploy_seconds": 5,  # time to see the page before it runs, on a busy machine
}


@dataclass
class Provisioned:
    """A server with the provisioning jobs on, and a tenant with its management key."""

    server: LiveServer
    tenant_id: str
    secret: str
    api: Api

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def provisioned(database_conninfo: str, tmp_path_factory: Any) -> Iterator[Provisioned]:
    dbname = f"hostplane_console_instances_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    settings = make_settings(
        with_dbname(database_conninfo, dbname), tmp_path_factory.mktemp("data"), **PROVISIONING
    )
    container = Container.open(settings)
    server = None
    try:
        container.start_background()
        server = LiveServer(container).start()
        admin = Api(server.url, ADMIN_TOKEN)
        tenant_id = admin.new_tenant()["id"]
        _, secret = admin.new_key(tenant_id, "management")
        yield Provisioned(server, tenant_id, secret, admin.as_token(secret))
    finally:
        if server is not None:
            server.stop()
        container.close()
        drop_database(database_conninfo, dbname)


def test_a_deploy_in_the_page_goes_running_without_a_reload_then_tests_and_destroys(
    page, provisioned
):
    s = provisioned
    sign_in_with_token(page, s, s.secret)
    page.goto(s.url + f"/console/t/{s.tenant_id}/instances")
    assert MODEL in page.locator("select[name=model_id]").inner_text()
    shot(page, "instances-deploy")
    page.select_option("select[name=model_id]", MODEL)
    page.select_option("select[name=instance_type]", "text")
    page.select_option("select[name=region]", "EU")
    with page.expect_navigation():
        page.click("button:has-text('Deploy')")
    instance_id = page.url.rsplit("/", 1)[1]
    assert page.url == s.url + f"/console/t/{s.tenant_id}/instances/{instance_id}"
    assert page.locator("#status").inner_text() in ("pending", "deploying")
    assert page.locator("#test button").is_disabled()  # only a running instance is tested

    # Watch the status change in place: a marker set on this window survives, and no
    # navigation happens, while the page polls its status.
    page.evaluate("window.stillThisPage = 'yes'")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    expect(page.locator("#status")).to_have_text("running", timeout=30_000)
    assert page.evaluate("window.stillThisPage") == "yes"
    assert navigations == []
    history = page.locator("#history .h-status").all_inner_texts()
    assert history == ["pending", "deploying", "running"]
    api = s.api.get(f"/instances/{instance_id}").json()
    assert api["status"] == "running"
    assert [h["status"] for h in api["history"]] == history
    assert page.locator("#endpoint").inner_text() == api["endpoint_url"]
    expect(page.locator("#test button")).to_be_enabled()
    logs = page.locator("#logs").inner_text()
    assert f"pulling model {MODEL}" in logs and "vLLM ready" in logs
    api_logs = s.api.get(f"/instances/{instance_id}/logs").json()["data"]
    assert [line["message"] for line in api_logs][: len(logs.splitlines())] == [
        line.split(" ", 1)[1] for line in logs.splitlines()
    ]
    shot(page, "instance-running")

    with page.expect_navigation():
        page.click("#test button")
    assert page.url.endswith(f"/instances/{instance_id}?tested=1")
    check = s.api.get(f"/instances/{instance_id}").json()["last_check"]
    assert check["ok"] is True and check["status_code"] == 200
    assert page.locator("#last-check .check-result").inner_text() == "ok"
    assert page.locator("#last-check .check-status").inner_text() == "200"
    assert page.locator("#last-check .check-latency").inner_text() == str(check["latency_ms"])
    shot(page, "instance-tested")

    messages: list[str] = []
    page.on("dialog", lambda d: (messages.append(d.message), d.accept()))
    with page.expect_navigation():
        page.click("#destroy button")
    assert "Destroy this instance" in messages[0]
    assert page.locator("#status").inner_text() == "destroyed"
    assert s.api.get(f"/instances/{instance_id}").json()["status"] == "destroyed"
    assert page.locator("#destroy").count() == 0
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.querySelector('main').scrollWidth <= window.innerWidth")
    shot(page, "instance-phone")
    page.set_viewport_size({"width": 1100, "height": 800})

    page.goto(s.url + f"/console/t/{s.tenant_id}/instances")
    row = page.locator(f"#instances tr[data-instance-id='{instance_id}']")
    assert row.locator("td.status").inner_text() == "destroyed"
    shot(page, "instances")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.querySelector('main').scrollWidth <= window.innerWidth")
    shot(page, "instances-phone")


def test_a_destroy_dismissed_in_its_confirm_dialog_destroys_nothing(page, live_server, tenant):
    r = tenant.api.post("/instances", json={"model_id": MODEL})
    assert r.status_code == 201, r.text
    instance_id = r.json()["id"]
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/instances/{instance_id}")
    page.on("dialog", lambda d: d.dismiss())
    page.click("#destroy button")
    page.wait_for_timeout(300)
    assert page.url.endswith(f"/instances/{instance_id}")
    assert tenant.api.get(f"/instances/{instance_id}").json()["status"] == "pending"


def test_a_deploy_the_api_refuses_is_a_400_naming_the_field(page, live_server, tenant):
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/instances")
    csrf = page.locator("#deploy input[name=csrf]").input_value()
    url = live_server.url + f"/console/t/{tenant.id}/instances"
    form = {"csrf": csrf, "model_id": MODEL, "region": "EU", "instance_type": "text"}
    for field, value in (("model_id", "no-such-model"), ("region", "nowhere"), ("model_id", "")):
        answer = page.request.post(url, form={**form, field: value})
        assert answer.status == 400, answer.text()
        assert field in answer.text() or "instance_type" in answer.text()
    assert tenant.api.get("/instances").json()["data"] == []


def test_another_tenants_instances_are_not_found_and_forms_without_csrf_are_refused(
    page, live_server, tenant, other_tenant
):
    r = other_tenant.api.post("/instances", json={"model_id": MODEL})
    assert r.status_code == 201, r.text
    theirs = r.json()["id"]
    sign_in_with_token(page, live_server, tenant.secret)
    base = live_server.url + "/console"
    for path in (
        f"/t/{other_tenant.id}/instances",
        f"/t/{other_tenant.id}/instances/{theirs}",
        f"/t/{tenant.id}/instances/{theirs}",
    ):
        response = page.goto(base + path)
        assert response.status == 404, path
        assert other_tenant.tenant["name"] not in page.content()
        assert page.locator("#status, #instances").count() == 0
    shot(page, "instance-not-found")
    status = page.request.get(base + f"/t/{tenant.id}/instances/{theirs}/status.json")
    assert status.status == 404 and "pending" not in status.text()

    page.goto(base + f"/t/{tenant.id}/instances")
    csrf = page.locator("#deploy input[name=csrf]").input_value()
    for action in ("test", "destroy"):
        url = base + f"/t/{tenant.id}/instances/{theirs}/{action}"
        assert page.request.post(url, form={"csrf": csrf}).status == 404
    assert other_tenant.api.get(f"/instances/{theirs}").json()["status"] == "pending"

    r = tenant.api.post("/instances", json={"model_id": MODEL})
    mine = r.json()["id"]
    deploy = {"model_id": MODEL, "region": "EU", "instance_type": "text"}
    for token in ({}, {"csrf": "0" * 64}):
        assert (
            page.request.post(base + f"/t/{tenant.id}/instances", form={**deploy, **token}).status
            == 403
        )
        url = base + f"/t/{tenant.id}/instances/{mine}/destroy"
        assert page.request.post(url, form=token).status == 403
    listed = tenant.api.get("/instances").json()["data"]
    assert [(i["id"], i["status"]) for i in listed] == [(mine, "pending")]


def test_the_status_feed_needs_a_session(live_server, tenant):
    r = tenant.api.post("/instances", json={"model_id": MODEL})
    url = live_server.url + f"/console/t/{tenant.id}/instances/{r.json()['id']}/status.json"
    answer = httpx.get(url)  # no console session; a bearer token is no session either
    assert answer.status_code == 401
    bearer = httpx.get(url, headers={"Authorization": f"Bearer {tenant.secret}"})
    assert bearer.status_code == 401


def test_the_admin_on_one_tenants_page_cannot_reach_another_tenants_instance(
    page, live_server, tenant, other_tenant
):
    r = other_tenant.api.post("/instances", json={"model_id": MODEL})
    theirs = r.json()["id"]
    sign_in_with_token(page, live_server, ADMIN_TOKEN)
    wrong = live_server.url + f"/console/t/{tenant.id}/instances/{theirs}"
    assert page.goto(wrong).status == 404
    assert page.request.get(wrong + "/status.json").status == 404
    right = page.goto(live_server.url + f"/console/t/{other_tenant.id}/instances/{theirs}")
    assert right.status == 200
    assert page.locator("#status").inner_text() == "pending"


def test_an_instance_destroyed_elsewhere_shows_destroyed_without_a_reload(
    page, live_server, tenant
):
    r = tenant.api.post("/instances", json={"model_id": MODEL})
    instance_id = r.json()["id"]
    sign_in_with_token(page, live_server, tenant.secret)
    page.goto(live_server.url + f"/console/t/{tenant.id}/instances/{instance_id}")
    assert page.locator("#status").inner_text() == "pending"
    page.evaluate("window.stillThisPage = 'yes'")
    assert tenant.api.delete(f"/instances/{instance_id}").status_code == 200  # through the API
    expect(page.locator("#status")).to_have_text("destroyed", timeout=10_000)
    assert page.evaluate("window.stillThisPage") == "yes"
    expect(page.locator("#destroy")).to_be_hidden()
    assert page.locator("#history .h-status").all_inner_texts() == ["pending", "destroyed"]
