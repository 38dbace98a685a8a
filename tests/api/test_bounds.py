"""Bounded work per request: date ranges, list sizes and body sizes; a 500 keeps the connection."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from interfaces.settings import Settings
from tests.conftest import free_port
from tests.helpers import error_of, names_field, new_model, usage_record

OVERFLOWING_FROM = "9999-12-31T23:59:59-01:00"  # the year 10000 in UTC
UNDERFLOWING_TO = "0001-01-01T00:00:00+01:00"  # the year 0 in UTC
WINDOWED = [
    "/usage",
    "/usage/keys",
    "/usage/models",
    "/usage/vendors",
    "/usage/series",
    "/usage/series/tenants",
    "/costs",
]
MAX_DAYS = Settings().max_range_days
MAX_HOURLY_DAYS = Settings().max_hourly_range_days
MAX_BODY = Settings().max_body_bytes


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- date ranges ---------------------------------------------------------------------------


def test_a_billing_summary_from_year_1_to_9999_is_a_400_naming_end(tenant):
    r = tenant.api.get(f"/team-billing/summary/{tenant.id}/0001-01-01/9999-12-31")

    error = error_of(r, 400)
    assert names_field(error, "end")
    assert str(MAX_DAYS) in error["message"]


def test_a_billing_summary_of_the_longest_range_allowed_answers_every_day(tenant):
    start = datetime(2025, 1, 1)
    end = start + timedelta(days=MAX_DAYS)

    r = tenant.api.get(f"/team-billing/summary/{tenant.id}/{start:%Y-%m-%d}/{end:%Y-%m-%d}")

    assert r.status_code == 200, r.text
    assert len(r.json()["by_day"]) == MAX_DAYS


def test_a_billing_summary_one_day_longer_than_allowed_is_a_400(tenant):
    end = datetime(2025, 1, 1) + timedelta(days=MAX_DAYS + 1)

    r = tenant.api.get(f"/team-billing/summary/{tenant.id}/2025-01-01/{end:%Y-%m-%d}")

    assert names_field(error_of(r, 400), "end")


@pytest.mark.parametrize("path", WINDOWED)
def test_a_from_beyond_the_year_9999_in_utc_is_a_400_naming_from(tenant, path):
    r = tenant.api.get(path, params={"from": OVERFLOWING_FROM})

    assert names_field(error_of(r, 400), "from")


@pytest.mark.parametrize("path", WINDOWED)
def test_a_to_before_the_year_1_in_utc_is_a_400_naming_to(tenant, path):
    r = tenant.api.get(path, params={"to": UNDERFLOWING_TO})

    assert names_field(error_of(r, 400), "to")


@pytest.mark.parametrize("field", ["since", "until"])
def test_an_audit_bound_beyond_the_year_9999_is_a_400_naming_it(tenant, field):
    r = tenant.api.get("/audit", params={field: OVERFLOWING_FROM})

    assert names_field(error_of(r, 400), field)


def test_an_export_as_of_beyond_the_year_9999_is_a_400_naming_as_of(tenant):
    r = tenant.api.get(f"/tenants/{tenant.id}/export", params={"as_of": OVERFLOWING_FROM})

    assert names_field(error_of(r, 400), "as_of")


def test_a_key_and_a_tenant_as_of_before_the_year_1_are_400s_naming_as_of(tenant):
    key = tenant.api.get(f"/keys/{tenant.key['id']}", params={"as_of": UNDERFLOWING_TO})
    own = tenant.api.get(f"/tenants/{tenant.id}", params={"as_of": UNDERFLOWING_TO})

    assert names_field(error_of(key, 400), "as_of")
    assert names_field(error_of(own, 400), "as_of")


def test_a_key_expiring_beyond_the_year_9999_is_a_400_naming_expires_at(tenant):
    r = tenant.api.post(
        f"/tenants/{tenant.id}/keys", json={"name": "late", "expires_at": OVERFLOWING_FROM}
    )

    assert names_field(error_of(r, 400), "expires_at")


def test_a_price_effective_before_the_year_1_is_a_400_naming_effective_from(admin):
    model = new_model(admin)
    body = admin.get(f"/models/{model}").json()
    update = {k: body[k] for k in ("display_name", "modality", "context_length", "serveable")}
    prices = {k: body[k] for k in ("input_eur_per_mtok", "output_eur_per_mtok")}

    r = admin.put(f"/models/{model}", json={**update, **prices, "effective_from": UNDERFLOWING_TO})

    assert names_field(error_of(r, 400), "effective_from")


def test_a_daily_series_longer_than_allowed_is_a_400_naming_to(tenant):
    end = datetime(2025, 1, 1) + timedelta(days=MAX_DAYS + 1)

    r = tenant.api.get(
        "/usage/series", params={"interval": "day", "from": "2025-01-01", "to": f"{end:%Y-%m-%d}"}
    )

    assert names_field(error_of(r, 400), "to")


def test_an_hourly_series_longer_than_allowed_is_a_400_naming_to(tenant):
    end = datetime(2025, 1, 1) + timedelta(days=MAX_HOURLY_DAYS, hours=1)
    params = {"interval": "hour", "from": "2025-01-01T00:00:00Z", "to": f"{end:%Y-%m-%dT%H}:00Z"}

    r = tenant.api.get("/usage/series/tenants", params=params)

    assert names_field(error_of(r, 400), "to")


def test_an_hourly_series_of_the_longest_range_allowed_answers(tenant):
    end = datetime(2025, 1, 1) + timedelta(days=MAX_HOURLY_DAYS)
    params = {"interval": "hour", "from": "2025-01-01", "to": f"{end:%Y-%m-%d}"}

    r = tenant.api.get("/usage/series", params=params)

    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("interval", "days"), [("day", MAX_DAYS), ("hour", MAX_HOURLY_DAYS)], ids=["day", "hour"]
)
def test_a_series_without_a_range_covers_the_longest_range_allowed_up_to_now(
    tenant, interval, days
):
    r = tenant.api.get("/usage/series", params={"interval": interval})

    assert r.status_code == 200, r.text
    lo, hi = at(r.json()["from"]), at(r.json()["to"])
    assert hi - lo == timedelta(days=days)
    assert hi > datetime.now(lo.tzinfo) >= hi - timedelta(days=1)


def test_a_series_with_only_a_start_covers_the_longest_range_allowed_from_it(tenant):
    r = tenant.api.get("/usage/series", params={"interval": "day", "from": "2025-01-01"})

    assert r.status_code == 200, r.text
    assert at(r.json()["to"]) - at(r.json()["from"]) == timedelta(days=MAX_DAYS)


# -- list lengths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "items"),
    [("allowed_models", [f"m{i}" for i in range(5000)]), ("ip_allowlist", ["10.0.0.1"] * 5000)],
    ids=["allowed_models", "ip_allowlist"],
)
def test_a_key_with_too_many_list_items_is_a_400_naming_the_list(tenant, field, items):
    body = {"name": "many", field: items}

    r = tenant.api.post(f"/tenants/{tenant.id}/keys", json=body)

    assert names_field(error_of(r, 400), field)


def test_a_budget_with_too_many_thresholds_is_a_400_naming_thresholds(tenant):
    thresholds = [f"0.{i:04d}" for i in range(1, 1001)]

    r = tenant.api.post("/budgets", json={"limit_eur": "10", "thresholds": thresholds})

    assert names_field(error_of(r, 400), "thresholds")


def test_a_webhook_with_too_many_events_is_a_400_naming_events(tenant):
    body = {"url": "http://127.0.0.1:9/hook", "events": ["key.revoked"] * 1000}

    r = tenant.api.post("/webhooks", json=body)

    assert names_field(error_of(r, 400), "events")


def test_a_log_page_larger_than_the_cap_is_a_400_naming_limit(tenant):
    r = tenant.api.get(f"/instances/{uuid.uuid4()}/logs", params={"limit": 1_000_000})

    assert names_field(error_of(r, 400), "limit")


# -- body size -----------------------------------------------------------------------------


def raw_response(live_server: Any, request: bytes, body_chunks: Iterator[bytes] = iter(())) -> str:
    """Send a request over a plain socket and return the status line and headers answered."""
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=30) as s:
        s.sendall(request)
        for chunk in body_chunks:
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        received = b""
        while b"\r\n\r\n" not in received:
            data = s.recv(65536)
            if not data:
                break
            received += data
        while True:  # the rest of the answer, so that the body can be checked too
            try:
                data = s.recv(65536)
            except OSError:
                break
            if not data:
                break
            received += data
    return received.decode(errors="replace")


def test_a_body_announced_larger_than_the_cap_is_a_413_before_it_is_sent(tenant, live_server):
    request = (
        f"POST /api/v1/usage/events HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {tenant.secret}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY + 1}\r\n\r\n"
    ).encode()

    answer = raw_response(live_server, request)

    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"type":"invalid_request_error"' in answer
    assert '"code":"request_too_large"' in answer


def test_a_chunked_body_growing_past_the_cap_is_a_413(tenant):
    def chunks() -> Iterator[bytes]:
        mib = b" " * (1 << 20)
        yield b'{"records": ['
        for _ in range(MAX_BODY // len(mib) + 1):
            yield mib

    r = tenant.api.post("/usage/events", content=chunks())

    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert error_of(r, 413)["code"] == "request_too_large"


def test_a_full_batch_with_the_longest_request_ids_and_model_names_fits_the_cap(admin, tenant):
    model = new_model(admin, prefix="bounds-" + "m" * 110)  # the longest id: 128
    instance = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b"}).json()["id"]
    prefix = uuid.uuid4().hex
    records = [
        usage_record(
            tenant.key["id"],
            model,
            "2025-10-30T12:00:00.123456+01:00",
            request_id=f"{prefix}-{i:06d}".ljust(200, "r"),
            instance_id=instance,
            cached_tokens=10,
        )
        for i in range(10_000)
    ]
    body = httpx.Request("POST", "http://x", json={"records": records}).content
    assert len(body) > 5_000_000  # the longest strings a record may hold, not a small batch

    r = tenant.api.post("/usage/events", content=body)

    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 10_000


# -- 500s ------------------------------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.fixture(scope="module")
def failing_server(container) -> Iterator[str]:
    """hostplane's app with one more route that fails the way a bug would: an unexpected error."""
    import uvicorn

    from interfaces.http.app import create_app

    app = create_app(container)

    @app.get("/api/v1/test-only/fails")
    def fails() -> dict:
        raise Boom("internals: password=hunter2 at /srv/hostplane/secret.py line 42")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def client_address(r: httpx.Response) -> Any:
    """The client end of the connection that carried ``r``; None once the server closed it."""
    try:
        return r.extensions["network_stream"].get_extra_info("client_addr")
    except OSError:
        return None


def test_a_500_is_in_the_openai_shape_without_internals(failing_server):
    r = httpx.get(failing_server + "/api/v1/test-only/fails")

    error = error_of(r, 500)
    assert error["type"] == "api_error"
    assert r.headers["content-type"].startswith("application/json")
    assert "hunter2" not in r.text and "Boom" not in r.text and "Traceback" not in r.text


def test_the_request_after_a_500_is_answered_on_the_same_connection(failing_server):
    with httpx.Client(base_url=failing_server) as client:
        failed = client.get("/api/v1/test-only/fails")
        failed_on = client_address(failed)
        after = client.get("/api/v1/health")

        assert failed.status_code == 500
        assert after.status_code == 200
        assert client_address(after) == failed_on


# -- usage times -----------------------------------------------------------------------------


@pytest.mark.parametrize("occurred_at", [UNDERFLOWING_TO, "1969-12-31T23:59:59Z"])
def test_usage_from_before_1970_is_refused_and_the_tenant_stays_exportable(
    admin, tenant, occurred_at
):
    model = new_model(admin)
    record = usage_record(tenant.key["id"], model, occurred_at)

    refused = tenant.api.post("/usage/events", json={"records": [record]})
    export = tenant.api.get(f"/tenants/{tenant.id}/export")

    error = error_of(refused, 400)
    assert [p["field"] for p in error["records"]] == ["occurred_at"]
    assert export.status_code == 200
    assert json.loads(export.text.splitlines()[-1])["kind"] == "end"
