"""Where projections read events from: the event store's table, its channel and its mapper."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Mapper


@dataclass
class EventSource:
    """Where events are read from: the application's events table and its mapper."""

    table: str  # schema-qualified, already quoted
    channel: str  # the channel the event store NOTIFYs on each write
    mapper: Mapper[Any]
    # Whether a write (by its notification's payload) is applied at once even under a stream
    # of writes (``Worker._pace``): a write someone reads right after (a key, a tenant), unlike
    # the gateway's usage batches. By default every write is.
    at_once: Callable[[str], bool] = lambda _payload: True
    # The channel NOTIFYed on each write but those ``at_once`` says may wait (the event store's
    # ``changes_channel``), if there is one: the worker is then woken at once only by these
    # (``Worker._listen``).
    changes_channel: str | None = None

    def max_id_sql(self) -> str:
        return f"SELECT max(notification_id) AS m FROM {self.table}"

    def log_size_sql(self) -> str:
        """How many events the log holds, and its head (ids have gaps: rolled-back writes)."""
        return f"SELECT count(*) AS count, max(notification_id) AS head FROM {self.table}"

    def positions_sql(self, schemas: Sequence[str]) -> str:
        """Each schema's position beside the log's head, in one round trip."""
        union = " UNION ALL ".join(
            f"SELECT '{s}' AS schema, position FROM {s}.tracking" for s in schemas
        )
        return f"SELECT t.schema, t.position, ({self.max_id_sql()}) AS head FROM ({union}) t"

    def current_head_sql(self, schemas: Sequence[str]) -> str:
        """The log's head if every one of these schemas has reached it, else NULL (one row)."""
        return (
            "SELECT CASE WHEN min(p.position) >= max(p.head) THEN max(p.head) END"
            f" FROM ({self.positions_sql(schemas)}) p"
        )

    def select_sql(self) -> str:
        return (
            "SELECT notification_id, originator_id, originator_version, topic, state"
            f" FROM {self.table} WHERE notification_id > %s AND notification_id <= %s"
            " AND topic = ANY(%s) ORDER BY notification_id LIMIT %s"
        )
