"""Events stored before the restructuring of session 9 still load into the same aggregates.

``fixtures/events_session9_start.json`` holds the stored form (topic and state bytes) of a few
events, written by hostplane at the commit the restructuring started from (``c495ef0``). An
event class that moves must keep its old topic registered (``register_topic``), or these fail.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from application.transcoder import OrjsonTranscoder
from tests.unit.support import replay

FIXTURE = Path(__file__).parent / "fixtures" / "events_session9_start.json"


def stored_events() -> list[StoredEvent]:
    return [
        StoredEvent(
            originator_id=UUID(r["originator_id"]),
            originator_version=r["originator_version"],
            topic=r["topic"],
            state=base64.b64decode(r["state"]),
        )
        for r in json.loads(FIXTURE.read_text())
    ]


def aggregates() -> dict[str, object]:
    mapper = Mapper(transcoder=OrjsonTranscoder())
    by_id: dict[UUID, list[object]] = {}
    for stored in stored_events():
        by_id.setdefault(stored.originator_id, []).append(mapper.to_domain_event(stored))
    replayed = [replay(events) for events in by_id.values()]
    return {type(a).__name__: a for a in replayed}


def test_every_stored_topic_still_names_an_event_class():
    assert {type(a).__name__ for a in aggregates().values()} == {
        "Tenant",
        "ApiKey",
        "Webhook",
        "NameIndex",
    }


def test_the_old_events_replay_into_the_state_they_recorded():
    loaded = aggregates()
    tenant, key, hook = loaded["Tenant"], loaded["ApiKey"], loaded["Webhook"]

    assert (tenant.name, tenant.weight, tenant.credits) == ("acme", 5, Decimal("12.50"))
    assert key.tenant_id == tenant.id and key.disabled is True
    assert key.allowed_models == ["llama-3.1-8b"] and key.sovereignty_mode is True
    assert key.expires_at.isoformat() == "2026-12-04T00:00:00+00:00"
    assert key.rpm_limit is None  # a field added later: a key issued before it has none
    assert key.user_id is None  # likewise the user of a personal access token
    assert hook.deleted is True and hook.url == "https://example.com/hook"
    assert loaded["NameIndex"].owner_id == key.id
