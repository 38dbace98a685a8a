"""``hostplane catalog import``, run as an operator runs it, on a real database."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain.pricing import Model
from tests.helpers import usage_record
from tests.integration.test_cli import hostplane

FIXTURES = Path(__file__).parent.parent / "fixtures"
LITELLM = FIXTURES / "litellm_prices.json"
OPENROUTER = FIXTURES / "openrouter_models.json"


@pytest.fixture
def run(database_conninfo, tmp_path, admin):  # admin: the server (and its database) is up
    def run(path: Path, rate: str = "0.92") -> str:
        result = hostplane(
            "catalog", "import", str(path), "--eur-per-usd", rate,
            database=database_conninfo, data_dir=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    return run


def model(admin: Any, slug: str) -> dict[str, Any]:
    # From the list: a slug with a slash ("groq/...") has no /models/{id} path.
    r = admin.get("/models")
    assert r.status_code == 200, r.text
    (found,) = [m for m in r.json()["data"] if m["id"] == slug]
    return found


def line(output: str, label: str) -> str:
    return next(x for x in output.splitlines() if x.startswith(label + ":"))


def litellm_file(tmp_path: Path, slug: str, usd_in: str, usd_out: str) -> Path:
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_text(
        "{" + json.dumps(slug) + ': {"max_input_tokens": 32768, "input_cost_per_token": '
        f'{usd_in}, "output_cost_per_token": {usd_out}, "litellm_provider": "openai", '
        '"mode": "chat"}}'
    )
    return path


def test_a_litellm_price_list_registers_its_models_at_exact_eur_prices(run, admin):
    output = run(LITELLM)

    assert "litellm format" in output
    mistral = model(admin, "mistral-large-latest")  # the name Mistral's own API knows
    assert (mistral["input_eur_per_mtok"], mistral["output_eur_per_mtok"]) == ("1.84", "5.52")
    assert (mistral["vendor"], mistral["modality"], mistral["context_length"]) == (
        "mistral",
        "chat",
        128000,
    )
    assert mistral["serveable"] is False
    embedding = model(admin, "text-embedding-3-small")
    assert embedding["modality"] == "embedding"
    assert Decimal(embedding["input_eur_per_mtok"]) == Decimal("0.0184")
    groq = model(admin, "groq/llama-3.1-8b-instant")  # not a BYOK vendor: no vendor
    assert (groq["vendor"], groq["context_length"]) == (None, 128000)
    # gpt-4o's default price is 2.30/9.20 EUR: $2.50/$10 at 0.92 is the same price.
    assert "gpt-4o" in line(output, "unchanged")
    skipped = output[output.index("skipped:") :]
    for name, why in (
        ("sample_spec", "not a model"),
        ("dall-e-3", "no price per token"),
        ("cohere/rerank-english-v3.0", "mode 'rerank'"),
        ("Llama-3.3-70B", "lowercase slug"),
    ):
        assert any(name in x and why in x for x in skipped.splitlines()), (name, skipped)


def test_importing_the_same_list_again_records_no_event(run, admin, container):
    run(LITELLM)
    head = container.runner.max_notification_id()

    output = run(LITELLM)

    assert line(output, "added") == "added: 0"
    assert line(output, "repriced") == "repriced: 0"
    assert container.runner.max_notification_id() == head


def test_an_openrouter_answer_is_read_by_its_shape_with_string_prices(run, admin):
    output = run(OPENROUTER, rate="0.9")

    assert "openrouter format" in output
    claude = model(admin, "claude-sonnet-4.5")
    assert claude["display_name"] == "Anthropic: Claude Sonnet 4.5"
    assert (claude["vendor"], claude["modality"], claude["context_length"]) == (
        "anthropic",
        "multimodal",
        1000000,
    )
    assert (claude["input_eur_per_mtok"], claude["output_eur_per_mtok"]) == ("2.7", "13.5")
    llama = model(admin, "meta-llama/llama-3.3-70b-instruct")
    assert (llama["vendor"], llama["input_eur_per_mtok"]) == (None, "0.117")
    assert "openrouter/auto" in output[output.index("skipped:") :]


def test_a_changed_price_applies_from_the_import_on_and_never_re_rates_earlier_usage(
    run, admin, tenant, tmp_path
):
    slug = f"import-{uuid.uuid4().hex[:8]}"
    run(litellm_file(tmp_path, slug, "0.000001", "0.000002"), rate="1")
    used = usage_record(tenant.key["id"], slug, "2025-10-30T10:00:00Z")
    assert tenant.api.post("/usage/events", json={"records": [used]}).status_code == 200
    bill = f"/team-billing/summary/{tenant.id}/2025-10-30/2025-10-31"
    before = tenant.api.get(bill).json()["token_cost"]

    output = run(litellm_file(tmp_path, slug, "0.000003", "0.000004"), rate="1")

    assert slug in line(output, "repriced")
    priced = model(admin, slug)
    assert (priced["input_eur_per_mtok"], priced["output_eur_per_mtok"]) == ("3", "4")
    assert priced["price_effective_from"] is not None
    assert tenant.api.get(bill).json()["token_cost"] == before == "0.002"
    target = str(Model.create_id(slug))
    audit = admin.get("/audit", params={"target_id": target}).json()["data"]
    assert [(e["action"], e["actor"]) for e in audit if "price" in e["action"]] == [
        ("model.price_changed", "cli")
    ]


def test_a_price_finer_than_a_micro_euro_per_million_tokens_is_rounded_and_said_so(
    run, admin, tmp_path
):
    slug = f"import-{uuid.uuid4().hex[:8]}"

    output = run(litellm_file(tmp_path, slug, "1.23456789e-07", "0"), rate="1")

    assert model(admin, slug)["input_eur_per_mtok"] == "0.123457"
    assert slug in line(output, "rounded to 6 decimal places")


def test_a_file_of_neither_format_is_refused_and_imports_nothing(database_conninfo, tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"models": [1, 2]}')

    result = hostplane(
        "catalog", "import", str(path), "--eur-per-usd", "0.92",
        database=database_conninfo, data_dir=tmp_path,
    )  # fmt: skip

    assert result.returncode == 2
    assert "neither LiteLLM" in result.stdout
