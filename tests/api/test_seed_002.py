"""Seed 002 (a Management API under /manage), walked in order with its own requests and bodies
against a served hostplane; project settings checked at the gateway, through the openai SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway, GatewayTenant


class Manage:
    """A client of /manage with one key as its bearer (``Authorization: Bearer <key>``)."""

    def __init__(self, gateway: Gateway, key: str) -> None:
        self.http = httpx.Client(
            base_url=gateway.url + "/manage", headers={"Authorization": f"Bearer {key}"}
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    def delete_key(self, name: str) -> httpx.Response:
        return self.http.request("DELETE", "/api-keys", json={"name": name})


@pytest.fixture
def project(gateway: Gateway) -> GatewayTenant:
    return gateway.new_tenant()


@pytest.fixture
def manage(gateway: Gateway, project: GatewayTenant) -> Manage:
    return Manage(gateway, project.api.token)


def openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert {"message", "type", "code", "param"} <= error.keys()
    return error


def until(check: Callable[[], Any], timeout: float = 10) -> Any:
    """``check()`` once it is truthy: the gateway reads a changed setting within a second."""
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


# -- List API Keys: GET /manage/api-keys, "a management API key must be used" ---------------


def test_list_api_keys_returns_the_projects_keys_without_secrets(manage, project):
    r = manage.get("/api-keys")

    assert r.status_code == 200, r.text
    keys = r.json()
    assert [k["is_management_key"] for k in keys] == [True]
    assert keys[0]["tenant_id"] == project.id
    assert project.api.token not in r.text


def test_an_inference_key_may_not_use_the_management_api(gateway, project):
    _, router = project.router_key()

    error = openai_error(Manage(gateway, router).get("/api-keys"), 403)

    assert error["type"] == "permission_error"


# -- Create API Key: POST {"name", "is_management_key"} -----------------------------------


def test_create_api_key_makes_an_inference_key_by_default(gateway, manage):
    r = manage.post("/api-keys", json={"name": "my-new-key"})

    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["name"], created["is_management_key"]) == ("my-new-key", False)
    models = gateway.client(created["api_key"]).models.list()  # it calls the gateway
    assert models.data is not None
    openai_error(Manage(gateway, created["api_key"]).get("/api-keys"), 403)
    listed = manage.get("/api-keys").json()
    assert "my-new-key" in [k["name"] for k in listed]
    assert created["api_key"] not in json.dumps(listed)


def test_create_api_key_with_management_permissions(gateway, manage):
    r = manage.post("/api-keys", json={"name": "ops", "is_management_key": True})

    assert r.status_code == 201, r.text
    assert r.json()["is_management_key"] is True
    assert Manage(gateway, r.json()["api_key"]).get("/api-keys").status_code == 200


def test_a_key_name_is_unique_and_required(manage):
    assert manage.post("/api-keys", json={"name": "twice"}).status_code == 201
    openai_error(manage.post("/api-keys", json={"name": "twice"}), 409)
    assert openai_error(manage.post("/api-keys", json={}), 400)["param"] == "name"


# -- Delete API Key: DELETE with body {"name"} -----------------------------------------------


def test_delete_api_key_by_name_removes_it_and_its_budgets(gateway, manage, project):
    old = manage.post("/api-keys", json={"name": "my-old-key"}).json()
    budget = project.api.post("/budgets", json={"key_id": old["id"], "limit_eur": "10"})
    assert budget.status_code == 201, budget.text

    r = manage.delete_key("my-old-key")

    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "deleted": "my-old-key"}
    assert "my-old-key" not in [k["name"] for k in manage.get("/api-keys").json()]
    openai_error(project.api.get(f"/budgets/{budget.json()['id']}"), 404)
    with pytest.raises(Exception, match="401"):
        gateway.client(old["api_key"]).models.list()


def test_the_key_making_the_request_cannot_delete_itself(manage):
    me = manage.get("/api-keys").json()[0]["name"]

    openai_error(manage.delete_key(me), 409)

    assert manage.get("/api-keys").status_code == 200


def test_deleting_a_key_no_one_has_is_a_404(manage, gateway):
    other = gateway.new_tenant()
    Manage(gateway, other.api.token).post("/api-keys", json={"name": "theirs"})

    openai_error(manage.delete_key("theirs"), 404)  # another project's key: not found
    openai_error(manage.delete_key("nobody"), 404)


# -- Retrieve Current Project Settings: GET /manage/project-configs ---------------------------


def test_project_settings_before_any_change(manage, project):
    r = manage.get("/project-configs")

    assert r.status_code == 200, r.text
    config = r.json()
    assert {"_id", "project_id", "allow_overwrite", "created_at", "updated_at"} <= config.keys()
    assert config["project_id"] == project.id
    assert config["allow_overwrite"] is True
    assert config["temperature"] is None and config["model"] is None


# -- Update Current Project Settings: PUT /manage/project-configs -----------------------------


def test_update_project_settings_with_the_seeds_example_body(manage):
    body = {
        "allow_overwrite": False,
        "created_at": "2025-09-25T08:29:50.735Z",
        "updated_at": "2025-09-25T08:29:50.735Z",
        "temperature": 0.7,
        "max_tokens": 64,
    }

    r = manage.put("/project-configs", json=body)

    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    config = manage.get("/project-configs").json()
    assert (config["allow_overwrite"], config["temperature"], config["max_tokens"]) == (
        False,
        0.7,
        64,
    )
    assert config["updated_at"] != body["updated_at"]  # the times given are not taken


def test_settings_not_given_are_kept_and_null_removes_one(manage):
    manage.put("/project-configs", json={"temperature": 0.5, "top_p": 0.9})

    manage.put("/project-configs", json={"top_p": None, "allow_overwrite": True})

    config = manage.get("/project-configs").json()
    assert (config["temperature"], config["top_p"]) == (0.5, None)


def test_a_setting_out_of_bounds_is_a_400_naming_it(manage):
    error = openai_error(manage.put("/project-configs", json={"temperature": 3}), 400)
    assert error["param"] == "temperature"
    error = openai_error(manage.put("/project-configs", json={"max_tokens": "64"}), 400)
    assert error["param"] == "max_tokens"


def test_project_settings_are_audited_exported_and_rebuilt(gateway, manage, project):
    manage.put("/project-configs", json={"allow_overwrite": False, "temperature": 0.3})
    before = manage.get("/project-configs").json()

    audit = gateway.admin.get("/audit", params={"tenant_id": project.id}).json()["data"]
    export = gateway.admin.get(f"/tenants/{project.id}/export").text
    gateway.container.runner.rebuild_many(["project_configs"])

    assert "project_config.created" in [e["action"] for e in audit]
    types = [orjson.loads(line).get("type") for line in export.splitlines()]
    assert "project_config.created" in types
    assert manage.get("/project-configs").json() == before


def test_another_projects_settings_are_its_own(gateway, manage):
    other = Manage(gateway, gateway.new_tenant().api.token)
    manage.put("/project-configs", json={"temperature": 1.5})

    assert other.get("/project-configs").json()["temperature"] is None


# -- The gateway applies them -------------------------------------------------------------


@pytest.fixture
def caller(gateway, project) -> tuple[str, str, str]:
    """An OpenAI BYOK upstream, two models of OpenAI's, and an inference key."""
    project.byok("openai")
    _, secret = project.router_key()
    return gateway.model("openai"), gateway.model("openai"), secret


def sent(gateway: Gateway, secret: str, model: str, **fields: Any) -> dict[str, Any]:
    """What the upstream received for one chat completion."""
    gateway.client(secret).chat.completions.create(model=model, messages=HELLO, **fields)
    with gateway.fake.lock:
        return gateway.fake.received[-1].body  # this module sends one request at a time


def test_without_overwrite_the_projects_settings_replace_the_requests(gateway, manage, caller):
    mine, projects, secret = caller
    fixed = {"allow_overwrite": False, "temperature": 0.7, "max_tokens": 64, "model": projects}
    assert manage.put("/project-configs", json=fixed).status_code == 200

    body = until(
        lambda: (
            (b := sent(gateway, secret, mine, temperature=0.2, max_tokens=500))["model"] == projects
            and b
        )
    )

    assert (body["model"], body["temperature"], body["max_tokens"]) == (projects, 0.7, 64)


def test_with_overwrite_the_requests_settings_win_and_the_projects_fill_gaps(
    gateway, manage, caller
):
    mine, _, secret = caller
    given = {"allow_overwrite": True, "temperature": 0.7, "top_p": 0.5}
    assert manage.put("/project-configs", json=given).status_code == 200

    body = until(lambda: "top_p" in (b := sent(gateway, secret, mine, temperature=0.2)) and b)

    assert (body["model"], body["temperature"], body["top_p"]) == (mine, 0.2, 0.5)


# -- Retrieve User Balance: GET /manage/users/balance ------------------------------------------


def test_the_balance_is_a_json_number_written_exactly_from_the_decimal(gateway, manage, project):
    r = gateway.admin.post(f"/tenants/{project.id}/credits", json={"amount_eur": "1234.56"})
    assert r.status_code == 200, r.text

    r = manage.get("/users/balance")

    assert r.status_code == 200, r.text
    assert r.text == '{"current_balance":1234.56,"currency":"EUR"}'
    assert json.loads(r.text, parse_float=Decimal)["current_balance"] == Decimal("1234.56")


def test_a_balance_with_micro_euros_keeps_every_digit(gateway, manage, project):
    amount = "987654321.123457"  # 15 significant digits: exact, not a float's rendering
    gateway.admin.post(f"/tenants/{project.id}/credits", json={"amount_eur": amount})

    balance = json.loads(manage.get("/users/balance").text, parse_float=Decimal)

    assert balance == {"current_balance": Decimal(amount), "currency": "EUR"}
