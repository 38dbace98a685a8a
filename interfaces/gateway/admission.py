"""Admission control: the gates a request passes between routing and its upstream call.

Two phases, in this order, for every inference request after it was routed:

1. ``Admission.admit`` runs the *gates* (request and token limits, budgets and credits): each
   decides in memory and may refuse with a ``GatewayRefusal`` (429); each returns a ``Grant``
   that adds its response headers and is *settled* once the request is over, with what the
   upstream really used (or ``None`` when no upstream answered).
2. ``Admission.slot`` waits for a place among the process's ``max_in_flight`` upstream calls
   (capacity and fair share); the place is held while the upstream answers and streams.

A response-cache hit is answered between the two: it passes the gates (it is a request and it
is metered) but takes no upstream place. Every gate's grant is settled exactly once, whatever
happens (``Admitted.settle`` is idempotent); a gate that refuses settles the grants of the gates
before it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from application.gateway import CatalogModel, GatewayCaller

log = logging.getLogger("hostplane.gateway")

Headers = list[tuple[bytes, bytes]]
Receive = Callable[[], Awaitable[dict[str, Any]]]  # the request's ASGI receive
CLIENT_GONE = 499  # a slot's refusal when the client left while it waited (nginx's status)


@dataclass(frozen=True)
class Admitting:
    """What the gates know of a request: who, which model, how big it may get."""

    caller: GatewayCaller
    model: CatalogModel
    kind: str  # "chat/completions" or "embeddings"
    prompt_tokens: int  # estimated from the body (about four characters a token)
    max_tokens: int | None  # the body's max_tokens / max_completion_tokens, if given
    body: dict[str, Any]


@dataclass(frozen=True)
class Actual:
    """What the request really used, as its usage record says."""

    status: str  # success, error or cancelled
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_hit: bool = False  # answered from the response cache (zero token cost)
    # The notification id its usage record was written at (None: no record was made durable).
    position: int | None = None


class Grant(Protocol):
    headers: Headers

    async def settle(self, actual: Actual | None) -> None:
        """The request is over: ``actual`` is what it used (``None``: no upstream answered)."""


class Gate(Protocol):
    async def admit(self, request: Admitting) -> Grant:
        """A grant, or ``GatewayRefusal`` (429 with its headers) when the request must wait."""


class Slots(Protocol):
    def slot(
        self, caller: GatewayCaller, receive: Receive | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of the process's upstream places while the upstream answers; waiting for
        one may refuse (``GatewayRefusal``); ``receive`` tells a client that went away."""


@dataclass
class Admitted:
    """The grants of one admitted request; settled once."""

    grants: list[Grant] = field(default_factory=list)
    settled: bool = False

    @property
    def headers(self) -> Headers:
        return [h for g in self.grants for h in g.headers]

    async def settle(self, actual: Actual | None) -> None:
        if self.settled:
            return
        self.settled = True
        for grant in reversed(self.grants):
            try:
                await grant.settle(actual)
            except Exception:  # noqa: BLE001 - one gate's failure must not skip the others
                log.exception("settling an admission grant failed")


class Admission:
    """The gates and the upstream places of one serving process."""

    def __init__(self, gates: list[Gate] | None = None, slots: Slots | None = None) -> None:
        self.gates = list(gates or [])
        self.slots = slots

    async def start(self) -> None:
        """Start what the gates and slots run in the background (with the gateway)."""
        for part in [*self.gates, self.slots]:
            start = getattr(part, "start", None)
            if start is not None:
                await start()

    async def stop(self) -> None:
        for part in [self.slots, *reversed(self.gates)]:
            stop = getattr(part, "stop", None)
            if stop is not None:
                await stop()

    async def admit(self, request: Admitting) -> Admitted:
        admitted = Admitted()
        try:
            for gate in self.gates:
                admitted.grants.append(await gate.admit(request))
        except BaseException:
            await admitted.settle(None)
            raise
        return admitted

    @contextlib.asynccontextmanager
    async def slot(
        self, caller: GatewayCaller, receive: Receive | None = None
    ) -> AsyncIterator[None]:
        if self.slots is None:
            yield
            return
        async with self.slots.slot(caller, receive):
            yield
