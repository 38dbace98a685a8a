"""A cap on request bodies: bigger ones are refused with 413 before any route reads them."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from interfaces.http.errors import error_response


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when a body grows past the cap; answered as a 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes")


class BodyLimit:
    """Refuse request bodies larger than ``max_bytes`` (``HOSTPLANE_MAX_BODY_BYTES``) with 413.

    A body announced larger by its Content-Length is refused at once, unread. A body without
    one (chunked) is counted as it arrives and refused as soon as it passes the cap, so no
    route buffers more than ``max_bytes`` of it. Routes read bodies through ``receive``; the
    error raised there reaches the error handlers like any ``HTTPException``.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def watched_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLargeError:
            if started:  # a route that answered before reading its whole body
                raise
            await self.refuse(scope, receive, send)

    async def refuse(self, scope: Any, receive: Any, send: Any) -> None:
        response = error_response(
            413,
            BodyTooLargeError(self.max_bytes).detail,
            "invalid_request_error",
            "request_too_large",
        )
        await response(scope, receive, send)
