"""``hostplane serve --workers 2``: two API processes on one port, one database.

The first process accepts each connection and hands it to the process with the fewest open
connections (counting its own projection worker as one). Which process serves a connection is
not visible to a client; these tests find it in /proc.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from tests.conftest import ADMIN_TOKEN, MASTER_KEY, free_port

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, env: dict[str, str]) -> None:
        self.proc = proc
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}/api/v1"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request on a connection of its own (so it may reach either process)."""
        return httpx.request(method, self.url + path, headers=HEADERS, timeout=30, **kwargs)

    def api_processes(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [
            int(pid)
            for pid in children.split()
            if b"--api-process" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]


class Connection:
    """One kept-alive connection to the server, and the API process that serves it."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.http = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {**HEADERS, "Content-Type": "application/json"}
        data = None if body is None else json.dumps(body)
        self.http.request(method, "/api/v1" + path, body=data, headers=headers)
        response = self.http.getresponse()
        return response.status, json.loads(response.read())

    def process(self) -> int:
        """The pid of the API process holding the server's end of this connection."""
        assert self.http.sock is not None, "not connected yet"
        ours = f":{self.http.sock.getsockname()[1]:04X}"
        theirs = f":{self.served.port:04X}"
        inode = next(
            r.split()[9]
            for r in Path("/proc/net/tcp").read_text().splitlines()[1:]
            if r.split()[1].endswith(theirs) and r.split()[2].endswith(ours)
        )
        for pid in [self.served.proc.pid, *self.served.api_processes()]:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
        raise AssertionError(f"no API process holds the connection from port {ours}")

    def close(self) -> None:
        self.http.close()


def healthy(served: Served) -> bool:
    try:
        return served.request("GET", "/health").status_code == 200
    except (httpx.HTTPError, OSError):
        return False


@pytest.fixture(scope="module")
def served(database_conninfo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    dbname = f"hostplane_workers_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    port = free_port()
    env = {
        **os.environ,
        "HOSTPLANE_DATABASE_URL": with_dbname(database_conninfo, dbname),
        "HOSTPLANE_DATA_DIR": str(tmp_path_factory.mktemp("workers")),
        "HOSTPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
        "HOSTPLANE_MASTER_KEY": MASTER_KEY,
        "HOSTPLANE_RATE_LIMIT_PER_MINUTE": "100000",
    }
    command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--workers", "2"]
    proc = subprocess.Popen([*command, "--port", str(port)], env=env)
    server = Served(proc, port, env)
    try:
        deadline = time.monotonic() + 60
        # The first process accepts connections once both processes are ready.
        while not healthy(server):
            assert proc.poll() is None, "hostplane serve --workers 2 exited"
            assert time.monotonic() < deadline, "hostplane serve --workers 2 did not start"
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        drop_database(database_conninfo, dbname)


@pytest.fixture(scope="module")
def tenant_id(served: Served) -> str:
    r = served.request("POST", "/tenants", json={"name": f"workers-{uuid.uuid4().hex[:8]}"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture
def connections(served: Served) -> Iterator[list[Connection]]:
    opened: list[Connection] = []
    yield opened
    for c in opened:
        c.close()


def connect(served: Served, connections: list[Connection], n: int) -> list[Connection]:
    """``n`` connections, each opened and used once before the next (as clients arrive)."""
    for _ in range(n):
        c = Connection(served)
        connections.append(c)
        assert c.request("GET", "/health")[0] == 200
    return connections[-n:]


def settle() -> None:
    """Let every API process report connections that closed (they report every 0.1 s)."""
    time.sleep(0.5)


def test_kept_alive_connections_are_spread_evenly_over_the_processes(served, connections):
    settle()
    first = served.proc.pid
    (other,) = served.api_processes()
    opened = connect(served, connections, 5)
    # The first process runs the projections too: the other one gets the odd connection.
    assert Counter(c.process() for c in opened) == {other: 3, first: 2}
    for c in opened[:4]:
        c.close()  # two on each process
    settle()
    # One open connection is left, on one of them: the next two arrivals go one to each.
    assert Counter(c.process() for c in [*opened[4:], *connect(served, connections, 2)]) == {
        other: 2,
        first: 1,
    }


def test_a_key_created_through_either_process_is_read_back_through_the_other(
    served, tenant_id, connections
):
    settle()
    one, two = connect(served, connections, 2)
    assert one.process() != two.process()
    for n in range(20):
        writer, reader = (one, two) if n % 2 == 0 else (two, one)
        status, created = writer.request("POST", f"/tenants/{tenant_id}/keys", {"name": f"k{n}"})
        assert status == 201, created
        # Read at once through the other process: never a 404 for a key just made.
        status, key = reader.request("GET", f"/keys/{created['key']['id']}")
        assert (status, key["name"]) == (200, f"k{n}")


def test_names_stay_unique_across_processes(served, tenant_id):
    codes = [
        served.request("POST", f"/tenants/{tenant_id}/keys", json={"name": "once"}).status_code
        for _ in range(6)
    ]
    assert sorted(codes) == [201, 409, 409, 409, 409, 409]


def test_stats_count_both_processes_and_a_capacity_change_reaches_both(served):
    def stats() -> dict[str, Any]:
        r = served.request("GET", "/stats")
        assert r.status_code == 200, r.text
        return r.json()

    def until(check: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while not check(got := stats()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return got

    pids = {served.proc.pid, *served.api_processes()}
    both = until(lambda s: {p["pid"] for p in s["processes"]} == pids)
    assert {p["pid"] for p in both["processes"]} == pids
    r = served.request("PUT", "/capacity", json={"max_in_flight": 7})
    assert r.status_code == 200, r.text
    # Every process applies it without a restart (within about a second).
    changed = until(lambda s: [p["max_in_flight"] for p in s["processes"]] == [7, 7])
    assert changed["max_in_flight"] == 14 and len(changed["processes"]) == 2


def test_usage_recorded_by_either_process_crosses_its_budget(served):
    # Each process evaluates the budgets of the tenants whose usage it recorded; eight tenants
    # on eight connections reach both processes (all on one: 1 chance in 128).
    budgets = []
    for n in range(8):
        r = served.request("POST", "/tenants", json={"name": f"budgets-{uuid.uuid4().hex[:8]}"})
        tenant_id = r.json()["id"]
        r = served.request("POST", f"/tenants/{tenant_id}/keys", json={"name": f"b{n}"})
        key_id = r.json()["key"]["id"]
        body = {"key_id": key_id, "limit_eur": "0.023", "period": "daily", "thresholds": ["0.5"]}
        r = served.request("POST", "/budgets", json={**body, "tenant_id": tenant_id})
        assert r.status_code == 201, r.text
        budgets.append(r.json()["id"])
        record = {
            "request_id": uuid.uuid4().hex,
            "key_id": key_id,
            "model": "gpt-4o",  # 2.30 EUR per million prompt tokens: 5,000 are half the limit
            "prompt_tokens": 5000,
            "completion_tokens": 0,
            "status": "success",
            "latency_ms": 10,
            "occurred_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        }
        r = served.request("POST", "/usage/events", json={"records": [record]})
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    pending = set(budgets)
    while pending:
        for budget_id in list(pending):
            r = served.request("GET", "/audit", params={"target_id": budget_id})
            if "budget.threshold_crossed" in [e["action"] for e in r.json()["data"]]:
                pending.discard(budget_id)
        assert time.monotonic() < deadline, f"no threshold alert for {sorted(pending)}"
        time.sleep(0.5)


def test_a_port_another_server_holds_is_refused_even_if_it_could_be_shared(served, tmp_path):
    # Another server listens with SO_REUSEPORT; joining it would split its traffic.
    with socket.create_server(("127.0.0.1", 0), reuse_port=True) as other:
        port = other.getsockname()[1]
        env = {**served.env, "HOSTPLANE_DATA_DIR": str(tmp_path)}
        command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--workers", "2"]
        done = subprocess.run(
            [*command, "--port", str(port)], env=env, capture_output=True, timeout=120
        )
    assert done.returncode != 0
    assert b"Address already in use" in done.stderr


def test_sigint_stops_every_process(served):
    others = served.api_processes()
    assert len(others) == 1
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(timeout=60) == 0
    for pid in others:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def test_an_api_process_stops_when_the_first_process_is_killed(served, tmp_path):
    env = {
        **served.env,
        "HOSTPLANE_DATA_DIR": str(tmp_path),
    }
    port = free_port()
    command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--workers", "2"]
    proc = subprocess.Popen([*command, "--port", str(port)], env=env)
    server = Served(proc, port, env)
    deadline = time.monotonic() + 60
    while not healthy(server):
        assert proc.poll() is None and time.monotonic() < deadline, "did not start"
        time.sleep(0.2)
    (other,) = server.api_processes()
    proc.kill()  # no chance to stop the other process itself
    proc.wait()
    deadline = time.monotonic() + 30
    while (
        Path(f"/proc/{other}").exists()
        and "zombie" not in Path(f"/proc/{other}/status").read_text()
    ):
        assert time.monotonic() < deadline, "the API process outlived the first one"
        time.sleep(0.2)
