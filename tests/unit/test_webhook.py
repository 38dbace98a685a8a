"""The Webhook aggregate: URL and event-type rules, deletion, replay; signatures and backoff."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from uuid import uuid4

import pytest

from domain.base import InvalidValueError
from domain.webhook import EVENT_TYPES, Webhook, WebhookDeletedError, retry_delay, signature
from tests.unit.support import an_actor, replay, through_store


def a_webhook(**overrides: object) -> Webhook:
    values: dict[str, object] = {
        "tenant_id": uuid4(),
        "url": "https://example.com/hooks/hostplane",
        "events": ["key.revoked"],
        "description": None,
        "secret_ciphertext": b"\x01\x02sealed",
        "actor": an_actor(),
    }
    values.update(overrides)
    return Webhook.register(**values)  # type: ignore[arg-type]


def test_a_webhook_keeps_its_url_events_and_description():
    webhook = a_webhook(events=["budget.exceeded", "key.revoked"], description="ops pager")

    assert webhook.url == "https://example.com/hooks/hostplane"
    assert webhook.events == ["budget.exceeded", "key.revoked"]
    assert webhook.description == "ops pager"
    assert webhook.deleted is False


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "https://hooks.example.com", "https://[::1]:9/x?a=b"]
)
def test_http_and_https_urls_are_accepted(url):
    assert a_webhook(url=url).url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "example.com/hook",
        "https://",
        "javascript:alert(1)",
        "https://exa mple.com/",
        "https://" + "a" * 2050 + ".com",
    ],
)
def test_anything_but_an_absolute_http_url_is_refused_naming_url(url):
    with pytest.raises(InvalidValueError) as e:
        a_webhook(url=url)
    assert e.value.field == "url"


def test_a_url_with_credentials_is_refused_so_they_never_reach_an_event():
    with pytest.raises(InvalidValueError, match="credentials"):
        a_webhook(url="https://user:pass@example.com/hook")


def test_an_unknown_event_type_is_refused_with_the_known_ones_listed():
    with pytest.raises(InvalidValueError) as e:
        a_webhook(events=["key.revoked", "key.exploded"])
    assert e.value.field == "events"
    assert all(t in str(e.value) for t in EVENT_TYPES)


def test_an_empty_list_of_event_types_is_refused():
    with pytest.raises(InvalidValueError):
        a_webhook(events=[])


def test_repeated_event_types_are_kept_once_in_order():
    webhook = a_webhook(events=["key.revoked", "budget.exceeded", "key.revoked"])

    assert webhook.events == ["key.revoked", "budget.exceeded"]


def test_a_description_over_500_characters_is_refused():
    with pytest.raises(InvalidValueError):
        a_webhook(description="x" * 501)


def test_a_deleted_webhook_cant_be_deleted_again():
    webhook = a_webhook()
    webhook.delete(actor=an_actor())

    with pytest.raises(WebhookDeletedError):
        webhook.delete(actor=an_actor())


def test_the_created_event_holds_the_ciphertext_and_the_replay_comes_back_deleted():
    webhook = a_webhook()
    webhook.delete(actor=an_actor())
    events = webhook.collect_events()

    assert events[0].secret_ciphertext == b"\x01\x02sealed"
    copy = replay(through_store(events))
    assert copy.deleted is True
    assert copy.url == webhook.url
    assert copy.secret_ciphertext == webhook.secret_ciphertext


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_with_the_secret():
    body = b'{"id":"e1","type":"key.revoked"}'

    header = signature("whsec_abc", 1700000000, body)

    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_another_secret_or_body_gives_another_signature():
    body = b"{}"
    assert signature("whsec_a", 1, body) != signature("whsec_b", 1, body)
    assert signature("whsec_a", 1, body) != signature("whsec_a", 1, b"{ }")
    assert signature("whsec_a", 1, body) != signature("whsec_a", 2, body)


def test_retries_back_off_exponentially_from_the_base_up_to_a_cap():
    delays = [retry_delay(n, base_seconds=10).total_seconds() for n in range(1, 6)]

    assert delays == [10, 20, 40, 80, 160]
    assert retry_delay(40, base_seconds=10) == timedelta(hours=1)
    assert retry_delay(5000, base_seconds=10) == timedelta(hours=1)
