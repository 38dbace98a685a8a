"""The JWT signing secret is kept like the master key: checked against the database's first."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from application.errors import AuthenticationError
from interfaces.crypto import MasterKeyError
from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from interfaces.signin import JwtTokens, checked_jwt_secret


@pytest.fixture
def new_database(database_conninfo: str) -> Iterator[str]:
    dbname = f"hostplane_jwt_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    yield with_dbname(database_conninfo, dbname)
    drop_database(database_conninfo, dbname)


def test_without_a_secret_every_node_with_the_master_key_signs_alike(new_database):
    master = os.urandom(32)
    first = checked_jwt_secret(new_database, None, master)

    assert checked_jwt_secret(new_database, None, master) == first
    token = JwtTokens(first).issue(uuid.uuid4(), uuid.uuid4(), datetime.now(UTC))
    assert JwtTokens(checked_jwt_secret(new_database, None, master)).read(token, datetime.now(UTC))


def test_a_node_with_another_secret_is_refused(new_database):
    checked_jwt_secret(new_database, "s" * 40, os.urandom(32))

    with pytest.raises(MasterKeyError, match="HOSTPLANE_JWT_SECRET is not the JWT secret"):
        checked_jwt_secret(new_database, "t" * 40, os.urandom(32))


def test_the_database_keeps_a_check_value_never_the_secret(new_database):
    secret = "a-secret-of-forty-characters-0123456789"
    checked_jwt_secret(new_database, secret, os.urandom(32))

    with psycopg.connect(new_database) as conn:
        stored = " ".join(r[0] for r in conn.execute("SELECT value FROM hostplane_meta"))
    assert secret not in stored


def test_a_short_secret_is_refused():
    with pytest.raises(MasterKeyError, match="at least 32"):
        checked_jwt_secret("postgresql://unused", "short", os.urandom(32))


def test_a_token_signed_with_another_secret_is_refused():
    token = JwtTokens(b"a" * 32).issue(uuid.uuid4(), uuid.uuid4(), datetime.now(UTC))

    with pytest.raises(AuthenticationError):
        JwtTokens(b"b" * 32).read(token, datetime.now(UTC))
