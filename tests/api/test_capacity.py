"""Capacity (seed 004, issue 19): the live max_in_flight, read and set by the operator, audited.

The setting is one for the whole installation, shared by every test of the session: each test
here puts back the default it found, so other tests see the capacity they expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import assert_error, error_of, names_field


@pytest.fixture
def restored(admin, container) -> Iterator[int]:
    """The default max_in_flight; the test may change the setting, which is set back after."""
    default = container.settings.max_in_flight
    yield default
    assert admin.put("/capacity", json={"max_in_flight": default}).status_code == 200


def entries(admin: Any, **params: Any) -> list[dict[str, Any]]:
    r = admin.get("/audit", params={"target_type": "capacity", **params})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_the_capacity_is_the_configured_default_until_it_is_set(admin, container):
    r = admin.get("/capacity")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["max_in_flight"] == container.settings.max_in_flight or not body["is_default"]
    if body["is_default"]:
        assert body["updated_at"] is None


def test_setting_the_capacity_changes_what_every_later_read_answers(admin, restored):
    r = admin.put("/capacity", json={"max_in_flight": 7})

    assert r.status_code == 200, r.text
    assert (r.json()["max_in_flight"], r.json()["is_default"]) == (7, False)
    assert r.json()["updated_at"].endswith("Z")
    assert admin.get("/capacity").json()["max_in_flight"] == 7


def test_each_change_of_the_capacity_is_audited_with_its_value_and_actor(admin, restored):
    before = {e["id"] for e in entries(admin)}
    for value in (11, 12):
        assert admin.put("/capacity", json={"max_in_flight": value}).status_code == 200

    new = [e for e in entries(admin) if e["id"] not in before]
    assert [e["changes"]["max_in_flight"] for e in new] == [12, 11]  # newest first
    assert all(e["actor"] == "admin" and e["tenant_id"] is None for e in new)
    assert {e["action"] for e in new} <= {"capacity.configured", "capacity.max_in_flight_changed"}


def test_setting_the_same_capacity_again_records_nothing(admin, restored):
    assert admin.put("/capacity", json={"max_in_flight": 13}).status_code == 200
    before = len(entries(admin))

    assert admin.put("/capacity", json={"max_in_flight": 13}).status_code == 200
    assert len(entries(admin)) == before


@pytest.mark.parametrize("value", [0, -1, 1_000_001, "8", 2.5, True, None])
def test_a_capacity_that_is_not_a_positive_whole_number_is_a_400(admin, value):
    error = error_of(admin.put("/capacity", json={"max_in_flight": value}), 400)

    assert names_field(error, "max_in_flight")


def test_a_capacity_body_with_unknown_fields_is_a_400(admin):
    assert_error(admin.put("/capacity", json={"max_in_flight": 4, "per_pod": True}), 400)


def test_a_tenants_management_key_may_neither_read_nor_set_the_capacity(tenant):
    error_of(tenant.api.get("/capacity"), 403)
    error_of(tenant.api.put("/capacity", json={"max_in_flight": 1}), 403)


def test_a_router_key_and_no_token_are_refused(admin, tenant, anonymous):
    _, secret = admin.new_key(tenant.id, "router")

    error_of(admin.as_token(secret).get("/capacity"), 403)
    error_of(anonymous.put("/capacity", json={"max_in_flight": 1}), 401)
