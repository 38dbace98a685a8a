"""Helpers shared by the test modules."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    """The OpenAI-shaped error of a response that must have failed with ``status``."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert isinstance(error["code"], str) and error["code"]
    return error


def names_field(error: dict[str, Any], field: str) -> bool:
    return error.get("param") == field or field in error["message"]


def assert_error(r: httpx.Response, status: int, field: str | None = None) -> None:
    """The response failed with ``status`` in the OpenAI shape, naming ``field`` if given."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert {"message", "type", "code"} <= error.keys()
    if field is not None:
        assert field in error["message"]


def new_model(
    admin: Any, input_price: str = "1.00", output_price: str = "2.00", prefix: str = "test"
) -> str:
    """A model of our own, so that no other test's price change moves our numbers."""
    slug = f"{prefix}-{uuid.uuid4().hex[:10]}"
    r = admin.post(
        "/models",
        json={
            "id": slug,
            "display_name": slug,
            "modality": "chat",
            "context_length": 8192,
            "input_eur_per_mtok": input_price,
            "output_eur_per_mtok": output_price,
        },
    )
    assert r.status_code == 201, r.text
    return slug


def usage_record(key_id: str, model: str, at: str, **fields: Any) -> dict[str, Any]:
    """One usage record; by default 1,000 prompt and 500 completion tokens, successful."""
    return {
        "request_id": fields.pop("request_id", uuid.uuid4().hex),
        "key_id": key_id,
        "model": model,
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "status": "success",
        "latency_ms": 100,
        "occurred_at": at,
        **fields,
    }


def ensure_group(admin: Any, name: str, weight: int = 100) -> str:
    """A fair-share group named ``name`` (a tenant can only be put in one that exists)."""
    r = admin.post("/fairshare/groups", json={"name": name, "weight": weight})
    assert r.status_code in (201, 409), r.text  # 409: another test made it already
    return name
