"""Reading a usage batch's JSON body: a fast path for well-formed batches, pydantic otherwise.

A router posts thousands of records a second, and validating each one through pydantic models
costs more than everything else the ingestion does. Well-formed records, in the shapes below,
are read straight from orjson's output; anything else (a missing field, a number as a string,
another time format) goes through ``UsageBatchIn``, which either accepts it the same way or
reports every problem as a 400. The fast path accepts only what ``UsageBatchIn`` accepts, with
the same values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import Field, StrictBool, StrictInt, ValidationError

from domain.usage import MAX_BATCH, STATUSES, UsageInput
from interfaces.http.jsontext import refuse_unpaired_surrogates
from interfaces.http.schemas import Strict


class UsageRecordIn(Strict):
    request_id: str
    key_id: UUID
    model: str
    prompt_tokens: StrictInt
    completion_tokens: StrictInt
    status: Literal["success", "error", "cancelled"]
    latency_ms: StrictInt = 0
    occurred_at: datetime
    instance_id: UUID | None = None
    cached_tokens: StrictInt = 0
    vendor: str | None = None
    ttft_ms: StrictInt | None = None
    streamed: StrictBool = False
    estimated: StrictBool = False
    cache_hit: StrictBool = False


class UsageBatchIn(Strict):
    records: list[UsageRecordIn] = Field(min_length=1, max_length=MAX_BATCH)


FIELDS = frozenset(UsageRecordIn.model_fields)
# The fields of a record that says nothing of how the request went (most of them).
PLAIN_FIELDS = FIELDS - {"vendor", "ttft_ms", "streamed", "estimated", "cache_hit"}
REQUIRED = frozenset(name for name, f in UsageRecordIn.model_fields.items() if f.is_required())
# RFC 3339 times as routers write them; other forms pydantic accepts take the slow path.
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


T = TypeVar("T")


class _NotFast(Exception):
    pass


def parse_usage_batch(body: bytes) -> list[UsageInput]:
    """The records of a ``POST /usage/events`` body, or ``RequestValidationError`` (a 400)."""
    try:
        return _fast(body)
    except _NotFast:
        pass
    try:
        batch = UsageBatchIn.model_validate_json(body)
    except ValidationError as e:
        if e.errors()[0]["type"] == "json_invalid":
            _name_unpaired_surrogate(body)
        raise _request_error(e) from None
    return [UsageInput(**r.model_dump()) for r in batch.records]


def _request_error(e: ValidationError) -> RequestValidationError:
    errors = e.errors(include_url=False)
    return RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in errors])


def _name_unpaired_surrogate(body: bytes) -> None:
    """Name the field of an unpaired surrogate, which pydantic reports as invalid JSON only."""
    try:
        data = json.loads(body)
    except ValueError:
        return
    try:
        refuse_unpaired_surrogates(UsageBatchIn.__name__, data)
    except ValidationError as e:
        raise _request_error(e) from None


def _fast(body: bytes) -> list[UsageInput]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _NotFast from None
    if type(data) is not dict or len(data) != 1 or type(data.get("records")) is not list:
        raise _NotFast
    records: list[Any] = data["records"]
    if not 1 <= len(records) <= MAX_BATCH:
        raise _NotFast
    ids: dict[str, UUID] = {}  # a batch names few keys and instances, many times
    times: dict[str, datetime] = {}
    out = []
    append = out.append
    for r in records:
        if type(r) is not dict:
            raise _NotFast
        keys = r.keys()
        if not keys >= REQUIRED:
            raise _NotFast
        detailed = not keys <= PLAIN_FIELDS  # it says how the request went (a gateway's)
        if detailed and not keys <= FIELDS:
            raise _NotFast
        request_id = r["request_id"]
        model = r["model"]
        prompt = r["prompt_tokens"]
        completion = r["completion_tokens"]
        latency = r.get("latency_ms", 0)
        cached = r.get("cached_tokens", 0)
        status = r["status"]
        if (
            type(request_id) is not str
            or type(model) is not str
            or type(prompt) is not int
            or type(completion) is not int
            or type(latency) is not int
            or type(cached) is not int
            or type(status) is not str
            or status not in STATUSES
        ):
            raise _NotFast
        instance = r.get("instance_id")
        # Positional, in ``UsageInput``'s order: by keyword measured 0.63 ms per 1,000
        # records against 0.36 ms.
        record = UsageInput(
            request_id,
            _uuid(r["key_id"], ids),
            model,
            prompt,
            completion,
            status,
            latency,
            _time(r["occurred_at"], times),
            None if instance is None else _uuid(instance, ids),
            cached,
        )
        append(_detailed(record, r) if detailed else record)
    return out


def _detailed(record: UsageInput, r: dict[str, Any]) -> UsageInput:
    """The record with the fields that say how the request went, if they have their types."""
    vendor = r.get("vendor")
    ttft = r.get("ttft_ms")
    streamed = r.get("streamed", False)
    estimated = r.get("estimated", False)
    cache_hit = r.get("cache_hit", False)
    if (
        (vendor is not None and type(vendor) is not str)
        or (ttft is not None and type(ttft) is not int)
        or type(streamed) is not bool
        or type(estimated) is not bool
        or type(cache_hit) is not bool
    ):
        raise _NotFast
    return record._replace(
        vendor=vendor, ttft_ms=ttft, streamed=streamed, estimated=estimated, cache_hit=cache_hit
    )


def _uuid(value: object, seen: dict[str, UUID]) -> UUID:
    return _parsed(value, seen, CANONICAL_UUID, UUID)


def _time(value: object, seen: dict[str, datetime]) -> datetime:
    return _parsed(value, seen, TIME, datetime.fromisoformat)


def _parsed(
    value: object, seen: dict[str, T], shape: re.Pattern[str], parse: Callable[[str], T]
) -> T:
    """``value`` parsed, if it is a string of this shape; each distinct string parsed once."""
    if type(value) is not str:
        raise _NotFast
    found = seen.get(value)
    if found is None:
        if not shape.fullmatch(value):
            raise _NotFast
        try:
            found = seen[value] = parse(value)
        except ValueError:  # 2025-02-30 and the like: let pydantic word the error
            raise _NotFast from None
    return found
