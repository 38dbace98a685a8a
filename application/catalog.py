"""The default catalog loaded on first start: the models the seeds name, with EUR prices.

Prices are plausible list prices converted to EUR per million tokens; operators change them
with ``PUT /api/v1/models/{id}``.
"""

from __future__ import annotations

# slug, display name, modality, context length, input EUR/Mtok, output EUR/Mtok, serveable on EU GPUs
DEFAULT_MODELS: list[tuple[str, str, str, int, str, str, bool]] = [
    ("llama-3.1-8b", "Llama 3.1 8B Instruct", "chat", 131072, "0.05", "0.08", True),
    ("mistral-nemo-12b", "Mistral NeMo 12B", "chat", 131072, "0.13", "0.13", True),
    ("gpt-4o", "GPT-4o", "multimodal", 128000, "2.30", "9.20", False),
    ("gpt-4o-mini", "GPT-4o mini", "multimodal", 128000, "0.14", "0.55", False),
    ("gpt-4-turbo", "GPT-4 Turbo", "multimodal", 128000, "9.20", "27.60", False),
    ("o1-preview", "o1-preview", "chat", 128000, "13.80", "55.20", False),
    ("o1-mini", "o1-mini", "chat", 128000, "2.76", "11.04", False),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5", "multimodal", 200000, "2.76", "13.80", False),
    ("claude-haiku-4", "Claude Haiku 4", "multimodal", 200000, "0.92", "4.60", False),
    ("claude-opus-4", "Claude Opus 4", "multimodal", 200000, "13.80", "69.00", False),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", "multimodal", 1048576, "1.15", "9.20", False),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", "multimodal", 1048576, "0.28", "2.30", False),
    ("deepseek-v4-pro", "DeepSeek V4 Pro", "chat", 131072, "0.50", "2.00", True),
    ("deepseek-v3", "DeepSeek V3", "chat", 131072, "0.25", "1.01", True),
    ("qwen3-max", "Qwen3 Max", "chat", 262144, "1.10", "5.50", True),
    ("qwen3-plus", "Qwen3 Plus", "chat", 131072, "0.37", "1.10", True),
    ("kimi-k2", "Kimi K2", "chat", 131072, "0.55", "2.30", True),
    ("minimax-m3", "MiniMax M3", "chat", 1000000, "0.37", "1.47", False),
    ("minimax-m2.7", "MiniMax M2.7", "chat", 1000000, "0.28", "1.10", False),
]

# Whose each default model is: a tenant's BYOK upstream of that vendor can serve it (the
# open-weight models too, through their makers' own APIs; Llama has no vendor here).
DEFAULT_VENDORS: dict[str, str] = {
    "mistral-nemo-12b": "mistral",
    "gpt-4o": "openai",
    "gpt-4o-mini": "openai",
    "gpt-4-turbo": "openai",
    "o1-preview": "openai",
    "o1-mini": "openai",
    "claude-sonnet-4-5": "anthropic",
    "claude-haiku-4": "anthropic",
    "claude-opus-4": "anthropic",
    "gemini-2.5-pro": "google",
    "gemini-2.5-flash": "google",
    "deepseek-v4-pro": "deepseek",
    "deepseek-v3": "deepseek",
    "qwen3-max": "qwen",
    "qwen3-plus": "qwen",
    "kimi-k2": "moonshot",
    "minimax-m3": "minimax",
    "minimax-m2.7": "minimax",
}

# instance type, region, EUR per hour
DEFAULT_GPU_RATES: list[tuple[str, str, str]] = [
    ("text", "EU", "0.85"),
    ("text", "US", "0.75"),
    ("large", "EU", "2.40"),
    ("large", "US", "2.10"),
    ("embedding", "EU", "0.45"),
    ("embedding", "US", "0.40"),
]
