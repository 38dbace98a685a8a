"""Request and token limits: a key's ``rpm_limit``, a tenant's ``tokens_per_minute``.

A gate of ``Admission`` (admission.py). Each limit counts in fixed windows aligned on the clock
(every process agrees on them), spent from leases of the shared ledger (ledger.py): no database
round trip per request for the counters. A key's limit comes with the key, which
authentication kept and checked against its stored version for this very request; a tenant's
quota is read from the tenants read model and kept per process for about a second.

A request costs 1 against its key's limit, and its estimated prompt tokens against its tenant's
quota; once answered, the tenant's quota is corrected to the prompt and completion tokens the
usage record says (nothing, if no upstream answered). Over a limit: 429 ``rate_limit_exceeded``
with ``Retry-After`` (to the window's end) and OpenAI's ``x-ratelimit-*`` headers, which every
answer carries too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from limits import RateLimitItem, RateLimitItemPerSecond
from psycopg_pool import AsyncConnectionPool

from application.gateway import GatewayCaller, GatewayRefusal
from interfaces.gateway.admission import Actual, Admitting, Headers
from interfaces.gateway.kept import Kept
from interfaces.gateway.ledger import Account, Allowance, Window
from projections.readmodels.tenants import SCHEMA as TENANTS

SELECT_QUOTA = f"SELECT tokens_per_minute FROM {TENANTS}.tenants WHERE id = %s"
LEASES_PER_WINDOW = 64  # a lease is 1/64 of a limit: unused leases cost ~1.6% per process


def lease_size(limit: int) -> int:
    """Units a lease asks for beyond a request's own cost."""
    return max(1, limit // LEASES_PER_WINDOW)


_windows: dict[tuple[int, int], Window] = {}  # the last window of each length, made once


def window_of(item: RateLimitItem, now: float) -> Window:
    """The fixed window of ``item`` that ``now`` (epoch seconds) falls in, aligned on the epoch."""
    length = item.get_expiry()
    start = math.floor(now / length) * length
    window = _windows.get((length, start))
    if window is None:
        window = Window(
            datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + length, UTC)
        )
        if len(_windows) > 16:
            _windows.clear()
        _windows[length, start] = window
    return window


def duration(seconds: float) -> str:
    """A duration as OpenAI's reset headers write it (Go's style): ``20ms``, ``1s``, ``6m0s``."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    text = f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{text}" if minutes else text


NAMES = {
    name: tuple(f"x-ratelimit-{part}-{name}".encode() for part in ("limit", "remaining", "reset"))
    for name in ("requests", "tokens")
}


def trio(name: str, account: Account, now: float) -> Headers:
    """The ``x-ratelimit-{limit,remaining,reset}-<name>`` headers of one limit."""
    limit, remaining, reset = NAMES[name]
    return [
        (limit, str(account.limit).encode()),
        (remaining, str(account.remaining).encode()),
        (reset, duration(account.window.end.timestamp() - now).encode()),
    ]


class TenantQuotas:
    """Each tenant's ``tokens_per_minute``, read from the read model and kept ~1 s."""

    def __init__(self, pool: Callable[[], AsyncConnectionPool[Any]]) -> None:
        self._pool = pool
        self._kept: Kept[UUID, int | None] = Kept("quotas")

    async def tokens_per_minute(self, tenant_id: UUID) -> int | None:
        async def load() -> int | None:
            async with self._pool().connection() as conn:
                cursor = await conn.execute(SELECT_QUOTA, (tenant_id,))
                row = await cursor.fetchone()
            return None if row is None else row["tokens_per_minute"]

        return await self._kept.get(tenant_id, load)


class LimitGrant:
    """The headers of an admitted request, and its token estimate to correct once answered."""

    __slots__ = ("allowance", "cost", "headers", "subject")

    def __init__(
        self, allowance: Allowance, headers: Headers, subject: str | None, cost: int
    ) -> None:
        self.allowance = allowance
        self.headers = headers
        self.subject = subject  # the tenant's token subject, if it has a quota
        self.cost = cost

    async def settle(self, actual: Actual | None) -> None:
        if self.subject is None:
            return
        used = 0
        if actual is not None and not actual.cache_hit:
            used = actual.prompt_tokens + actual.completion_tokens
        self.allowance.correct(self.subject, used - self.cost)


class RateLimits:
    """The gate: per key requests, per tenant tokens, in windows of ``window_seconds``."""

    def __init__(
        self,
        allowance: Allowance,
        rpm_limit: Callable[[GatewayCaller], int | None],
        quotas: TenantQuotas,
        window_seconds: int = 60,
    ) -> None:
        self.allowance = allowance
        self.rpm_limit = rpm_limit
        self.quotas = quotas
        self.window_seconds = window_seconds

    async def admit(self, request: Admitting) -> LimitGrant:
        caller = request.caller
        try:
            return await self._admit(caller, request.prompt_tokens)
        except psycopg.Error:
            raise GatewayRefusal(
                503,
                "limits_unavailable",
                "the rate limits could not be checked; retry",
                "service_unavailable",
                retry_after=1,
            ) from None

    async def _admit(self, caller: GatewayCaller, prompt_tokens: int) -> LimitGrant:
        rpm = self.rpm_limit(caller)
        tpm = await self.quotas.tokens_per_minute(caller.tenant_id)
        now = time.time()
        requests = f"rpm:{caller.key_id}"
        tokens = f"tpm:{caller.tenant_id}"
        headers: Headers = []
        if rpm is not None:
            window = window_of(RateLimitItemPerSecond(rpm, self.window_seconds), now)
            taken = await self.allowance.take(requests, window, rpm, 1)
            now = time.time()  # the take may have waited for a lease
            headers += trio("requests", taken.account, now)
            if not taken.ok:
                if tpm is not None:
                    item = RateLimitItemPerSecond(tpm, self.window_seconds)
                    headers += trio(
                        "tokens", self.allowance.account(tokens, window_of(item, now), tpm), now
                    )
                raise self._refusal(f"{rpm} requests", taken.account, now, headers)
        if tpm is None:
            return LimitGrant(self.allowance, headers, None, 0)
        cost = max(1, prompt_tokens)
        window = window_of(RateLimitItemPerSecond(tpm, self.window_seconds), now)
        taken = await self.allowance.take(tokens, window, tpm, cost)
        now = time.time()
        headers += trio("tokens", taken.account, now)
        if not taken.ok:
            if rpm is not None:
                self.allowance.correct(requests, -1)  # refused: the request is not counted
            raise self._refusal(f"{tpm} tokens", taken.account, now, headers)
        return LimitGrant(self.allowance, headers, tokens, cost)

    def _refusal(self, what: str, account: Account, now: float, headers: Headers) -> GatewayRefusal:
        per = "minute" if self.window_seconds == 60 else f"{self.window_seconds} seconds"
        return GatewayRefusal(
            429,
            "rate_limit_exceeded",
            f"rate limit of {what} per {per} reached; retry after the window's end",
            "rate_limit_error",
            retry_after=max(1, math.ceil(account.window.end.timestamp() - now)),
            headers=headers,
        )
