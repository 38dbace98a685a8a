"""The event store's write notifications, and how the gateway's key versions read them: a
write that holds no key or user event needs no read of the log."""

from __future__ import annotations

from interfaces.db.eventstore import MAX_TAG, aggregate_of, parse_notification, write_tag
from interfaces.gateway.versions import StreamVersions


def test_a_write_is_tagged_with_the_aggregates_it_holds_events_of():
    topics = [
        "domain.usage:UsageBatch.Recorded",
        "domain.apikey:ApiKey.Issued",
        "domain.usage:UsageBatch.Recorded",
    ]

    assert write_tag(map(aggregate_of, topics)) == "domain.apikey:ApiKey,domain.usage:UsageBatch"


def test_a_tag_too_long_for_a_notification_says_any():
    topics = [f"domain.m{i}:Aggregate{i}.Happened" for i in range(MAX_TAG // 20)]

    assert write_tag(map(aggregate_of, topics)) == "*"


def test_a_notification_reads_back_as_its_last_id_and_aggregates():
    assert parse_notification("42 domain.usage:UsageBatch") == (
        42,
        frozenset({"domain.usage:UsageBatch"}),
    )
    assert parse_notification("") is None  # a NOTIFY without payload (another writer's)
    assert parse_notification("hello world") is None


def test_usage_writes_move_the_key_versions_on_without_a_read():
    assert StreamVersions.skippable(["7 domain.usage:UsageBatch", "9 domain.usage:UsageBatch"]) == 9


def test_a_write_of_a_key_a_user_or_of_anything_is_read():
    for tag in ("domain.apikey:ApiKey", "domain.user:User", "*"):
        assert StreamVersions.skippable(["7 domain.usage:UsageBatch", f"8 {tag}"]) is None
    assert StreamVersions.skippable(["7 domain.usage:UsageBatch", ""]) is None


def test_the_projections_pace_usage_writes_only():
    """Under a stream of writes the projections apply one batch per 50 ms; a write that
    someone reads right after (a key, a tenant) is applied at once."""
    from interfaces.bootstrap import applied_at_once

    assert applied_at_once("7 domain.usage:UsageBatch") is False
    assert applied_at_once("8 domain.apikey:ApiKey") is True
    assert applied_at_once("9 domain.apikey:ApiKey,domain.usage:UsageBatch") is True
    assert applied_at_once("") is True  # a write notified without a payload: at once
