"""The persisted context of a run: a mapping saved with every step's progress."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from ._encoding import MAX_DEPTH, dumps, encode_value, loads

__all__ = ["Context"]


class Context(MutableMapping[str, Any]):
    """A mapping of JSON-storable values, committed together with each step's progress.

    Values are checked when they are set, so a value that cannot be stored raises
    :class:`acidic.SerializationError` on the line that sets it. Changes made by a
    step that fails are discarded: the next attempt sees the context as it was
    committed by the last successful step.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = {}
        if data:
            for k, v in data.items():
                self[k] = v

    @classmethod
    def from_json(cls, text: str) -> Context:
        """Build a context from its stored JSON text."""
        ctx = cls()
        ctx._data = loads(text)
        return ctx

    def to_json(self) -> str:
        """The stored JSON text of this context (raises SerializationError)."""
        # The context's own mapping is one level more than its values may have.
        return dumps(encode_value(self._data, "ctx", depth=MAX_DEPTH + 1))

    def copy(self) -> Context:
        """A deep copy, through JSON, so later in-place changes do not leak into it."""
        return Context.from_json(self.to_json())

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            encode_value({key: value}, "ctx")  # raises with the standard message
        encode_value(value, f"ctx[{key!r}]")
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Context({self._data!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Context):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable mapping
