"""Fixtures and helpers of the gateway's tests (``from tests.api.gateway_fixtures import *``).

Each test module gets a server of its own, on a database of its own, whose gateway sends every
vendor to the fake upstream (``tests/fake_upstream.py``) with short timeouts: settings
``upstream_urls`` (vendor → OpenAI-compatible base URL), ``gateway_connect_timeout``,
``gateway_first_byte_timeout`` and ``gateway_total_timeout``.
"""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from interfaces.bootstrap import Container
from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from tests.conftest import ADMIN_TOKEN, Api, LiveServer, make_settings
from tests.fake_upstream import FakeUpstream, running_fake_upstream

__all__ = [
    "GATEWAY_TIMEOUTS",
    "HELLO",
    "UNREACHABLE_VENDOR",
    "Gateway",
    "GatewayTenant",
    "external_key",
    "fake",
    "gateway",
    "gateway_overrides",
    "gateway_settings",
    "named_record",
    "new_model",
    "records_of",
    "wait_until",
]

# Short, so that a stalled upstream answers 504 within the test's patience.
GATEWAY_TIMEOUTS = {
    "gateway_connect_timeout": 2.0,
    "gateway_first_byte_timeout": 1.0,
    "gateway_total_timeout": 10.0,
}
HELLO = [{"role": "user", "content": "hello there"}]
# This vendor's upstream URL is a closed port (a connection error); every other is the fake.
UNREACHABLE_VENDOR = "minimax"
# The first fields of a stored usage record (domain/usage.py StoredRecord), in order; the
# gateway's own fields (status, vendor, estimated, ...) may follow them.
RECORD_FIELDS = (
    "request_id",
    "key_id",
    "rate",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "success",
    "latency_ms",
    "occurred_at_us",
    "instance_id",
)


def wait_until(check: Any, timeout: float = 10.0) -> Any:
    """``check()``'s first true answer within ``timeout`` seconds, else its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def external_key() -> str:
    return "sk-proj-" + uuid.uuid4().hex + uuid.uuid4().hex[:8]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_settings(conninfo: str, data_dir: Path, fake: FakeUpstream, **overrides: Any) -> Any:
    """``make_settings`` with the gateway's upstreams at the fake and short timeouts."""
    from interfaces.settings import Settings

    urls = {**fake.upstream_urls(), UNREACHABLE_VENDOR: f"http://127.0.0.1:{closed_port()}/v1"}
    wanted = {"upstream_urls": urls, **GATEWAY_TIMEOUTS, **overrides}
    known = {f.name for f in dataclasses.fields(Settings)}
    settings = make_settings(conninfo, data_dir, **{k: v for k, v in wanted.items() if k in known})
    # Before the gateway exists these fields don't: set them anyway, so that the tests fail
    # on what is missing (the routes, 404), not on building the settings.
    for k, v in wanted.items():
        if k not in known:
            setattr(settings, k, v)
    return settings


def named_record(stored: list[Any], rates: list[list[str]]) -> dict[str, Any]:
    record = dict(zip(RECORD_FIELDS, stored, strict=False))
    record["model"] = rates[record["rate"]][0]
    record["extra"] = list(stored[len(RECORD_FIELDS) :])
    return record


@dataclass
class GatewayTenant:
    """A tenant of the gateway's server, with a management key and helpers to set it up."""

    gw: Gateway
    id: str
    api: Api  # the tenant's management key

    def router_key(self, **fields: Any) -> tuple[dict[str, Any], str]:
        return self.gw.admin.new_key(self.id, "router", **fields)

    def management_key(self) -> str:
        return self.gw.admin.new_key(self.id, "management")[1]

    def byok(self, vendor: str = "openai", key: str | None = None) -> tuple[dict[str, Any], str]:
        """Attach a BYOK upstream; its id and the external key given."""
        key = key or external_key()
        body = {"name": f"{vendor} {uuid.uuid4().hex[:6]}", "upstream": vendor, "external_key": key}
        r = self.api.post("/byok", json=body)
        assert r.status_code == 201, r.text
        return r.json(), key

    def billing(self) -> dict[str, Any]:
        return self.gw.billing(self.id)

    def wait_billed(self, requests: int, timeout: float = 15) -> dict[str, Any]:
        return self.gw.wait_billed(self.id, requests, timeout)

    def records(self) -> dict[str, list[dict[str, Any]]]:
        return self.gw.records(self.id)


@dataclass
class Gateway:
    """The module's server: its URL, the admin, the fake upstream behind every vendor."""

    server: LiveServer
    container: Any
    admin: Api
    fake: FakeUpstream

    @property
    def url(self) -> str:
        return self.server.url

    def new_tenant(self) -> GatewayTenant:
        t = self.admin.new_tenant()
        _, secret = self.admin.new_key(t["id"], "management")
        return GatewayTenant(self, t["id"], self.admin.as_token(secret))

    def model(self, vendor: str | None = "openai", **fields: Any) -> str:
        """A catalog model of our own, of ``vendor`` (its slug starts with ``gpt-``)."""
        return new_model(self.admin, vendor, **fields)

    def client(self, secret: str, base: str = "/v1", **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url + base, api_key=secret, max_retries=0, timeout=30, **kwargs
        )

    def async_client(self, secret: str, base: str = "/v1", **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.url + base, api_key=secret, max_retries=0, timeout=30, **kwargs
        )

    def billing(self, tenant_id: str) -> dict[str, Any]:
        today = datetime.now(UTC).date()
        start, end = today - timedelta(days=1), today + timedelta(days=2)
        r = self.admin.get(f"/team-billing/summary/{tenant_id}/{start}/{end}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_billed(self, tenant_id: str, requests: int, timeout: float = 15) -> dict[str, Any]:
        """The tenant's billing once it counts ``requests`` requests (read models catch up)."""
        deadline = time.monotonic() + timeout
        while True:
            bill = self.billing(tenant_id)
            if bill["requests"] >= requests or time.monotonic() > deadline:
                return bill
            time.sleep(0.05)

    def records(self, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
        """The tenant's stored usage records by request id, from its export (the events)."""
        return records_of(self.admin, tenant_id)


def new_model(
    admin: Api,
    vendor: str | None = "openai",
    prefix: str = "gpt-gw",
    modality: str = "chat",
    input_price: str = "1.10",
    output_price: str = "4.40",
    **fields: Any,
) -> str:
    """Register a model of ``vendor`` (``POST /api/v1/models`` with ``"vendor"``)."""
    slug = f"{prefix}-{uuid.uuid4().hex[:10]}"
    body = {
        "id": slug,
        "display_name": slug,
        "modality": modality,
        "context_length": 8192,
        "input_eur_per_mtok": input_price,
        "output_eur_per_mtok": output_price,
        **fields,
    }
    if vendor is not None:
        body["vendor"] = vendor
    r = admin.post("/models", json=body)
    if r.status_code == 400 and "vendor" in r.text:
        # Before the catalog knows vendors: a ``gpt-`` slug is OpenAI's by default.
        del body["vendor"]
        r = admin.post("/models", json=body)
    assert r.status_code == 201, r.text
    return slug


def records_of(admin: Api, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + 15
    while True:
        r = admin.get(f"/tenants/{tenant_id}/export")
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    out: dict[str, list[dict[str, Any]]] = {}
    for line in r.text.splitlines():
        e = orjson.loads(line)
        if e.get("kind") == "event" and e.get("type") == "usage.recorded":
            for stored in e["data"]["records"]:
                record = named_record(stored, e["data"]["rates"])
                out.setdefault(record["request_id"], []).append(record)
    return out


def token_cost(prompt: int, completion: int, input_price: str, output_price: str) -> Decimal:
    return (prompt * Decimal(input_price) + completion * Decimal(output_price)) / 1_000_000


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with running_fake_upstream() as f:
        yield f


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    """More settings of the module's server (a module may override this fixture)."""
    return {}


@pytest.fixture(scope="module")
def gateway(
    database_conninfo: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeUpstream,
    gateway_overrides: dict[str, Any],
) -> Iterator[Gateway]:
    dbname = f"hostplane_gateway_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    conninfo = with_dbname(database_conninfo, dbname)
    data_dir = tmp_path_factory.mktemp("gateway")
    settings = gateway_settings(conninfo, data_dir, fake, **gateway_overrides)
    container = Container.open(settings)
    server = None
    try:
        container.start_background()
        server = LiveServer(container).start()
        yield Gateway(server, container, Api(server.url, ADMIN_TOKEN), fake)
    finally:
        if server is not None:
            server.stop()
        container.close()
        drop_database(database_conninfo, dbname)
