"""Usage records have names in the code and stay plain JSON lists in the event store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper, StoredEvent

from application.transcoder import OrjsonTranscoder
from domain.base import Actor
from domain.usage import StoredDetail, StoredRecord, UsageBatch, UsageInput, iter_lines, to_us
from projections.reports.replay import event_line, stored_usage_line

KEY = UUID("5d0e7c4e-1b7a-4a51-9a5e-3c1f2b8d9e01")
INSTANCE = UUID("b7580c2a-6f0e-4c1d-8e2a-9d3f4a5b6c7d")
TENANT = UUID("8c41d2e3-4f5a-4b6c-8d7e-9f0a1b2c3d4e")
BATCH = UUID("727e3616-c278-48ab-8dba-8bb5ba175f01")
FIRST_AT = datetime(2025, 10, 30, 23, 59, 58, 250000, tzinfo=UTC)
SECOND_AT = datetime(2025, 10, 31, 0, 0, 3, tzinfo=UTC)
# A usage event as hostplane stored it before its records were named in the code.
STORED_BEFORE = (
    b'{"timestamp":{"_type_":"datetime","_data_":"2025-10-31T00:00:05.163209+00:00"},'
    b'"originator_topic":"domain.usage:UsageBatch",'
    b'"tenant_id":{"_type_":"uuid","_data_":"8c41d2e34f5a4b6c8d7e9f0a1b2c3d4e"},'
    b'"rates":[["llama-3.1-8b","0.15","0.60"],["gpt-4o-mini","2.5","10"]],'
    b'"records":[["req-1","5d0e7c4e-1b7a-4a51-9a5e-3c1f2b8d9e01",0,900,300,100,true,120,'
    b'1761868798250000,"b7580c2a-6f0e-4c1d-8e2a-9d3f4a5b6c7d"],'
    b'["req-2","5d0e7c4e-1b7a-4a51-9a5e-3c1f2b8d9e01",1,10,0,0,false,7,1761868803000000,null]],'
    b'"actor":{"_type_":"actor","_data_":["key:5d0e","10.0.0.9"]}}'
)
MAPPER = Mapper(transcoder=OrjsonTranscoder())


def stored_before() -> StoredEvent:
    return StoredEvent(
        originator_id=BATCH,
        originator_version=1,
        topic="domain.usage:UsageBatch.Recorded",
        state=STORED_BEFORE,
    )


def the_same_batch_recorded_now() -> UsageBatch.Recorded:
    rated = [
        (
            UsageInput(
                request_id="req-1",
                key_id=KEY,
                model="llama-3.1-8b",
                prompt_tokens=900,
                completion_tokens=300,
                status="success",
                latency_ms=120,
                occurred_at=FIRST_AT,
                instance_id=INSTANCE,
                cached_tokens=100,
            ),
            Decimal("0.15"),
            Decimal("0.60"),
        ),
        (
            UsageInput(
                request_id="req-2",
                key_id=KEY,
                model="gpt-4o-mini",
                prompt_tokens=10,
                completion_tokens=0,
                status="error",
                latency_ms=7,
                occurred_at=SECOND_AT,
            ),
            Decimal("2.5"),
            Decimal("10"),
        ),
    ]
    batch = UsageBatch.record(TENANT, rated, Actor(id="key:5d0e", ip="10.0.0.9"))
    (event,) = batch.collect_events()
    return event


def test_a_usage_batch_is_stored_in_the_same_json_as_before():
    stored = orjson.loads(MAPPER.to_stored_event(the_same_batch_recorded_now()).state)
    before = orjson.loads(STORED_BEFORE)

    assert (stored["rates"], stored["records"]) == (before["rates"], before["records"])
    assert all(type(record) is list for record in stored["records"])


def test_a_usage_event_stored_before_loads_with_its_records_fields_named():
    event = MAPPER.to_domain_event(stored_before())

    first, second = (StoredRecord._make(r) for r in event.records)

    assert first == StoredRecord(
        request_id="req-1",
        key_id=str(KEY),
        rate=0,
        prompt_tokens=900,
        completion_tokens=300,
        cached_tokens=100,
        success=True,
        latency_ms=120,
        occurred_at_us=to_us(FIRST_AT),
        instance_id=str(INSTANCE),
    )
    assert (second.rate, second.success, second.instance_id) == (1, False, None)
    lines = list(iter_lines(event))
    assert [(line.occurred_at, line.instance_id, line.cached_tokens) for line in lines] == [
        (FIRST_AT, INSTANCE, 100),
        (SECOND_AT, None, 0),
    ]
    assert lines[0].cost == Decimal("0.000315")


def test_a_usage_event_stored_before_exports_the_same_line_either_way():
    event = MAPPER.to_domain_event(stored_before())

    line = stored_usage_line(9, str(BATCH), 1, orjson.loads(STORED_BEFORE))

    assert line is not None
    assert orjson.dumps(line) == orjson.dumps(event_line(9, event))
    assert line["data"]["records"] == orjson.loads(STORED_BEFORE)["records"]


def test_an_old_record_reads_as_saying_nothing_more_and_a_cancelled_one_keeps_its_status():
    event = MAPPER.to_domain_event(stored_before())
    cancelled = [*event.records[0], "cancelled"]  # as stored before vendor and the rest
    event.records.append(cancelled)

    lines = list(iter_lines(event))

    assert [line.detail for line in lines[:2]] == [StoredDetail(), StoredDetail()]
    assert [line.status for line in lines] == ["success", "error", "cancelled"]
    assert lines[2].detail == StoredDetail(status="cancelled")


def test_a_records_detail_is_stored_after_its_ten_fields_without_trailing_defaults():
    def stored(**detail: object) -> list[object]:
        fields = {"status": "success", **detail}
        r = UsageInput("r", KEY, "m", 1, 1, latency_ms=50, occurred_at=FIRST_AT, **fields)  # type: ignore[arg-type]
        (event,) = UsageBatch.record(
            TENANT, [(r, Decimal(1), Decimal(1))], Actor("a")
        ).collect_events()
        return event.records[0][10:]

    assert stored() == []
    assert stored(vendor="openai") == [None, "openai"]
    assert stored(streamed=True, ttft_ms=0) == [None, None, 0, True]
    assert stored(cache_hit=True) == [None, None, None, False, False, True]
    assert stored(status="cancelled", vendor="openai", streamed=True, estimated=True) == [
        "cancelled",
        "openai",
        None,
        True,
        True,
    ]
