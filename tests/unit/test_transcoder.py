"""OrjsonTranscoder: event state goes to bytes and comes back exactly, types included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st

from application.transcoder import OrjsonTranscoder
from domain.base import Actor

transcoder = OrjsonTranscoder()


def round_trip(value: Any) -> Any:
    data = transcoder.encode(value)
    assert isinstance(data, bytes)
    return transcoder.decode(data)


def assert_same(expected: Any, actual: Any) -> None:
    """Equal, of the same type all the way down, Decimals with the same digits, same offsets."""
    assert type(actual) is type(expected), (expected, actual)
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for k in expected:
            assert_same(expected[k], actual[k])
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            assert_same(e, a)
    elif isinstance(expected, Decimal):
        assert str(actual) == str(expected)
    elif isinstance(expected, datetime):
        assert actual == expected
        assert actual.utcoffset() == expected.utcoffset()
        assert actual.replace(tzinfo=None) == expected.replace(tzinfo=None)
    else:
        assert actual == expected


@pytest.mark.parametrize(
    "value",
    [
        UUID("12345678-1234-5678-1234-567812345678"),
        Decimal("0.000001"),
        Decimal("1E+3"),
        Decimal("12.340000"),
        Decimal("-0"),
        Decimal("123456789012345678901234567890.123456"),
        Decimal("Infinity"),
        datetime(2025, 10, 30, 22, 0, 0, 123456, tzinfo=UTC),
        datetime(2025, 10, 30, 22, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2025, 10, 30, 22, 0, tzinfo=timezone(timedelta(hours=-8))),
        datetime(2025, 10, 30, 22, 0),
        date(2025, 10, 30),
        b"",
        b"\x00\xff binary \n",
        Actor(id="admin", ip="2001:db8::1"),
        Actor.system(),
        (1, "two", Decimal("3")),
        "plain",
        42,
        -(2**63),
        2**64 - 1,
        1.5,
        True,
        None,
    ],
    ids=repr,
)
def test_a_value_comes_back_exactly_as_it_was_stored(value):
    assert_same({"v": value}, round_trip({"v": value}))


def test_decimal_one_millionth_comes_back_equal_and_with_the_same_string():
    (back,) = round_trip([Decimal("0.000001")])

    assert back == Decimal("0.000001")
    assert str(back) == "0.000001"


def test_decimal_in_exponent_form_comes_back_equal_and_with_the_same_string():
    (back,) = round_trip([Decimal("1E+3")])

    assert back == Decimal("1000")
    assert str(back) == "1E+3"


def test_a_datetime_keeps_its_timezone_offset():
    offset = timezone(timedelta(hours=2))
    back = round_trip({"at": datetime(2025, 3, 30, 1, 59, 59, tzinfo=offset)})["at"]

    assert back.utcoffset() == timedelta(hours=2)
    assert back == datetime(2025, 3, 29, 23, 59, 59, tzinfo=UTC)


def test_a_utc_datetime_stays_utc():
    back = round_trip([datetime(2025, 1, 1, tzinfo=UTC)])[0]

    assert back.tzinfo is not None
    assert back.utcoffset() == timedelta(0)


def test_a_date_does_not_come_back_as_a_datetime():
    back = round_trip([date(2025, 1, 1)])[0]

    assert type(back) is date


def test_nested_lists_and_dicts_come_back_exactly():
    value = {
        "tenant_id": uuid4(),
        "lines": [
            {"amount": Decimal("0.10"), "at": datetime(2025, 1, 1, tzinfo=UTC), "tags": []},
            {"amount": Decimal("1E+3"), "at": None, "nested": [[b"x", (uuid4(),)]]},
        ],
        "actor": Actor(id="key:abc", ip=None),
        "empty": {},
    }

    assert_same(value, round_trip(value))


def test_the_state_of_a_real_event_round_trips():
    from domain.budget import Budget

    budget = Budget.set(
        tenant_id=uuid4(),
        key_id=uuid4(),
        limit_eur=Decimal("10.000001"),
        period="daily",
        thresholds=[Decimal("0.5"), Decimal("1")],
        actor=Actor(id="admin", ip="192.0.2.1"),
    )
    (created,) = budget.collect_events()
    state = dict(vars(created))

    assert_same(state, round_trip(state))


class Opaque:
    pass


@pytest.mark.parametrize(
    "value",
    [Opaque(), {1, 2}, frozenset({1}), complex(1, 2), bytearray(b"x"), object()],
    ids=lambda v: type(v).__name__,
)
def test_a_value_of_an_unknown_type_is_refused_with_a_type_error(value):
    with pytest.raises(TypeError):
        transcoder.encode({"nested": [value]})


def test_an_unknown_type_is_named_in_the_error():
    with pytest.raises(TypeError, match="Opaque"):
        transcoder.encode(Opaque())


def test_a_datetime_made_on_a_pinned_clock_can_be_stored():
    with freeze_time("2025-10-30 12:00:00"):
        now = datetime.now(UTC)
        back = round_trip({"at": now})["at"]

    assert back == datetime(2025, 10, 30, 12, 0, tzinfo=UTC)


def test_a_dict_that_looks_like_a_tag_comes_back_as_a_dict():
    value = {"_type_": "note", "_data_": "hello"}

    assert round_trip({"labels": value}) == {"labels": value}


# Property: anything made of the supported types comes back exactly.

# Real offsets are whole minutes; CPython 3.11's fromisoformat drops sub-second offsets.
_offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_datetimes = st.one_of(
    st.datetimes(), st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=_offsets)
)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
    st.uuids(),
    st.decimals(allow_nan=False),
    _datetimes,
    st.dates(),
    st.binary(max_size=32),
    st.builds(Actor, id=_text, ip=st.one_of(st.none(), st.ip_addresses().map(str))),
)
_values = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(_text, children, max_size=4).filter(
            lambda d: set(d) != {"_type_", "_data_"}
        ),
    ),
    max_leaves=20,
)


@given(st.dictionaries(_text, _values, max_size=6))
def test_any_event_state_made_of_supported_types_round_trips_exactly(state):
    assert_same(state, round_trip(state))


# The fast paths: lists of plain values are handed to orjson as they are, and on the way back
# only the parts of a state that can hold a tag are walked. Both must change nothing.


def test_a_usage_batchs_records_come_back_exactly():
    records = [
        [
            f"req-{i}",
            str(uuid4()),
            i % 3,
            10 * i,
            5,
            0,
            i % 2 == 0,
            7,
            1_700_000_000_000_000 + i,
            None,
        ]
        for i in range(500)
    ]
    state = {
        "timestamp": datetime(2025, 1, 1, tzinfo=UTC),
        "tenant_id": uuid4(),
        "rates": [["m", "0.15", "0.6"]],
        "records": records,
        "actor": Actor(id="key:x", ip=None),
    }

    assert_same(state, round_trip(state))


def test_a_tag_deep_inside_a_list_of_lists_is_still_decoded():
    state = {"records": [[1, "a"], [2, [uuid4(), Decimal("0.1")]]], "at": date(2025, 1, 1)}

    assert_same(state, round_trip(state))


def test_a_tag_inside_a_list_that_comes_before_the_scalars_is_decoded():
    state = {"lines": [[1, 2], [3, {"amount": Decimal("1.10")}]], "name": "x", "n": 1}

    assert_same(state, round_trip(state))


def test_a_string_that_reads_like_a_tag_does_not_hide_a_real_one():
    state = {"note": '"_type_"', "rows": [["_type_", '"_type_"'], [(1, 2)]], "x": "_type_"}

    assert_same(state, round_trip(state))


def test_a_subclass_of_a_plain_type_is_stored_as_before():
    class Label(str):
        pass

    assert round_trip({"rows": [[Label("a"), 1]]}) == {"rows": [["a", 1]]}


def test_bytes_stored_by_the_walking_encoder_decode_to_the_same_state():
    import orjson

    from application.transcoder import _decode, _encode

    state = {
        "timestamp": datetime(2025, 1, 1, tzinfo=UTC),
        "records": [["r", 1, True, None]],
        "nested": {"_type_": "x", "_data_": [uuid4()]},
        "tuples": [(1, Decimal("2"))],
    }
    walked = orjson.dumps(_encode(state))

    assert transcoder.encode(state) == walked
    assert_same(_decode(orjson.loads(walked)), transcoder.decode(walked))


@given(st.dictionaries(_text, _values, max_size=6))
def test_the_fast_decoder_agrees_with_the_full_walk(state):
    import orjson

    from application.transcoder import _decode

    data = transcoder.encode(state)

    assert_same(_decode(orjson.loads(data)), transcoder.decode(data))
