"""Webhooks over HTTP: subscriptions, signed deliveries to a receiver on 127.0.0.1, retries."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from tests.conftest import free_port
from tests.helpers import assert_error, error_of


class Receiver:
    """A webhook endpoint on loopback that records every request and answers ``status``;
    with ``cookie``, each answer sets a cookie, as a load balancer in front of one does."""

    def __init__(self, port: int | None = None, status: int = 200, cookie: bool = False) -> None:
        self.port = port or free_port()
        self.status = status
        self.cookie = cookie
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.status)
                if receiver.cookie:
                    self.send_header("Set-Cookie", f"AWSALB={uuid.uuid4().hex}; Path=/")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def fast_retries(container: Any) -> Iterator[None]:
    """Retries after 0.2 s, 0.4 s, ... so that a test sees several attempts in seconds."""
    settings = container.settings
    saved = settings.webhook_retry_base_seconds, settings.webhook_max_age_seconds
    settings.webhook_retry_base_seconds, settings.webhook_max_age_seconds = 0.2, 300
    yield
    settings.webhook_retry_base_seconds, settings.webhook_max_age_seconds = saved


def subscribe(api: Any, url: str, events: list[str], **fields: Any) -> dict[str, Any]:
    r = api.post("/webhooks", json={"url": url, "events": events, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def eventually(container: Any, done: Callable[[], bool], timeout: float = 30) -> None:
    """Run the delivery worker (as the scheduler does) until ``done()`` holds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        container.deliveries.deliver_due()
        time.sleep(0.05)


def deliveries(api: Any, webhook_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/webhooks/{webhook_id}/deliveries")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def statuses(api: Any, webhook_id: str) -> list[str]:
    return [d["status"] for d in deliveries(api, webhook_id)]


def revoke_new_key(admin: Any, tenant: Any) -> str:
    key, _ = admin.new_key(tenant.id, "router")
    assert tenant.api.delete(f"/keys/{key['id']}").status_code == 200
    return key["id"]


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: recompute HMAC-SHA256 over "t.body" and compare."""
    parts = dict(p.split("=", 1) for p in headers["Hostplane-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


# -- subscriptions -------------------------------------------------------------------------


def test_creating_a_webhook_shows_its_signing_secret_once_and_never_again(tenant, receiver):
    created = subscribe(tenant.api, receiver.url, ["key.revoked"], description="pager")

    assert created["secret"].startswith("whsec_")
    assert created["url"] == receiver.url
    assert created["events"] == ["key.revoked"]
    assert created["description"] == "pager"
    one = tenant.api.get(f"/webhooks/{created['id']}")
    listed = tenant.api.get("/webhooks")
    for r in (one, listed):
        assert r.status_code == 200
        assert "secret" not in r.text
        assert created["secret"] not in r.text
    assert [w["id"] for w in listed.json()["data"]] == [created["id"]]


def test_the_signing_secret_is_nowhere_in_the_events_table_nor_the_audit_log(
    container, tenant, receiver
):
    created = subscribe(tenant.api, receiver.url, ["key.revoked"])
    recorder = container.store.recorder
    table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'

    with container.pool.connection() as conn:
        row = conn.execute(
            f"SELECT count(*) AS n FROM {table} WHERE position(%s::bytea IN state) > 0",
            (created["secret"].encode(),),
        ).fetchone()
    audit = tenant.api.get("/audit", params={"target_id": created["id"]})

    assert row["n"] == 0
    assert audit.status_code == 200 and audit.json()["data"]
    assert created["secret"] not in audit.text


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "not a url", "https://u:p@host/x"])
def test_a_url_that_is_not_a_plain_http_url_is_a_400_naming_url(tenant, url):
    r = tenant.api.post("/webhooks", json={"url": url, "events": ["key.revoked"]})

    assert_error(r, 400, "url")


def test_an_unknown_event_type_is_a_400_that_lists_the_known_ones(tenant, receiver):
    r = tenant.api.post("/webhooks", json={"url": receiver.url, "events": ["key.exploded"]})

    error = error_of(r, 400)
    assert "key.revoked" in error["message"] and "instance.status_changed" in error["message"]


def test_a_retried_create_with_the_same_idempotency_key_returns_the_first_webhook(tenant, receiver):
    body = {"url": receiver.url, "events": ["key.revoked"]}
    headers = {"Idempotency-Key": uuid.uuid4().hex}

    first = tenant.api.post("/webhooks", json=body, headers=headers)
    second = tenant.api.post("/webhooks", json=body, headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert len(tenant.api.get("/webhooks").json()["data"]) == 1


def test_the_admin_creates_a_webhook_for_the_tenant_named_in_the_body(admin, tenant, receiver):
    created = subscribe(admin, receiver.url, ["key.revoked"], tenant_id=tenant.id)

    assert created["tenant_id"] == tenant.id
    assert_error(
        admin.post("/webhooks", json={"url": receiver.url, "events": ["key.revoked"]}), 400
    )


def test_another_tenant_can_neither_see_nor_delete_nor_read_the_deliveries_of_a_webhook(
    tenant, other_tenant, receiver
):
    created = subscribe(tenant.api, receiver.url, ["key.revoked"])
    path = f"/webhooks/{created['id']}"

    assert_error(other_tenant.api.get(path), 404)
    assert_error(other_tenant.api.delete(path), 404)
    assert_error(other_tenant.api.get(f"{path}/deliveries"), 404)
    assert other_tenant.api.get("/webhooks").json()["data"] == []
    assert tenant.api.get(path).status_code == 200


def test_a_router_key_is_refused_on_webhook_routes(admin, tenant, receiver):
    _, secret = admin.new_key(tenant.id, "router")
    router = admin.as_token(secret)

    assert_error(router.get("/webhooks"), 403)
    assert_error(
        router.post("/webhooks", json={"url": receiver.url, "events": ["key.revoked"]}), 403
    )


def test_a_deleted_webhook_is_gone_and_gets_no_new_deliveries(admin, tenant, container):
    gone, control = Receiver().start(), Receiver().start()
    try:
        deleted = subscribe(tenant.api, gone.url, ["key.revoked"])
        subscribe(tenant.api, control.url, ["key.revoked"])
        assert tenant.api.delete(f"/webhooks/{deleted['id']}").status_code == 200

        revoke_new_key(admin, tenant)
        eventually(container, lambda: len(control.requests) == 1)

        assert gone.requests == []
        assert_error(tenant.api.get(f"/webhooks/{deleted['id']}"), 404)
        assert_error(tenant.api.delete(f"/webhooks/{deleted['id']}"), 404)
    finally:
        gone.stop()
        control.stop()


# -- deliveries ----------------------------------------------------------------------------


def test_a_revoked_key_is_delivered_signed_with_the_webhook_secret(
    admin, tenant, receiver, container
):
    created = subscribe(tenant.api, receiver.url, ["key.revoked"])

    key_id = revoke_new_key(admin, tenant)
    eventually(container, lambda: len(receiver.requests) == 1)

    headers, body = receiver.requests[0]
    event = orjson.loads(body)
    assert verified(created["secret"], headers, body)
    assert not verified("whsec_" + "0" * 48, headers, body)
    assert event["type"] == "key.revoked"
    assert event["tenant_id"] == tenant.id
    assert event["data"]["key_id"] == key_id
    assert event["created_at"].endswith("Z")
    assert headers["Hostplane-Event-Id"] == event["id"]
    assert headers["Content-Type"] == "application/json"
    [delivery] = deliveries(tenant.api, created["id"])
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 1
    assert delivery["last_status_code"] == 200
    assert delivery["event_id"] == event["id"]
    assert delivery["event_type"] == "key.revoked"
    assert delivery["delivered_at"] is not None


def test_a_cookie_a_receiver_set_goes_with_no_later_delivery_of_any_tenant(
    admin, tenant, other_tenant, container
):
    """One client sends a run's deliveries, every tenant's: a receiver's host may serve several
    tenants (a chat tool's, an automation service's), and must not get one tenant's cookie
    with another's events."""
    receiver = Receiver(cookie=True).start()
    try:
        for t in (tenant, other_tenant):
            subscribe(t.api, receiver.url, ["key.revoked"])
        for _ in range(3):
            for t in (tenant, other_tenant):
                revoke_new_key(admin, t)
        eventually(container, lambda: len(receiver.requests) == 6)

        tenants = [orjson.loads(body)["tenant_id"] for _, body in receiver.requests]
        assert sorted(tenants) == sorted([tenant.id, other_tenant.id] * 3)
        assert [headers.get("Cookie") for headers, _ in receiver.requests] == [None] * 6
    finally:
        receiver.stop()


def test_only_the_subscribed_event_types_are_delivered(admin, tenant, receiver, container):
    subscribe(tenant.api, receiver.url, ["key.disabled"])
    revoke_new_key(admin, tenant)
    key, _ = admin.new_key(tenant.id, "router")

    tenant.api.put(f"/keys/{key['id']}/disabled", json={"disabled": True})
    eventually(container, lambda: len(receiver.requests) == 1)
    time.sleep(0.3)
    container.deliveries.deliver_due()

    assert [e["type"] for e in receiver.events()] == ["key.disabled"]
    assert receiver.events()[0]["data"]["key_id"] == key["id"]


def test_a_receiver_that_is_down_for_a_while_then_up_gets_every_delivery_once(
    admin, tenant, container
):
    receiver = Receiver()  # its port is closed until it starts
    created = subscribe(tenant.api, receiver.url, ["key.revoked"])
    revoked = {revoke_new_key(admin, tenant) for _ in range(3)}

    def failed_twice() -> bool:
        rows = deliveries(tenant.api, created["id"])
        return len(rows) == 3 and all(d["attempts"] >= 2 for d in rows)

    eventually(container, failed_twice)
    down = deliveries(tenant.api, created["id"])
    assert {d["status"] for d in down} == {"pending"}
    assert all(d["last_error"] and d["next_attempt_at"] for d in down)
    receiver.start()
    try:
        eventually(
            container,
            lambda: {d["status"] for d in deliveries(tenant.api, created["id"])} == {"delivered"},
        )
        time.sleep(1)  # longer than any retry's backoff so far: a duplicate would be due now
        container.deliveries.deliver_due()

        assert len(receiver.requests) == 3
        assert {e["data"]["key_id"] for e in receiver.events()} == revoked
        assert len({h["Hostplane-Event-Id"] for h, _ in receiver.requests}) == 3
    finally:
        receiver.stop()


def test_a_receiver_answering_503_is_retried_with_backoff_until_it_answers_200(
    admin, tenant, container
):
    receiver = Receiver(status=503).start()
    try:
        created = subscribe(tenant.api, receiver.url, ["key.revoked"])
        revoke_new_key(admin, tenant)
        eventually(container, lambda: len(receiver.requests) >= 2)
        [failing] = deliveries(tenant.api, created["id"])
        receiver.status = 200
        eventually(container, lambda: deliveries(tenant.api, created["id"])[0]["delivered_at"])

        [delivery] = deliveries(tenant.api, created["id"])
        assert failing["status"] == "pending"
        assert failing["last_status_code"] == 503
        assert delivery["status"] == "delivered"
        assert delivery["attempts"] == len(receiver.requests) >= 3
        assert len({h["Hostplane-Event-Id"] for h, _ in receiver.requests}) == 1
    finally:
        receiver.stop()


def test_a_delivery_still_failing_at_its_maximum_age_is_given_up_as_failed(
    admin, tenant, container
):
    container.settings.webhook_max_age_seconds = 1
    receiver = Receiver(status=500).start()
    try:
        created = subscribe(tenant.api, receiver.url, ["key.revoked"])
        revoke_new_key(admin, tenant)
        eventually(container, lambda: statuses(tenant.api, created["id"]) == ["failed"])
        attempts = len(receiver.requests)
        time.sleep(0.5)
        container.deliveries.deliver_due()

        [delivery] = deliveries(tenant.api, created["id"])
        assert delivery["attempts"] == attempts >= 2
        assert delivery["next_attempt_at"] is None
        assert delivery["last_error"] == "HTTP 500"
        assert len(receiver.requests) == attempts  # nothing more after giving up
    finally:
        receiver.stop()


def test_a_deployed_instance_is_delivered_as_a_status_change_to_pending(
    tenant, receiver, container
):
    subscribe(tenant.api, receiver.url, ["instance.status_changed"])
    r = tenant.api.post("/instances", json={"model_id": "llama-3.1-8b", "region": "EU"})
    assert r.status_code == 201, r.text

    eventually(container, lambda: len(receiver.requests) >= 1)

    first = receiver.events()[0]
    assert first["type"] == "instance.status_changed"
    assert first["data"]["instance_id"] == r.json()["id"]
    assert first["data"]["status"] == "pending"
    assert first["data"]["model_id"] == "llama-3.1-8b"


def test_budget_alerts_are_delivered_with_spend_and_limit(admin, tenant, receiver, container):
    subscribe(tenant.api, receiver.url, ["budget.threshold_crossed", "budget.exceeded"])
    key, _ = admin.new_key(tenant.id, "router")
    budget = tenant.api.post(
        "/budgets", json={"key_id": key["id"], "limit_eur": "0.023", "thresholds": ["0.5", "1"]}
    ).json()
    record = {
        "request_id": uuid.uuid4().hex,
        "key_id": key["id"],
        "model": "gpt-4o",  # 2.30 EUR per million prompt tokens in the default catalog
        "prompt_tokens": 10000,
        "completion_tokens": 0,
        "status": "success",
        "latency_ms": 10,
        "occurred_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
    }
    assert admin.post("/usage/events", json={"records": [record]}).status_code == 200
    container.budget_watch.evaluate_watched()

    eventually(container, lambda: len(receiver.requests) == 2)

    crossed, exceeded = sorted(receiver.events(), key=lambda e: e["type"], reverse=True)
    assert crossed["type"] == "budget.threshold_crossed"
    assert crossed["data"]["threshold"] == "0.5"
    assert exceeded["type"] == "budget.exceeded"
    for event in (crossed, exceeded):
        assert event["data"]["budget_id"] == budget["id"]
        assert event["data"]["key_id"] == key["id"]
        assert event["data"]["limit_eur"] == "0.023"
        assert event["data"]["spent_eur"] == "0.023"


def test_offboarding_a_tenant_delivers_tenant_offboarded_then_deletes_its_webhooks(
    admin, tenant, receiver, container
):
    created = subscribe(tenant.api, receiver.url, ["tenant.offboarded", "key.revoked"])

    assert admin.delete(f"/tenants/{tenant.id}").status_code == 200
    eventually(container, lambda: "tenant.offboarded" in [e["type"] for e in receiver.events()])

    offboarded = next(e for e in receiver.events() if e["type"] == "tenant.offboarded")
    assert offboarded["data"]["tenant_id"] == tenant.id
    # Its management key was revoked in the same write, and that is owed too.
    eventually(container, lambda: "key.revoked" in [e["type"] for e in receiver.events()])
    assert admin.get("/webhooks", params={"tenant_id": tenant.id}).json()["data"] == []
    assert_error(admin.get(f"/webhooks/{created['id']}"), 404)


def test_rebuilding_the_webhooks_read_model_sends_nothing_twice(admin, tenant, receiver, container):
    created = subscribe(tenant.api, receiver.url, ["key.revoked"])
    revoke_new_key(admin, tenant)
    eventually(container, lambda: len(receiver.requests) == 1)
    before = deliveries(tenant.api, created["id"])

    container.runner.rebuild("webhooks")
    time.sleep(0.3)
    container.deliveries.deliver_due()

    assert len(receiver.requests) == 1
    assert deliveries(tenant.api, created["id"]) == before
    assert tenant.api.get(f"/webhooks/{created['id']}").status_code == 200


def test_deliveries_page_through_every_delivery_once_newest_first(
    admin, tenant, receiver, container
):
    created = subscribe(tenant.api, receiver.url, ["key.revoked"])
    revoked = [revoke_new_key(admin, tenant) for _ in range(3)]
    eventually(container, lambda: len(receiver.requests) == 3)
    by_event = {e["id"]: e["data"]["key_id"] for e in receiver.events()}

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = tenant.api.get(f"/webhooks/{created['id']}/deliveries", params=params).json()
        seen += [by_event[d["event_id"]] for d in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]

    assert seen == list(reversed(revoked))


def test_events_written_while_the_projection_worker_is_down_are_delivered_once_it_is_back(
    admin, tenant, receiver, container
):
    created = subscribe(tenant.api, receiver.url, ["key.revoked"])
    keys = [admin.new_key(tenant.id, "router")[0]["id"] for _ in range(2)]
    container.runner.stop()
    try:
        for key_id in keys:  # written to the event store; no read model sees it yet
            assert tenant.api.delete(f"/keys/{key_id}").status_code == 200
        container.deliveries.deliver_due()
        assert receiver.requests == []
    finally:
        container.runner.start()

    eventually(container, lambda: len(receiver.requests) == 2)

    assert sorted(e["data"]["key_id"] for e in receiver.events()) == sorted(keys)
    assert statuses(tenant.api, created["id"]) == ["delivered", "delivered"]
