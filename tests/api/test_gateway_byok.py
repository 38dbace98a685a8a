"""The gateway through the official ``openai`` SDK, to BYOK upstreams (a fake OpenAI upstream).

Sync, async and streamed chat, embeddings and ``GET /v1/models``, at both base URLs
(``/v1`` and ``/api/v1``); the upstream receives the tenant's decrypted BYOK key as its bearer.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway
from tests.fake_upstream import EMBEDDING_SIZE, embedding_of

BASES = ["/v1", "/api/v1"]


@pytest.fixture(scope="module")
def setup(gateway: Gateway):
    """A tenant with an OpenAI BYOK upstream, a model of OpenAI's, and a router key."""
    t = gateway.new_tenant()
    upstream, key = t.byok("openai")
    model = gateway.model("openai")
    _, secret = t.router_key()
    return t, upstream, key, model, secret


@pytest.mark.parametrize("base", BASES)
def test_a_chat_completion_reaches_the_upstream_with_the_decrypted_byok_key(gateway, setup, base):
    t, upstream, key, model, secret = setup
    answer = gateway.client(secret, base).chat.completions.create(model=model, messages=HELLO)
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == "word0 word1 word2 word3 word4"
    got = gateway.fake.requests_for(model)[-1]
    assert got.bearer == key and got.vendor == "openai"
    assert got.path == "/openai/v1/chat/completions"
    assert got.body["messages"] == HELLO and got.body["model"] == model
    assert answer.usage.prompt_tokens == got.usage["prompt_tokens"]
    assert answer.usage.completion_tokens == got.usage["completion_tokens"]
    assert secret not in str(got.headers)  # the router key stays with hostplane


@pytest.mark.parametrize("base", BASES)
def test_a_stream_passes_through_with_the_usage_chunk_the_client_asked_for(gateway, setup, base):
    t, upstream, key, model, secret = setup
    chunks = list(
        gateway.client(secret, base).chat.completions.create(
            model=model, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "word0 word1 word2 word3 word4"
    got = gateway.fake.requests_for(model)[-1]
    assert got.bearer == key and got.body["stream"] is True
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == got.usage["prompt_tokens"]
    assert chunks[-1].usage.completion_tokens == got.usage["completion_tokens"]


def test_the_gateway_asks_for_usage_but_passes_no_usage_chunk_to_a_client_that_did_not(
    gateway, setup
):
    t, upstream, key, model, secret = setup
    chunks = list(
        gateway.client(secret).chat.completions.create(model=model, messages=HELLO, stream=True)
    )
    assert chunks and all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    got = gateway.fake.requests_for(model)[-1]
    assert got.body["stream_options"]["include_usage"] is True


@pytest.mark.parametrize("base", BASES)
def test_the_async_client_chats_and_streams(gateway, setup, base):
    t, upstream, key, model, secret = setup

    async def run() -> tuple[str, str]:
        client = gateway.async_client(secret, base)
        answer = await client.chat.completions.create(model=model, messages=HELLO)
        stream = await client.chat.completions.create(model=model, messages=HELLO, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await client.close()
        return answer.choices[0].message.content, text

    assert asyncio.run(run()) == ("word0 word1 word2 word3 word4",) * 2
    assert [r.bearer for r in gateway.fake.requests_for(model)[-2:]] == [key, key]


@pytest.mark.parametrize("base", BASES)
def test_embeddings_reach_the_upstream_and_come_back_as_the_sdk_expects(gateway, setup, base):
    t, upstream, key, _, secret = setup
    model = gateway.model("openai", prefix="gpt-embed", modality="embedding")
    answer = gateway.client(secret, base).embeddings.create(model=model, input=["one two", "three"])
    assert [len(d.embedding) for d in answer.data] == [EMBEDDING_SIZE] * 2
    assert answer.data[0].embedding == embedding_of("one two", 0)
    assert answer.data[1].embedding == embedding_of("three", 1)
    got = gateway.fake.requests_for(model)[-1]
    assert got.path == "/openai/v1/embeddings" and got.bearer == key
    assert answer.usage.prompt_tokens == got.usage["prompt_tokens"]


@pytest.mark.parametrize("base", BASES)
def test_models_lists_what_a_router_key_may_use_in_openais_shape(gateway, setup, base):
    t, upstream, key, model, _ = setup
    other = gateway.model("openai")
    _, secret = t.router_key(allowed_models=[model, other])
    r = httpx.get(gateway.url + base + "/models", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} == {model, other}
    for m in body["data"]:
        assert m["object"] == "model" and isinstance(m["created"], int)
        assert isinstance(m["owned_by"], str) and m["owned_by"]
    listed = gateway.client(secret, base).models.list()
    assert sorted(m.id for m in listed) == sorted([model, other])


def test_a_management_key_still_gets_the_price_book_at_api_v1_models(gateway, setup):
    t, upstream, key, model, _ = setup
    r = t.api.get("/models")
    assert r.status_code == 200, r.text
    row = next(m for m in r.json()["data"] if m["id"] == model)
    assert "input_eur_per_mtok" in row


def test_the_body_vendor_field_picks_a_byok_upstream_of_that_vendor(gateway):
    t = gateway.new_tenant()
    _, openai_key = t.byok("openai")
    _, mistral_key = t.byok("mistral")
    model = gateway.model("openai")
    _, secret = t.router_key()
    client = gateway.client(secret)
    client.chat.completions.create(model=model, messages=HELLO, extra_body={"vendor": "mistral"})
    got = gateway.fake.requests_for(model)[-1]
    assert (got.vendor, got.bearer) == ("mistral", mistral_key)
    client.chat.completions.create(model=model, messages=HELLO)
    got = gateway.fake.requests_for(model)[-1]
    assert (got.vendor, got.bearer) == ("openai", openai_key)


@pytest.mark.parametrize("base", BASES)
def test_the_x_key_id_header_picks_one_byok_upstream(gateway, base):
    t = gateway.new_tenant()
    first, first_key = t.byok("openai")
    second, second_key = t.byok("openai")
    model = gateway.model("openai")
    _, secret = t.router_key()
    client = gateway.client(secret, base)
    for upstream, key in [(second, second_key), (first, first_key), (second, second_key)]:
        client.chat.completions.create(
            model=model, messages=HELLO, extra_headers={"X-Key-Id": upstream["id"]}
        )
        assert gateway.fake.requests_for(model)[-1].bearer == key


def test_a_slow_stream_reaches_the_client_chunk_by_chunk(gateway, setup):
    """The first chunk arrives while the upstream is still writing (no buffering), and a
    stream longer than the first-byte timeout is not cut by it."""
    t, upstream, key, _, secret = setup
    model = gateway.model("openai")
    gateway.fake.script(model, chunk_delay=0.3, words=5)  # ~2 s > first-byte timeout (1 s)
    stream = gateway.client(secret).chat.completions.create(
        model=model, messages=HELLO, stream=True
    )
    chunks = [next(iter(stream))]
    first_at = time.monotonic()
    got = gateway.fake.requests_for(model)[-1]
    assert got.finished_at is None or got.finished_at > first_at
    chunks += list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "word0 word1 word2 word3 word4"
    assert gateway.fake.finished(got.response_id).completed


def test_a_deleted_byok_upstream_is_no_longer_used(gateway):
    t = gateway.new_tenant()
    upstream, key = t.byok("openai")
    model = gateway.model("openai")
    _, secret = t.router_key()
    gateway.client(secret).chat.completions.create(model=model, messages=HELLO)
    assert t.api.delete(f"/byok/{upstream['id']}").status_code == 200
    deadline = time.monotonic() + 5  # every process sees the change within a second
    while True:
        try:
            gateway.client(secret).chat.completions.create(model=model, messages=HELLO)
        except openai.APIStatusError as e:
            assert e.status_code == 503 and e.code == "model_unavailable"
            break
        assert time.monotonic() < deadline, "the detached upstream still answers"
        time.sleep(0.1)


@pytest.mark.parametrize("base", BASES)
def test_embeddings_of_a_chat_model_are_a_400_naming_its_modality(gateway, setup, base):
    t, upstream, key, _, secret = setup
    model = gateway.model("openai", modality="chat")
    before = len(gateway.fake.requests_for(model))
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.client(secret, base).embeddings.create(model=model, input=["one two"])
    error = raised.value.body
    assert raised.value.code == "wrong_modality" and error["type"] == "invalid_request_error"
    assert error["param"] == "model" and "'chat'" in error["message"]
    assert len(gateway.fake.requests_for(model)) == before  # never sent upstream


def test_a_chat_completion_of_an_embedding_model_is_a_400_naming_its_modality(gateway, setup):
    t, upstream, key, _, secret = setup
    model = gateway.model("openai", prefix="gpt-embed", modality="embedding")
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.client(secret).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.code == "wrong_modality" and "'embedding'" in raised.value.message
