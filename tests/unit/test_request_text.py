"""Request bodies: unpaired surrogates and non-numbers are refused where they are read, naming
the field; an error that repeats such text is still JSON."""

from __future__ import annotations

import json
import uuid

import orjson
import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from interfaces.http.errors import dumps
from interfaces.http.jsontext import unpaired_surrogate_at
from interfaces.http.schemas import KeyCreate, TenantCreate
from interfaces.http.usage_body import parse_usage_batch


def parsed(text: str) -> object:
    """A JSON document as FastAPI reads it (Python's json keeps a lone surrogate)."""
    return json.loads(text)


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ('{"name": "ok"}', None),
        ('{"name": "\\ud83d\\ude00"}', None),  # a pair: one character
        ('{"name": "\\ud800"}', ("name",)),
        ('{"a": "ok", "allowed_models": ["ok", "x\\udfff"]}', ("allowed_models", 1)),
        ('{"records": [{"request_id": "r"}, {"request_id": "\\udbff"}]}', ("records", 1, "request_id")),
        ('{"\\ud800": 1}', ("\\ud800",)),
    ],
)  # fmt: skip
def test_the_path_of_an_unpaired_surrogate_is_found(document, path):
    assert unpaired_surrogate_at(parsed(document)) == path


def test_a_deeply_nested_document_is_searched_without_recursion():
    nested: list = ["\ud800"]
    for _ in range(5_000):  # beyond the recursion limit
        nested = [nested]

    assert len(unpaired_surrogate_at(nested)) == 5_001


def test_a_body_with_an_unpaired_surrogate_is_a_validation_error_naming_the_field():
    with pytest.raises(ValidationError) as refused:
        KeyCreate.model_validate(parsed('{"name": "k", "allowed_models": ["\\ud800"]}'))

    assert [e["loc"] for e in refused.value.errors()] == [("allowed_models", 0)]


@pytest.mark.parametrize("weight", [True, "12", 12.5])
def test_a_number_given_as_a_boolean_a_string_or_a_fraction_is_a_validation_error(weight):
    with pytest.raises(ValidationError) as refused:
        TenantCreate.model_validate({"name": "acme", "weight": weight})

    assert [e["loc"] for e in refused.value.errors()] == [("weight",)]


def usage_body(**fields: object) -> bytes:
    record = {
        "request_id": "r",
        "key_id": str(uuid.UUID(int=7)),
        "model": "m",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "status": "success",
        "occurred_at": "2025-10-30T10:00:00Z",
        **fields,
    }
    return orjson.dumps({"records": [record]})


def test_a_usage_record_with_an_unpaired_surrogate_names_its_field():
    body = usage_body(request_id="SURROGATE").replace(b'"SURROGATE"', b'"\\ud800"')

    with pytest.raises(RequestValidationError) as refused:
        parse_usage_batch(body)

    assert [e["loc"] for e in refused.value.errors()] == [("body", "records", 0, "request_id")]


@pytest.mark.parametrize(
    ("field", "value"), [("prompt_tokens", "12"), ("latency_ms", True), ("cached_tokens", 1.0)]
)
def test_a_usage_count_that_is_not_an_integer_names_its_field(field, value):
    with pytest.raises(RequestValidationError) as refused:
        parse_usage_batch(usage_body(**{field: value}))

    assert [e["loc"] for e in refused.value.errors()] == [("body", "records", 0, field)]


def test_an_error_that_repeats_a_lone_surrogate_is_still_json():
    body = dumps({"error": {"message": "bad \ud800", "param": "\udfff"}})

    assert orjson.loads(body) == {"error": {"message": "bad \\ud800", "param": "\\udfff"}}
