"""The gateway keeps no state of an upstream's: a cookie it sets is never sent back.

One HTTP client per process serves every tenant. An upstream's front (a load balancer, a bot
filter: api.openai.com's sets ``__cf_bm``) sets a cookie on its answers; a client that kept it
would send the cookie one tenant's request got with every later request to that host, other
tenants' included. The upstreams here are addressed by host name (``localhost``), as real ones
are: a cookie jar keeps no cookie of a bare IP address, which would hide the leak.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway
from tests.fake_upstream import COOKIE, FakeUpstream


@pytest.fixture(scope="module")
def gateway_overrides(fake: FakeUpstream) -> dict[str, Any]:
    by_name = {v: url.replace("127.0.0.1", "localhost") for v, url in fake.upstream_urls().items()}
    return {"upstream_urls": by_name}


def test_a_cookie_an_upstream_set_is_sent_with_no_later_request_of_any_tenant(gateway: Gateway):
    first, second = gateway.new_tenant(), gateway.new_tenant()
    first.byok("openai")
    second.byok("openai")
    model = gateway.model("openai")
    secrets = [first.router_key()[1], second.router_key()[1]]

    for secret in (*secrets, secrets[0]):
        gateway.client(secret).chat.completions.create(model=model, messages=HELLO)
    stream = gateway.client(secrets[1]).chat.completions.create(
        model=model, messages=HELLO, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    sent = gateway.fake.requests_for(model)
    assert len(sent) == 4
    assert all(r.path == "/openai/v1/chat/completions" for r in sent)
    assert [r.headers.get("Cookie") for r in sent] == [None] * 4


def test_an_upstream_cookie_never_reaches_the_tenants_client(gateway: Gateway):
    t = gateway.new_tenant()
    t.byok("openai")
    model = gateway.model("openai")
    _, secret = t.router_key()

    raw = gateway.client(secret).chat.completions.with_raw_response.create(
        model=model, messages=HELLO
    )

    assert raw.status_code == 200
    assert "set-cookie" not in raw.headers
    assert COOKIE not in str(raw.headers)
