"""The audit log over HTTP: every change, who made it and from where, secrets redacted."""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from eventsourcing.domain import Aggregate

LOCALHOST = "127.0.0.1"
DEPLOY = {"model_id": "llama-3.1-8b", "region": "EU", "provider": "simulated"}


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def audit(api: Any, **params: Any) -> dict[str, Any]:
    return ok(api.get("/audit", params=params))


def every_entry(api: Any, **params: Any) -> list[dict[str, Any]]:
    """All entries matching ``params``, page after page."""
    out, cursor = [], None
    while True:
        page = audit(api, **params, **({"cursor": cursor} if cursor else {}))
        out += page["data"]
        if not page["has_more"]:
            return out
        cursor = page["next_cursor"]


def assert_error(r: Any, status: int, field: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert {"message", "type", "code"} <= error.keys()
    assert field in error["message"] or error.get("param") == field


@dataclass
class Story:
    """A tenant taken through every mutation the API offers, and what each should record."""

    tenant_id: str
    admin_actor: str
    key_actor: str
    expected: list[tuple[str, str, str, str]] = field(default_factory=list)  # oldest first
    secrets: list[str] = field(default_factory=list)
    new_key_id: str = ""
    budget_id: str = ""
    instance_id: str = ""

    def did(self, action: str, actor: str, target_type: str, target_id: str) -> None:
        self.expected.append((action, actor, target_type, target_id))


@pytest.fixture
def story(admin, tenant) -> Story:
    s = Story(tenant.id, "admin", f"key:{tenant.key['id']}", secrets=[tenant.secret])
    s.did("tenant.registered", "admin", "tenant", tenant.id)
    s.did("key.issued", "admin", "key", tenant.key["id"])

    ok(admin.patch(f"/tenants/{tenant.id}/weight", json={"weight": 7}))
    s.did("tenant.weight_changed", "admin", "tenant", tenant.id)

    key, secret = tenant.api.new_key(tenant.id, "router")
    s.new_key_id = key["id"]
    s.secrets.append(secret)
    s.did("key.issued", s.key_actor, "key", key["id"])
    ok(tenant.api.put(f"/keys/{key['id']}/disabled", json={"disabled": True}))
    s.did("key.disabled", s.key_actor, "key", key["id"])

    budget = ok(tenant.api.post("/budgets", json={"limit_eur": "25"}), 201)
    s.budget_id = budget["id"]
    s.did("budget.set", s.key_actor, "budget", budget["id"])
    update = {"limit_eur": "30.5", "period": "weekly", "thresholds": ["0.9"]}
    ok(tenant.api.put(f"/budgets/{budget['id']}", json=update))
    s.did("budget.changed", s.key_actor, "budget", budget["id"])
    ok(tenant.api.delete(f"/budgets/{budget['id']}"))
    s.did("budget.deleted", s.key_actor, "budget", budget["id"])

    ok(tenant.api.delete(f"/keys/{key['id']}"))
    s.did("key.deleted", s.key_actor, "key", key["id"])

    instance = ok(tenant.api.post("/instances", json=DEPLOY), 201)
    s.instance_id = instance["id"]
    s.did("instance.deploy_requested", s.key_actor, "instance", instance["id"])
    s.secrets.append(ok(tenant.api.get(f"/instances/{instance['id']}/api-key"))["api_key"])
    ok(tenant.api.delete(f"/instances/{instance['id']}"))
    s.did("instance.status_changed", s.key_actor, "instance", instance["id"])
    return s


def summary(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    return entry["action"], entry["actor"], entry["target_type"], entry["target_id"]


def by_callers(entries: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """What callers did; background jobs (actor ``system``) may add entries of their own."""
    return [summary(e) for e in entries if e["actor"] != "system"]


def when(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["at"])


# -- what is recorded ----------------------------------------------------------------------


def test_every_mutation_appears_newest_first_with_actor_ip_tenant_and_target(admin, story):
    entries = every_entry(admin, tenant_id=story.tenant_id)

    # No other caller touched this fresh tenant: its log is exactly the story, newest first.
    assert by_callers(entries) == list(reversed(story.expected))
    assert all(e["tenant_id"] == story.tenant_id for e in entries)
    assert all(e["client_ip"] == LOCALHOST for e in entries)
    assert all(e["at"].endswith("Z") for e in entries)
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


def test_an_entry_shows_the_changed_fields(admin, story):
    weight = audit(admin, target_id=story.tenant_id, action="tenant.weight_changed")["data"]
    assert [e["changes"] for e in weight] == [{"weight": 7}]

    changed = audit(admin, target_id=story.budget_id, action="budget.changed")["data"][0]
    assert changed["changes"] == {"limit_eur": "30.5", "period": "weekly", "thresholds": ["0.9"]}

    destroyed = audit(admin, target_id=story.instance_id, action="instance.status_changed")
    assert destroyed["data"][0]["changes"]["status"] == "destroyed"

    registered = audit(admin, target_id=story.tenant_id, action="tenant.registered")["data"][0]
    assert registered["changes"]["weight"] == 100
    assert "tokens_per_minute" in registered["changes"]  # a quota, not a token: not redacted


# -- paging and filters --------------------------------------------------------------------


def test_pages_follow_the_cursor_and_yield_every_entry_exactly_once(admin, story):
    whole = audit(admin, tenant_id=story.tenant_id, limit=500)
    assert whole["has_more"] is False and whole["next_cursor"] is None

    paged = every_entry(admin, tenant_id=story.tenant_id, limit=3)

    assert [e["id"] for e in paged] == [e["id"] for e in whole["data"]]
    assert by_callers(paged) == list(reversed(story.expected))


def test_a_full_page_says_there_is_more(admin, story):
    page = audit(admin, tenant_id=story.tenant_id, limit=2)
    assert len(page["data"]) == 2
    assert page["has_more"] is True and page["next_cursor"]


def test_filtering_by_actor_keeps_only_that_actors_entries(admin, story):
    entries = every_entry(admin, tenant_id=story.tenant_id, actor=story.key_actor)
    assert [summary(e) for e in entries] == [
        x for x in reversed(story.expected) if x[1] == story.key_actor
    ]


def test_filtering_by_action_and_target(admin, story):
    disabled = every_entry(admin, action="key.disabled", target_id=story.new_key_id)
    assert [summary(e) for e in disabled] == [
        ("key.disabled", story.key_actor, "key", story.new_key_id)
    ]
    about_key = every_entry(admin, target_id=story.new_key_id)
    assert [e["action"] for e in about_key] == ["key.deleted", "key.disabled", "key.issued"]
    budgets = every_entry(admin, tenant_id=story.tenant_id, target_type="budget")
    assert [e["action"] for e in budgets] == ["budget.deleted", "budget.changed", "budget.set"]


def test_since_and_until_bound_the_time_half_open(admin, story):
    entries = every_entry(admin, tenant_id=story.tenant_id)
    middle = entries[len(entries) // 2]
    at = middle["at"]

    since = every_entry(admin, tenant_id=story.tenant_id, since=at)
    until = every_entry(admin, tenant_id=story.tenant_id, until=at)
    same = every_entry(admin, tenant_id=story.tenant_id, since=at, until=at)

    assert middle["id"] in {e["id"] for e in since}
    assert middle["id"] not in {e["id"] for e in until}
    assert all(when(e) >= when(middle) for e in since)
    assert all(when(e) < when(middle) for e in until)
    assert {e["id"] for e in since} | {e["id"] for e in until} == {e["id"] for e in entries}
    assert same == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-01T00:00:00Z"}, "until"),
        ({"since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "until"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"target_id": "nope"}, "target_id"),
        ({"limit": 501}, "limit"),
    ],
)
def test_bad_query_parameters_answer_400(admin, params, field):
    assert_error(admin.get("/audit", params=params), 400, field)


# -- who sees what -------------------------------------------------------------------------


def test_a_management_key_sees_only_its_own_tenants_entries(story, tenant, other_tenant):
    mine = every_entry(tenant.api, limit=500)
    assert mine and all(e["tenant_id"] == tenant.id for e in mine)
    assert by_callers(mine) == list(reversed(story.expected))

    theirs = every_entry(other_tenant.api)
    assert theirs and story.tenant_id not in {e["tenant_id"] for e in theirs}


def test_a_management_key_filtering_on_another_tenant_gets_an_empty_page(tenant, other_tenant):
    page = audit(tenant.api, tenant_id=other_tenant.id)
    assert page == {"data": [], "has_more": False, "next_cursor": None}
    assert audit(tenant.api, target_id=other_tenant.key["id"])["data"] == []


def test_the_admin_sees_every_tenant(admin, tenant, other_tenant):
    tenants = {e["tenant_id"] for e in every_entry(admin, action="tenant.registered")}
    assert {tenant.id, other_tenant.id} <= tenants


# -- secrets -------------------------------------------------------------------------------


def test_no_secret_appears_in_any_audit_response(admin, tenant, story):
    texts = [admin.get("/audit", params={"limit": 500}).text]
    for api, params in ((admin, {"tenant_id": story.tenant_id}), (tenant.api, {})):
        cursor = None
        while True:
            page = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            r = api.get("/audit", params={**params, **page})
            texts.append(r.text)
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
    text = "\n".join(texts)

    for secret in story.secrets:
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text


def test_stored_secrets_appear_only_as_redacted(admin, story):
    issued = every_entry(admin, tenant_id=story.tenant_id, action="key.issued")
    assert len(issued) == 2
    assert all(e["changes"]["token_hash"] == "[redacted]" for e in issued)
    assert all(e["changes"]["key_prefix"] for e in issued)
    deployed = every_entry(admin, target_id=story.instance_id, action="instance.deploy_requested")
    assert deployed[0]["changes"]["api_key_ciphertext"] == "[redacted]"
    registered = every_entry(admin, target_id=story.tenant_id, action="tenant.registered")
    assert registered[0]["changes"]["wrapped_data_key"] == "[redacted]"


# -- coverage and rebuild ------------------------------------------------------------------


def test_every_event_of_every_aggregate_but_the_name_index_is_audited():
    import domain
    from projections.readmodels.audit import AUDITED, AuditProjection, event_classes

    aggregates = set()
    for info in pkgutil.iter_modules(domain.__path__):
        module = importlib.import_module(f"domain.{info.name}")
        aggregates |= {
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Aggregate) and v.__module__ == module.__name__
        }
    assert {a.__name__ for a in aggregates - set(AUDITED)} == {"NameIndex"}
    for aggregate in AUDITED:
        assert set(event_classes(aggregate)) <= AuditProjection.handlers.keys()


def test_a_rebuild_of_the_audit_log_yields_identical_rows(admin, story, container):
    audit(admin, limit=1)  # reading waits until the live copy has caught up

    def rows(upto: int) -> list[Any]:
        # Only what both copies have seen: a background job may write meanwhile.
        with container.pool.connection() as conn:
            return conn.execute(
                "SELECT * FROM rm_audit.entries WHERE position <= %s ORDER BY position", (upto,)
            ).fetchall()

    upto = container.runner.position("audit")
    before = rows(upto)
    assert before

    container.runner.rebuild("audit")

    assert rows(upto) == before
    assert audit(admin, tenant_id=story.tenant_id)["data"]
