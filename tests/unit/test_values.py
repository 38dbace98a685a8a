"""The value types: what a read model can store passes, anything else is refused naming the field."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.base import InvalidValueError
from domain.values import (
    MAX_TOKENS,
    BoundedInt,
    Text,
    TextList,
    Url,
    check_flag,
    check_instant,
    clean_text,
    storable,
)

BIGINT_MAX = 2**63 - 1


def refusal(check, *args) -> InvalidValueError:
    with pytest.raises(InvalidValueError) as refused:
        check(*args)
    return refused.value


# -- integers ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 99, 100])
def test_an_integer_within_the_bounds_is_accepted(value):
    assert BoundedInt(0, 100).check("n", value) == value


@pytest.mark.parametrize("value", [-1, 101, 2**63, 2**64, -(2**63) - 1])
def test_an_integer_beyond_the_bounds_is_refused_naming_the_field(value):
    error = refusal(BoundedInt(0, 100).check, "n", value)

    assert error.field == "n"
    assert "between 0 and 100" in str(error)


@pytest.mark.parametrize("value", [True, False, "12", 12.0, None, [1]])
def test_a_boolean_a_string_or_a_float_is_no_integer(value):
    error = refusal(BoundedInt(0, 100).check, "n", value)

    assert str(error) == "n must be an integer"


def test_a_refusal_can_be_worded_for_its_field():
    error = refusal(BoundedInt(1, 5, "{field} is {minimum} to {maximum} stars").check, "stars", 9)

    assert str(error) == "stars is 1 to 5 stars"


def test_a_day_bucket_of_the_largest_records_at_the_measured_ingest_rate_fits_a_bigint():
    records_per_day = 75_503 * 86_400  # README: ingestion via HTTP, records per second

    assert records_per_day * MAX_TOKENS <= BIGINT_MAX


# -- text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "Grüße, 世界 😀", "tab\there", "a" * 20])
def test_storable_text_within_the_length_is_accepted(value):
    assert Text(20).check("name", value) == value


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "\ud800", "x\udfff", "\udbff"])
def test_a_nul_or_a_lone_surrogate_is_refused_naming_the_field(value):
    error = refusal(Text(10).check, "name", value)

    assert error.field == "name"
    assert "NUL" in str(error) and "surrogate" in str(error)


@given(st.text(st.characters(codec=None, categories=["Cs", "Cc", "Ll", "Lo", "So", "Zs"])))
def test_text_is_storable_exactly_when_orjson_can_encode_it_and_it_holds_no_nul(value):
    try:
        orjson.dumps(value)
        encodable = True
    except orjson.JSONEncodeError:
        encodable = False

    assert storable(value) == (encodable and "\x00" not in value)


@pytest.mark.parametrize("value", ["", "a" * 11])
def test_text_outside_the_length_is_refused(value):
    assert str(refusal(Text(10).check, "name", value)) == "name must be 1-10 characters"


@pytest.mark.parametrize("value", [None, 12, b"bytes", ["x"]])
def test_anything_but_a_string_is_no_text(value):
    assert str(refusal(Text(10).check, "name", value)) == "name must be a string"


def test_text_of_the_wrong_shape_is_refused_in_the_words_given():
    slug = Text(10, pattern=re.compile(r"[a-z]+\Z"), message="{field} is lowercase letters")

    assert slug.check("id", "abc") == "abc"
    assert str(refusal(slug.check, "id", "ABC")) == "id is lowercase letters"


def test_stripped_text_is_measured_and_returned_without_surrounding_spaces():
    label = Text(5, strip=True)

    assert label.check("name", "  abc  ") == "abc"
    assert refusal(label.check, "name", "   ").field == "name"


def test_a_list_names_the_index_of_the_entry_it_refuses():
    models = TextList(Text(10), max_items=3)

    assert models.check("allowed_models", ["a", "b"]) == ["a", "b"]
    assert refusal(models.check, "allowed_models", ["a", "x\x00"]).field == "allowed_models.1"


def test_a_list_longer_than_its_bound_is_refused_naming_the_list():
    error = refusal(TextList(Text(10), max_items=3).check, "allowed_models", ["a"] * 4)

    assert error.field == "allowed_models"


def test_system_text_is_made_storable_and_cut_to_length_instead_of_refused():
    assert clean_text("failed: \x00\ud800 gone", 12) == "failed: \ufffd\ufffd g"
    assert storable(clean_text("\x00" * 100, 1000))


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com:8443/hook?a=b",
        "http://[::1]:9/x",
        "http://10.0.0.1",
    ],
)
def test_an_absolute_http_url_with_a_host_and_a_valid_port_is_accepted(url):
    assert Url().check("url", url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://example.com:99999/",
        "http://example.com:port/",
        "http://example.com:0/",
        "https://",
        "ftp://example.com",
        "example.com/hook",
        "http://exa mple.com",
        "http://example.com/\x00",
        "http://example.com/\ud800",
        "http://" + "a" * 2048 + ".com",
    ],
)
def test_a_url_that_does_not_parse_or_is_not_http_is_refused_naming_the_field(url):
    assert refusal(Url().check, "url", url).field == "url"


# -- flags and times -----------------------------------------------------------------------


def test_a_flag_is_a_boolean_and_nothing_truthy():
    assert check_flag("disabled", True) is True
    assert refusal(check_flag, "disabled", 1).field == "disabled"
    assert refusal(check_flag, "disabled", "yes").field == "disabled"


def test_a_time_is_returned_in_utc():
    at = datetime(2025, 10, 30, 12, tzinfo=timezone(timedelta(hours=2)))

    assert check_instant("expires_at", at).isoformat() == "2025-10-30T10:00:00+00:00"


def test_a_time_that_utc_cannot_represent_is_refused_naming_the_field():
    at = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1)))

    assert refusal(check_instant, "expires_at", at).field == "expires_at"
