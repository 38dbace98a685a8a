"""The master key is checked against the one the database was initialised with."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from interfaces.crypto import MasterKeyError, checked_master_key
from interfaces.db.database import create_database_if_missing, drop_database, with_dbname


@pytest.fixture
def new_database(database_conninfo: str) -> Iterator[str]:
    dbname = f"hostplane_key_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    yield with_dbname(database_conninfo, dbname)
    drop_database(database_conninfo, dbname)


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_a_lone_node_without_a_key_makes_one_and_uses_it_at_every_start(new_database, tmp_path):
    first = checked_master_key(new_database, None, tmp_path)
    assert (tmp_path / "master.key").exists()
    assert checked_master_key(new_database, None, tmp_path) == first


def test_the_database_records_a_check_value_never_the_key_itself(new_database, tmp_path):
    key = new_key()
    checked_master_key(new_database, key, tmp_path)
    with psycopg.connect(new_database) as conn:
        stored = " ".join(r[0] for r in conn.execute("SELECT value FROM hostplane_meta"))
    assert key not in stored and base64.b64decode(key).hex() not in stored


def test_another_key_on_an_initialised_database_is_refused(new_database, tmp_path):
    checked_master_key(new_database, new_key(), tmp_path / "one")
    with pytest.raises(MasterKeyError, match="not the master key this database"):
        checked_master_key(new_database, new_key(), tmp_path / "two")


def test_a_node_without_a_key_on_an_initialised_database_makes_none_and_is_refused(
    new_database, tmp_path
):
    checked_master_key(new_database, new_key(), tmp_path / "one")
    with pytest.raises(MasterKeyError, match="HOSTPLANE_MASTER_KEY is not set"):
        checked_master_key(new_database, None, tmp_path / "two")
    assert not (tmp_path / "two" / "master.key").exists()


@pytest.mark.parametrize("malformed", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_key_is_refused_naming_the_variable(new_database, tmp_path, malformed):
    with pytest.raises(MasterKeyError, match="HOSTPLANE_MASTER_KEY is not a master key"):
        checked_master_key(new_database, malformed, tmp_path)
