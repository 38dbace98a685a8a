"""``GatewayRoutes``: the raw ASGI layer that sends the inference paths to the gateway."""

from __future__ import annotations

from typing import Any

from interfaces.gateway.handler import Gateway, Receive, Scope, Send, is_inference_token

INFERENCE = frozenset(
    ("/v1/chat/completions", "/v1/embeddings", "/api/v1/chat/completions", "/api/v1/embeddings")
)


class GatewayRoutes:
    """Raw ASGI in front of the management API: the inference paths never reach FastAPI.

    ``GET /api/v1/models`` is the gateway's with a router or instance key, and the price book
    (FastAPI's) with a management token.
    """

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if (method == "POST" and path in INFERENCE) or (
                method == "GET"
                and (
                    path == "/v1/models" or (path == "/api/v1/models" and is_inference_token(scope))
                )
            ):
                await self.gateway.handle(scope, receive, send)
                return
        await self.app(scope, receive, send)
