"""The management API's per-token request limit is not the gateway's.

``HOSTPLANE_RATE_LIMIT_PER_MINUTE`` bounds management requests per token; a router key's own
request limit on the gateway is its ``rpm_limit`` (tests/api/test_gateway_limits.py). Here the
management limit is tiny, and a router key without ``rpm_limit`` calls models past it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway

MANAGEMENT_PER_MINUTE = 6


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    return {"rate_limit_per_minute": MANAGEMENT_PER_MINUTE}


def test_a_router_key_without_rpm_limit_is_not_held_to_the_management_limit(gateway: Gateway):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    _, secret = t.router_key()
    client = gateway.client(secret)

    answers = [
        client.chat.completions.create(model=model, messages=HELLO)
        for _ in range(3 * MANAGEMENT_PER_MINUTE)
    ]

    assert all(a.choices[0].message.content for a in answers)


def test_the_management_api_still_counts_its_own_requests(gateway: Gateway):
    t = gateway.new_tenant()
    statuses = [t.api.get("/keys").status_code for _ in range(MANAGEMENT_PER_MINUTE + 1)]

    assert statuses[-1] == 429
