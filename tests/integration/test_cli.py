"""The ``hostplane`` command, run as a user runs it: a subprocess on a real database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from application.errors import AuthenticationError
from interfaces.bootstrap import Container
from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from projections.readmodels.registry import all_projections
from tests.conftest import ADMIN_TOKEN, MASTER_KEY, LiveServer, make_settings

# Every read model hostplane keeps; the listings are among them.
PROJECTIONS = [p.name for p in all_projections()]
LISTINGS = ["tenants", "keys", "instances", "budgets"]
HOSTPLANE = str(Path(sys.executable).with_name("hostplane"))
TOKEN_RE = re.compile(r"^\s*(hp_admin_\S+)\s*$", re.MULTILINE)


def hostplane(
    *args: str, database: str, data_dir: Path, admin_token: str | None = ADMIN_TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTPLANE_")}
    env.update(
        HOSTPLANE_DATABASE_URL=database,
        HOSTPLANE_MASTER_KEY=MASTER_KEY,
        HOSTPLANE_DATA_DIR=str(data_dir),
    )
    if admin_token is not None:
        env["HOSTPLANE_ADMIN_TOKEN"] = admin_token
    return subprocess.run(
        [HOSTPLANE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def status_rows(output: str) -> dict[str, dict[str, int]]:
    lines = output.strip().splitlines()
    header = lines[0].split()
    rows = {}
    for line in lines[1:]:
        name, *numbers = line.split()
        rows[name] = dict(zip(header[1:], (int(n) for n in numbers), strict=True))
    return rows


def test_projections_status_lists_each_projection_with_its_position_and_lag(
    database_conninfo, tmp_path, admin
):
    admin.new_tenant()

    result = hostplane("projections", "status", database=database_conninfo, data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["projection", "position", "head", "lag"]
    rows = status_rows(result.stdout)
    assert sorted(rows) == sorted(PROJECTIONS)
    assert set(LISTINGS) <= set(rows)
    for row in rows.values():
        assert row["lag"] == row["head"] - row["position"] >= 0
        assert row["head"] > 0


def test_projections_rebuild_rebuilds_one_projection_while_the_api_keeps_its_data(
    database_conninfo, tmp_path, admin
):
    t = admin.new_tenant()
    key, _ = admin.new_key(t["id"], "management")

    result = hostplane(
        "projections", "rebuild", "keys", database=database_conninfo, data_dir=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert "rebuilt keys" in result.stdout
    assert not any(f"rebuilt {n}" in result.stdout for n in PROJECTIONS if n != "keys")
    r = admin.get(f"/keys/{key['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == key["name"]


def test_projections_rebuild_all_rebuilds_every_projection(database_conninfo, tmp_path, admin):
    t = admin.new_tenant()

    result = hostplane(
        "projections", "rebuild", "--all", database=database_conninfo, data_dir=tmp_path
    )

    assert result.returncode == 0, result.stderr
    for name in PROJECTIONS:
        assert f"rebuilt {name}" in result.stdout
    assert admin.get(f"/tenants/{t['id']}").status_code == 200


def test_projections_rebuild_of_an_unknown_projection_fails_and_names_the_known_ones(
    database_conninfo, tmp_path
):
    result = hostplane(
        "projections", "rebuild", "no-such-model", database=database_conninfo, data_dir=tmp_path
    )

    assert result.returncode != 0
    assert "no-such-model" in result.stdout + result.stderr
    for name in PROJECTIONS:
        assert name in result.stdout + result.stderr


def test_projections_rebuild_without_a_name_or_all_fails(database_conninfo, tmp_path):
    result = hostplane("projections", "rebuild", database=database_conninfo, data_dir=tmp_path)

    assert result.returncode != 0


@pytest.fixture
def fresh_database(database_conninfo: str) -> Iterator[str]:
    """A database of its own, with no admin token in it yet."""
    server = with_dbname(database_conninfo, "postgres")
    dbname = f"hostplane_cli_{uuid.uuid4().hex[:12]}"
    create_database_if_missing(server, dbname)
    yield with_dbname(database_conninfo, dbname)
    drop_database(server, dbname)


@pytest.fixture
def open_container(fresh_database: str, tmp_path: Path) -> Iterator[Any]:
    """Opens hostplane on the fresh database (without HOSTPLANE_ADMIN_TOKEN) when called."""
    opened: list[Container] = []

    def open_() -> Container:
        opened.append(Container.open(make_settings(fresh_database, tmp_path, admin_token=None)))
        return opened[-1]

    yield open_
    for container in opened:
        container.close()


def rotate(database: str, data_dir: Path) -> str:
    result = hostplane(
        "admin-token", "rotate", database=database, data_dir=data_dir, admin_token=None
    )
    assert result.returncode == 0, result.stderr
    tokens = TOKEN_RE.findall(result.stdout)
    assert len(tokens) == 1, result.stdout
    return tokens[0]


def test_admin_token_rotate_prints_a_token_that_authenticates_as_admin(
    fresh_database, open_container, tmp_path
):
    token = rotate(fresh_database, tmp_path)

    assert open_container().auth.authenticate(token, None).is_admin


def test_a_second_admin_token_rotate_invalidates_the_first_token(
    fresh_database, open_container, tmp_path
):
    first = rotate(fresh_database, tmp_path)
    container = open_container()
    assert container.auth.authenticate(first, None).is_admin

    second = rotate(fresh_database, tmp_path)

    assert second != first
    with pytest.raises(AuthenticationError):
        container.auth.authenticate(first, None)
    assert container.auth.authenticate(second, None).is_admin


def test_the_token_printed_on_first_start_stops_working_after_a_rotate(
    fresh_database, open_container, tmp_path
):
    printed = open_container().first_admin_token
    assert printed is not None and printed.startswith("hp_admin_")

    rotated = rotate(fresh_database, tmp_path)

    container = open_container()
    assert container.first_admin_token is None
    with pytest.raises(AuthenticationError):
        container.auth.authenticate(printed, None)
    assert container.auth.authenticate(rotated, None).is_admin


def test_the_token_printed_on_first_start_authenticates_over_http(open_container):
    # Kept in the event store (no HOSTPLANE_ADMIN_TOKEN): authentication reads it there.
    container = open_container()
    container.runner.catch_up_all()
    server = LiveServer(container).start()
    try:
        url = server.url + "/api/v1/tenants"
        printed = {"Authorization": f"Bearer {container.first_admin_token}"}
        assert httpx.get(url, headers=printed).status_code == 200
        made_up = {"Authorization": "Bearer hp_admin_made-up"}
        assert httpx.get(url, headers=made_up).status_code == 401
    finally:
        server.stop()


def test_admin_token_rotate_refuses_while_the_token_comes_from_the_environment(
    database_conninfo, tmp_path
):
    result = hostplane("admin-token", "rotate", database=database_conninfo, data_dir=tmp_path)

    assert result.returncode != 0
    assert "HOSTPLANE_ADMIN_TOKEN" in result.stdout + result.stderr
    assert not TOKEN_RE.search(result.stdout)
