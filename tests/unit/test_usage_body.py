"""The fast reading of usage batches gives what pydantic's validation gives, or defers to it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.usage import UsageInput
from interfaces.http.usage_body import UsageBatchIn, parse_usage_batch


def by_pydantic(body: bytes) -> list[UsageInput]:
    return [UsageInput(**r.model_dump()) for r in UsageBatchIn.model_validate_json(body).records]


times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.astimezone(timezone(timedelta(hours=2))) if t.second % 2 else t)
records = st.fixed_dictionaries(
    {
        "request_id": st.text(min_size=1, max_size=20),
        "key_id": st.uuids().map(str),
        "model": st.text(min_size=1, max_size=10),
        "prompt_tokens": st.integers(0, 10**9),
        "completion_tokens": st.integers(0, 10**9),
        "status": st.sampled_from(["success", "error"]),
        "occurred_at": times.map(lambda t: t.isoformat().replace("+00:00", "Z")),
    },
    optional={
        "latency_ms": st.integers(0, 10**6),
        "instance_id": st.one_of(st.none(), st.uuids().map(str)),
        "cached_tokens": st.integers(0, 10**6),
        "vendor": st.one_of(st.none(), st.sampled_from(["openai", "mistral"])),
        "ttft_ms": st.one_of(st.none(), st.integers(0, 10**6)),
        "streamed": st.booleans(),
        "estimated": st.booleans(),
        "cache_hit": st.booleans(),
    },
)


@given(st.lists(records, min_size=1, max_size=20))
def test_well_formed_batches_read_the_same_as_pydantic_reads_them(batch):
    body = orjson.dumps({"records": batch})

    assert parse_usage_batch(body) == by_pydantic(body)


@pytest.mark.parametrize(
    "change",
    [
        {"key_id": "{" + str(uuid.UUID(int=5)) + "}"},  # braces: pydantic decides
        {"prompt_tokens": "12"},
        {"prompt_tokens": 12.0},
        {"occurred_at": "2025-10-30 10:00:00Z"},
        {"occurred_at": 1761818400},
        {"latency_ms": True},
        {"status": "ok"},
        {"streamed": 1},
        {"ttft_ms": "5"},
        {"vendor": 7},
        {"extra": 1},
    ],
)
def test_other_spellings_get_pydantics_answer(change):
    record = {
        "request_id": "r",
        "key_id": str(uuid.UUID(int=7)),
        "model": "m",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "status": "success",
        "occurred_at": "2025-10-30T10:00:00Z",
        **change,
    }
    body = orjson.dumps({"records": [record]})
    try:
        expected = by_pydantic(body)
    except ValidationError:
        with pytest.raises(RequestValidationError):
            parse_usage_batch(body)
        return

    assert parse_usage_batch(body) == expected
