"""A minimal forwarding proxy with no logic: the floor a Python gateway can reach here.

``python -m bench.gateway_proxy --port P --upstream http://127.0.0.1:U/v1``: a raw ASGI app on
uvicorn (uvloop, httptools, one process) that forwards ``POST /v1/...`` to the upstream with one
shared aiohttp ``ClientSession`` and passes the answer back, SSE chunk by chunk. No
authentication, routing, metering or error mapping: what is left is the cost of the HTTP
server, the HTTP client and the event loop.
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

Scope = dict[str, Any]


class Proxy:
    def __init__(self, upstream: str, bearer: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.bearer = "Bearer " + bearer
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
                    self.session = aiohttp.ClientSession(connector=connector)
                    await send({"type": "lifespan.startup.complete"})
            if self.session is not None:
                await self.session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.session is not None
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"].removeprefix("/v1")
        headers = {"Authorization": self.bearer, "Content-Type": "application/json"}
        async with self.session.post(self.upstream + path, data=body, headers=headers) as answer:
            content_type = answer.headers.get("Content-Type", "application/json").encode()
            if answer.headers.get("Transfer-Encoding", "").lower() == "chunked":
                await send(
                    {
                        "type": "http.response.start",
                        "status": answer.status,
                        "headers": [(b"content-type", content_type)],
                    }
                )
                async for part in answer.content.iter_any():
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await answer.read()
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": [
                        (b"content-type", content_type),
                        (b"content-length", str(len(data)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": data})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_proxy", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="OpenAI-compatible base URL")
    parser.add_argument("--bearer", default="sk-bench", help="the upstream's key")
    args = parser.parse_args()
    uvicorn.run(
        Proxy(args.upstream, args.bearer),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
