"""A clock that moves only when a test moves it."""

from __future__ import annotations

import datetime as dt
import threading

from .._errors import AcidicError
from .._outcomes import to_seconds

__all__ = ["Clock"]


class Clock:
    """Frozen time for tests: pass it as ``App(clock=Clock())``.

    acidic reads this clock for locks, ``run_at``, :class:`acidic.Sleep` and retry
    backoff, so :meth:`advance` makes them fall due at once, without sleeping;
    :meth:`acidic.App.drain` then executes what became due. It starts at the real
    current time (or ``start``, which must be timezone-aware) and never goes back.
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        if start is None:
            start = dt.datetime.now(dt.UTC)
        _check_aware(start)
        self._now = start.astimezone(dt.UTC)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        return self._now

    def now(self) -> dt.datetime:
        """The current time of this clock (aware, UTC)."""
        return self._now

    def advance(self, by: float | dt.timedelta) -> dt.datetime:
        """Move forward by ``by`` (seconds, or a timedelta); return the new time."""
        seconds = to_seconds(by, "Clock.advance(by)")  # refuses negative durations
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)
            return self._now

    def set(self, when: dt.datetime) -> dt.datetime:
        """Move forward to ``when`` (timezone-aware, not before the current time)."""
        _check_aware(when)
        with self._lock:
            if when < self._now:
                raise AcidicError(
                    f"a Clock only moves forward: {when.isoformat()} is before "
                    f"{self._now.isoformat()}"
                )
            self._now = when.astimezone(dt.UTC)
            return self._now

    def __repr__(self) -> str:
        return f"<acidic.testing.Clock {self._now.isoformat()}>"


def _check_aware(when: dt.datetime) -> None:
    if not isinstance(when, dt.datetime) or when.utcoffset() is None:
        raise AcidicError(f"a Clock needs a timezone-aware datetime, not {when!r}")
