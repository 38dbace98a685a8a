"""The instance lifecycle driven by the provisioning jobs and the simulated provider, over HTTP.

These tests run servers of their own (the session's server has the jobs off, because other
tests step instances by hand), on a database of their own, with short simulated delays.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from interfaces.bootstrap import Container
from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from tests.conftest import ADMIN_TOKEN, Api, LiveServer, make_settings
from tests.helpers import error_of

FAST = {
    "provision_interval_seconds": 0.1,
    "status_sync_seconds": 0.2,
    "simulated_deploy_seconds": 0.3,
}
DEPLOY = {"model_id": "llama-3.1-8b", "region": "EU", "provider": "simulated"}


@pytest.fixture(scope="module")
def conninfo(database_conninfo: str) -> Iterator[str]:
    dbname = f"hostplane_lifecycle_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    yield with_dbname(database_conninfo, dbname)
    drop_database(database_conninfo, dbname)  # on a shared server nothing is left behind


@dataclass
class Served:
    admin: Api
    container: Container
    tenant_id: str
    api: Api  # the tenant's management key

    def deploy(self, **fields: Any) -> dict[str, Any]:
        r = self.api.post("/instances", json={**DEPLOY, **fields})
        assert r.status_code == 201, r.text
        return r.json()

    def wait_for(self, instance_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            instance = self.api.get(f"/instances/{instance_id}").json()
            if instance["status"] in statuses:
                return instance
            assert time.monotonic() < deadline, f"still {instance['status']}: {instance}"
            time.sleep(0.05)

    def chat(
        self, instance: dict[str, Any], content: str, key: str | None = None
    ) -> httpx.Response:
        key = key or self.api.get(f"/instances/{instance['id']}/api-key").json()["api_key"]
        return httpx.post(
            instance["endpoint_url"] + "/chat/completions",
            json={
                "model": instance["model_id"],
                "messages": [{"role": "user", "content": content}],
            },
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )


@contextmanager
def serving(
    conninfo: str, tmp_path: Any, tenant_id: str | None = None, **overrides: Any
) -> Iterator[Served]:
    settings = make_settings(conninfo, tmp_path, **{**FAST, **overrides})
    container = Container.open(settings)
    server = None
    try:
        container.start_background()
        server = LiveServer(container).start()
        admin = Api(server.url, ADMIN_TOKEN)
        if tenant_id is None:
            tenant_id = admin.new_tenant()["id"]
        _, secret = admin.new_key(tenant_id, "management")
        yield Served(admin, container, tenant_id, admin.as_token(secret))
    finally:
        if server is not None:
            server.stop()
        container.close()


@pytest.fixture
def served(conninfo: str, tmp_path: Any) -> Iterator[Served]:
    with serving(conninfo, tmp_path) as s:
        yield s


def test_a_deploy_goes_pending_deploying_running_and_its_endpoint_answers(served):
    instance = served.deploy()
    assert instance["status"] == "pending" and instance["endpoint_url"] is None
    running = served.wait_for(instance["id"], "running")
    assert [h["status"] for h in running["history"]] == ["pending", "deploying", "running"]
    assert running["endpoint_url"].startswith("http://127.0.0.1:")
    r = served.chat(running, "hello there")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["choices"][0]["message"]["content"] == "echo: hello there"
    assert answer["model"] == "llama-3.1-8b"
    assert answer["usage"]["total_tokens"] == (
        answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]
    )


def test_the_endpoint_refuses_a_key_that_is_not_the_instances_own(served):
    running = served.wait_for(served.deploy()["id"], "running")
    assert served.chat(running, "hi", key="hp_ik_not-the-key").status_code == 401


def test_the_test_call_reaches_the_endpoint_and_is_recorded(served):
    running = served.wait_for(served.deploy()["id"], "running")
    r = served.api.post(f"/instances/{running['id']}/test")
    assert r.status_code == 200, r.text
    check = r.json()
    assert check["ok"] is True and check["status_code"] == 200
    assert check["reply"].startswith("echo: ") and check["usage"]["total_tokens"] > 0
    again = served.api.get(f"/instances/{running['id']}").json()
    assert again["last_check"]["ok"] is True
    assert again["last_check"]["latency_ms"] == check["latency_ms"]
    audit = served.api.get("/audit", params={"target_id": running["id"]}).json()["data"]
    assert "instance.health_checked" in [entry["action"] for entry in audit]


def test_testing_an_instance_that_is_not_running_is_a_409(conninfo, tmp_path):
    with serving(conninfo, tmp_path, simulated_deploy_seconds=60) as s:
        instance = s.deploy()
        error = error_of(s.api.post(f"/instances/{instance['id']}/test"), 409)
        assert "only a running one is tested" in error["message"]


def test_logs_show_the_deploy_and_the_requests_served(served):
    running = served.wait_for(served.deploy()["id"], "running")
    served.chat(running, "one two three")
    r = served.api.get(f"/instances/{running['id']}/logs")
    assert r.status_code == 200, r.text
    messages = [line["message"] for line in r.json()["data"]]
    assert any("allocating" in m for m in messages)
    assert any("pulling model llama-3.1-8b" in m for m in messages)
    assert any("vLLM ready" in m for m in messages)
    assert any(m.startswith("POST /v1/chat/completions 200") for m in messages)
    times = [line["at"] for line in r.json()["data"]]
    assert times == sorted(times)


def test_a_refused_deploy_fails_with_the_providers_reason_and_a_retry_brings_it_up(
    conninfo, tmp_path
):
    with serving(conninfo, tmp_path, simulated_refuse=frozenset({"large"})) as s:
        instance = s.deploy(instance_type="large")
        failed = s.wait_for(instance["id"], "failed")
        assert "refuses 'large'" in failed["status_reason"]
        assert failed["endpoint_url"] is None
        s.container.provider.refuse.clear()  # the provider has GPUs of that type again
        r = s.api.post(f"/instances/{instance['id']}/retry")
        assert r.status_code == 200, r.text
        assert r.json()["status"] in ("pending", "deploying")
        running = s.wait_for(instance["id"], "running")
        statuses = [h["status"] for h in running["history"]]
        assert statuses == ["pending", "deploying", "failed", "pending", "deploying", "running"]
        assert s.chat(running, "back").status_code == 200


def test_random_failures_fail_deploys_with_a_reason(conninfo, tmp_path):
    with serving(conninfo, tmp_path, simulated_failure_rate=1.0) as s:
        failed = s.wait_for(s.deploy()["id"], "failed")
        assert failed["status_reason"] == "simulated GPU allocation failure"


def test_only_a_failed_instance_may_be_retried(served):
    running = served.wait_for(served.deploy()["id"], "running")
    error = error_of(served.api.post(f"/instances/{running['id']}/retry"), 409)
    assert "running" in error["message"]


def test_a_deploy_still_unfinished_at_the_deadline_fails_and_frees_its_gpu(conninfo, tmp_path):
    with serving(conninfo, tmp_path, simulated_deploy_seconds=60, deploy_timeout_seconds=0.5) as s:
        failed = s.wait_for(s.deploy()["id"], "failed")
        assert failed["status_reason"] == "deploy did not finish within 0.5 s"
        logs = s.api.get(f"/instances/{failed['id']}/logs").json()["data"]
        assert logs[-1]["message"] == "GPU released"


def test_a_restart_in_the_middle_of_a_deploy_resumes_it(conninfo, tmp_path):
    with serving(conninfo, tmp_path, simulated_deploy_seconds=2) as s:
        instance = s.deploy()
        s.wait_for(instance["id"], "deploying")
        tenant_id = s.tenant_id
    # hostplane is down while the provider goes on allocating; then it starts again.
    with serving(conninfo, tmp_path, tenant_id=tenant_id, simulated_deploy_seconds=2) as s:
        running = s.wait_for(instance["id"], "running")
        assert [h["status"] for h in running["history"]] == ["pending", "deploying", "running"]
        assert s.chat(running, "after the restart").status_code == 200


def test_refresh_moves_an_instance_on_when_the_jobs_are_off(conninfo, tmp_path):
    with serving(conninfo, tmp_path, provision_interval_seconds=0) as s:
        instance = s.deploy()
        r = s.api.post(f"/instances/{instance['id']}/refresh")
        assert r.status_code == 200 and r.json()["status"] == "deploying", r.text
        time.sleep(0.4)  # the simulated allocation takes 0.3 s
        r = s.api.post(f"/instances/{instance['id']}/refresh")
        assert r.json()["status"] == "running" and r.json()["endpoint_url"], r.text


def test_a_running_instance_lost_at_the_provider_is_marked_failed(served):
    running = served.wait_for(served.deploy()["id"], "running")
    served.container.provider.release(uuid.UUID(running["id"]))  # the provider lost the machine
    failed = served.wait_for(running["id"], "failed")
    assert failed["status_reason"] == "the GPU was released"


def test_destroying_releases_the_gpu_and_the_instance_stays_in_history_and_billing(served):
    running = served.wait_for(served.deploy()["id"], "running")
    key = served.api.get(f"/instances/{running['id']}/api-key").json()["api_key"]
    time.sleep(0.2)
    r = served.api.delete(f"/instances/{running['id']}")
    assert r.status_code == 200 and r.json()["status"] == "destroyed", r.text
    assert served.chat(running, "still there?", key=key).status_code == 503
    listed = served.api.get("/instances").json()["data"]
    mine = next(i for i in listed if i["id"] == running["id"])
    assert mine["status"] == "destroyed" and float(mine["cost_eur"]) > 0
    day = time.strftime("%Y-%m-%d", time.gmtime())
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    summary = served.api.get(f"/team-billing/summary/{served.tenant_id}/{day}/{tomorrow}")
    assert summary.status_code == 200, summary.text
    assert float(summary.json()["gpu_cost"]) > 0
    assert running["id"] in [i["instance_id"] for i in summary.json()["by_instance"]]


def test_the_list_shows_status_region_model_endpoint_and_cost_so_far(served):
    running = served.wait_for(served.deploy()["id"], "running")
    time.sleep(0.2)
    listed = served.api.get("/instances").json()["data"]
    row = next(i for i in listed if i["id"] == running["id"])
    assert (row["status"], row["region"], row["model_id"]) == ("running", "EU", "llama-3.1-8b")
    assert row["endpoint_url"] == running["endpoint_url"]
    assert float(row["cost_eur"]) > 0


def test_offboarding_destroys_instances_revokes_keys_and_keeps_history_for_the_admin(served):
    running = served.wait_for(served.deploy()["id"], "running")
    instance_key = served.api.get(f"/instances/{running['id']}/api-key").json()["api_key"]
    byok = served.api.post(
        "/byok", json={"name": "OpenAI prod", "upstream": "openai", "external_key": "sk-abcd1234"}
    ).json()
    budget = served.api.post("/budgets", json={"limit_eur": "10"}).json()
    r = served.admin.delete(f"/tenants/{served.tenant_id}")
    assert r.status_code == 200 and r.json()["status"] == "offboarded", r.text
    # The management key is revoked: the tenant can no longer call the API.
    error_of(served.api.get("/instances"), 401)
    # The GPU is released: the endpoint no longer answers.
    assert served.chat(running, "anyone?", key=instance_key).status_code == 503
    admin = served.admin
    listed = admin.get("/instances", params={"tenant_id": served.tenant_id}).json()["data"]
    assert {i["id"]: i["status"] for i in listed} == {
        running["id"]: "destroyed",
        byok["id"]: "destroyed",
    }
    assert admin.get(f"/byok/{byok['id']}").json()["is_active"] is False
    error_of(admin.get(f"/budgets/{budget['id']}"), 404)
    audit = admin.get("/audit", params={"tenant_id": served.tenant_id}).json()["data"]
    assert "tenant.offboarded" in [entry["action"] for entry in audit]
    day = time.strftime("%Y-%m-%d", time.gmtime())
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    summary = admin.get(f"/team-billing/summary/{served.tenant_id}/{day}/{tomorrow}")
    assert summary.status_code == 200, summary.text
    assert float(summary.json()["gpu_cost"]) > 0


@pytest.mark.parametrize("how", ["destroy", "offboard"])
def test_a_destroy_racing_the_provisioning_job_still_succeeds_instead_of_a_409(
    served, monkeypatch, how
):
    # The GPU is released before the destroy is saved; the provisioning job may run between
    # the two, see the GPU gone and save the instance as failed. Here it does, every time:
    # the destroy (alone, or within an offboarding) is then made again on that, not refused.
    running = served.wait_for(served.deploy()["id"], "running")
    instances = served.container.instances
    release, raced = instances.release_gpus, []

    def release_then_the_job_runs(released: list[Any]) -> None:
        release(released)
        if not raced:
            job = served.container.provisioning.advance_instance(uuid.UUID(running["id"]))
            raced.append(job)

    monkeypatch.setattr(instances, "release_gpus", release_then_the_job_runs)
    if how == "destroy":
        r = served.api.delete(f"/instances/{running['id']}")
        assert r.status_code == 200 and r.json()["status"] == "destroyed", r.text
    else:
        r = served.admin.delete(f"/tenants/{served.tenant_id}")
        assert r.status_code == 200 and r.json()["status"] == "offboarded", r.text

    assert raced == ["failed"]  # the job's write came first
    instance = served.admin.get(f"/instances/{running['id']}").json()
    assert instance["status"] == "destroyed"
    assert [h["status"] for h in instance["history"]][-2:] == ["failed", "destroyed"]
