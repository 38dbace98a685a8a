"""A client that received a complete answer is billed for it, even if the server is killed.

50 clients stream through a ``hostplane serve`` subprocess (to BYOK upstreams at the fake
upstream); the server is killed with SIGKILL mid-run and started again on the same database.
Every stream whose client saw ``data: [DONE]`` must then be billed exactly once, for the usage
the client was told (request id = the chunks' ``id``); no request is billed twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import GATEWAY_TIMEOUTS, new_model, records_of
from tests.conftest import ADMIN_TOKEN, MASTER_KEY, Api, free_port
from tests.fake_upstream import FakeUpstream

CLIENTS = 50
RUN_BEFORE_KILL = 2.0  # seconds of streaming before the kill


def server_env(conninfo: str, data_dir: Path, fake: FakeUpstream) -> dict[str, str]:
    return {
        **os.environ,
        "HOSTPLANE_DATABASE_URL": conninfo,
        "HOSTPLANE_DATA_DIR": str(data_dir),
        "HOSTPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
        "HOSTPLANE_MASTER_KEY": MASTER_KEY,
        "HOSTPLANE_RATE_LIMIT_PER_MINUTE": "1000000",
        "HOSTPLANE_PROVISION_INTERVAL_SECONDS": "0",
        **fake.upstream_env(),
        **{f"HOSTPLANE_{k.upper()}": str(v) for k, v in GATEWAY_TIMEOUTS.items()},
    }


@dataclass
class Server:
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--port", str(self.port)]
        # A session of its own: the kill reaches this server and whatever it started, only.
        self.proc = subprocess.Popen(command, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, "hostplane serve exited"
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "hostplane serve did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


@pytest.fixture
def conninfo(database_conninfo: str) -> Iterator[str]:
    dbname = f"hostplane_sigkill_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    yield with_dbname(database_conninfo, dbname)
    drop_database(database_conninfo, dbname)


@dataclass
class Stream:
    """What one client saw of one streamed request."""

    id: str | None = None
    done: bool = False
    usage: dict[str, int] | None = None
    error: str | None = None


def stream_once(client: httpx.Client, url: str, secret: str, model: str) -> Stream:
    seen = Stream()
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "tell me a story"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        with client.stream("POST", url, json=body, headers=headers) as r:
            if r.status_code != 200:
                seen.error = f"status {r.status_code}"
                r.read()
                return seen
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    seen.done = True
                    continue
                chunk = json.loads(data)
                seen.id = seen.id or chunk["id"]
                if chunk.get("usage"):
                    seen.usage = chunk["usage"]
    except (httpx.HTTPError, OSError, ValueError) as e:
        seen.error = repr(e)
    return seen


def byok_tenant(server: Server, fake: FakeUpstream, **script: Any) -> tuple[str, str, str]:
    """A tenant with an openai BYOK upstream at the fake, a model the fake answers as
    ``script`` says, and a router key: (tenant id, model, router secret)."""
    admin = Api(server.url, ADMIN_TOKEN)
    tenant_id = admin.new_tenant()["id"]
    _, management = admin.new_key(tenant_id, "management")
    r = admin.as_token(management).post(
        "/byok",
        json={"name": "openai", "upstream": "openai", "external_key": "sk-" + "k" * 40},
    )
    assert r.status_code == 201, r.text
    model = new_model(admin, "openai")
    fake.script(model, **script)
    _, secret = admin.new_key(tenant_id, "router")
    return tenant_id, model, secret


def test_every_stream_that_saw_done_is_billed_exactly_once_after_a_sigkill(
    conninfo: str, tmp_path: Path, fake: FakeUpstream
):
    env = server_env(conninfo, tmp_path, fake)
    server = Server(env).start()
    restarted: Server | None = None
    try:
        tenant_id, model, secret = byok_tenant(server, fake, chunk_delay=0.02, words=8)  # ~0.2 s

        url = server.url + "/v1/chat/completions"
        killed = threading.Event()
        seen: list[list[Stream]] = [[] for _ in range(CLIENTS)]

        def client_loop(i: int) -> None:
            with httpx.Client(timeout=httpx.Timeout(15, connect=2)) as client:
                while not killed.is_set():
                    s = stream_once(client, url, secret, model)
                    seen[i].append(s)
                    if s.error and killed.is_set():
                        return
                    if s.error:
                        time.sleep(0.05)  # a refused request: don't spin

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
        for th in threads:
            th.start()
        time.sleep(RUN_BEFORE_KILL)
        server.kill()
        killed.set()
        for th in threads:
            th.join(timeout=30)
        assert not any(th.is_alive() for th in threads), "a client hung after the kill"

        streams = [s for per_client in seen for s in per_client]
        done = [s for s in streams if s.done]
        assert done, f"no stream completed before the kill: {streams[:3]}"
        assert all(s.id and s.usage for s in done), "a completed stream had no id or usage"
        assert len({s.id for s in done}) == len(done)

        restarted = Server(env).start()
        records = records_of(Api(restarted.url, ADMIN_TOKEN), tenant_id)
        for s in done:
            assert s.id in records, f"{s.id} saw [DONE] but was not billed"
            assert len(records[s.id]) == 1, f"{s.id} is billed {len(records[s.id])} times"
            [record] = records[s.id]
            assert (record["prompt_tokens"], record["completion_tokens"]) == (
                s.usage["prompt_tokens"],
                s.usage["completion_tokens"],
            )
        assert all(len(rs) == 1 for rs in records.values()), "a request is billed twice"
        assert len(records) <= len(streams)
        # The restarted server's billing counts the same records.
        admin = Api(restarted.url, ADMIN_TOKEN)
        deadline = time.monotonic() + 20
        while True:
            bill = _billing(admin, tenant_id)
            if bill["requests"] >= len(records) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert bill["requests"] == len(records)
        assert bill["completion_tokens"] == sum(
            rs[0]["completion_tokens"] for rs in records.values()
        )
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()
        if restarted is not None:
            restarted.stop()


def _billing(admin: Api, tenant_id: str) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    r = admin.get(
        f"/team-billing/summary/{tenant_id}/{today - timedelta(days=1)}/{today + timedelta(days=2)}"
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_sigterm_lets_running_streams_finish_and_bills_them(
    conninfo: str, tmp_path: Path, fake: FakeUpstream
):
    env = server_env(conninfo, tmp_path, fake)
    server = Server(env).start()
    restarted: Server | None = None
    try:
        tenant_id, model, secret = byok_tenant(server, fake, chunk_delay=0.15, words=10)  # ~1.5 s
        url = server.url + "/v1/chat/completions"
        seen: list[Stream] = []

        def one() -> None:
            with httpx.Client(timeout=httpx.Timeout(15, connect=2)) as client:
                seen.append(stream_once(client, url, secret, model))

        threads = [threading.Thread(target=one) for _ in range(5)]
        for th in threads:
            th.start()
        # Every stream has begun (reached the upstream) before the signal, however slow the
        # machine: after a fixed pause, the last one may not have connected yet on a loaded one.
        deadline = time.monotonic() + 15
        while len(fake.requests_for(model)) < len(threads) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(fake.requests_for(model)) == len(threads)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        for th in threads:
            th.join(timeout=30)
        assert server.proc.wait(timeout=30) == 0

        assert len(seen) == 5 and all(s.done and s.usage for s in seen), seen
        restarted = Server(env).start()
        records = records_of(Api(restarted.url, ADMIN_TOKEN), tenant_id)
        for s in seen:
            [record] = records[s.id]
            assert record["completion_tokens"] == s.usage["completion_tokens"]
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
