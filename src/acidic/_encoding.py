"""JSON encoding of what acidic stores: context values, results and error details.

Arguments are encoded by their field types (see :mod:`acidic._job`); context values
and results have no declared type, so non-JSON types are written as tagged objects
that decode back to the same type:

==================  ==========================================  =====================
Python value        stored as                                   decoded as
==================  ==========================================  =====================
None, bool, str     itself                                      itself
int, finite float   itself                                      itself
list, tuple         array                                       list
dict (str keys)     object                                      dict
datetime            ``{"__acidic__": "datetime", "v": ISO}``    datetime (tz kept)
date                ``{"__acidic__": "date", "v": ISO}``        date
time                ``{"__acidic__": "time", "v": ISO}``        time
Decimal             ``{"__acidic__": "decimal", "v": "1.10"}``  Decimal (exact)
UUID                ``{"__acidic__": "uuid", "v": "…"}``        UUID
bytes               ``{"__acidic__": "bytes", "v": base64}``    bytes
Enum member         its ``value``, encoded as above            the plain value
==================  ==========================================  =====================

A dict that itself has an ``"__acidic__"`` key is wrapped so it cannot be mistaken
for a tag. Anything else (sets, objects, NaN, non-string dict keys, strings that are
not valid Unicode, lists and dicts nested more than :data:`MAX_DEPTH` levels deep)
raises :class:`acidic.SerializationError` naming where it is.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from ._errors import InvalidKeyError, SerializationError

__all__ = [
    "MAX_DEPTH",
    "MAX_KEY_LENGTH",
    "canonical_json",
    "check_key",
    "decode_value",
    "default_key",
    "dumps",
    "encode_value",
    "loads",
    "nesting",
    "step_key",
]

#: Longest idempotency key accepted, in characters (an indexed VARCHAR(255) everywhere).
MAX_KEY_LENGTH = 255

#: Most levels of lists and dicts (within one another) a stored value may have: deeper
#: values would exhaust Python's recursion limit (or pydantic's) somewhere between the
#: line that sets them and the code that reads them back.
MAX_DEPTH = 100

_TAG = "__acidic__"


class _TooDeep(Exception):
    """Raised inside :func:`_encode` and turned into a SerializationError at the top."""


def encode_value(value: Any, where: str, *, depth: int = MAX_DEPTH) -> Any:
    """Turn ``value`` into JSON-native data (see the module table) or raise
    :class:`SerializationError` naming ``where`` the offending value is. ``depth``: the
    levels of lists and dicts ``value`` may have."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:  # the common case, at once
        return value
    try:
        return _encode(value, where, depth)
    except _TooDeep:
        raise SerializationError(_too_deep(where)) from None
    except RecursionError:  # called from a deep stack: the value cannot be stored either
        raise SerializationError(_too_deep(where)) from None


def _too_deep(where: str) -> str:
    return (
        f"{where}: lists and dicts nested more than {MAX_DEPTH} levels deep cannot be "
        "stored; flatten the value"
    )


def nesting(value: Any) -> int:
    """How many levels of lists, tuples, sets and dicts ``value`` has (0 for a scalar),
    counted without recursion and at most to ``MAX_DEPTH + 1``."""
    deepest = 0
    level: list[Any] = [value] if isinstance(value, _CONTAINERS) else []
    while level and deepest <= MAX_DEPTH:
        deepest += 1
        # Each container once per level: a value that shares (or holds) itself stays small.
        inner: dict[int, Any] = {}
        for item in level:
            for child in item.values() if isinstance(item, Mapping) else item:
                if isinstance(child, _CONTAINERS):
                    inner[id(child)] = child
        level = list(inner.values())
    return deepest


_CONTAINERS = (Mapping, list, tuple, set, frozenset)


def _encode(value: Any, where: str, depth: int) -> Any:
    # Exact type checks first: they are the common case and bool is an int subclass.
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise SerializationError(
                f"{where}: {value!r} is not a finite number; JSON cannot store it"
            )
        return value
    if isinstance(value, Enum):
        return _encode(value.value, where, depth)
    if isinstance(value, Mapping):
        if depth <= 0:
            raise _TooDeep
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SerializationError(
                    f"{where}: dict key {k!r} is a {type(k).__name__}; JSON object keys must be str"
                )
            out[k] = _encode(v, f"{where}[{k!r}]", depth - 1)
        return {_TAG: "dict", "v": out} if _TAG in out else out
    if isinstance(value, list | tuple):
        if depth <= 0:
            raise _TooDeep
        return [_encode(v, f"{where}[{i}]", depth - 1) for i, v in enumerate(value)]
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise SerializationError(f"{where}: {value!r} is not a finite number")
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, bytes | bytearray):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, str | int | float):  # subclasses of the natives
        return _encode(kind.__mro__[-2](value), where, depth)
    raise SerializationError(
        f"{where}: a {kind.__module__}.{kind.__qualname__} cannot be stored as JSON; "
        "store JSON types, datetime, date, time, Decimal, UUID, bytes or Enum values"
    )


_DECODERS: dict[str, Any] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "decimal": Decimal,
    "uuid": UUID,
    "bytes": base64.b64decode,
    "dict": lambda v: v,
}


def _object_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None or len(obj) != 2 or "v" not in obj:
        return obj
    decoder = _DECODERS.get(tag)
    return obj if decoder is None else decoder(obj["v"])


def dumps(data: Any) -> str:
    """Serialise JSON-native ``data`` compactly, refusing text the database cannot store."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SerializationError(f"a string is not valid Unicode (lone surrogate): {exc}") from exc
    return text


def encode(value: Any, where: str) -> str:
    """Encode a context value or result to its stored JSON text."""
    return dumps(encode_value(value, where))


def loads(text: str) -> Any:
    """Decode stored JSON text written by :func:`encode`."""
    return json.loads(text, object_hook=_object_hook)


def decode_value(data: Any) -> Any:
    """Decode already-parsed JSON data (tags included) back to Python values."""
    return loads(dumps(data))


def canonical_json(data: Any) -> str:
    """The canonical JSON that default keys hash: compact, UTF-8, insertion order kept."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=False)


def default_key(job_name: str, encoded_args: Mapping[str, Any]) -> str:
    """Lowercase hex SHA-256 of the canonical JSON of ``[job name, arguments]``."""
    try:
        raw = canonical_json([job_name, dict(encoded_args)]).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SerializationError(f"job {job_name}: an argument is not valid Unicode") from exc
    return hashlib.sha256(raw).hexdigest()


def check_key(key: object) -> str:
    """Return ``key`` if it is a usable idempotency key, else raise :class:`InvalidKeyError`."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"idempotency key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("idempotency key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"idempotency key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH} "
            f"(key starts {key[:40]!r})"
        )
    if "\x00" in key:
        raise InvalidKeyError(f"idempotency key {key!r} contains a NUL character")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"idempotency key {key!r} is not valid Unicode") from exc
    return key


def step_key(key: str, step: str) -> str:
    """A stable key for foreign APIs, per run key and step: short, ASCII, safe everywhere."""
    digest = hashlib.sha256(f"{key}\x00{step}".encode()).hexdigest()
    return f"acidic-{digest[:48]}"
