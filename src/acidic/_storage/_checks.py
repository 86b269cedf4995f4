"""Checking run rows as read back from the database.

acidic writes every stored field itself, but an operator may edit a row by hand, or a
bug elsewhere may; reading such a row must end in an error that names the run and the
field (:class:`acidic.CorruptRunError`), never in a stray ``JSONDecodeError`` or
``ValueError`` from deep inside, and never in a worker loop that stops.
"""

from __future__ import annotations

import json
from typing import Any

from .._encoding import loads
from .._errors import AcidicError, CorruptRunError
from .._run import RunStatus
from ._rows import RunRow

__all__ = ["check_row"]

_STATUSES = frozenset(s.value for s in RunStatus)
_UNREADABLE = object()  # what _json and _tagged return for text that does not decode


def check_row(row: RunRow) -> RunRow:
    """Return ``row`` if acidic can read each of its stored fields, else raise
    :class:`CorruptRunError` naming the key and every unreadable field."""
    problems: list[str] = []
    if row.status not in _STATUSES:
        problems.append(f"status {row.status!r} is not one of {sorted(_STATUSES)}")
    args = _json(row.args, "args", problems)
    if args is not _UNREADABLE and not isinstance(args, dict):
        problems.append(f"args must be a JSON object, not {row.args[:80]!r}")
    steps = _json(row.steps, "steps", problems)
    if steps is not _UNREADABLE and not (
        isinstance(steps, list) and steps and all(isinstance(s, str) for s in steps)
    ):
        problems.append(f"steps must be a JSON list of step names, not {row.steps[:80]!r}")
    ctx = _tagged(row.ctx, "ctx", problems)
    if ctx is not _UNREADABLE and not isinstance(ctx, dict):
        problems.append(f"ctx must be a JSON object, not {row.ctx[:80]!r}")
    if row.result is not None:
        _tagged(row.result, "result", problems)
    if row.error is not None:
        error = _json(row.error, "error", problems)
        if error is not _UNREADABLE and not isinstance(error, dict):
            problems.append(f"error must be a JSON object, not {row.error[:80]!r}")
    if row.attempts < 0:
        problems.append(f"attempts is {row.attempts}, below 0")
    if problems:
        raise CorruptRunError(
            f"run {row.key!r} (job {row.job}) cannot be read: {'; '.join(problems)}. It was "
            "changed outside acidic: restore these fields, or cancel the run"
        )
    return row


def _json(text: str, field: str, problems: list[str]) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        problems.append(f"{field} is not JSON: {str(text)[:80]!r}")
        return _UNREADABLE


def _tagged(text: str, field: str, problems: list[str]) -> Any:
    try:
        return loads(text)
    except (ValueError, TypeError, KeyError, AcidicError) as exc:
        problems.append(f"{field} cannot be decoded ({exc}): {str(text)[:80]!r}")
        return _UNREADABLE
