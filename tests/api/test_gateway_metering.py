"""Every gateway request after authentication is one usage record (request id = the response
``id``), and billing equals exactly the usage the upstream reported."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway, token_cost

IN, OUT = "1.10", "4.40"


def messages(n: int) -> list[dict[str, str]]:
    """A prompt of ``n`` words (so that each request reports other prompt tokens)."""
    return [{"role": "user", "content": " ".join(f"w{i}" for i in range(n))}]


def test_billing_equals_exactly_the_usage_the_upstream_reported(gateway: Gateway):
    t = gateway.new_tenant()
    upstream, key = t.byok("openai")
    ok = gateway.model("openai", input_price=IN, output_price=OUT)
    bad = gateway.model("openai", input_price=IN, output_price=OUT)
    broken = gateway.model("openai", input_price=IN, output_price=OUT)
    gateway.fake.script(ok, words=7)
    gateway.fake.script(bad, status=400)
    gateway.fake.script(broken, status=500)
    _, secret = t.router_key()
    _, narrow = t.router_key(allowed_models=[bad])
    client = gateway.client(secret)
    api_client = gateway.client(secret, "/api/v1")

    ids = [
        client.chat.completions.create(model=ok, messages=messages(3)).id,
        api_client.chat.completions.create(model=ok, messages=messages(11)).id,
    ]
    for n, include in [(5, True), (8, False)]:
        options = {"stream_options": {"include_usage": True}} if include else {}
        chunks = list(
            client.chat.completions.create(model=ok, messages=messages(n), stream=True, **options)
        )
        ids.append(chunks[0].id)

    async def run() -> str:
        c = gateway.async_client(secret)
        answer = await c.chat.completions.create(model=ok, messages=messages(2))
        await c.close()
        return answer.id

    ids.append(asyncio.run(run()))
    successes = len(ids)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=bad, messages=HELLO)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=broken, messages=HELLO)
    with pytest.raises(openai.PermissionDeniedError):  # refused after authentication
        gateway.client(narrow).chat.completions.create(model=ok, messages=HELLO)
    requests = successes + 3

    answered = [r for r in gateway.fake.requests_for(ok) if r.status == 200]
    assert len(answered) == successes  # one upstream call per request: nothing retried
    prompt = sum(r.usage["prompt_tokens"] for r in answered)
    completion = sum(r.usage["completion_tokens"] for r in answered)

    bill = t.wait_billed(requests)
    assert bill["requests"] == requests
    assert (bill["prompt_tokens"], bill["completion_tokens"]) == (prompt, completion)
    assert Decimal(bill["token_cost"]) == token_cost(prompt, completion, IN, OUT)
    by_model = {row["model"]: row for row in bill["by_model"]}
    assert by_model[ok]["requests"] == successes + 1
    assert by_model[bad]["requests"] == by_model[broken]["requests"] == 1
    assert by_model[bad]["prompt_tokens"] == by_model[broken]["completion_tokens"] == 0

    r = t.api.get("/usage/vendors")
    assert r.status_code == 200, r.text
    rows = {row["model"]: row for row in r.json()["data"]}
    assert rows[ok]["vendor"] == "openai"
    assert (rows[ok]["successes"], rows[ok]["failures"]) == (successes, 1)
    assert (rows[bad]["successes"], rows[bad]["failures"]) == (0, 1)
    assert (rows[broken]["successes"], rows[broken]["failures"]) == (0, 1)

    records = t.records()
    for rid in ids:
        assert len(records[rid]) == 1, f"{rid} is billed {len(records[rid])} times"
        record = records[rid][0]
        assert record["instance_id"] == upstream["id"] and record["success"] is True
    assert sum(len(rs) for rs in records.values()) == requests


def test_a_record_carries_the_request_id_key_model_tokens_and_byok_upstream(gateway: Gateway):
    t = gateway.new_tenant()
    upstream, _ = t.byok("openai")
    model = gateway.model("openai")
    key, secret = t.router_key()
    answer = gateway.client(secret).chat.completions.create(model=model, messages=messages(4))
    t.wait_billed(1)
    [record] = t.records()[answer.id]
    assert (record["key_id"], record["model"], record["instance_id"]) == (
        key["id"],
        model,
        upstream["id"],
    )
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )


def test_an_embedding_is_billed_for_its_prompt_tokens(gateway: Gateway):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai", prefix="gpt-embed", modality="embedding")
    _, secret = t.router_key()
    answer = gateway.client(secret).embeddings.create(model=model, input=["a b c", "d"])
    bill = t.wait_billed(1)
    assert (bill["requests"], bill["prompt_tokens"], bill["completion_tokens"]) == (
        1,
        answer.usage.prompt_tokens,
        0,
    )


def test_a_stream_the_client_leaves_is_billed_as_cancelled_for_what_the_upstream_produced(
    gateway: Gateway,
):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    gateway.fake.script(model, chunk_delay=0.1, words=20)  # ~2 s
    _, secret = t.router_key()
    stream = gateway.client(secret).chat.completions.create(
        model=model, messages=HELLO, stream=True
    )
    seen: list[Any] = []
    for chunk in stream:
        seen.append(chunk)
        if len(seen) == 3:
            break
    stream.close()  # the client hangs up mid-stream
    [got] = gateway.fake.wait_finished(model, 1)
    assert got.completed, "the gateway stopped reading the upstream when the client left"
    bill = t.wait_billed(1)
    assert (bill["requests"], bill["prompt_tokens"], bill["completion_tokens"]) == (
        1,
        got.usage["prompt_tokens"],
        got.usage["completion_tokens"],
    )
    [record] = t.records()[seen[0].id]
    assert "cancelled" in record["extra"], record


def test_a_stream_without_usage_from_the_upstream_is_billed_with_estimated_tokens(
    gateway: Gateway,
):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    gateway.fake.script(model, usage=False, words=6)
    _, secret = t.router_key()
    chunks = list(
        gateway.client(secret).chat.completions.create(model=model, messages=HELLO, stream=True)
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    bill = t.wait_billed(1)
    assert bill["requests"] == 1
    assert bill["prompt_tokens"] > 0 and bill["completion_tokens"] > 0


def test_a_stream_whose_events_arrive_cut_anywhere_is_relayed_whole_and_billed_exactly(
    gateway: Gateway,
):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    # 7-byte pieces: every event, and "data: [DONE]", arrives split across several reads.
    gateway.fake.script(model, words=6, split=7, chunk_delay=0.001)
    _, secret = t.router_key()
    chunks = list(
        gateway.client(secret).chat.completions.create(
            model=model, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    [got] = gateway.fake.wait_finished(model, 1)
    words = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert words == " ".join(f"word{i}" for i in range(6))
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == got.usage["completion_tokens"] == 6
    assert {c.id for c in chunks} == {chunks[0].id}  # the gateway's id on every event
    bill = t.wait_billed(1)
    assert (bill["requests"], bill["prompt_tokens"], bill["completion_tokens"]) == (
        1,
        got.usage["prompt_tokens"],
        got.usage["completion_tokens"],
    )
    [record] = t.records()[chunks[0].id]
    assert not detail(record)["estimated"]


def detail(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record's ``StoredDetail`` (domain/usage.py), its defaults filled in."""
    names = ("status", "vendor", "ttft_ms", "streamed", "estimated", "cache_hit")
    defaults = (None, None, None, False, False, False)
    return dict(zip(names, [*record["extra"], *defaults[len(record["extra"]) :]], strict=True))


def test_a_record_says_its_vendor_whether_streamed_its_time_to_first_token_and_estimate(
    gateway: Gateway,
):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    counted = gateway.model("openai")
    gateway.fake.script(model, words=4, chunk_delay=0.05)
    gateway.fake.script(counted, usage=False, words=3)
    _, secret = t.router_key()
    client = gateway.client(secret)
    whole = client.chat.completions.create(model=model, messages=HELLO)
    streamed = list(client.chat.completions.create(model=model, messages=HELLO, stream=True))
    estimated = client.chat.completions.create(model=counted, messages=HELLO)

    t.wait_billed(3)
    records = t.records()
    [one] = records[whole.id]
    [two] = records[streamed[0].id]
    [three] = records[estimated.id]
    assert detail(one) == {**detail({"extra": []}), "vendor": "openai"}
    assert detail(two)["vendor"] == "openai" and detail(two)["streamed"] is True
    assert 0 <= detail(two)["ttft_ms"] <= two["latency_ms"]
    assert detail(two)["estimated"] is False
    assert detail(three)["estimated"] is True and detail(three)["ttft_ms"] is None
    r = t.api.get("/usage", params={"group_by": "vendor"})
    assert r.status_code == 200, r.text
    [row] = r.json()["data"]
    assert (row["vendor"], row["requests"], row["streamed"], row["estimated"]) == (
        "openai",
        3,
        1,
        1,
    )
    assert row["ttft_count"] == 1 and row["ttft_ms"] == detail(two)["ttft_ms"]


def test_each_retry_of_the_sdk_is_a_request_of_its_own(gateway: Gateway):
    """The SDK retries a 502 by itself: every attempt is answered, so every one is billed."""
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    gateway.fake.script(model, status=500)
    _, secret = t.router_key()
    client = gateway.client(secret).with_options(max_retries=2)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=model, messages=HELLO)
    attempts = len(gateway.fake.requests_for(model))
    assert attempts == 3
    assert t.wait_billed(3)["requests"] == 3


# -- GPU instances (the simulated provider's endpoint), seed 000 §9 ------------------------

DEPLOY = {"model_id": "llama-3.1-8b", "region": "EU", "provider": "simulated"}


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    """This module's server runs the provisioning jobs, with short simulated delays."""
    return {
        "provision_interval_seconds": 0.1,
        "status_sync_seconds": 0.2,
        "simulated_deploy_seconds": 0.3,
    }


def wait_for(t: Any, instance_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        instance = t.api.get(f"/instances/{instance_id}").json()
        if instance["status"] == status:
            return instance
        assert time.monotonic() < deadline, f"still {instance['status']}"
        time.sleep(0.05)


def test_seed_000_deploy_running_chat_destroy_with_the_instance_key_is_billed(gateway: Gateway):
    t = gateway.new_tenant()
    r = t.api.post("/instances", json=DEPLOY)
    assert r.status_code == 201, r.text
    instance = wait_for(t, r.json()["id"], "running")
    instance_key = t.api.get(f"/instances/{instance['id']}/api-key").json()["api_key"]
    client = gateway.client(instance_key, "/api/v1")
    answer = client.chat.completions.create(model="llama-3.1-8b", messages=HELLO)
    assert answer.choices[0].message.content and answer.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="llama-3.1-8b",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens > 0
    _, router = t.router_key()  # a router key reaches the tenant's running instance too
    routed = gateway.client(router).chat.completions.create(model="llama-3.1-8b", messages=HELLO)

    bill = t.wait_billed(3)
    assert bill["requests"] == 3
    assert bill["prompt_tokens"] == (
        answer.usage.prompt_tokens + usage.prompt_tokens + routed.usage.prompt_tokens
    )
    assert bill["completion_tokens"] == (
        answer.usage.completion_tokens + usage.completion_tokens + routed.usage.completion_tokens
    )
    records = t.records()
    for rid in (answer.id, chunks[0].id, routed.id):
        [record] = records[rid]
        assert record["instance_id"] == instance["id"] and record["model"] == "llama-3.1-8b"
        assert detail(record)["vendor"] is None  # a GPU instance has no vendor
    assert detail(records[chunks[0].id][0])["streamed"] is True

    assert t.api.delete(f"/instances/{instance['id']}").status_code in (200, 202)
    deadline = time.monotonic() + 10
    while True:
        try:
            gateway.client(router).chat.completions.create(model="llama-3.1-8b", messages=HELLO)
        except openai.AuthenticationError:
            pytest.fail("a router key is still valid after its tenant's instance is destroyed")
        except openai.APIStatusError as e:
            assert e.status_code == 503 and e.code == "model_unavailable", e.body
            break
        assert time.monotonic() < deadline, "the destroyed instance still answers"
        time.sleep(0.1)


def test_an_instance_key_reaches_only_its_own_instance(gateway: Gateway):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    r = t.api.post("/instances", json=DEPLOY)
    assert r.status_code == 201, r.text
    instance = wait_for(t, r.json()["id"], "running")
    instance_key = t.api.get(f"/instances/{instance['id']}/api-key").json()["api_key"]
    before = len(gateway.fake.requests_for(model))
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.client(instance_key).chat.completions.create(model=model, messages=HELLO)
    assert raised.value.status_code in (400, 403), raised.value.body
    assert len(gateway.fake.requests_for(model)) == before
