"""The gateway's decisions (application/gateway.py): who may call which model, which target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from application.gateway import (
    CatalogModel,
    GatewayCaller,
    GatewayRefusal,
    Target,
    check_model,
    estimate_tokens,
    route,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TENANT = uuid4()
LLAMA = CatalogModel("llama-3.1-8b", serveable=True, vendor=None, created=0)
GPT = CatalogModel("gpt-4o-mini", serveable=False, vendor="openai", created=0)


def caller(**fields) -> GatewayCaller:
    return GatewayCaller(tenant_id=TENANT, key_id=uuid4(), **fields)


def gpu(status="running", model="llama-3.1-8b", region="EU", age=0.0) -> Target:
    return Target(
        uuid4(),
        TENANT,
        "gpu",
        model,
        region,
        None,
        status,
        "http://127.0.0.1:1/x/v1" if status == "running" else None,
        NOW - timedelta(seconds=age),
    )


def byok(vendor="openai", status="running") -> Target:
    return Target(uuid4(), TENANT, "byok", None, None, vendor, status, None, NOW)


def refused(*args, **kwargs) -> GatewayRefusal:
    with pytest.raises(GatewayRefusal) as e:
        route(*args, **kwargs)
    return e.value


def test_unknown_and_forbidden_models():
    with pytest.raises(GatewayRefusal) as e:
        check_model(caller(), "nope", None)
    assert (e.value.status, e.value.code) == (400, "model_not_found")
    with pytest.raises(GatewayRefusal) as e:
        check_model(caller(allowed_models=("gpt-4o-mini",)), "llama-3.1-8b", LLAMA)
    assert (e.value.status, e.value.code) == (403, "model_not_allowed")
    with pytest.raises(GatewayRefusal) as e:
        check_model(caller(sovereignty=True), "gpt-4o-mini", GPT)
    assert (e.value.status, e.value.code) == (403, "sovereignty_violation")


def test_running_instances_first_fewest_in_flight_then_byok():
    busy, idle, upstream = gpu(), gpu(), byok()
    llama_with_vendor = CatalogModel("llama-3.1-8b", True, "openai", 0)
    chosen = route(
        caller(), llama_with_vendor, [busy, idle, upstream], {busy.instance_id: 3}, NOW, 3.0
    )
    assert chosen == [idle, busy, upstream]


def test_byok_of_the_models_vendor_and_the_body_vendor_and_x_key_id():
    openai_key, mistral_key = byok("openai"), byok("mistral")
    assert route(caller(), GPT, [mistral_key, openai_key], {}, NOW, 3.0) == [openai_key]
    assert route(caller(), GPT, [mistral_key, openai_key], {}, NOW, 3.0, vendor="mistral") == [
        mistral_key
    ]
    assert route(
        caller(), GPT, [mistral_key, openai_key], {}, NOW, 3.0, key_id=mistral_key.instance_id
    ) == [mistral_key]


def test_sovereignty_keeps_to_eu_gpus_and_never_byok():
    us, eu = gpu(region="US"), gpu(region="EU")
    assert route(caller(sovereignty=True), LLAMA, [us, eu], {}, NOW, 3.0) == [eu]
    r = refused(caller(sovereignty=True), LLAMA, [byok()], {}, NOW, 3.0, vendor="openai")
    assert (r.status, r.code) == (403, "sovereignty_violation")
    r = refused(caller(sovereignty=True), LLAMA, [us], {}, NOW, 3.0)
    assert (r.status, r.code) == (503, "model_unavailable")


def test_cold_start_with_retry_after_else_unavailable():
    r = refused(caller(), LLAMA, [gpu("deploying", age=1.0)], {}, NOW, 3.0)
    assert (r.status, r.code, r.retry_after) == (503, "cold_start", 2)
    r = refused(caller(), LLAMA, [gpu("failed")], {}, NOW, 3.0)
    assert (r.status, r.code, r.retry_after) == (503, "model_unavailable", None)


def test_an_instance_key_reaches_only_its_instance():
    own, other = gpu(), gpu()
    me = caller(instance_id=own.instance_id)
    assert route(me, LLAMA, [other, own], {}, NOW, 3.0) == [own]
    other_model = CatalogModel("mistral-nemo-12b", True, "mistral", 0)
    r = refused(me, other_model, [other, own], {}, NOW, 3.0)
    assert (r.status, r.code) == (403, "model_not_allowed")


def test_estimates():
    assert estimate_tokens(0) == 0 and estimate_tokens(1) == 1 and estimate_tokens(400) == 100


def test_an_embedding_model_answers_only_embeddings_and_embeddings_only_it():
    embed = CatalogModel("e5", serveable=True, vendor=None, created=0, modality="embedding")
    chat = CatalogModel("c", serveable=True, vendor=None, created=0, modality="chat")
    assert check_model(caller(), "e5", embed, "embeddings") is embed
    assert check_model(caller(), "c", chat, "chat/completions") is chat
    assert check_model(caller(), "llama-3.1-8b", LLAMA, "embeddings") is LLAMA  # not known
    for slug, model, kind in (("e5", embed, "chat/completions"), ("c", chat, "embeddings")):
        with pytest.raises(GatewayRefusal) as e:
            check_model(caller(), slug, model, kind)
        assert (e.value.status, e.value.code, e.value.param) == (400, "wrong_modality", "model")
        assert repr(model.modality) in e.value.message
