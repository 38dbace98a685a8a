"""Every command that takes text or a number from outside refuses what a read model can't store,
naming the field, and records nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from domain.apikey import ApiKey
from domain.base import InvalidValueError
from domain.budget import Budget
from domain.instance import Instance, check_external_key
from domain.pricing import GpuRate, Model
from domain.tenant import Tenant
from domain.usage import UsageInput, check_record
from domain.webhook import Webhook
from tests.unit.support import an_actor

NOW = datetime(2025, 10, 30, 12, 0, tzinfo=UTC)
NUL = "a\x00b"
SURROGATE = "a\ud800"


def tenant(**fields: Any) -> Tenant:
    values = {"name": "acme", "weight": 100, "tokens_per_minute": None, "group": None}
    return Tenant.register(**{**values, **fields}, wrapped_data_key=b"k", actor=an_actor())


def key(**fields: Any) -> ApiKey:
    values = {"tenant_id": uuid4(), "name": "k", "kind": "router", "now": NOW}
    return ApiKey.issue(**{**values, **fields}, actor=an_actor())[0]


def byok(**fields: Any) -> Instance:
    values = {"name": "label", "upstream": "openai", "external_key": "sk-aaaaaaaaaa"}
    values = {**values, **fields}
    return Instance.attach_upstream(
        tenant_id=uuid4(),
        name=values["name"],
        upstream=values["upstream"],
        external_key_ciphertext=b"c",
        external_key_last4=values["external_key"][-4:],
        actor=an_actor(),
    )


def external_key(value: str) -> None:
    check_external_key(value)


def model(**fields: Any) -> Model:
    values = {
        "slug": "m",
        "display_name": "M",
        "modality": "chat",
        "context_length": 8192,
        "input_eur_per_mtok": Decimal(1),
        "output_eur_per_mtok": Decimal(2),
        "serveable": False,
    }
    return Model.register(**{**values, **fields}, actor=an_actor())


def webhook(**fields: Any) -> Webhook:
    values = {"url": "https://e.com/h", "events": ["key.revoked"], "description": None}
    return Webhook.register(
        tenant_id=uuid4(), **{**values, **fields}, secret_ciphertext=b"s", actor=an_actor()
    )


def budget(**fields: Any) -> Budget:
    values = {"limit_eur": Decimal(10), "period": "monthly", "thresholds": [Decimal("0.5")]}
    return Budget.set(tenant_id=uuid4(), key_id=None, **{**values, **fields}, actor=an_actor())


REFUSED: list[tuple[str, Callable[[], Any]]] = [
    ("name", lambda: tenant(name=NUL)),
    ("name", lambda: tenant(name=SURROGATE)),
    ("group", lambda: tenant(group=NUL)),
    ("weight", lambda: tenant(weight=True)),
    ("weight", lambda: tenant(weight="12")),
    ("tokens_per_minute", lambda: tenant(tokens_per_minute=2**63)),
    ("tokens_per_minute", lambda: tenant().change_quota(2**63, an_actor())),
    ("name", lambda: key(name=SURROGATE)),
    ("allowed_models.0", lambda: key(allowed_models=[NUL])),
    ("allowed_models.1", lambda: key(allowed_models=["ok", SURROGATE])),
    ("allowed_models.0", lambda: key(allowed_models=["m" * 1_000_000])),
    ("allowed_models", lambda: key(allowed_models=["m"] * 10_000)),
    ("ip_allowlist.0", lambda: key(ip_allowlist=["10.0.0.0/8\x00"])),
    ("sovereignty_mode", lambda: key(sovereignty_mode="yes")),
    ("disabled", lambda: key().set_disabled("no", an_actor())),  # type: ignore[arg-type]
    ("name", lambda: byok(name=NUL)),
    ("name", lambda: byok(name=SURROGATE)),
    ("external_key", lambda: external_key("sk-aaaaaaa\x00")),
    ("external_key", lambda: external_key("sk-aaaaaaa\udfff")),
    ("display_name", lambda: model(display_name=NUL)),
    ("display_name", lambda: model().update(NUL, "chat", 8192, False, an_actor())),
    ("id", lambda: model(slug=SURROGATE)),
    ("context_length", lambda: model(context_length=2**63)),
    ("context_length", lambda: model(context_length=True)),
    ("serveable", lambda: model(serveable=1)),
    ("instance_type", lambda: GpuRate.set("te\x00xt", "EU", Decimal(1), an_actor())),
    ("region", lambda: GpuRate.set("text", "E\x00U", Decimal(1), an_actor())),
    ("eur_per_hour", lambda: GpuRate.set("text", "EU", Decimal("NaN"), an_actor())),
    ("url", lambda: webhook(url="http://[::1")),
    ("url", lambda: webhook(url="https://e.com/\x00")),
    ("description", lambda: webhook(description=NUL)),
    ("limit_eur", lambda: budget(limit_eur=True)),
    ("limit_eur", lambda: budget(limit_eur=Decimal("0E+1000000"))),
    ("thresholds", lambda: budget(thresholds=[Decimal("1E-1000000")])),
    ("thresholds", lambda: budget(thresholds=[Decimal("0.1")] * 21)),
]


@pytest.mark.parametrize(("field", "command"), REFUSED)
def test_a_command_refuses_what_a_read_model_cant_store_naming_the_field(field, command):
    with pytest.raises(InvalidValueError) as refused:
        command()

    assert refused.value.field == field


def test_the_far_future_expiry_that_utc_cant_represent_is_refused_not_an_overflow():
    at = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1)))

    with pytest.raises(InvalidValueError) as refused:
        key(expires_at=at)

    assert refused.value.field == "expires_at"


def usage(**fields: Any) -> UsageInput:
    values = {
        "request_id": "r",
        "key_id": uuid4(),
        "model": "m",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "status": "success",
        "latency_ms": 100,
        "occurred_at": NOW,
    }
    return UsageInput(**{**values, **fields})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id", NUL),
        ("request_id", SURROGATE),
        ("request_id", "r" * 201),
        ("prompt_tokens", 2**63),
        ("prompt_tokens", 10**9 + 1),
        ("completion_tokens", 2**64),
        ("completion_tokens", True),
        ("latency_ms", 86_400_001),
        ("latency_ms", "12"),
        ("occurred_at", datetime(1969, 12, 31, 23, 59, tzinfo=UTC)),
    ],
)
def test_a_usage_record_beyond_what_its_buckets_hold_is_a_problem_naming_the_field(field, value):
    problems = check_record(3, usage(**{field: value}), NOW)

    assert [(p.index, p.field) for p in problems] == [(3, field)]


def test_a_usage_record_at_its_largest_counts_is_accepted():
    largest = usage(prompt_tokens=10**9, completion_tokens=10**9, latency_ms=86_400_000)

    assert check_record(0, largest, NOW) == []


def test_a_provider_reason_that_isnt_storable_text_is_stored_cleaned():
    instance = Instance.request_deploy(
        tenant_id=uuid4(),
        model_id="m",
        region="EU",
        provider="simulated",
        instance_type="text",
        api_key_ciphertext=b"c",
        api_key_prefix="hp_ik_",
        hourly_rate_eur=Decimal(1),
        actor=an_actor(),
    )

    instance.transition("failed", an_actor(), reason="boom\x00\ud800" + "x" * 5000)

    assert instance.status_reason.startswith("boom\ufffd\ufffd")
    assert len(instance.status_reason) == 1000
