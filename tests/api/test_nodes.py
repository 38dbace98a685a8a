"""Several ``hostplane serve`` nodes on one database, as behind a load balancer.

Two nodes (two processes with data dirs of their own, on one database) elect one leader, which
runs the projections and the scheduled jobs; the other stands by, serves the API, and takes
over when the leader dies. A node whose master key is not the database's refuses to start.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from tests.api.test_webhooks import Receiver
from tests.conftest import ADMIN_TOKEN, MASTER_KEY, free_port

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LEADS = "leader: this node runs the projections and the scheduled jobs"
STANDS_BY = "standby: another node runs the projections and the scheduled jobs"
SERVE = [sys.executable, "-m", "interfaces.cli.main", "serve"]


class Node:
    """One ``hostplane serve`` process, its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*SERVE, "--port", str(self.port)], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def request(self, method: str, path: str, token: str = ADMIN_TOKEN, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def healthy(self) -> bool:
        try:
            return self.request("GET", "/health").status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def leads(self) -> bool:
        return LEADS in self.log()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def until(done: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll ``done`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := done()):
        assert time.monotonic() < deadline, f"{what} (not within {timeout:.0f} s)"
        time.sleep(0.2)
    return result


@pytest.fixture(scope="module")
def shared_env(
    database_conninfo: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """What every node of one deployment shares: the database, master key and admin token."""
    dbname = f"hostplane_nodes_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    yield {
        **os.environ,
        "HOSTPLANE_DATABASE_URL": with_dbname(database_conninfo, dbname),
        "HOSTPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
        "HOSTPLANE_MASTER_KEY": MASTER_KEY,
        "HOSTPLANE_RATE_LIMIT_PER_MINUTE": "100000",
        "HOSTPLANE_PROVISION_INTERVAL_SECONDS": "0.2",
        "HOSTPLANE_SIMULATED_DEPLOY_SECONDS": "0.2",
        "HOSTPLANE_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    }
    drop_database(database_conninfo, dbname)


def start_node(env: dict[str, str], tmp: pytest.TempPathFactory, name: str) -> Node:
    data_dir = tmp.mktemp(name)  # a machine of its own: nothing shared but the database
    return Node({**env, "HOSTPLANE_DATA_DIR": str(data_dir)}, data_dir / "serve.log")


@pytest.fixture(scope="module")
def nodes(
    shared_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Node]]:
    # One after the other: the first initialises the database (its schema, its master key).
    started: list[Node] = []
    try:
        for name in ("node-a", "node-b"):
            node = start_node(shared_env, tmp_path_factory, name)
            started.append(node)
            until(lambda n=node: n.healthy() or n.proc.poll() is not None, f"{name} starts", 60)
            assert node.proc.poll() is None, f"{name} exited:\n{node.log()}"
        yield started
    finally:
        for node in started:
            node.stop()


def leader_and_standby(nodes: list[Node]) -> tuple[Node, Node]:
    until(lambda: any(n.leads() for n in nodes), "a node says it leads", 15)
    time.sleep(2)  # a standby tries every second: time enough for a second leader to show
    leaders = [n for n in nodes if n.leads()]
    assert len(leaders) == 1, [n.log() for n in nodes]
    (standby,) = [n for n in nodes if n is not leaders[0]]
    return leaders[0], standby


def new_tenant(node: Node) -> tuple[str, str]:
    """A tenant made through ``node``, and its management key's secret."""
    r = node.request("POST", "/tenants", json={"name": f"nodes-{uuid.uuid4().hex[:8]}"})
    assert r.status_code == 201, r.text
    tenant_id = r.json()["id"]
    r = node.request(
        "POST", f"/tenants/{tenant_id}/keys", json={"name": "mgmt", "kind": "management"}
    )
    assert r.status_code == 201, r.text
    return tenant_id, r.json()["secret"]


def test_of_two_nodes_on_one_database_only_one_runs_the_projections_and_the_jobs(nodes):
    leader, standby = leader_and_standby(nodes)
    assert STANDS_BY in standby.log()


def test_a_write_through_the_standby_is_read_back_through_it_at_once(nodes):
    _, standby = leader_and_standby(nodes)
    tenant_id, _ = new_tenant(standby)
    r = standby.request("POST", f"/tenants/{tenant_id}/keys", json={"name": "read-back"})
    assert r.status_code == 201, r.text
    r = standby.request("GET", f"/keys/{r.json()['key']['id']}")
    assert (r.status_code, r.json()["name"]) == (200, "read-back")


def test_when_the_leader_is_killed_the_other_node_takes_over_projections_and_jobs(nodes):
    leader, survivor = leader_and_standby(nodes)
    receiver = Receiver().start()
    try:
        tenant_id, secret = new_tenant(survivor)
        r = survivor.request(
            "POST", "/webhooks", token=secret, json={"url": receiver.url, "events": ["key.revoked"]}
        )
        assert r.status_code == 201, r.text

        leader.proc.kill()  # kill -9: no chance to hand anything over
        leader.proc.wait()
        until(survivor.leads, "the survivor takes over")

        # Projections: a write through the survivor is readable through it.
        r = survivor.request("POST", f"/tenants/{tenant_id}/keys", json={"name": "after"})
        assert r.status_code == 201, r.text
        key_id = r.json()["key"]["id"]
        r = survivor.request("GET", f"/keys/{key_id}")
        assert (r.status_code, r.json()["name"]) == (200, "after")

        # Scheduled jobs: the webhook is delivered, once; the instance is provisioned.
        assert survivor.request("DELETE", f"/keys/{key_id}").status_code == 200
        until(lambda: receiver.requests, "the webhook is delivered")
        r = survivor.request(
            "POST",
            "/instances",
            token=secret,
            json={"model_id": "llama-3.1-8b", "region": "EU", "provider": "simulated"},
        )
        assert r.status_code == 201, r.text
        instance_id = r.json()["id"]
        until(
            lambda: (
                survivor.request("GET", f"/instances/{instance_id}").json()["status"] == "running"
            ),
            "the instance runs",
        )
        assert [e["data"]["key_id"] for e in receiver.events()] == [key_id]
    finally:
        receiver.stop()


def refused(env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**env, "HOSTPLANE_DATA_DIR": str(data_dir)}
    command = [*SERVE, "--port", str(free_port())]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_a_node_with_another_master_key_refuses_to_start_and_says_why(nodes, shared_env, tmp_path):
    other_key = base64.b64encode(os.urandom(32)).decode()
    done = refused({**shared_env, "HOSTPLANE_MASTER_KEY": other_key}, tmp_path)
    assert done.returncode != 0
    assert (
        "HOSTPLANE_MASTER_KEY" in done.stderr
        and "not the master key this database was initialised with" in done.stderr
    )
    assert "Traceback" not in done.stderr + done.stdout


def test_a_node_without_a_master_key_refuses_rather_than_make_one_of_its_own(
    nodes, shared_env, tmp_path
):
    env = {k: v for k, v in shared_env.items() if k != "HOSTPLANE_MASTER_KEY"}
    done = refused(env, tmp_path)
    assert done.returncode != 0
    assert "HOSTPLANE_MASTER_KEY" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "master.key").exists()
