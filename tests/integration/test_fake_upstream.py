"""The gateway tests' fake upstream answers the official ``openai`` SDK as OpenAI itself does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fake_upstream import EMBEDDING_SIZE, FakeUpstream, embedding_of, running_fake_upstream

KEY = "sk-proj-fake-upstream-test-key"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with running_fake_upstream() as f:
        yield f


def client(fake: FakeUpstream, vendor: str | None = None, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url(vendor), api_key=KEY, max_retries=0, **kwargs)


HELLO = [{"role": "user", "content": "hello there"}]


def test_a_chat_completion_has_openais_shape_and_the_fake_records_the_bearer(fake):
    answer = client(fake, "mistral").chat.completions.create(model="m-plain", messages=HELLO)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.choices[0].message.content == "word0 word1 word2 word3 word4"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (5, 5)
    got = fake.by_id(answer.id)
    assert (got.bearer, got.vendor, got.path) == (KEY, "mistral", "/mistral/v1/chat/completions")
    assert got.body["messages"] == HELLO
    assert got.usage == answer.usage.model_dump(exclude_none=True)


def test_a_stream_ends_with_a_usage_chunk_with_no_choices_when_asked(fake):
    chunks = list(
        client(fake).chat.completions.create(
            model="m-stream", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "word0 word1 word2 word3 word4"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])
    assert fake.finished(chunks[0].id).completed


def test_a_stream_without_include_usage_has_no_usage_chunk(fake):
    chunks = list(client(fake).chat.completions.create(model="m", messages=HELLO, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)
    got = fake.by_id(chunks[0].id)
    assert got.usage["completion_tokens"] == 5 and not got.reported_usage


def test_usage_can_be_omitted_by_model_name_or_script(fake):
    assert client(fake).chat.completions.create(model="x-no-usage", messages=HELLO).usage is None
    fake.script("m-quiet", usage=False, words=2)
    chunks = list(
        client(fake).chat.completions.create(
            model="m-quiet", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"


def test_the_async_client_streams(fake):
    async def run() -> str:
        c = openai.AsyncOpenAI(base_url=fake.base_url("openai"), api_key=KEY, max_retries=0)
        stream = await c.chat.completions.create(model="m-async", messages=HELLO, stream=True)
        return "".join([x.choices[0].delta.content or "" async for x in stream])

    assert asyncio.run(run()) == "word0 word1 word2 word3 word4"


def test_embeddings_come_back_as_floats_from_the_sdks_default_base64(fake):
    answer = client(fake).embeddings.create(model="e-1", input=["one two", "three"])
    assert [len(d.embedding) for d in answer.data] == [EMBEDDING_SIZE, EMBEDDING_SIZE]
    assert answer.data[1].embedding == embedding_of("three", 1)
    assert answer.usage.prompt_tokens == 3
    assert fake.requests_for("e-1")[-1].body["encoding_format"] == "base64"
    floats = client(fake).embeddings.create(model="e-1", input="x", encoding_format="float")
    assert floats.data[0].embedding == embedding_of("x", 0)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_failures_come_out_as_the_sdks_typed_errors(fake, status, error):
    with pytest.raises(error) as raised:
        client(fake).chat.completions.create(model=f"m-fail-{status}", messages=HELLO)
    assert raised.value.status_code == status
    assert isinstance(raised.value.body, dict) and raised.value.body["message"]
    assert fake.requests_for(f"m-fail-{status}")[-1].status == status


def test_a_failure_can_be_scripted_per_model_or_asked_by_header(fake):
    fake.script("m-scripted", status=429)
    with pytest.raises(openai.RateLimitError) as raised:
        client(fake).chat.completions.create(model="m-scripted", messages=HELLO)
    assert raised.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.BadRequestError):
        client(fake).chat.completions.create(
            model="m-header", messages=HELLO, extra_headers={"X-Fake-Status": "400"}
        )


def test_a_request_without_a_key_is_a_401_in_openais_shape(fake):
    r = httpx.post(fake.base_url() + "/chat/completions", json={"model": "m", "messages": HELLO})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_a_stall_outlasts_a_short_client_timeout(fake):
    with pytest.raises(openai.APITimeoutError):
        client(fake, timeout=0.2).chat.completions.create(model="m-stall-1", messages=HELLO)


def test_a_slow_stream_sends_its_first_chunk_before_it_finishes(fake):
    fake.script("m-slow", chunk_delay=0.05, words=6)
    stream = client(fake).chat.completions.create(model="m-slow", messages=HELLO, stream=True)
    first = next(iter(stream))
    arrived = time.monotonic()
    got = fake.by_id(first.id)
    assert got.finished_at is None or got.finished_at > arrived
    rest = list(stream)
    # The handler marks the answer whole just after its last write: the client may read first.
    assert rest[-1].choices[0].finish_reason == "stop" and fake.finished(first.id).completed
