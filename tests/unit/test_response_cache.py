"""The gateway's response cache: keys per tenant and normalised body, bounds, TTL."""

from __future__ import annotations

from uuid import UUID, uuid4

import orjson

from interfaces.gateway.cache import ENTRY_OVERHEAD, ResponseCache, cache_key, with_id

TENANT = UUID("8c41d2e3-4f5a-4b6c-8d7e-9f0a1b2c3d4e")
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def put(cache: ResponseCache, key: bytes, ttl: int = 60, size: int = 100) -> bool:
    """Keep an answer whose stored form is ``size`` bytes."""
    answer = {"id": "chatcmpl-1", "text": "x" * (size - len('{"text":""}'))}
    return cache.put(TENANT, key, ttl, answer, (3, 4, 0), False)


def test_the_key_ignores_field_order_and_fields_that_do_not_change_the_answer():
    shuffled = {"temperature": 0.2, "messages": BODY["messages"], "model": "m"}
    decorated = {**BODY, "user": "bob", "stream": False, "stream_options": {}, "metadata": {}}

    assert cache_key(TENANT, "chat/completions", shuffled) == cache_key(
        TENANT, "chat/completions", BODY
    )
    assert cache_key(TENANT, "chat/completions", decorated) == cache_key(
        TENANT, "chat/completions", BODY
    )


def test_the_key_differs_by_tenant_kind_and_every_parameter_of_the_answer():
    key = cache_key(TENANT, "chat/completions", BODY)

    assert cache_key(uuid4(), "chat/completions", BODY) != key
    assert cache_key(TENANT, "embeddings", BODY) != key
    assert cache_key(TENANT, "chat/completions", {**BODY, "temperature": 0.3}) != key
    assert cache_key(TENANT, "chat/completions", {**BODY, "seed": 1}) != key


def test_an_entry_is_another_tenants_miss_even_under_the_same_key():
    cache = ResponseCache(10, 10_000)
    put(cache, b"k")

    assert cache.get(TENANT, b"k", 60) is not None
    assert cache.get(uuid4(), b"k", 60) is None


def test_an_entry_expires_with_its_ttl_and_with_a_shortened_one():
    clock = Clock()
    cache = ResponseCache(10, 10_000, timer=clock)
    put(cache, b"a", ttl=60)
    put(cache, b"b", ttl=60)

    clock.now += 30
    assert cache.get(TENANT, b"a", 60) is not None
    assert cache.get(TENANT, b"b", 10) is None  # the admin shortened the TTL to 10 s
    clock.now += 31
    assert cache.get(TENANT, b"a", 60) is None


def test_the_least_recently_used_entry_goes_first_beyond_max_entries():
    cache = ResponseCache(2, 10_000)
    put(cache, b"a")
    put(cache, b"b")
    assert cache.get(TENANT, b"a", 60) is not None  # a is used: b is now the oldest

    put(cache, b"c")

    assert len(cache) == 2
    assert cache.get(TENANT, b"b", 60) is None
    assert cache.get(TENANT, b"a", 60) is not None
    assert cache.get(TENANT, b"c", 60) is not None


def test_entries_go_least_recently_used_first_beyond_max_bytes():
    per_entry = 100 + ENTRY_OVERHEAD
    cache = ResponseCache(100, 3 * per_entry)
    for key in (b"a", b"b", b"c", b"d"):
        put(cache, key)

    assert len(cache) == 3
    assert cache.bytes <= 3 * per_entry
    assert cache.get(TENANT, b"a", 60) is None


def test_an_answer_larger_than_the_whole_cache_is_not_kept():
    cache = ResponseCache(10, 1_000)

    assert put(cache, b"big", size=5_000) is False
    assert len(cache) == 0


def test_a_hit_is_the_stored_answer_with_the_new_requests_id():
    cache = ResponseCache(10, 10_000)
    answer = {"id": "chatcmpl-first", "object": "chat.completion", "choices": [{"index": 0}]}
    cache.put(TENANT, b"k", 60, answer, (3, 4, 0), False)

    hit = cache.get(TENANT, b"k", 60)

    assert hit is not None
    assert orjson.loads(with_id(hit.body, "chatcmpl-second")) == {**answer, "id": "chatcmpl-second"}
    assert orjson.loads(with_id(b"{}", "embd-1")) == {"id": "embd-1"}
