"""Usage: batches of metered requests, rated in EUR at ingest with the prices then in effect."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, DomainError, InvalidValueError
from domain.instance import UPSTREAMS
from domain.pricing import token_cost
from domain.values import (
    MAX_LATENCY_MS,
    MAX_TOKENS,
    UNSTORABLE,
    BoundedInt,
    Text,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_BATCH = 10_000
FUTURE_TOLERANCE = timedelta(seconds=5)


MICROSECOND = timedelta(microseconds=1)


def to_us(t: datetime) -> int:
    return (t - EPOCH) // MICROSECOND


DAY_US = 86_400_000_000  # the epoch is a UTC midnight: µs // DAY_US counts UTC days


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class UsageInput(NamedTuple):
    """One metered request as reported by a gateway (a tuple: batches hold thousands)."""

    request_id: str
    key_id: UUID
    model: str
    prompt_tokens: int
    completion_tokens: int
    status: str
    latency_ms: int
    occurred_at: datetime
    instance_id: UUID | None = None
    cached_tokens: int = 0
    # How the request went, as the gateway saw it (issue 18 §6); POST /usage/events may say.
    vendor: str | None = None  # the BYOK upstream's vendor; None for a GPU instance
    ttft_ms: int | None = None  # time to its first token: streamed requests only
    streamed: bool = False
    estimated: bool = False  # the tokens were counted by the gateway: the upstream gave none
    cache_hit: bool = False  # answered from the response cache


@dataclass(frozen=True)
class RecordProblem:
    index: int
    request_id: str | None
    field: str
    message: str


class UsageBatchInvalidError(DomainError):
    """Some records of a batch are invalid; nothing of the batch is stored."""

    def __init__(self, problems: list[RecordProblem]) -> None:
        super().__init__(f"{len(problems)} invalid record(s); nothing of this batch was stored")
        self.problems = problems


# cancelled: the client went away mid-stream; billed for what the upstream produced. Stored
# records keep one flag, success or not (README "Export format"): cancelled is stored as not.
STATUSES = frozenset(("success", "error", "cancelled"))
MAX_REQUEST_ID = 200
REQUEST_ID = Text(MAX_REQUEST_ID)
TOKENS = BoundedInt(0, MAX_TOKENS)
LATENCY_MS = BoundedInt(0, MAX_LATENCY_MS)
KNOWN_VENDORS = frozenset(UPSTREAMS)  # the vendors a BYOK upstream (and a model) can have
FLAGS = ("streamed", "estimated", "cache_hit")
COUNTS: tuple[tuple[str, BoundedInt], ...] = (
    ("prompt_tokens", TOKENS),
    ("completion_tokens", TOKENS),
    ("cached_tokens", TOKENS),
    ("latency_ms", LATENCY_MS),
)


DETAIL = UsageInput._fields.index("vendor")  # where the fields saying how it went start
PLAIN_DETAIL = (None, None, False, False, False)  # a record that says nothing of it


def detail_fits(r: UsageInput) -> bool:
    """Whether the fields saying how the request went are valid (no problem to word)."""
    ttft = r.ttft_ms
    return (
        (r.vendor is None or r.vendor in KNOWN_VENDORS)
        and (ttft is None or (r.streamed is True and type(ttft) is int))
        and (ttft is None or (type(r.latency_ms) is int and r.latency_ms >= ttft >= 0))
        and type(r.streamed) is bool
        and type(r.estimated) is bool
        and type(r.cache_hit) is bool
    )


def check_record(index: int, r: UsageInput, now: datetime) -> list[RecordProblem]:
    """The problems of one record that need no lookup (tokens, status, time)."""
    at = r.occurred_at
    prompt, completion, cached, latency = (
        r.prompt_tokens,
        r.completion_tokens,
        r.cached_tokens,
        r.latency_ms,
    )
    if (
        type(r.request_id) is str
        and 1 <= len(r.request_id) <= MAX_REQUEST_ID
        and UNSTORABLE.search(r.request_id) is None
        and type(prompt) is int
        and type(completion) is int
        and type(cached) is int
        and type(latency) is int
        and MAX_TOKENS >= prompt >= cached >= 0
        and MAX_TOKENS >= completion >= 0
        and MAX_LATENCY_MS >= latency >= 0
        and r.status in STATUSES
        and at.tzinfo is not None
        and EPOCH <= at <= now + FUTURE_TOLERANCE
        and (
            (
                r.vendor is None
                and r.ttft_ms is None
                and r.streamed is False
                and r.estimated is False
                and r.cache_hit is False
            )
            or detail_fits(r)
        )
    ):
        return []  # the common case, checked in one expression; the value types word the rest
    problems = []

    def bad(field: str, message: str) -> None:
        problems.append(RecordProblem(index, r.request_id, field, message))

    for field, value_type in (("request_id", REQUEST_ID), *COUNTS):
        try:
            value_type.check(field, getattr(r, field))
        except InvalidValueError as e:
            bad(field, str(e))
    if type(prompt) is int and type(cached) is int and 0 <= prompt < cached:
        bad("cached_tokens", "cached_tokens can't exceed prompt_tokens")
    if r.status not in STATUSES:
        bad("status", "status must be 'success', 'error' or 'cancelled'")
    for field in FLAGS:
        if type(getattr(r, field)) is not bool:
            bad(field, f"{field} must be true or false")
    if r.vendor is not None and r.vendor not in KNOWN_VENDORS:
        bad("vendor", f"vendor must be one of {', '.join(sorted(KNOWN_VENDORS))}")
    if r.ttft_ms is not None:
        try:
            LATENCY_MS.check("ttft_ms", r.ttft_ms)
        except InvalidValueError as e:
            bad("ttft_ms", str(e))
        else:
            if r.streamed is not True:
                bad("ttft_ms", "ttft_ms is for streamed requests only (streamed: true)")
            elif type(latency) is int and r.ttft_ms > latency:
                bad("ttft_ms", "ttft_ms can't exceed latency_ms")
    if at.tzinfo is None:
        bad("occurred_at", "occurred_at must carry a timezone (use Z for UTC)")
    elif at > now + FUTURE_TOLERANCE:
        bad("occurred_at", "occurred_at is in the future")
    elif at < EPOCH:  # times are counted from the epoch; year 0 in UTC cannot even be billed
        bad("occurred_at", "occurred_at must not be before 1970-01-01T00:00:00Z")
    return problems


PLAIN_STATUSES = ("success", "error")  # told apart by the stored success flag alone


class StoredRecord(NamedTuple):
    """One rated record as a ``UsageBatch.Recorded`` event stores it: a JSON list of these
    fields, in this order (README "Export format"). ``StoredRecord._make(stored[:FIELDS])``
    names them. ``StoredDetail``'s fields may follow (readers take the first ``FIELDS``)."""

    request_id: str
    key_id: str  # the key's UUID, as text
    rate: int  # index of the batch's rate (model and prices) the record was rated at
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    success: bool
    latency_ms: int
    occurred_at_us: int  # µs since the epoch (``to_us``)
    instance_id: str | None  # the instance's UUID as text, or None


FIELDS = len(StoredRecord._fields)


class StoredDetail(NamedTuple):
    """How a request went: optional elements after a ``StoredRecord``'s, in this order, each
    left out with every one after it when they hold their defaults (as here). A record stored
    before one of them existed has its default. ``status`` is the status when it is neither
    success nor error (``"cancelled"``), else None: the success flag tells those two apart."""

    status: str | None = None
    vendor: str | None = None
    ttft_ms: int | None = None
    streamed: bool = False
    estimated: bool = False
    cache_hit: bool = False


NO_DETAIL = StoredDetail()
DEFAULTS = tuple(NO_DETAIL)


def detail_of(stored: list[Any]) -> StoredDetail:
    """The ``StoredDetail`` of a stored record (its defaults for what it doesn't hold)."""
    return StoredDetail(*stored[FIELDS:]) if len(stored) > FIELDS else NO_DETAIL


@dataclass(frozen=True)
class UsageLine:
    """One rated record, as read back from a stored batch."""

    request_id: str
    key_id: UUID
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    success: bool
    latency_ms: int
    occurred_at: datetime
    instance_id: UUID | None
    input_eur_per_mtok: Decimal
    output_eur_per_mtok: Decimal
    detail: StoredDetail = NO_DETAIL

    @property
    def status(self) -> str:
        return self.detail.status or ("success" if self.success else "error")

    @property
    def cost(self) -> Decimal:
        return token_cost(
            self.prompt_tokens,
            self.completion_tokens,
            self.input_eur_per_mtok,
            self.output_eur_per_mtok,
        )


class UsageBatch(Aggregate):
    """Usage of one tenant accepted in one ingest call (one event, however many records)."""

    class Recorded(Aggregate.Created):
        """The batch's rated records, stored compactly.

        ``rates`` lists ``[model, input EUR/Mtok, output EUR/Mtok]`` as applied at ingest;
        each record is a list of a ``StoredRecord``'s fields, in its order.
        """

        tenant_id: UUID
        rates: list[list[str]]
        records: list[list[Any]]
        actor: Actor

    @event(Recorded)
    def __init__(
        self, tenant_id: UUID, rates: list[list[str]], records: list[list[Any]], actor: Actor
    ) -> None:
        self.tenant_id = tenant_id
        self.count = len(records)

    @classmethod
    def record(
        cls, tenant_id: UUID, rated: list[tuple[UsageInput, Decimal, Decimal]], actor: Actor
    ) -> UsageBatch:
        rate_index: dict[tuple[str, Decimal, Decimal], int] = {}
        ids: dict[UUID | None, str | None] = {None: None}  # few keys and instances, many records
        records: list[list[Any]] = []
        append = records.append
        for r, input_price, output_price in rated:
            rate = rate_index.setdefault((r.model, input_price, output_price), len(rate_index))
            key, instance = r.key_id, r.instance_id
            key_text = ids.get(key)
            if key_text is None:
                key_text = ids[key] = str(key)
            if instance not in ids:
                ids[instance] = str(instance)
            # The stored list, in ``StoredRecord``'s order: making a ``StoredRecord`` (by
            # keyword) and listing it measured 1.3 ms per 1,000 records against 0.6 ms.
            stored = [
                r.request_id,
                key_text,
                rate,
                r.prompt_tokens,
                r.completion_tokens,
                r.cached_tokens,
                r.status == "success",
                r.latency_ms,
                to_us(r.occurred_at),
                ids[instance],
            ]
            # The ``StoredDetail``, trimmed of its trailing defaults: a plain record (most of
            # them) stores none, as before the detail existed.
            plain = r.status in PLAIN_STATUSES
            if not plain or r[DETAIL:] != PLAIN_DETAIL:
                stored += (None if plain else r.status, *r[DETAIL:])
                while stored[-1] == DEFAULTS[len(stored) - 1 - FIELDS]:
                    stored.pop()
            append(stored)
        rates = [[m, str(i), str(o)] for (m, i, o) in rate_index]
        return cls(tenant_id=tenant_id, rates=rates, records=records, actor=actor)


def iter_lines(e: UsageBatch.Recorded) -> Iterator[UsageLine]:
    """The rated records of a stored batch event."""
    rates = [(m, Decimal(i), Decimal(o)) for m, i, o in e.rates]
    for stored in e.records:
        r = StoredRecord._make(stored[:FIELDS])
        model, input_price, output_price = rates[r.rate]
        yield UsageLine(
            request_id=r.request_id,
            key_id=UUID(r.key_id),
            model=model,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            cached_tokens=r.cached_tokens,
            success=r.success,
            latency_ms=r.latency_ms,
            occurred_at=from_us(r.occurred_at_us),
            instance_id=UUID(r.instance_id) if r.instance_id else None,
            input_eur_per_mtok=input_price,
            output_eur_per_mtok=output_price,
            detail=detail_of(stored),
        )
