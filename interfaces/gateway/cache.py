"""The response cache: a tenant's earlier non-streamed answer, served again within its TTL.

Kept in the serving process's memory only: answers hold completions, which hostplane never
stores on disk or in the database. Each process has its own cache (a hit is per process).
Bounded in entries and in bytes, least recently used first out (``cachetools.TLRUCache``: an
entry expires at its store time plus the model's TTL then; a lookup also checks the model's
TTL now, so a TTL shortened by the admin applies at once).

A request's key is a digest of its tenant, its kind and its normalised body: canonical JSON
(sorted keys) of everything that may change the answer. Fields that do not (who the end user
is, how the answer is delivered, which upstream serves it) are left out.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from cachetools import TLRUCache

# Body fields that do not change the answer: the end user's id, delivery (stream, its
# options), bookkeeping the upstream keeps (metadata, store) and the upstream's choice.
IGNORED = frozenset(("user", "stream", "stream_options", "vendor", "metadata", "store"))
ENTRY_OVERHEAD = 200  # bytes counted per entry beside its answer (key, record, bookkeeping)


@dataclass(frozen=True, slots=True)
class Cached:
    """A stored answer and the tokens the upstream used for it."""

    body: bytes  # the answer's JSON object without its ``id`` (each hit gets its own)
    stored_at: float  # ``timer()`` when stored
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    estimated: bool  # the tokens were counted by the gateway (the upstream gave no usage)


def without_id(answer: dict[str, Any]) -> bytes:
    """An answer as stored: its JSON without the ``id`` of the request that got it."""
    return orjson.dumps({k: v for k, v in answer.items() if k != "id"})


def with_id(body: bytes, request_id: str) -> bytes:
    """A stored answer with ``request_id`` as its ``id`` (first), without parsing it again."""
    head = b'{"id":' + orjson.dumps(request_id)
    return head + b"}" if body == b"{}" else head + b"," + body[1:]


def cache_key(tenant_id: UUID, kind: str, body: dict[str, Any]) -> bytes:
    """The digest naming a request's answer within its tenant."""
    normalised = {k: v for k, v in body.items() if k not in IGNORED}
    canonical = orjson.dumps(normalised, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(tenant_id.bytes + kind.encode() + b"\0" + canonical).digest()


class ResponseCache:
    """Answers per (tenant, request digest), LRU within ``max_entries`` and ``max_bytes``."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.timer = timer
        # ``ttu``: an entry is usable until its store time plus the TTL it was stored with.
        self._entries: TLRUCache[tuple[UUID, bytes], tuple[Cached, int]] = TLRUCache(
            maxsize=max_bytes,
            ttu=lambda _key, value, now: now + value[1],
            timer=timer,
            getsizeof=lambda value: len(value[0].body) + ENTRY_OVERHEAD,
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return int(self._entries.currsize)

    def get(self, tenant_id: UUID, key: bytes, ttl_seconds: int) -> Cached | None:
        """The tenant's answer under ``key``, if stored less than ``ttl_seconds`` ago."""
        found = self._entries.get((tenant_id, key))
        if found is None:
            return None
        cached = found[0]
        if self.timer() - cached.stored_at >= ttl_seconds:  # the TTL was shortened since
            self._entries.pop((tenant_id, key), None)
            return None
        return cached

    def put(
        self,
        tenant_id: UUID,
        key: bytes,
        ttl_seconds: int,
        answer: dict[str, Any],
        tokens: tuple[int, int, int],
        estimated: bool,
    ) -> bool:
        """Keep an answer for ``ttl_seconds``; False when it alone exceeds the byte bound."""
        body = without_id(answer)
        if len(body) + ENTRY_OVERHEAD > self.max_bytes or self.max_entries <= 0 or ttl_seconds <= 0:
            return False
        entries = self._entries
        entries.expire()
        if (tenant_id, key) not in entries:
            while len(entries) >= self.max_entries:
                entries.popitem()  # the least recently used
        prompt, completion, cached = tokens
        stored = Cached(body, self.timer(), prompt, completion, cached, estimated)
        entries[(tenant_id, key)] = (stored, ttl_seconds)
        return True
