"""The simulated instances' OpenAI-compatible endpoint: an echo on loopback."""

from __future__ import annotations

import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from uuid import UUID

import orjson

PATH_RE = re.compile(r"^/instances/([0-9a-fA-F-]{36})/v1/(chat/completions|embeddings|models)$")


def _words(text: object) -> int:
    return len(str(text).split()) if text else 0


def echo_completion(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion answering the last user message with itself."""
    messages = body.get("messages") or []
    last = next(
        (m.get("content") for m in reversed(messages) if isinstance(m, dict)),
        "",
    )
    reply = f"echo: {last}"
    prompt_tokens = sum(_words(m.get("content")) + 1 for m in messages if isinstance(m, dict))
    completion_tokens = _words(reply)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def echo_chunks(model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The same answer as ``echo_completion``, as vLLM streams it: one chunk a word, a last
    chunk with the finish reason, and a usage chunk when ``stream_options.include_usage``."""
    answer = echo_completion(model, body)
    reply = answer["choices"][0]["message"]["content"]
    base = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    words = reply.split(" ")
    chunks = [
        base
        | {
            "choices": [
                {
                    "index": 0,
                    "delta": ({"role": "assistant"} if i == 0 else {})
                    | {"content": word if i == 0 else " " + word},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        }
        for i, word in enumerate(words)
    ]
    chunks.append(
        base | {"choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
    )
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        chunks.append(base | {"choices": [], "usage": answer["usage"]})
    return chunks


def echo_embeddings(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI embeddings: a small vector per input, derived from its text."""
    inputs = body.get("input")
    texts = inputs if isinstance(inputs, list) else [inputs]
    data = []
    for i, text in enumerate(texts):
        seed = uuid.uuid5(uuid.NAMESPACE_OID, str(text)).bytes
        data.append({"object": "embedding", "index": i, "embedding": [b / 255 for b in seed[:8]]})
    tokens = sum(_words(t) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


class Instances(Protocol):
    """What the server asks of the provider whose instances it answers for (``SimulatedProvider``)."""

    def serving(self, instance_id: UUID, api_key: str) -> tuple[int, str | None, str]:
        """(HTTP status, error, model) for a request to the instance's endpoint."""
        ...

    def note(self, instance_id: UUID, message: str) -> None:
        """Add a line to the instance's log."""
        ...


class EchoServer:
    """A threaded HTTP server on 127.0.0.1 answering for every simulated instance."""

    def __init__(self, provider: Instances, port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"provider": provider})
        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:
            # The port used before a restart is taken: endpoints move to a fresh one.
            self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    provider: Instances
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass  # requests carry bearer keys and prompts; nothing of them goes to a log

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, instance_id: UUID, chunks: list[dict[str, Any]]) -> None:
        """Server-sent events, one chunk at a time (chunked transfer encoding)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self._write_chunk(b"data: " + orjson.dumps(chunk) + b"\n\n")
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self.provider.note(instance_id, "POST /v1/chat/completions 200 streamed")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def _route(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        match = PATH_RE.match(self.path)
        if not match:
            return self._error(404, f"no route {method} {self.path}")
        instance_id, route = UUID(match[1]), match[2]
        if (route == "models") != (method == "GET"):
            return self._error(405, f"{method} is not allowed here")
        auth = self.headers.get("Authorization", "")
        api_key = auth.removeprefix("Bearer ").strip()
        status, error, model = self.provider.serving(instance_id, api_key)
        if error:
            return self._error(status, error)
        if route == "models":
            listed = {"id": model, "object": "model", "created": 0, "owned_by": "vllm"}
            return self._send(200, {"object": "list", "data": [listed]})
        if route == "embeddings":
            try:
                body = orjson.loads(raw)
                assert isinstance(body, dict) and "input" in body
            except (orjson.JSONDecodeError, AssertionError):
                return self._error(400, "the body must be a JSON object with an input")
            return self._send(200, echo_embeddings(model, body))
        try:
            body = orjson.loads(raw)
            assert isinstance(body, dict) and isinstance(body.get("messages"), list)
        except (orjson.JSONDecodeError, AssertionError):
            return self._error(400, "the body must be a JSON object with a messages list")
        if body.get("stream") is True:
            return self._stream(instance_id, echo_chunks(model, body))
        answer = echo_completion(model, body)
        usage = answer["usage"]
        self.provider.note(
            instance_id,
            f"POST /v1/chat/completions 200 prompt_tokens={usage['prompt_tokens']}"
            f" completion_tokens={usage['completion_tokens']}",
        )
        self._send(200, answer)

    def do_POST(self) -> None:  # noqa: N802 - stdlib's name
        self._route("POST")

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        self._route("GET")
