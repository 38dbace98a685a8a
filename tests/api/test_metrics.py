"""``GET /metrics``: Prometheus's text format, counting exactly what was sent, summed over the
processes of ``serve --workers 2``, and only for the admin token or the metrics token."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway
from tests.conftest import ADMIN_TOKEN, MASTER_KEY, free_port

METRICS_TOKEN = "metrics-" + uuid.uuid4().hex
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    return {"metrics_token": METRICS_TOKEN}


def scrape(url: str, token: str = METRICS_TOKEN) -> Samples:
    r = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_need_the_admin_token_or_the_metrics_token(gateway: Gateway):
    t = gateway.new_tenant()
    url = gateway.url + "/metrics"
    r = httpx.get(url)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    r = httpx.get(url, headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    r = httpx.get(url, headers={"Authorization": f"Bearer {t.management_key()}"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert "hostplane_http_requests_total" in str(scrape(gateway.url, ADMIN_TOKEN))
    assert "hostplane_http_requests_total" in str(scrape(gateway.url, METRICS_TOKEN))


def test_counters_move_by_exactly_what_was_sent(gateway: Gateway):
    t = gateway.new_tenant()
    model = gateway.model("openai")
    gateway.fake.script(model, words=7)
    t.byok("openai")
    key, secret = t.router_key()
    limited, limited_secret = t.router_key(rpm_limit=1)
    client = gateway.client(secret)
    before = scrape(gateway.url)

    for _ in range(3):
        assert t.api.get(f"/keys/{key['id']}").status_code == 200
    assert t.api.get(f"/keys/{uuid.uuid4()}").status_code == 404
    answers = [client.chat.completions.create(model=model, messages=HELLO) for _ in range(2)]
    chunks = list(
        client.chat.completions.create(
            model=model, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    once = gateway.client(limited_secret)
    once.chat.completions.create(model=model, messages=HELLO)
    with pytest.raises(openai.RateLimitError):
        once.chat.completions.create(model=model, messages=HELLO)

    after = scrape(gateway.url)
    route = "/api/v1/keys/{key_id}"
    assert (
        moved(
            before, after, "hostplane_http_requests_total", method="GET", route=route, status="200"
        )
        == 3
    )
    assert (
        moved(
            before, after, "hostplane_http_requests_total", method="GET", route=route, status="404"
        )
        == 1
    )
    assert (
        moved(
            before,
            after,
            "hostplane_http_request_duration_seconds_count",
            method="GET",
            route=route,
        )
        == 4
    )
    chat = "/v1/chat/completions"
    assert moved(before, after, "hostplane_gateway_requests_total", route=chat, status="200") == 4
    assert moved(before, after, "hostplane_gateway_requests_total", route=chat, status="429") == 1
    assert (
        moved(
            before,
            after,
            "hostplane_gateway_admission_refusals_total",
            reason="rate_limit_exceeded",
        )
        == 1
    )
    prompt = sum(a.usage.prompt_tokens for a in answers) + 2 * usage.prompt_tokens
    completion = sum(a.usage.completion_tokens for a in answers) + 2 * usage.completion_tokens
    assert completion == 4 * 7
    assert moved(before, after, "hostplane_gateway_tokens_total", direction="in") == prompt
    assert moved(before, after, "hostplane_gateway_tokens_total", direction="out") == completion
    assert moved(before, after, "hostplane_gateway_time_to_first_token_seconds_count") == 1
    # Three answered without streaming, one streamed: four upstream calls.
    assert (
        moved(
            before,
            after,
            "hostplane_gateway_upstream_duration_seconds_count",
            kind="chat/completions",
        )
        == 4
    )
    # Five usage records (the refused request's too), in however many group-committed writes.
    assert moved(before, after, "hostplane_usage_batch_records_sum") == 5
    assert moved(before, after, "hostplane_event_store_write_seconds_count") >= 1
    # Read at scrape time: every read model, and the pools of this process.
    read_models = gateway.admin.get("/health/ready").json()["read_models"]
    for name in ("hostplane_projection_position", "hostplane_projection_lag_events"):
        assert {dict(labels)["read_model"] for n, labels in after if n == name} == set(read_models)
    assert value(after, "hostplane_projection_lag_events", read_model="usage") >= 0
    for pool in ("requests", "event_loop", "event_store"):
        assert value(after, "hostplane_db_pool_connections", pool=pool, state="open") >= 1
    assert ("hostplane_gateway_in_flight", frozenset()) in after


# -- serve --workers 2 --------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(database_conninfo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    dbname = f"hostplane_metrics_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    port = free_port()
    data_dir = tmp_path_factory.mktemp("metrics")
    env = {
        **os.environ,
        "HOSTPLANE_DATABASE_URL": with_dbname(database_conninfo, dbname),
        "HOSTPLANE_DATA_DIR": str(data_dir),
        "HOSTPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
        "HOSTPLANE_MASTER_KEY": MASTER_KEY,
        "HOSTPLANE_METRICS_TOKEN": METRICS_TOKEN,
        "HOSTPLANE_LOG_FORMAT": "json",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stale = data_dir / "metrics"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"not a metrics file")  # a past run's: removed
    stderr = data_dir / "stderr.log"
    command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--workers", "2"]
    with stderr.open("wb") as err:
        proc = subprocess.Popen([*command, "--port", str(port)], env=env, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, stderr.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "hostplane serve --workers 2 did not start"
            time.sleep(0.2)
        yield port, stderr
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        drop_database(database_conninfo, dbname)


def test_counters_sum_over_both_processes_and_logs_are_json_lines(served):
    port, stderr = served
    time.sleep(0.5)  # the processes report their connections every 0.1 s
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # Two kept-alive connections at once: the first process hands the second to the other.
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(2)]
    sent = 0
    for _ in range(4):
        for c in connections:
            c.request("GET", "/api/v1/tenants", headers={**headers, "X-Request-Id": f"w-{sent}"})
            response = c.getresponse()
            response.read()
            assert response.status == 200
            sent += 1
    for c in connections:
        c.close()
    url = f"http://127.0.0.1:{port}"
    samples = scrape(url)
    counted = value(
        samples,
        "hostplane_http_requests_total",
        method="GET",
        route="/api/v1/tenants",
        status="200",
    )
    assert counted == sent == 8
    lines = [json.loads(line) for line in stderr.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "hostplane.access"]
    ids = {line["request_id"] for line in access if line["route"] == "/api/v1/tenants"}
    assert ids == {f"w-{n}" for n in range(8)}
    assert all(ADMIN_TOKEN not in json.dumps(line) for line in lines)
    # Served by both processes (the log says which), yet one scrape counted them all.
    assert len({line["pid"] for line in access if line["request_id"] in ids}) == 2
    assert not (Path(stderr).parent / "metrics" / "counter_1.db").exists()
