"""The event store: loading and saving aggregates for every group of use cases."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Recording,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import RecordConflictError, StoredEvent, Transcoder
from eventsourcing.utils import retry

from application.auth import Principal
from application.errors import ConcurrentModificationError, NotFoundError
from application.idempotency import ClaimWrite, current_claim
from application.ports import SecretBox
from application.transcoder import OrjsonTranscoder

A = TypeVar("A", bound=Aggregate)
F = TypeVar("F", bound=Callable[..., Any])

# How often a use case whose save lost a race is made (``retried_on_conflict``).
CONFLICT_ATTEMPTS = 3


def retried_on_conflict(use_case: F) -> F:
    """A use case made again from a fresh load when its save lost a race with another writer
    (``ConcurrentModificationError``), up to ``CONFLICT_ATTEMPTS`` times in all; the last
    conflict is raised (409). For use cases whose outcome does not depend on who wrote first."""
    return cast(F, retry(ConcurrentModificationError, max_attempts=CONFLICT_ATTEMPTS)(use_case))


class EventStore(Application[UUID]):
    """The one eventsourcing ``Application``: every use case loads and commits through it.

    It holds no use case itself; each group of use cases (``application.tenants``,
    ``application.keys``, ...) receives it in its constructor. The name picks the event tables
    (``hostplane_events``) and the ``HOSTPLANE_`` settings prefix: it must not change.
    """

    name = "Hostplane"

    def __init__(
        self, env: dict[str, str] | None = None, *, secret_box: SecretBox | None = None
    ) -> None:
        super().__init__(env)
        self._secret_box = secret_box  # seals a claimed request's once-shown secret
        # The highest notification id this process has written (read-your-writes shortcuts).
        self.last_written = 0
        self._written_lock = threading.Lock()
        # Called with the aggregates of each save, once committed (the gateway's key versions).
        self.on_commit: list[Callable[[list[Aggregate]], None]] = []

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    # -- loading and saving -------------------------------------------------------------

    def load(self, cls: type[A], aggregate_id: UUID, kind: str) -> A:
        """Load an aggregate of type ``cls``; anything else with that id is "not found"."""
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError(kind, aggregate_id) from None
        if not isinstance(aggregate, cls):
            raise NotFoundError(kind, aggregate_id)
        return aggregate

    def load_owned(
        self,
        principal: Principal,
        cls: type[A],
        aggregate_id: UUID,
        kind: str,
        gone: Callable[[A], bool] = lambda aggregate: bool(getattr(aggregate, "deleted", False)),
    ) -> A:
        """A tenant-owned aggregate the caller may see; another tenant's, or a gone one, is 404."""
        aggregate = self.load(cls, aggregate_id, kind)
        principal.check_tenant(aggregate.tenant_id, kind, aggregate_id)  # type: ignore[attr-defined]
        if gone(aggregate):  # GET answers 404 for it, so PUT and DELETE must too
            raise NotFoundError(kind, aggregate_id)
        return aggregate

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, cls) else None

    def commit(
        self, *aggregates: Aggregate | None, shown_once: str | None = None, **kwargs: Any
    ) -> int | None:
        """Save aggregates atomically; returns the last notification id written.

        Within a request that holds an Idempotency-Key claim (``current_claim``), the save also
        marks the claim committed, in the same statement, with ``shown_once`` (a secret the
        response shows this once) sealed: a retry after a crash can then still answer.
        """
        claim = current_claim.get()
        if claim is not None:
            kwargs["idempotency_claim"] = ClaimWrite(claim, self._seal(shown_once))
        try:
            recordings = self.save(*aggregates, **kwargs)
        except RecordConflictError:
            raise ConcurrentModificationError(
                "the resource was changed by another request; retry"
            ) from None
        written = max((r.notification.id for r in recordings), default=None)
        self.committed([a for a in aggregates if a is not None], written)
        return written

    def stage(self, *aggregates: Aggregate) -> list[StoredEvent]:
        """The pending events of ``aggregates`` as they are stored, for a caller that writes
        them itself (``HostplaneRecorder.insert_params``), then calls ``committed``."""
        return [self.mapper.to_stored_event(e) for a in aggregates for e in a.collect_events()]

    def committed(self, aggregates: list[Aggregate], written: int | None) -> None:
        """``aggregates`` were written, the last of their events at notification ``written``."""
        if written is not None:
            with self._written_lock:
                self.last_written = max(self.last_written, written)
        for listener in self.on_commit:
            listener(aggregates)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's ``save``, collecting the pending events by duck typing: the library
        asks two runtime-checkable Protocols of each object (``isinstance`` of such a Protocol
        inspects its members: ~50 µs a save on Python 3.11, a fifth of a lone usage write's
        Python time). An object with ``collect_events`` is an aggregate, anything else an
        event, as the library decides."""
        processing = ProcessingEvent[UUID]()
        for obj in objs:
            if obj is None:
                continue
            collect = getattr(obj, "collect_events", None)
            if collect is None:
                processing.events.append(obj)
                continue
            processing.events.extend(collect())
            processing.aggregates[obj.id] = obj
        processing.saved_kwargs.update(kwargs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        self.notify(processing.events)  # the library's deprecated hook, as its save calls it
        return recordings

    def _seal(self, secret: str | None) -> tuple[bytes, bytes] | None:
        if secret is None:
            return None
        if self._secret_box is None:
            raise RuntimeError("an event store without a SecretBox can't seal a secret")
        wrapped = self._secret_box.new_wrapped_data_key()
        return wrapped, self._secret_box.encrypt(wrapped, secret)
