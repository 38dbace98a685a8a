"""Seed 000 (HostYourAI's Management API) as written, walked in the seed's order with its own
requests and bodies, against a served hostplane: §1 authentication, §2 the instance lifecycle
and its helpers, §3 BYOK instances, §4 router keys and the catalog, §5 inference, §8 errors,
and §9's end-to-end per-tenant deploy with the official openai SDK.

A server of its own with the provisioning jobs on and a fast simulated provider (as
tests/api/test_lifecycle.py runs), so that deploys go up by themselves.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from interfaces.gateway.directory import FRESH_SECONDS
from tests.api.test_lifecycle import Served, serving
from tests.helpers import error_of

PASSWORD = "correct horse battery staple 9"
DEPLOY = {"model_id": "llama-3.1-8b", "region": "EU", "provider": "vastai", "instance_type": "text"}
# The seed's "sk-..." stands for a real key (8 characters at least).
EXTERNAL_KEY = "sk-" + uuid.uuid4().hex
BYOK = {"name": "OpenAI prod", "upstream": "openai", "external_key": EXTERNAL_KEY}
ROUTER_KEY = {
    "name": "Klai production",
    "sovereignty_mode": True,
    "allowed_models": ["mistral-nemo-12b", "llama-3.1-8b"],
}


@pytest.fixture(scope="module")
def conninfo(database_conninfo: str) -> Iterator[str]:
    dbname = f"hostplane_seed000_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    yield with_dbname(database_conninfo, dbname)
    drop_database(database_conninfo, dbname)


@pytest.fixture(scope="module")
def served(conninfo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(conninfo, tmp_path_factory.mktemp("seed000")) as s:
        yield s


def root(served: Served) -> str:
    return str(served.admin.http.base_url).removesuffix("/").removesuffix("/api/v1")


class Account:
    """One HostYourAI account: a user signed up (a tenant of its own) and the personal access
    token it created (Settings → API tokens → Create token: a management key of the user's)."""

    def __init__(self, served: Served) -> None:
        self.served = served
        signed = httpx.post(
            root(served) + "/auth/register",
            json={"email": f"ops-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD},
        )
        assert signed.status_code == 201, signed.text
        self.user_id = signed.json()["user"]["id"]
        self.tenant_id = signed.json()["user"]["tenant_id"]
        session = {"Authorization": f"Bearer {signed.json()['token']}"}
        created = httpx.post(
            f"{root(served)}/api/v1/tenants/{self.tenant_id}/keys",
            json={"name": "ops tooling", "kind": "management"},
            headers=session,
        )
        assert created.status_code == 201, created.text
        self.pat_id, self.pat = created.json()["key"]["id"], created.json()["secret"]
        assert created.json()["key"]["expires_at"] is None  # never expires by itself
        self.http = httpx.Client(
            base_url=root(served), headers={"Authorization": f"Bearer {self.pat}"}, timeout=30
        )

    def deploy(self, **fields: Any) -> dict[str, Any]:
        r = self.http.post("/api/dashboard/deploy", json={**DEPLOY, **fields})
        assert r.status_code == 201, r.text
        return r.json()

    def wait_for(self, instance_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
        """Poll ``GET /api/dashboard/instances/{id}`` until the status, as the seed says."""
        deadline = time.monotonic() + timeout
        while True:
            instance = self.http.get(f"/api/dashboard/instances/{instance_id}").json()
            if instance["status"] == status:
                return instance
            assert time.monotonic() < deadline, f"still {instance['status']}: {instance}"
            time.sleep(0.05)

    def running(self, model: str = "llama-3.1-8b") -> dict[str, Any]:
        return self.wait_for(self.deploy(model_id=model)["id"], "running")

    def listed(self) -> list[dict[str, Any]]:
        r = self.http.get("/api/dashboard/instances")
        assert r.status_code == 200, r.text
        return r.json()

    def router_key(self, **fields: Any) -> str:
        r = self.http.post("/api/router/keys", json={**ROUTER_KEY, **fields})
        assert r.status_code == 201, r.text
        return r.json()["api_key"]

    def openai(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=root(self.served) + "/api/v1", api_key=key, max_retries=0)


@pytest.fixture
def account(served: Served) -> Account:
    return Account(served)


def hello(client: openai.OpenAI, model: str = "llama-3.1-8b") -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])


# -- 1. Authentication ---------------------------------------------------------------------


def test_management_calls_need_a_bearer_token_and_a_router_key_is_not_one(served, account):
    error = error_of(httpx.get(root(served) + "/api/dashboard/instances"), 401)
    assert "bearer" in error["message"]
    bad = httpx.get(
        root(served) + "/api/dashboard/instances", headers={"Authorization": "Bearer hp_mk_nope"}
    )
    error_of(bad, 401)
    router_key = account.router_key()
    refused = httpx.get(
        root(served) + "/api/router/keys", headers={"Authorization": f"Bearer {router_key}"}
    )
    error_of(refused, 403)


def test_a_personal_access_token_acts_as_its_user_in_the_audit_log(served, account):
    instance = account.deploy()
    entries = served.admin.get("/audit", params={"target_id": instance["id"]}).json()["data"]
    (requested,) = [e for e in entries if e["action"] == "instance.deploy_requested"]
    assert requested["actor"] == f"user:{account.user_id}"
    issued = served.admin.get("/audit", params={"target_id": account.pat_id}).json()["data"]
    assert [e["actor"] for e in issued if e["action"] == "key.issued"] == [
        f"user:{account.user_id}"
    ]
    assert account.pat not in str(issued)


def test_a_removed_users_personal_access_tokens_stop_working(served, account):
    other_key = served.admin.new_key(account.tenant_id, "management")[1]
    assert account.http.get("/api/dashboard/instances").status_code == 200
    r = served.admin.delete(f"/users/{account.user_id}")
    assert r.status_code in (200, 204), r.text
    error_of(account.http.get("/api/dashboard/instances"), 401)
    entries = served.admin.get("/audit", params={"target_id": account.pat_id}).json()["data"]
    assert "key.deleted" in [e["action"] for e in entries]
    # The tenant's other keys are nobody's tokens: they keep working.
    still = httpx.get(
        root(served) + "/api/dashboard/instances",
        headers={"Authorization": f"Bearer {other_key}"},
    )
    assert still.status_code == 200, still.text


# -- 2. Instances: lifecycle -----------------------------------------------------------------


def test_a_new_account_lists_its_instances_as_an_empty_json_array(account):
    assert account.listed() == []


def test_deploy_returns_the_instance_deploying_and_it_is_listed(account):
    r = account.http.post("/api/dashboard/deploy", json=DEPLOY)
    assert r.status_code == 201, r.text
    instance = r.json()
    assert instance["status"] == "deploying"
    assert instance["model_id"] == "llama-3.1-8b" and instance["region"] == "EU"
    assert instance["provider"] == "vastai" and instance["endpoint_url"] is None
    (row,) = account.listed()
    assert row["id"] == instance["id"]
    assert {"status", "region", "model_id", "endpoint_url", "cost_eur"} <= row.keys()


def test_polling_an_instance_shows_it_running_with_its_endpoint(account):
    instance = account.deploy()
    running = account.wait_for(instance["id"], "running")
    assert running["endpoint_url"].startswith("http://127.0.0.1:")
    assert [h["status"] for h in running["history"]] == ["pending", "deploying", "running"]
    (listed,) = account.listed()
    assert listed["status"] == "running" and listed["endpoint_url"] == running["endpoint_url"]


def test_the_instance_key_is_returned_on_demand_and_answers_at_api_v1(account):
    instance = account.running()
    r = account.http.get(f"/api/dashboard/instances/{instance['id']}/api-key")
    assert r.status_code == 200, r.text
    key = r.json()["api_key"]
    assert key.startswith("hp_ik_")
    assert hello(account.openai(key)).choices[0].message.content == "echo: Hi"


def test_destroying_an_instance_removes_it_from_the_list_and_its_key_stops_working(account):
    kept = account.running()
    gone = account.running()
    key = account.http.get(f"/api/dashboard/instances/{gone['id']}/api-key").json()["api_key"]
    r = account.http.delete(f"/api/dashboard/instances/{gone['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "destroyed"
    assert [i["id"] for i in account.listed()] == [kept["id"]]
    # The row is gone from the dashboard (its history stays in /api/v1 and in billing).
    error_of(account.http.get(f"/api/dashboard/instances/{gone['id']}"), 404)
    error_of(account.http.delete(f"/api/dashboard/instances/{gone['id']}"), 404)
    error_of(account.http.get(f"/api/dashboard/instances/{gone['id']}/api-key"), 404)
    history = account.http.get(f"/api/v1/instances/{gone['id']}")
    assert history.status_code == 200 and history.json()["status"] == "destroyed"
    time.sleep(FRESH_SECONDS + 0.1)  # what the gateway keeps of a tenant's instances
    with pytest.raises(openai.AuthenticationError):
        hello(account.openai(key))


def test_refresh_test_and_logs_work_on_a_running_instance(account):
    instance = account.running()
    path = f"/api/dashboard/instances/{instance['id']}"
    refreshed = account.http.post(f"{path}/refresh")
    assert refreshed.status_code == 200 and refreshed.json()["status"] == "running"
    check = account.http.post(f"{path}/test")
    assert check.status_code == 200, check.text
    assert check.json()["ok"] is True and check.json()["reply"].startswith("echo: ")
    logs = account.http.get(f"{path}/logs")
    assert logs.status_code == 200, logs.text
    assert logs.json()["data"], "the deploy and the health check are logged"
    error_of(account.http.post(f"{path}/retry"), 409)  # only a failed deploy is retried


def test_retry_deploys_a_failed_instance_again(served, account):
    provider = served.container.provider
    provider.refuse.add("large")
    try:
        failed = account.wait_for(account.deploy(instance_type="large")["id"], "failed")
        assert "large" in failed["status_reason"]
    finally:
        provider.refuse.discard("large")
    r = account.http.post(f"/api/dashboard/instances/{failed['id']}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("pending", "deploying")
    account.wait_for(failed["id"], "running")


def test_another_accounts_instances_and_router_keys_are_not_found(served, account):
    other = Account(served)
    instance = other.deploy()
    for method, path in [
        ("GET", ""),
        ("GET", "/api-key"),
        ("DELETE", ""),
        ("POST", "/refresh"),
        ("POST", "/test"),
        ("GET", "/logs"),
    ]:
        r = account.http.request(method, f"/api/dashboard/instances/{instance['id']}{path}")
        error_of(r, 404)
    assert account.listed() == []
    router_key = other.http.post("/api/router/keys", json=ROUTER_KEY).json()
    error_of(account.http.delete(f"/api/router/keys/{router_key['id']}"), 404)
    assert account.http.get("/api/router/keys").json() == []
    assert [k["id"] for k in other.http.get("/api/router/keys").json()] == [router_key["id"]]


# -- 3. BYOK instances -------------------------------------------------------------------------


def test_a_byok_key_is_attached_as_a_logical_instance_and_never_shown(account):
    r = account.http.post("/api/dashboard/byok", json=BYOK)
    assert r.status_code == 201, r.text
    upstream = r.json()
    assert upstream["kind"] == "byok" and upstream["name"] == "OpenAI prod"
    assert upstream["provider"] == "openai" and upstream["status"] == "running"
    assert EXTERNAL_KEY not in r.text and EXTERNAL_KEY[-12:] not in r.text
    (listed,) = account.listed()
    assert listed["id"] == upstream["id"]
    assert EXTERNAL_KEY[-12:] not in account.http.get("/api/dashboard/instances").text
    # Like any other instance, it is destroyed and leaves the list.
    r = account.http.delete(f"/api/dashboard/instances/{upstream['id']}")
    assert r.status_code == 200, r.text
    assert account.listed() == []


# -- 4. Router API keys and the catalog -------------------------------------------------------


def test_a_router_key_is_shown_once_listed_without_it_and_revoked(account):
    r = account.http.post("/api/router/keys", json=ROUTER_KEY)
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["api_key"]
    assert created["name"] == "Klai production" and created["sovereignty_mode"] is True
    assert created["allowed_models"] == ["mistral-nemo-12b", "llama-3.1-8b"]
    listed = account.http.get("/api/router/keys")
    assert listed.status_code == 200, listed.text
    assert [k["id"] for k in listed.json()] == [created["id"]]
    assert secret not in listed.text
    # The PAT is a management key: not a router key, so not listed.
    assert all(k["kind"] == "router" for k in listed.json())

    account.running()
    client = account.openai(secret)
    assert hello(client).choices[0].message.content == "echo: Hi"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        hello(client, "gpt-4o")
    assert refused.value.code == "model_not_allowed"

    revoked = account.http.delete(f"/api/router/keys/{created['id']}")
    assert revoked.status_code == 200, revoked.text
    assert account.http.get("/api/router/keys").json() == []
    with pytest.raises(openai.AuthenticationError):
        hello(client)


def test_revoking_a_management_key_on_the_router_route_is_not_found(account):
    key_id = account.served.admin.new_key(account.tenant_id, "management")[0]["id"]
    error_of(account.http.delete(f"/api/router/keys/{key_id}"), 404)


def test_the_catalog_lists_every_model_with_prices_and_says_which_are_warm(served, account):
    r = account.http.get("/api/router/catalog")
    assert r.status_code == 200, r.text
    catalog = {m["slug"]: m for m in r.json()}
    priced = served.admin.get("/models").json()["data"]
    assert catalog.keys() == {m["id"] for m in priced}
    llama = catalog["llama-3.1-8b"]
    assert llama == {
        "slug": "llama-3.1-8b",
        "display_name": "Llama 3.1 8B Instruct",
        "modality": "chat",
        "context_length": 131072,
        "input_eur_per_mtok": llama["input_eur_per_mtok"],
        "output_eur_per_mtok": llama["output_eur_per_mtok"],
        "serveable": True,
        "warm": False,
        "vendor": None,
    }
    assert catalog["gpt-4o"]["serveable"] is False
    # Another account's running instance doesn't warm this account's catalog.
    Account(served).running()
    assert not any(m["warm"] for m in account.http.get("/api/router/catalog").json())
    account.running()
    warm = [m["slug"] for m in account.http.get("/api/router/catalog").json() if m["warm"]]
    assert warm == ["llama-3.1-8b"]


# -- 5. Inference ------------------------------------------------------------------------------


def test_cold_is_503_model_unavailable_cold_start_with_on_demand_boot_then_warm_answers(account):
    client = account.openai(account.router_key(allowed_models=None, sovereignty_mode=False))
    # Cold model + on-demand boot off → 503 model_unavailable.
    with pytest.raises(openai.APIStatusError) as cold:
        hello(client, "qwen3-plus")
    assert cold.value.status_code == 503 and cold.value.code == "model_unavailable"
    # Cold + on-demand boot on → 503 cold_start with Retry-After.
    r = account.http.patch(f"/api/v1/tenants/{account.tenant_id}", json={"on_demand_boot": True})
    assert r.status_code == 200, r.text
    time.sleep(FRESH_SECONDS + 0.1)  # a tenant found with it off is taken as off that long
    with pytest.raises(openai.APIStatusError) as booting:
        hello(client, "qwen3-plus")
    assert booting.value.status_code == 503 and booting.value.code == "cold_start"
    assert int(booting.value.response.headers["retry-after"]) >= 1
    (instance,) = account.listed()
    assert instance["model_id"] == "qwen3-plus"
    # Warm → a standard OpenAI-compatible answer.
    account.wait_for(instance["id"], "running")
    answer = hello(client, "qwen3-plus")
    assert answer.object == "chat.completion" and answer.choices[0].message.content == "echo: Hi"


# -- 8. Conventions ----------------------------------------------------------------------------


def test_a_bad_deploy_is_a_400_in_the_openai_error_shape(account):
    error = error_of(account.http.post("/api/dashboard/deploy", json={"region": "EU"}), 400)
    assert "model_id" in (error.get("param") or "") + error["message"]
    error = error_of(account.http.post("/api/dashboard/deploy", json={"model_id": "nope"}), 400)
    assert "catalog" in error["message"]


# -- 9. End-to-end example: per-tenant deploy -------------------------------------------------


def test_seed_000_section_9_end_to_end(served, account):
    # 1. Provision a dedicated instance for tenant X
    r = account.http.post(
        "/api/dashboard/deploy",
        json={"model_id": "mistral-nemo-12b", "region": "EU", "provider": "vastai"},
    )
    assert r.status_code == 201, r.text
    instance = r.json()
    assert instance["status"] == "deploying"
    # 2. Poll until running
    running = account.wait_for(instance["id"], "running")
    assert running["endpoint_url"].startswith("http://")
    # 3. Get this instance's per-tenant inference key
    r = account.http.get(f"/api/dashboard/instances/{instance['id']}/api-key")
    assert r.status_code == 200, r.text
    key = r.json()["api_key"]
    # 4. Use it from your tenant's app (§10: the official SDK with base_url .../api/v1)
    answer = account.openai(key).chat.completions.create(
        model="mistral-nemo-12b", messages=[{"role": "user", "content": "hello tenant X"}]
    )
    assert answer.choices[0].message.content == "echo: hello tenant X"
    assert answer.usage is not None
    # The usage is billed to the tenant, on that instance.
    today = datetime.now(UTC).date()
    path = f"/team-billing/summary/{account.tenant_id}/{today}/{today + timedelta(days=1)}"
    deadline = time.monotonic() + 10
    while (bill := served.admin.get(path).json())["requests"] < 1:
        assert time.monotonic() < deadline, bill
        time.sleep(0.05)
    assert bill["prompt_tokens"] == answer.usage.prompt_tokens
    assert bill["completion_tokens"] == answer.usage.completion_tokens
    (by_instance,) = bill["by_instance"]
    assert by_instance["instance_id"] == instance["id"] and by_instance["requests"] == 1
    # 5. Offboarding — destroy when the tenant leaves
    r = account.http.delete(f"/api/dashboard/instances/{instance['id']}")
    assert r.status_code == 200, r.text
    assert account.listed() == []
