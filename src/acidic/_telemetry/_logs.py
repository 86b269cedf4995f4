"""One JSON object per log line (``acidic worker --log-format json``).

Each line holds the time, level, logger and message, every field the record carries
as ``extra`` (acidic's records carry ``key``, ``job``, ``step``, ``attempt``,
``outcome``, ``duration_ms`` where they apply), the exception if any, and the current
OpenTelemetry ``trace_id`` and ``span_id`` when a span is recording, so that log lines
and traces join.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["JsonFormatter"]

#: The attributes every LogRecord has: the rest came in through ``extra``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (non-JSON values as their ``repr``)."""

    def __init__(self) -> None:
        super().__init__()
        self._trace_ids = _trace_ids()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name != "acidic" and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        if self._trace_ids is not None:
            line.update(self._trace_ids())
        return json.dumps(line, default=repr, ensure_ascii=False)


def _trace_ids() -> Callable[[], dict[str, str]] | None:
    """Reads the current span's ids, if OpenTelemetry is installed."""
    try:
        from opentelemetry import trace  # noqa: PLC0415 - optional
    except ImportError:
        return None

    def ids() -> dict[str, str]:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return {}
        return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}

    return ids
