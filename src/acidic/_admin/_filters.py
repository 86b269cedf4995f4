"""Which runs to read: :class:`RunFilter`, and the durations and times operators type.

Bad values raise :class:`acidic.InvalidArgumentError` (also a ValueError and a
TypeError), naming the argument.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import InvalidArgumentError
from .._run import RunStatus

__all__ = ["RunFilter", "check_int", "parse_duration", "parse_since"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``"90"``, ``"30s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` as a timedelta;
    anything else raises :class:`acidic.InvalidArgumentError` (also a ValueError) saying
    what is accepted."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"a duration is a str such as '15m', not {text!r}")
    match = _DURATION.match(text)
    if match is None:
        raise InvalidArgumentError(
            f"{text!r} is not a duration: give a number with an optional unit s, m, h, d or w "
            "(e.g. 30s, 15m, 12h, 7d)"
        )
    return dt.timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """A point in time: a duration ago (``"1h"``) or an ISO 8601 time (UTC if naive)."""
    if not isinstance(text, str):
        raise InvalidArgumentError(
            f"a time is a str such as '1h' or an ISO 8601 time, not {text!r}"
        )
    try:
        return now - parse_duration(text)
    except InvalidArgumentError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(
            f"{text!r} is neither a duration (30m, 12h, 7d) nor an ISO 8601 time "
            "(2025-01-31T12:00:00+00:00)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def check_int(name: str, value: object, low: int, high: int) -> int:
    """``value`` if it is an int from ``low`` to ``high``; else the error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int from {low} to {high}, not {value!r}")
    if not low <= value <= high:
        raise InvalidArgumentError(f"{name} must be from {low} to {high}, not {value!r}")
    return value


def _names(field: str, values: object, *, none_ok: bool = False) -> None:
    # A bare string would be read letter by letter: say so instead of "unknown status 'f'".
    if isinstance(values, str) or not isinstance(values, tuple):
        raise InvalidArgumentError(f"RunFilter {field} must be a tuple of names, not {values!r}")
    for value in values:
        if not isinstance(value, str) and not (none_ok and value is None):
            raise InvalidArgumentError(f"RunFilter {field} must hold names (str), not {value!r}")


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to select; empty fields select everything. Fields combine with AND,
    the values within one field with OR."""

    statuses: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    #: Queue names; ``None`` in the tuple selects inline runs (started by ``app.run``).
    queues: tuple[str | None, ...] = ()
    #: Keys starting with this text (compared exactly, case included).
    key_prefix: str | None = None
    #: Keys containing this text (compared exactly, case included).
    key_contains: str | None = None
    #: Runs whose key, arguments (as stored JSON) or error (type, message, traceback)
    #: contain this text (compared exactly, case included).
    text: str | None = None
    #: With ``text``: search the arguments of these jobs only (None: of every job). The
    #: dashboard leaves out jobs that redact fields, so that a search cannot be used to
    #: test guesses of a hidden value.
    text_args_jobs: tuple[str, ...] | None = None
    #: Runs created, claimed or finished at or after this time.
    since: dt.datetime | None = None
    #: Only waiting runs already due.
    due: bool = False
    #: Only running runs whose owner stopped heartbeating or whose lock expired.
    orphaned: bool = False
    #: Only due runs of a job that no live worker knows on their queue.
    unknown_job: bool = False

    def __post_init__(self) -> None:
        _names("statuses", self.statuses)
        _names("jobs", self.jobs)
        _names("queues", self.queues, none_ok=True)
        if self.text_args_jobs is not None:
            _names("text_args_jobs", self.text_args_jobs)
        for field in ("key_prefix", "key_contains", "text"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise InvalidArgumentError(f"RunFilter {field} must be a str, not {value!r}")
        unknown = [s for s in self.statuses if s not in {m.value for m in RunStatus}]
        if unknown:
            known = ", ".join(s.value for s in RunStatus)
            raise InvalidArgumentError(f"unknown status {unknown[0]!r}; the statuses are {known}")
        for flag in ("due", "orphaned", "unknown_job"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidArgumentError(
                    f"RunFilter {flag} must be a bool, not {getattr(self, flag)!r}"
                )
        if self.since is not None:
            if not isinstance(self.since, dt.datetime):
                raise InvalidArgumentError(f"since must be a datetime, not {self.since!r}")
            if self.since.tzinfo is None:
                raise InvalidArgumentError("since must be a timezone-aware datetime")

    @property
    def empty(self) -> bool:
        """True when the filter selects every run."""
        return not (
            self.statuses
            or self.jobs
            or self.queues
            or self.key_prefix
            or self.key_contains
            or self.text
            or self.since
            or self.due
            or self.orphaned
            or self.unknown_job
        )

    def narrowed(self, statuses: Sequence[str]) -> RunFilter | None:
        """This filter restricted to ``statuses`` (the ones an action applies to); None
        when it asks only for other statuses."""
        chosen = tuple(s for s in (self.statuses or tuple(statuses)) if s in statuses)
        if not chosen:
            return None
        return dataclasses.replace(self, statuses=chosen)

    def describe(self) -> str:
        """The filter in words, for confirmations and messages."""
        parts = []
        if self.statuses:
            parts.append("status " + "|".join(s or "(none)" for s in self.statuses))
        if self.jobs:
            parts.append("job " + "|".join(self.jobs))
        if self.queues:
            parts.append("queue " + "|".join(q or "(inline)" for q in self.queues))
        if self.key_prefix:
            parts.append(f"key starting with {self.key_prefix!r}")
        if self.key_contains:
            parts.append(f"key containing {self.key_contains!r}")
        if self.text:
            parts.append(f"key, arguments or error containing {self.text!r}")
        if self.since:
            parts.append(f"active since {self.since.isoformat(timespec='seconds')}")
        if self.due:
            parts.append("due")
        if self.orphaned:
            parts.append("orphaned")
        if self.unknown_job:
            parts.append("job unknown to every live worker")
        return ", ".join(parts) or "all runs"
