"""Seed 000 §9 through the gateway, with the official openai SDK: deploy, wait until running,
take the instance key, chat (whole and streamed) at /api/v1, see the usage billed, destroy.

A server of its own with the provisioning jobs on (as tests/api/test_lifecycle.py runs).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from interfaces.db.database import create_database_if_missing, drop_database, with_dbname
from interfaces.gateway.directory import FRESH_SECONDS
from tests.api.test_lifecycle import Served, serving


@pytest.fixture(scope="module")
def conninfo(database_conninfo: str) -> Iterator[str]:
    dbname = f"hostplane_gateway_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(database_conninfo, dbname)
    yield with_dbname(database_conninfo, dbname)
    drop_database(database_conninfo, dbname)


@pytest.fixture(scope="module")
def served(conninfo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(conninfo, tmp_path_factory.mktemp("gateway")) as s:
        yield s


def base_url(served: Served, prefix: str = "/api/v1") -> str:
    return str(served.api.http.base_url).removesuffix("/").removesuffix("/api/v1") + prefix


def running_instance(served: Served, model: str = "llama-3.1-8b") -> tuple[dict[str, Any], str]:
    instance = served.wait_for(served.deploy(model_id=model)["id"], "running")
    key = served.api.get(f"/instances/{instance['id']}/api-key").json()["api_key"]
    return instance, key


def billed(served: Served) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    r = served.api.get(
        f"/team-billing/summary/{served.tenant_id}/{today}/{today + timedelta(days=1)}"
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_seed_000_walk_with_the_openai_sdk(served):
    instance, key = running_instance(served)
    client = openai.OpenAI(base_url=base_url(served), api_key=key, max_retries=0)

    answer = client.chat.completions.create(
        model="llama-3.1-8b", messages=[{"role": "user", "content": "hello gateway"}]
    )
    assert answer.choices[0].message.content == "echo: hello gateway"
    assert answer.usage is not None and answer.usage.total_tokens > 0
    assert answer.id.startswith("chatcmpl-")

    chunks = list(
        client.chat.completions.create(
            model="llama-3.1-8b",
            messages=[{"role": "user", "content": "stream me please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me please"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1

    # Without stream_options, no usage chunk reaches the client (the gateway still meters).
    plain = list(
        client.chat.completions.create(
            model="llama-3.1-8b", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(c.usage is None for c in plain)

    # llama-3.1-8b is a chat model in the catalog: no embeddings of it (issue 18, modality).
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="llama-3.1-8b", input=["one two", "three"])
    assert refused.value.code == "wrong_modality" and "'chat'" in refused.value.message

    models = client.models.list()
    assert [m.id for m in models.data] == ["llama-3.1-8b"]

    tokens = (
        answer.usage.prompt_tokens
        + answer.usage.completion_tokens
        + chunks[-1].usage.prompt_tokens
        + chunks[-1].usage.completion_tokens
    )
    # The usage is that tenant's: three requests on the instance and the refused embedding
    # (a failure on no instance), at least the tokens the client saw counted (the third
    # stream's usage went to the gateway only).
    deadline = time.monotonic() + 10
    while (summary := billed(served))["requests"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert summary["requests"] == 4
    assert summary["prompt_tokens"] + summary["completion_tokens"] > tokens
    on_instance = [r for r in summary["by_instance"] if r["instance_id"] == instance["id"]]
    assert [r["requests"] for r in on_instance] == [3]

    assert served.api.delete(f"/instances/{instance['id']}").status_code in (200, 204)
    time.sleep(FRESH_SECONDS + 0.1)  # what the gateway keeps of a tenant's instances
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="llama-3.1-8b", messages=[{"role": "user", "content": "gone"}]
        )


def test_the_v1_paths_answer_too_and_keys_of_the_wrong_kind_are_refused(served):
    instance, key = running_instance(served)
    r = httpx.post(
        base_url(served, "/v1") + "/chat/completions",
        json={"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    management = served.api.token
    with pytest.raises(openai.PermissionDeniedError) as refused:
        openai.OpenAI(
            base_url=base_url(served), api_key=management, max_retries=0
        ).chat.completions.create(
            model="llama-3.1-8b", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.code == "wrong_key_kind"
    # The price book stays the management answer of GET /api/v1/models.
    assert "data" in served.api.get("/models").json()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url(served), api_key="hp_ik_nope", max_retries=0).models.list()
    served.api.delete(f"/instances/{instance['id']}")
