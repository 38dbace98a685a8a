"""``POST /instances/{id}/test`` through the gateway's forwarding code (``forward_once``)."""

from __future__ import annotations

import asyncio
import time

import orjson

from application.ports import ChatCheck

PING = "health check: reply with anything"


class GatewayProber:
    """Implements ``EndpointProber``. The instance key goes in the header, never in a result.

    Called from a worker thread (a sync route, the provisioning jobs): each check runs on an
    event loop of its own, with a session of its own and the gateway's timeouts.
    """

    def __init__(self, connect_timeout: float = 5.0, total_timeout: float = 10.0) -> None:
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout

    def chat(self, endpoint_url: str, api_key: str, model: str) -> ChatCheck:
        return asyncio.run(self._chat(endpoint_url, api_key, model))

    async def _chat(self, endpoint_url: str, api_key: str, model: str) -> ChatCheck:
        # Imported at the first check: serve's projections process, which runs the probes of
        # the provisioning jobs, loads the gateway and aiohttp only once there is an instance.
        import aiohttp

        from interfaces.gateway.handler import Upstream, forward_once

        timeout = aiohttp.ClientTimeout(total=self.total_timeout, sock_connect=self.connect_timeout)
        url = endpoint_url.rstrip("/") + "/chat/completions"
        body = {"model": model, "messages": [{"role": "user", "content": PING}], "max_tokens": 16}
        started = time.perf_counter()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                status, raw = await forward_once(session, url, api_key, orjson.dumps(body))
            except Upstream as e:
                return ChatCheck(
                    False, None, _ms(started), f"{e.refusal.code}: {e.refusal.message}"
                )
        latency = _ms(started)
        if status != 200:
            return ChatCheck(False, status, latency, f"HTTP {status}")
        try:
            answer = orjson.loads(raw)
            reply = answer["choices"][0]["message"]["content"]
            usage = {k: int(v) for k, v in answer.get("usage", {}).items()}
        except (ValueError, KeyError, IndexError, TypeError):
            return ChatCheck(False, 200, latency, "not an OpenAI chat completion")
        return ChatCheck(True, 200, latency, None, reply, usage)


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
