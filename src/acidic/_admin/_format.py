"""Values as operators read them: times, durations and stored data for display.

Shared by the CLI and the dashboard (neither imports the other).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

__all__ = ["fmt_duration", "fmt_time", "iso", "to_jsonable"]


def fmt_time(value: dt.datetime | None) -> str:
    """A UTC time to the second, or ``-``."""
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    """``412 ms``, ``3.20 s``, ``2m 05s``, ``1h 02m``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def iso(value: dt.datetime | None) -> str | None:
    """A time in ISO 8601 for JSON, or None."""
    return None if value is None else value.isoformat()


def to_jsonable(value: Any) -> Any:
    """A decoded context value, result or argument as plain JSON data, for display."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [to_jsonable(v) for v in value]
    return repr(value)
