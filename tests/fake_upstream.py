"""A fake OpenAI-compatible upstream (the vendor behind a BYOK key), for the gateway's tests.

It answers like the OpenAI API: ``POST /v1/chat/completions`` (a ``chat.completion``, or with
``stream`` an SSE stream of ``chat.completion.chunk`` objects, then a usage chunk with empty
``choices`` when ``stream_options.include_usage`` is set, then ``data: [DONE]``),
``POST /v1/embeddings`` (floats, or base64 float32 as the SDK asks by default) and
``GET /v1/models``; errors in OpenAI's shape. The same routes answer under ``/<vendor>/v1``, so
that one fake can stand behind every vendor's base URL and tell which one was called.

It records what it received (path, vendor, bearer, body) and the usage it reported for each
answer, and can be told how to answer a model (``script``), or one request by header
(``X-Fake-Status``, ``X-Fake-Stall``, ``X-Fake-Chunk-Delay``, ``X-Fake-Words``,
``X-Fake-No-Usage``, ``X-Fake-Split``), or by a model name containing ``fail-<status>``, ``stall-<seconds>`` or
``no-usage``:

- ``status``: fail with this status and an OpenAI error body (``error_code``, ``error_type``);
- ``stall``: sleep this many seconds before answering (before any byte of the answer);
- ``chunk_delay``: sleep this long between streamed chunks;
- ``words``: how many content chunks (= completion tokens) to produce;
- ``usage=False``: report no usage (no ``usage`` field; no usage chunk in a stream);
- ``split``: write a stream in pieces of this many bytes, cut anywhere (mid-event, mid-line),
  each piece after ``chunk_delay``, as a network can deliver it;
- ``gzip``: send a non-streamed answer gzip-compressed (``Content-Encoding: gzip``), as a real
  API does for a client that accepts it.

Every answer sets a cookie (``AWSALB``, a new value each time), as the load balancer in front
of a real API does (api.openai.com's sets ``__cf_bm``), so that a test can see whether a client
sends it back (``Received.headers`` holds the request's ``Cookie``, if any).

Usage is deterministic: prompt tokens = the number of whitespace-separated words in the
messages' contents plus 3 per message; completion tokens = ``words``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

VENDORS = ("openai", "anthropic", "google", "mistral", "deepseek", "qwen", "moonshot", "minimax")
EMBEDDING_SIZE = 8


@dataclass(frozen=True)
class Behaviour:
    """How the fake answers a request."""

    status: int | None = None
    error_code: str | None = None
    error_type: str | None = None
    stall: float = 0.0
    chunk_delay: float = 0.0
    words: int = 5
    usage: bool = True
    split: int = 0
    gzip: bool = False


@dataclass
class Received:
    """One request the fake received, and what it did with it."""

    path: str
    vendor: str | None  # the ``/<vendor>/v1`` prefix it came in on, None for plain ``/v1``
    bearer: str | None
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    response_id: str | None = None
    status: int = 200
    # The usage this answer carried or would have carried (also when ``usage=False`` hid it).
    usage: dict[str, int] | None = None
    reported_usage: bool = False  # whether the usage went out to the caller
    first_byte_at: float | None = None
    finished_at: float | None = None
    completed: bool = False  # the whole answer was written (a stream to its [DONE])
    chunks_written: int = 0


def prompt_tokens_of(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if isinstance(messages, list):
        n = 0
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            n += 3 + len(str(content or "").split())
        return n
    inputs = body.get("input")
    if isinstance(inputs, str):
        return len(inputs.split()) or 1
    if isinstance(inputs, list):
        return sum(len(x.split()) or 1 if isinstance(x, str) else 1 for x in inputs)
    return 1


COOKIE = "AWSALB"  # an AWS load balancer's sticky-session cookie


async def set_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """A cookie on every answer, as its headers go out (streamed answers too). A header, not
    ``set_cookie``: this hook runs after aiohttp turned the response's cookies into headers."""
    response.headers.add("Set-Cookie", f"{COOKIE}={uuid.uuid4().hex}; Max-Age=604800; Path=/")


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def embedding_of(text: str, index: int) -> list[float]:
    """A deterministic vector, exactly representable as float32."""
    seed = sum(text.encode()) + index
    return [((seed * (i + 1)) % 97) / 8.0 for i in range(EMBEDDING_SIZE)]


class FakeUpstream:
    """The fake upstream server, on a loopback port, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.scripts: dict[str, Behaviour] = {}
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: web.AppRunner | None = None
        self.thread: threading.Thread | None = None
        self.port = 0

    # -- control --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, vendor: str | None = None) -> str:
        """The OpenAI-compatible base URL (``.../v1``) of one vendor, or the plain one."""
        return f"{self.url}/{vendor}/v1" if vendor else f"{self.url}/v1"

    def upstream_urls(self) -> dict[str, str]:
        """Every vendor's base URL, for the gateway's ``upstream_urls`` setting."""
        return {v: self.base_url(v) for v in VENDORS}

    def upstream_env(self) -> dict[str, str]:
        """The same, as ``HOSTPLANE_UPSTREAM_<VENDOR>_URL`` environment variables."""
        return {f"HOSTPLANE_UPSTREAM_{v.upper()}_URL": self.base_url(v) for v in VENDORS}

    def script(self, model: str, **behaviour: Any) -> None:
        """Answer every request for ``model`` this way (until scripted again)."""
        with self.lock:
            self.scripts[model] = Behaviour(**behaviour)

    def requests_for(self, model: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.body.get("model") == model]

    def by_id(self, response_id: str) -> Received:
        with self.lock:
            return next(r for r in self.received if r.response_id == response_id)

    def finished(self, response_id: str, timeout: float = 15) -> Received:
        """The request that answered ``response_id`` once its handler is done writing: a client
        can read the last bytes before the handler's ``write`` returns and marks it."""
        deadline = time.monotonic() + timeout
        while (got := self.by_id(response_id)).finished_at is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the answer {response_id} did not finish")
            time.sleep(0.005)
        return got

    def wait_finished(self, model: str, n: int, timeout: float = 15) -> list[Received]:
        """The requests for ``model`` once ``n`` of them have finished answering."""
        deadline = time.monotonic() + timeout
        while True:
            done = [r for r in self.requests_for(model) if r.finished_at is not None]
            if len(done) >= n:
                return done
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(done)} of {n} answers for {model} finished")
            time.sleep(0.02)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.on_response_prepare.append(set_cookie)
            for prefix in ["", *(f"/{v}" for v in VENDORS)]:
                app.router.add_post(prefix + "/v1/chat/completions", self.chat)
                app.router.add_post(prefix + "/v1/embeddings", self.embeddings)
                app.router.add_get(prefix + "/v1/models", self.models)
            self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
            loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.runner.cleanup())
            loop.close()

        self.thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(timeout=10)

    # -- handlers -------------------------------------------------------------------------

    def behaviour_for(self, request: web.Request, model: str) -> Behaviour:
        with self.lock:
            b = self.scripts.get(model, Behaviour())
        if m := re.search(r"fail-(\d{3})", model):
            b = replace(b, status=int(m.group(1)))
        if m := re.search(r"stall-(\d+(?:\.\d+)?)", model):
            b = replace(b, stall=float(m.group(1)))
        if "no-usage" in model:
            b = replace(b, usage=False)
        h = request.headers
        if "X-Fake-Status" in h:
            b = replace(b, status=int(h["X-Fake-Status"]))
        if "X-Fake-Stall" in h:
            b = replace(b, stall=float(h["X-Fake-Stall"]))
        if "X-Fake-Chunk-Delay" in h:
            b = replace(b, chunk_delay=float(h["X-Fake-Chunk-Delay"]))
        if "X-Fake-Words" in h:
            b = replace(b, words=int(h["X-Fake-Words"]))
        if "X-Fake-No-Usage" in h:
            b = replace(b, usage=False)
        if "X-Fake-Split" in h:
            b = replace(b, split=int(h["X-Fake-Split"]))
        return b

    async def receive(self, request: web.Request) -> tuple[Received, Any]:
        auth = request.headers.get("Authorization", "")
        bearer = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        first = request.path.split("/")[1]
        try:
            body = await request.json()
        except ValueError:
            body = None
        got = Received(
            path=request.path,
            vendor=first if first in VENDORS else None,
            bearer=bearer,
            headers=dict(request.headers),
            body=body if isinstance(body, dict) else {},
        )
        with self.lock:
            self.received.append(got)
        return got, body

    def refuse(
        self,
        got: Received,
        status: int,
        message: str,
        type_: str,
        code: str | None,
        param: str | None = None,
    ) -> web.Response:
        got.status = status
        got.finished_at = time.monotonic()
        got.completed = True
        return web.Response(
            status=status,
            body=error_body(message, type_, code, param),
            content_type="application/json",
        )

    def checked(self, got: Received, body: Any) -> web.Response | None:
        """OpenAI's own refusals: no key, a malformed body, no model."""
        if not got.bearer:
            return self.refuse(
                got,
                401,
                "You didn't provide an API key.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request."
            return self.refuse(got, 400, message, "invalid_request_error", None)
        if not isinstance(body.get("model"), str):
            message = "you must provide a model parameter"
            return self.refuse(got, 400, message, "invalid_request_error", None, "model")
        return None

    async def failed(self, got: Received, b: Behaviour) -> web.Response | None:
        if b.stall:
            await asyncio.sleep(b.stall)
        if b.status is None:
            return None
        status = b.status
        if status >= 500:
            type_, code = "server_error", b.error_code
            message = "The server had an error while processing your request."
        elif status == 429:
            type_, code = "requests", b.error_code or "rate_limit_exceeded"
            message = "Rate limit reached for requests."
        elif status == 401:
            type_, code = "invalid_request_error", b.error_code or "invalid_api_key"
            message = "Incorrect API key provided."
        elif status == 404:
            type_, code = "invalid_request_error", b.error_code or "model_not_found"
            message = f"The model `{got.body.get('model')}` does not exist."
        else:
            type_, code = "invalid_request_error", b.error_code or "invalid_value"
            message = "Invalid value for 'messages'."
        return self.refuse(got, status, message, b.error_type or type_, code)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        got, body = await self.receive(request)
        if (refused := self.checked(got, body)) is not None:
            return refused
        b = self.behaviour_for(request, body["model"])
        if (refused := await self.failed(got, b)) is not None:
            return refused
        rid = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        prompt = prompt_tokens_of(body)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": b.words,
            "total_tokens": prompt + b.words,
        }
        got.response_id, got.usage = rid, usage
        words = [f"word{i}" for i in range(b.words)]
        if not body.get("stream"):
            answer: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": body["model"],
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": " ".join(words),
                            "refusal": None,
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
            }
            if b.usage:
                answer["usage"] = usage
                got.reported_usage = True
            got.first_byte_at = got.finished_at = time.monotonic()
            got.completed = True
            response = web.json_response(answer)
            if b.gzip:
                response.enable_compression(web.ContentCoding.gzip)
            return response
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                c["usage"] = None  # as OpenAI does: null on every chunk but the last
            return c

        chunks = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
        chunks += [chunk({"content": (" " if i else "") + w}, None) for i, w in enumerate(words)]
        chunks.append(chunk({}, "stop"))
        if include_usage and b.usage:
            chunks.append({**chunk({}, None), "choices": [], "usage": usage})
            got.reported_usage = True
        try:
            if b.split:
                whole = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
                whole += b"data: [DONE]\n\n"
                for start in range(0, len(whole), b.split):
                    if start and b.chunk_delay:
                        await asyncio.sleep(b.chunk_delay)
                    await response.write(whole[start : start + b.split])
                    if got.first_byte_at is None:
                        got.first_byte_at = time.monotonic()
                got.chunks_written = len(chunks)
            else:
                for i, c in enumerate(chunks):
                    if i and b.chunk_delay:
                        await asyncio.sleep(b.chunk_delay)
                    await response.write(b"data: " + json.dumps(c).encode() + b"\n\n")
                    got.chunks_written += 1
                    if got.first_byte_at is None:
                        got.first_byte_at = time.monotonic()
                await response.write(b"data: [DONE]\n\n")
            got.completed = True
        except (ConnectionResetError, asyncio.CancelledError):
            got.finished_at = time.monotonic()
            raise
        got.finished_at = time.monotonic()
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        got, body = await self.receive(request)
        if (refused := self.checked(got, body)) is not None:
            return refused
        b = self.behaviour_for(request, body["model"])
        if (refused := await self.failed(got, b)) is not None:
            return refused
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = []
        for i, text in enumerate(texts):
            vector = embedding_of(str(text), i)
            if body.get("encoding_format") == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                value: Any = base64.b64encode(packed).decode()
            else:
                value = vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        prompt = prompt_tokens_of(body)
        usage = {"prompt_tokens": prompt, "total_tokens": prompt}
        got.response_id, got.usage = None, usage
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if b.usage:
            answer["usage"] = usage
            got.reported_usage = True
        got.first_byte_at = got.finished_at = time.monotonic()
        got.completed = True
        return web.json_response(answer)

    async def models(self, request: web.Request) -> web.Response:
        with self.lock:
            names = sorted(self.scripts)
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in names
        ]
        return web.json_response({"object": "list", "data": data})


@contextlib.contextmanager
def running_fake_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    try:
        yield fake
    finally:
        fake.stop()
