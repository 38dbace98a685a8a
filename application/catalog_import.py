"""Reading the price lists operators already have into price-book entries (no I/O, no store).

Two formats are understood, told apart by their shape:

- LiteLLM's ``model_prices_and_context_window.json``: an object of model name to
  ``{"input_cost_per_token", "output_cost_per_token", "max_input_tokens" | "max_tokens",
  "litellm_provider", "mode", ...}``, prices in USD per token as JSON numbers;
- OpenRouter's ``GET /api/v1/models`` answer: ``{"data": [{"id", "name", "context_length",
  "pricing": {"prompt", "completion"}, "architecture": {...}}]}``, USD per token as strings.

Numbers are read as ``Decimal`` straight from the JSON text and converted exactly; only a
result finer than the price book's 6 decimal places (1e-6 EUR per million tokens) is rounded,
half to even, and that is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

MTOK = Decimal(1_000_000)
PLACES = Decimal("0.000001")

# LiteLLM's provider names (``litellm_provider``) that are one of hostplane's BYOK vendors
# (``domain.instance.UPSTREAMS``; tests/unit/test_catalog_import.py holds them to it).
LITELLM_VENDORS: dict[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "dashscope": "qwen",
    "moonshot": "moonshot",
    "minimax": "minimax",
}
# OpenRouter's id prefixes (the model's author) that are one of hostplane's BYOK vendors.
OPENROUTER_VENDORS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "mistralai": "mistral",
    "deepseek": "deepseek",
    "qwen": "qwen",
    "moonshotai": "moonshot",
    "minimax": "minimax",
}
# LiteLLM's ``mode`` to hostplane's modality; other modes (rerank, moderation...) are skipped.
LITELLM_MODES: dict[str, str] = {
    "chat": "chat",
    "responses": "chat",
    "completion": "text",
    "embedding": "embedding",
    "image_generation": "image",
    "audio_transcription": "audio",
    "audio_speech": "audio",
}


class CatalogFormatError(ValueError):
    """The file is neither of the two price-list formats."""


@dataclass(frozen=True)
class Entry:
    """One model as a price list describes it, its prices already in EUR per million tokens."""

    slug: str
    display_name: str
    modality: str
    context_length: int
    input_eur_per_mtok: Decimal
    output_eur_per_mtok: Decimal
    vendor: str | None
    rounded: bool  # the exact conversion had more than 6 decimal places


@dataclass(frozen=True)
class Skipped:
    name: str
    why: str


@dataclass(frozen=True)
class PriceList:
    format: str  # "litellm" or "openrouter"
    entries: list[Entry]
    skipped: list[Skipped]


def read_price_list(text: str | bytes, eur_per_usd: Decimal) -> PriceList:
    """The entries of a LiteLLM or OpenRouter price list, converted at ``eur_per_usd``."""
    if not (eur_per_usd.is_finite() and eur_per_usd > 0):
        raise ValueError("the exchange rate must be a positive number of EUR per USD")
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError as e:
        raise CatalogFormatError(f"not JSON: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        fmt, items = "openrouter", [_openrouter(m, eur_per_usd) for m in data["data"]]
    elif isinstance(data, dict) and any(_looks_litellm(v) for v in data.values()):
        fmt, items = "litellm", [_litellm(k, v, eur_per_usd) for k, v in data.items()]
    else:
        raise CatalogFormatError(
            "neither LiteLLM's model_prices_and_context_window.json (an object of models with"
            ' "input_cost_per_token") nor OpenRouter\'s /api/v1/models answer ({"data": [...]})'
        )
    entries: list[Entry] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Skipped):
            skipped.append(item)
        elif item.slug in seen:  # "mistral/x" and "x" both name the vendor's model x
            skipped.append(Skipped(item.slug, "listed twice; the first entry was taken"))
        else:
            seen.add(item.slug)
            entries.append(item)
    return PriceList(fmt, entries, skipped)


def to_eur_per_mtok(usd_per_token: Decimal, eur_per_usd: Decimal) -> tuple[Decimal, bool]:
    """Exact EUR per million tokens, and whether it had to be rounded to 6 decimal places."""
    exact = usd_per_token * MTOK * eur_per_usd
    rounded = exact.quantize(PLACES, ROUND_HALF_EVEN)
    value = rounded.normalize()
    if value == value.to_integral_value():
        value = value.quantize(Decimal(1))  # 30, not 3E+1
    return value, rounded != exact


def _looks_litellm(value: object) -> bool:
    return isinstance(value, dict) and ("input_cost_per_token" in value or "mode" in value)


def _usd(value: Any) -> Decimal | None:
    """A USD amount from a JSON number (already a Decimal or int) or a numeric string."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(value) if isinstance(value, int | str) else value
    except InvalidOperation:
        return None
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
        return None
    return amount


def _tokens(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value() and value > 0:
        return int(value)
    return None


def _entry(
    slug: str,
    name: str,
    modality: str,
    context: int,
    usd_in: Decimal,
    usd_out: Decimal,
    vendor: str | None,
    rate: Decimal,
) -> Entry:
    price_in, rounded_in = to_eur_per_mtok(usd_in, rate)
    price_out, rounded_out = to_eur_per_mtok(usd_out, rate)
    return Entry(
        slug, name, modality, context, price_in, price_out, vendor, rounded_in or rounded_out
    )


def _litellm(name: str, spec: Any, rate: Decimal) -> Entry | Skipped:
    if name == "sample_spec":
        return Skipped(name, "the file's description of its own fields, not a model")
    if not isinstance(spec, dict):
        return Skipped(name, "not an object")
    mode = spec.get("mode")
    modality = LITELLM_MODES.get(mode) if isinstance(mode, str) else None
    if modality is None:
        return Skipped(name, f"mode {mode!r} has no hostplane modality")
    usd_in = _usd(spec.get("input_cost_per_token"))
    usd_out = _usd(spec.get("output_cost_per_token", 0 if modality == "embedding" else None))
    if usd_in is None or usd_out is None:
        return Skipped(name, "no price per token (input_cost_per_token, output_cost_per_token)")
    context = _tokens(spec.get("max_input_tokens")) or _tokens(spec.get("max_tokens"))
    if context is None:
        return Skipped(name, "no context window (max_input_tokens or max_tokens)")
    provider = spec.get("litellm_provider")
    vendor = LITELLM_VENDORS.get(provider) if isinstance(provider, str) else None
    slug = name
    if vendor is not None and isinstance(provider, str) and name.startswith(provider + "/"):
        slug = name[len(provider) + 1 :]  # the name the vendor's own API knows
    return _entry(slug, slug, modality, context, usd_in, usd_out, vendor, rate)


def _openrouter(model: Any, rate: Decimal) -> Entry | Skipped:
    if not isinstance(model, dict) or not isinstance(model.get("id"), str):
        return Skipped(str(model)[:80], "a model without an id")
    ident = model["id"]
    pricing = model.get("pricing")
    pricing = pricing if isinstance(pricing, dict) else {}
    usd_in, usd_out = _usd(pricing.get("prompt")), _usd(pricing.get("completion"))
    if usd_in is None or usd_out is None:
        return Skipped(ident, "no price per token (pricing.prompt, pricing.completion)")
    context = _tokens(model.get("context_length"))
    if context is None:
        return Skipped(ident, "no context window (context_length)")
    author, _, rest = ident.partition("/")
    vendor = OPENROUTER_VENDORS.get(author) if rest else None
    slug = rest if vendor is not None else ident
    name = model.get("name") if isinstance(model.get("name"), str) else ident
    return _entry(slug, name, _openrouter_modality(model), context, usd_in, usd_out, vendor, rate)


def _openrouter_modality(model: dict[str, Any]) -> str:
    arch = model.get("architecture")
    arch = arch if isinstance(arch, dict) else {}
    inputs = arch.get("input_modalities")
    outputs = arch.get("output_modalities")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        text = arch.get("modality") if isinstance(arch.get("modality"), str) else "text->text"
        left, _, right = text.partition("->")
        inputs, outputs = left.split("+"), right.split("+")
    if "image" in outputs:
        return "image"
    if "audio" in outputs:
        return "audio"
    if any(m != "text" for m in inputs):
        return "multimodal"
    return "chat"
