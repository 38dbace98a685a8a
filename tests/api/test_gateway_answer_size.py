"""A non-streamed answer is held whole (parsed, then released once metered), so the gateway
holds one only up to ``HOSTPLANE_GATEWAY_MAX_ANSWER_BYTES``, counted decompressed: a larger one
is a 502 ``upstream_error``, billed as a failure, read no further. A stream passes through and
is not held: its size is not bounded (only each of its lines is)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway

LIMIT = 8192  # bytes; an answer of 2,000 words is ~17 kB (~5 kB gzipped), of 5 words ~400 B


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    return {"gateway_max_answer_bytes": LIMIT}


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_an_answer_over_the_bound_is_a_502_billed_as_a_failure(gateway: Gateway, gzip: bool):
    """Plain, its Content-Length says it is too large; gzip-compressed (~5 kB on the wire,
    under the bound), it is found too large while it is read."""
    t = gateway.new_tenant()
    t.byok("openai")
    small, large = gateway.model("openai"), gateway.model("openai")
    gateway.fake.script(small, gzip=gzip)
    gateway.fake.script(large, words=2000, gzip=gzip)
    _, secret = t.router_key()
    client = gateway.client(secret)

    answer = client.chat.completions.create(model=small, messages=HELLO)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model=large, messages=HELLO)
    streamed = client.chat.completions.create(model=large, messages=HELLO, stream=True)
    words = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).split()

    assert answer.choices[0].message.content == "word0 word1 word2 word3 word4"
    e = raised.value
    assert (e.status_code, e.code) == (502, "upstream_error")
    assert f"larger than {LIMIT} bytes" in e.body["message"]
    assert len(gateway.fake.requests_for(large)) == 2  # one each: no retry on the same target
    assert len(words) == 2000 and words[-1] == "word1999"
    t.wait_billed(3)
    rows = {r["model"]: r for r in t.api.get("/usage/vendors").json()["data"]}
    assert (rows[small]["successes"], rows[small]["failures"]) == (1, 0)
    assert (rows[large]["successes"], rows[large]["failures"]) == (1, 1)
