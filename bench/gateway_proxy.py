"""A minimal forwarding proxy with no logic: the floor a Python gateway can reach here.

``python -m bench.gateway_proxy --port P --upstream http://127.0.0.1:U/v1``: a raw ASGI app on
uvicorn (uvloop, httptools, one process) that forwards ``POST /v1/...`` to the upstream with one
shared aiohttp ``ClientSession`` and passes the answer back, SSE chunk by chunk. No
authentication, routing, metering or error mapping: what is left is the cost of the HTTP
server, the HTTP client and the event loop.

With ``--database CONNINFO`` it also writes one row per answer to PostgreSQL and commits it
before the answer's last byte leaves (a non-streamed answer is sent after the commit; a stream's
end after it): the floor of a gateway with durable metering on this machine's disk. The row is
the bare minimum (an id, the tenant, the answer's size), one autocommitted ``INSERT`` each on a
pool of connections: no group commit beyond the one PostgreSQL does on its own.
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn
from psycopg_pool import AsyncConnectionPool

Scope = dict[str, Any]
FLOOR_TABLE = "bench_floor_usage"
CREATE = f"""CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (
    id bigserial PRIMARY KEY, tenant text NOT NULL, size integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now())"""
INSERT = f"INSERT INTO {FLOOR_TABLE} (tenant, size) VALUES (%s, %s)"


class Proxy:
    def __init__(self, upstream: str, bearer: str, database: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.bearer = "Bearer " + bearer
        self.session: aiohttp.ClientSession | None = None
        self.database = database
        self.pool: AsyncConnectionPool[Any] | None = None

    async def record(self, size: int) -> None:
        """One row, committed (durable) when this returns; nothing without ``--database``."""
        if self.pool is not None:
            async with self.pool.connection() as conn:
                await conn.execute(INSERT, ("bench", size))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
                    self.session = aiohttp.ClientSession(connector=connector)
                    if self.database:
                        self.pool = AsyncConnectionPool(
                            self.database, min_size=8, max_size=32, kwargs={"autocommit": True}
                        )
                        await self.pool.open(wait=True)
                        async with self.pool.connection() as conn:
                            await conn.execute(CREATE)
                    await send({"type": "lifespan.startup.complete"})
            if self.session is not None:
                await self.session.close()
            if self.pool is not None:
                await self.pool.close()
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
                size = 0
                async for part in answer.content.iter_any():
                    size += len(part)
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                await self.record(size)
                await send({"type": "http.response.body", "body": b""})
                return
            data = await answer.read()
            await self.record(len(data))
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
    parser.add_argument("--database", help="PostgreSQL conninfo: commit a row per answer")
    args = parser.parse_args()
    uvicorn.run(
        Proxy(args.upstream, args.bearer, args.database),
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
