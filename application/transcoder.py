"""An orjson transcoder for stored events that round-trips UUID, Decimal and datetime exactly."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
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


def _encode(obj: Any) -> Any:
    if isinstance(obj, _PLAIN):
        return obj
    if type(obj) is dict:
        encoded = {k: _encode(v) for k, v in obj.items()}
        # A plain dict that looks like a tag is wrapped, so that it can't be misread as one.
        return {"_type_": "dict", "_data_": encoded} if "_type_" in obj else encoded
    if type(obj) is list:
        return [_encode(v) for v in obj]
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


class OrjsonTranscoder(Transcoder):
    """Serialises event state with orjson, tagging the types JSON can't express."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(_encode(obj))

    def decode(self, data: bytes) -> Any:
        return _decode(orjson.loads(data))
