"""Health checks of instance endpoints: one small chat completion through httpx."""

from __future__ import annotations

import time

import httpx

from application.ports import ChatCheck

PING = "health check: reply with anything"


class HttpProber:
    """Implements ``EndpointProber``. The instance key goes in the header, never in a result."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout

    def chat(self, endpoint_url: str, api_key: str, model: str) -> ChatCheck:
        url = endpoint_url.rstrip("/") + "/chat/completions"
        body = {"model": model, "messages": [{"role": "user", "content": PING}], "max_tokens": 16}
        started = time.perf_counter()
        try:
            response = httpx.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            return ChatCheck(
                False, None, _ms(started), f"{type(exc).__name__}: endpoint unreachable"
            )
        latency = _ms(started)
        if response.status_code != 200:
            return ChatCheck(False, response.status_code, latency, f"HTTP {response.status_code}")
        try:
            answer = response.json()
            reply = answer["choices"][0]["message"]["content"]
            usage = {k: int(v) for k, v in answer.get("usage", {}).items()}
        except (ValueError, KeyError, IndexError, TypeError):
            return ChatCheck(False, 200, latency, "not an OpenAI chat completion")
        return ChatCheck(True, 200, latency, None, reply, usage)


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
