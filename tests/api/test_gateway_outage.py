"""The gateway while its database is down: no answer goes out unbilled, and it serves again
once the database is back, without a restart.

The server here has a PostgreSQL of its own (embedded, in a data dir of its own), which the
test stops and starts; the official ``openai`` SDK is the client, the fake upstream answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from interfaces.db.database import Database
from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway, gateway_settings, wait_until
from tests.conftest import ADMIN_TOKEN, Api, served_on_own_database
from tests.fake_upstream import FakeUpstream


@dataclass
class Answer:
    """One request as its client saw it: answered whole (with its usage), or refused."""

    id: str | None
    prompt: int = 0
    completion: int = 0
    refused: openai.APIError | None = None
    seconds: float = 0.0


@pytest.fixture
def outage(fake: FakeUpstream) -> Iterator[tuple[Gateway, Database]]:
    def settings(data_dir: Path) -> Any:
        # The upstream may take 3 s (the tests' default first-byte timeout is 1 s).
        return gateway_settings(None, data_dir, fake, gateway_first_byte_timeout=10.0)

    with served_on_own_database("hostplane-gateway-outage-", settings) as served:
        server, container, database = served
        yield Gateway(server, container, Api(server.url, ADMIN_TOKEN), fake), database


def ask(client: openai.OpenAI, model: str, stream: bool) -> Answer:
    started = time.monotonic()
    answer = Answer(None)
    try:
        if not stream:
            got = client.chat.completions.create(model=model, messages=HELLO)
            assert got.usage is not None
            return Answer(got.id, got.usage.prompt_tokens, got.usage.completion_tokens)
        chunks = client.chat.completions.create(
            model=model, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        for chunk in chunks:  # the SDK raises on an error event; it ends at ``[DONE]``
            answer.id = chunk.id
            if chunk.usage is not None:
                answer.prompt = chunk.usage.prompt_tokens
                answer.completion = chunk.usage.completion_tokens
        return answer
    except openai.APIError as e:
        if isinstance(e, openai.APIStatusError):
            answer.id = e.request_id
        answer.refused, answer.seconds = e, time.monotonic() - started
        return answer


def assert_refused_503(answer: Answer, codes: tuple[str, ...]) -> None:
    """Refused in the OpenAI error shape, in bounded time (a stream: its last event is the
    error, never ``[DONE]``), naming no internals."""
    error = answer.refused
    assert error is not None, answer
    if isinstance(error, openai.APIStatusError):
        assert error.status_code == 503, error
        assert int(error.response.headers["retry-after"]) >= 1
    assert error.code in codes, error.body
    assert "postgres" not in str(error.message).lower()
    assert answer.seconds < 20, answer


def test_during_an_outage_no_answer_goes_out_unbilled_and_after_it_every_request_is_served(
    outage,
):
    gateway, database = outage
    tenant = gateway.new_tenant()
    tenant.byok("openai")
    _, secret = tenant.router_key()
    model = gateway.model("openai")
    client = gateway.client(secret)  # its patience: 30 s, then APITimeoutError
    # Before: the key and the model are known to the process, its meter writes from its loop.
    before = [ask(client, model, stream) for stream in (False, True, False, True)]
    assert all(a.refused is None for a in before), before
    slow = gateway.model("openai")
    gateway.fake.script(slow, stall=3.0)
    warm = ask(client, slow, False)  # the slow model is known too
    assert warm.refused is None, warm

    # The database stops while four requests are at the upstream: past authentication, their
    # answers can't be recorded, so none goes out.
    with ThreadPoolExecutor(4) as pool:
        held = [pool.submit(ask, client, slow, stream) for stream in (False, True, False, True)]
        assert wait_until(lambda: len(gateway.fake.requests_for(slow)) == 5)
        database.server.stop()
        cut_off = [f.result() for f in held]
    for answer in cut_off:
        assert_refused_503(answer, ("metering_unavailable",))
    # New requests meet the outage at authentication.
    for stream in (False, True):
        assert_refused_503(ask(client, model, stream), ("database_unavailable",))

    database.server.start()
    # Back: served again without a restart (the first ones may still meet closed connections).
    deadline = time.monotonic() + 30
    while (first := ask(client, model, False)).refused is not None:
        assert time.monotonic() < deadline, first.refused
        time.sleep(0.5)
    after = [first, *(ask(client, model, stream) for stream in (True, False, True, False))]
    assert all(a.refused is None for a in after), after

    answered = [*before, warm, *after]
    records = tenant.records()
    assert all(len(records[a.id]) == 1 for a in answered), records  # each once
    for a in answered:
        (record,) = records[a.id]
        assert (record["prompt_tokens"], record["completion_tokens"]) == (a.prompt, a.completion)
    # Billed as answered: exactly the answers that went out (none of those cut off).
    successes = {rid for rid, rs in records.items() if any(r["success"] for r in rs)}
    assert successes == {a.id for a in answered}, (successes, answered)
    assert not any(a.id in records for a in cut_off)
    bill: dict[str, Any] = tenant.wait_billed(len(records))
    assert bill["requests"] == len(records)
