"""A minimal fast fake OpenAI upstream: a plain asyncio server, no framework.

``python -m bench.gateway_upstream --port P`` serves, over keep-alive HTTP/1.1:

- ``POST .../chat/completions``: a ``chat.completion`` with ``usage``; with ``"stream": true``
  an SSE stream (``chat.completion.chunk``s, one chunk per word, then the finishing chunk, a
  usage chunk when ``stream_options.include_usage`` is true, and ``data: [DONE]``), in chunked
  transfer encoding.
- ``GET /_stats``: what it has answered so far: requests, streamed, the usage it reported
  (prompt and completion tokens summed), and requests whose bearer was not the expected key.

Every answer has a unique ``id`` (a gateway bills by it) and a usage that varies from request
to request, so that a billing total equal to the sum reported here is no coincidence.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import orjson

T = TypeVar("T")

WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.streamed = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usage_reported = 0  # answers that carried a usage object
        self.wrong_bearer = 0
        self.bad_requests = 0

    def as_json(self) -> bytes:
        return orjson.dumps(self.__dict__)


def response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type
        + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def chunk(data: bytes) -> bytes:
    """One SSE event as one HTTP chunk."""
    event = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


class Upstream(asyncio.Protocol):
    """One connection: parses requests as they arrive (pipelining tolerated) and answers."""

    stats: Stats
    expected_bearer: bytes | None
    prefix: str
    counter = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            bearer = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"authorization":
                    bearer = value.strip()
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.handle(head.split(b" ", 2), bearer, body)

    def handle(self, line: list[bytes], bearer: bytes | None, body: bytes) -> None:
        stats = self.stats
        method, path = line[0], line[1] if len(line) > 1 else b""
        if method == b"GET" and path == b"/_stats":
            self.transport.write(response("200 OK", stats.as_json()))
            return
        if method != b"POST" or not path.endswith(b"/chat/completions"):
            stats.bad_requests += 1
            error = {"error": {"message": "not found", "type": "invalid_request_error"}}
            self.transport.write(response("404 Not Found", orjson.dumps(error)))
            return
        try:
            request = orjson.loads(body)
            model = request["model"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            stats.bad_requests += 1
            error = {"error": {"message": "bad request", "type": "invalid_request_error"}}
            self.transport.write(response("400 Bad Request", orjson.dumps(error)))
            return
        if self.expected_bearer is not None and bearer != b"Bearer " + self.expected_bearer:
            stats.wrong_bearer += 1
        Upstream.counter += 1
        n = Upstream.counter
        ident = f"chatcmpl-{self.prefix}{n}"
        created = int(time.time())
        usage = {
            "prompt_tokens": 10 + n % 17,
            "completion_tokens": len(WORDS) + n % 5,
            "total_tokens": 10 + n % 17 + len(WORDS) + n % 5,
        }
        stats.requests += 1
        if request.get("stream"):
            stats.streamed += 1
            include = bool((request.get("stream_options") or {}).get("include_usage"))
            self.stream(ident, created, model, usage if include else None)
        else:
            stats.usage_reported += 1
            stats.prompt_tokens += usage["prompt_tokens"]
            stats.completion_tokens += usage["completion_tokens"]
            answer = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(WORDS)},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            self.transport.write(response("200 OK", orjson.dumps(answer)))

    def stream(self, ident: str, created: int, model: str, usage: dict[str, int] | None) -> None:
        write = self.transport.write
        write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )

        def event(delta: dict[str, str], finish: str | None) -> bytes:
            body: dict[str, object] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if usage is not None:
                body["usage"] = None
            return chunk(orjson.dumps(body))

        write(event({"role": "assistant", "content": ""}, None))
        for word in WORDS:
            write(event({"content": word}, None))
        write(event({}, "stop"))
        if usage is not None:
            stats = self.stats
            stats.usage_reported += 1
            stats.prompt_tokens += usage["prompt_tokens"]
            stats.completion_tokens += usage["completion_tokens"]
            last = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            write(chunk(orjson.dumps(last)))
        write(chunk(b"[DONE]") + b"0\r\n\r\n")


async def serve(port: int, expected_bearer: str | None) -> None:
    Upstream.stats = Stats()
    Upstream.expected_bearer = expected_bearer.encode() if expected_bearer else None
    Upstream.prefix = os.urandom(4).hex() + "-"
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_upstream", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bearer", help="count requests whose bearer is not this key")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run_loop(serve(args.port, args.bearer))


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


if __name__ == "__main__":
    main()
