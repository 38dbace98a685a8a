"""Usage batches in an export, read from their stored JSON: same lines and bill as the events."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import orjson
from eventsourcing.persistence import Mapper
from hypothesis import given, settings
from hypothesis import strategies as st

from application.transcoder import OrjsonTranscoder
from domain.timewindow import floor_day
from domain.usage import UsageBatch, UsageInput, iter_lines
from projections.reports.event_billing import EventBilling
from projections.reports.replay import event_line, stored_usage_line
from tests.unit.support import an_actor, through_store

START = datetime(2025, 10, 30, 23, 59, 58, tzinfo=UTC)
PRICES = [
    (Decimal("0.15"), Decimal("0.60")),
    (Decimal("1.00"), Decimal("2.5")),
    (Decimal(3), Decimal(0)),
]


def a_batch(records: list[tuple[int, int, int, int]], actor: Any = None) -> UsageBatch.Recorded:
    """A new usage event of records (seconds after START, price index, prompt, completion)."""
    tenant_id, key_id = uuid4(), uuid4()
    rated = [
        (
            UsageInput(
                uuid4().hex,
                key_id,
                f"m{p}",
                prompt,
                out,
                "success",
                10,
                START + timedelta(seconds=s),
            ),
            *PRICES[p],
        )
        for s, p, prompt, out in records
    ]
    batch = UsageBatch.record(tenant_id, rated, actor or an_actor())
    (event,) = batch.collect_events()
    return event


def stored_state(event: Any) -> dict[str, Any]:
    return orjson.loads(Mapper(transcoder=OrjsonTranscoder()).to_stored_event(event).state)


def test_a_usage_batch_read_from_its_stored_json_gives_the_same_line_as_its_event():
    event = a_batch([(0, 0, 900, 300), (5, 1, 10, 0)])
    (decoded,) = through_store([event])

    line = stored_usage_line(41, str(event.originator_id), 1, stored_state(event))

    assert line is not None
    assert orjson.dumps(line) == orjson.dumps(event_line(41, decoded))


def test_a_usage_batch_stored_in_an_unknown_shape_is_left_to_the_events_mapper():
    state = stored_state(a_batch([(0, 0, 1, 1)]))

    with_new_field = {**state, "region": "EU"}
    upcast = {**state, "class_version": 2}
    other_offset = {
        **state,
        "timestamp": {"_type_": "datetime", "_data_": "2025-10-30T01:00:00+02:00"},
    }
    untagged_tenant = {**state, "tenant_id": state["tenant_id"]["_data_"]}

    for shape in (with_new_field, upcast, other_offset, untagged_tenant):
        assert stored_usage_line(41, str(uuid4()), 1, shape) is None


def bill_per_record(events: list[Any]) -> dict[datetime, tuple[int, int, int, Decimal]]:
    days: dict[datetime, list[Any]] = defaultdict(lambda: [0, 0, 0, Decimal(0)])
    for event in events:
        for line in iter_lines(event):
            day = days[floor_day(line.occurred_at)]
            day[0] += 1
            day[1] += line.prompt_tokens
            day[2] += line.completion_tokens
            day[3] += line.cost
    return {d: tuple(v) for d, v in sorted(days.items())}


records_strategy = st.lists(
    st.tuples(
        st.integers(-3 * 86_400, 40 * 86_400),
        st.integers(0, len(PRICES) - 1),
        st.integers(0, 10**7),
        st.integers(0, 10**6),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(records_strategy, min_size=1, max_size=5))
def test_usage_is_billed_per_day_as_if_every_record_were_rated_alone(batches):
    events = [a_batch(records) for records in batches]
    bill = EventBilling()

    for event in events:
        bill.apply(event)

    ours = {
        d: (s.requests, s.prompt_tokens, s.completion_tokens, s.token_cost)
        for d, s in bill.by_day().items()
    }
    assert ours == bill_per_record(events)
