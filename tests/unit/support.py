"""Small helpers shared by the unit tests: actors, random names, replaying events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import uuid4

from eventsourcing.persistence import Mapper

from application.transcoder import OrjsonTranscoder
from domain.base import Actor


def an_actor(ip: str | None = "203.0.113.7") -> Actor:
    return Actor(id=f"key:{uuid4()}", ip=ip)


def random_name(prefix: str = "name") -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


def replay(events: Iterable[Any]) -> Any:
    """Rebuild an aggregate from its events, as a repository would."""
    aggregate = None
    for domain_event in events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


def through_store(events: Iterable[Any]) -> list[Any]:
    """Pass events through the stored-event mapper with the orjson transcoder, no database."""
    mapper = Mapper(transcoder=OrjsonTranscoder())
    return [mapper.to_domain_event(mapper.to_stored_event(e)) for e in events]
