"""An orjson transcoder for stored events that round-trips UUID, Decimal and datetime exactly."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from itertools import chain
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Transcoder

from domain.base import Actor

# orjson writes UUIDs and datetimes as plain strings, which would come back as strings.
# Values of these types are therefore tagged before orjson sees them: {"_type_": t, "_data_": v}.
_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    UUID: ("uuid", lambda o: o.hex),
    Decimal: ("decimal", str),
    datetime: ("datetime", lambda o: o.isoformat()),
    date: ("date", lambda o: o.isoformat()),
    bytes: ("bytes", lambda o: base64.b64encode(o).decode()),
    Actor: ("actor", lambda o: [o.id, o.ip]),
    tuple: ("tuple", lambda o: [_encode(v) for v in o]),
}

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "uuid": UUID,
    "decimal": Decimal,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "bytes": base64.b64decode,
    "actor": lambda d: Actor(id=d[0], ip=d[1]),
    "tuple": lambda d: tuple(_decode(v) for v in d),
}

_PLAIN = (str, int, float, bool, type(None))
_PLAIN_TYPES = frozenset(_PLAIN)  # exact types: a subclass takes the general walk
_TAG = b'"_type_"'


def _plain(items: list[Any]) -> bool:
    """True if a list holds only plain values, or lists of them (a usage batch's records).

    One pass over the types at C speed instead of a Python call per value: orjson then
    writes such a list exactly as the walk would have returned it.
    """
    types = set(map(type, items))
    if types <= _PLAIN_TYPES:
        return True
    if list not in types or not types - {list} <= _PLAIN_TYPES:
        return False
    rows = [v for v in items if type(v) is list]
    return set(map(type, chain.from_iterable(rows))) <= _PLAIN_TYPES


def _encode(obj: Any) -> Any:
    if isinstance(obj, _PLAIN):
        return obj
    if type(obj) is dict:
        encoded = {k: _encode(v) for k, v in obj.items()}
        # A plain dict that looks like a tag is wrapped, so that it can't be misread as one.
        return {"_type_": "dict", "_data_": encoded} if "_type_" in obj else encoded
    if type(obj) is list:
        return obj if _plain(obj) else [_encode(v) for v in obj]
    # Look along the class hierarchy: freezegun's FakeDatetime is a datetime subclass.
    for cls in type(obj).__mro__:
        if cls in _ENCODERS:
            name, encode = _ENCODERS[cls]
            return {"_type_": name, "_data_": encode(obj)}
    raise TypeError(f"can't store a value of type {type(obj).__name__} in an event")


def _decode(obj: Any) -> Any:
    if type(obj) is dict:
        if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
            if obj["_type_"] == "dict":
                return {k: _decode(v) for k, v in obj["_data_"].items()}
            return _DECODERS[obj["_type_"]](obj["_data_"])
        return {k: _decode(v) for k, v in obj.items()}
    if type(obj) is list:
        return [_decode(v) for v in obj]
    return obj


def _decode_counting(obj: Any, seen: list[int]) -> Any:
    """``_decode``, counting in ``seen[0]`` the dicts walked that have a ``_type_`` key."""
    if type(obj) is dict:
        if "_type_" in obj:
            seen[0] += 1
            if len(obj) == 2 and "_data_" in obj:
                if obj["_type_"] == "dict":
                    return {k: _decode_counting(v, seen) for k, v in obj["_data_"].items()}
                return _DECODERS[obj["_type_"]](obj["_data_"])
        return {k: _decode_counting(v, seen) for k, v in obj.items()}
    if type(obj) is list:
        return [_decode_counting(v, seen) for v in obj]
    return obj


def decode_state(data: bytes) -> Any:
    """Decode stored bytes, walking only the parts of the document that can hold a tag.

    Every tag is a dict with a ``_type_`` key, which orjson (and the standard library) write
    as the bytes ``"_type_"``; so these bytes occur at least as often as there are tags. A
    state's values are decoded in two passes, lists last: once as many ``_type_`` keys have
    been seen as the bytes hold, the lists left (a usage batch's thousands of records) can't
    hold a tag and are kept as orjson made them, equal to what the walk would have built.
    """
    obj = orjson.loads(data)
    budget = data.count(_TAG)
    if budget == 0:
        return obj
    if type(obj) is not dict or "_type_" in obj:
        return _decode(obj)
    seen = [0]
    out: dict[str, Any] = {}
    lists = []
    for k, v in obj.items():
        if type(v) is list:
            lists.append(k)
            out[k] = v  # its place in the order, decoded below if it may hold a tag
        else:
            out[k] = _decode_counting(v, seen)
    for k in lists:
        if seen[0] >= budget:
            break
        out[k] = _decode_counting(out[k], seen)
    return out


class OrjsonTranscoder(Transcoder):
    """Serialises event state with orjson, tagging the types JSON can't express."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(_encode(obj))

    def decode(self, data: bytes) -> Any:
        return decode_state(data)
