"""What a step may return to say where the run goes next."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

__all__ = ["Await", "Halt", "RecoveryPoint", "Response", "Sleep", "StepOutcome", "to_seconds"]


@dataclass(frozen=True, slots=True)
class Response:
    """Finish the run now and store ``value`` (JSON, see :mod:`acidic` encoders) as its result."""

    value: Any = None


@dataclass(frozen=True, slots=True)
class RecoveryPoint:
    """Continue the run at the step named ``step``: a jump forward or a loop back."""

    step: str


@dataclass(frozen=True, slots=True)
class Halt:
    """Stop the run here and release it.

    The step's transactional writes and context commit as usual; the same step runs
    again the next time the key is run (or resumed).
    """


@dataclass(frozen=True, slots=True, init=False)
class Await:
    """Park the run, holding no worker, until every run of ``keys`` is finished
    (succeeded, failed for good or cancelled); then continue at the next step.

    Usually the keys of children this run spawned (:meth:`acidic.Job.spawn`); the
    next step reads their results and errors with :meth:`acidic.Job.children` (or
    ``app.get``). The run's status is ``awaiting`` meanwhile. Every key must have a
    run when the step ends, else the step fails.
    """

    keys: tuple[str, ...]

    def __init__(self, *keys: str) -> None:
        if not keys:
            raise ValueError("Await takes at least one key")
        for key in keys:
            if not isinstance(key, str) or not key:
                raise ValueError(f"Await takes idempotency keys (str), not {key!r}")
        object.__setattr__(self, "keys", tuple(dict.fromkeys(keys)))


StepOutcome = "Response | RecoveryPoint | Halt | Sleep | Await | None"


@dataclass(frozen=True, slots=True, init=False)
class Sleep:
    """Park the run and continue at the next step later: ``Sleep(seconds)`` (a number or
    a ``timedelta``) or ``Sleep(until=aware_datetime)``.

    The run's status is ``scheduled`` until then; the wake-up time is stored, so it
    survives the stop of every worker. The step's writes and context commit first.
    """

    seconds: float | None
    until: dt.datetime | None

    def __init__(
        self, seconds: float | dt.timedelta | None = None, *, until: dt.datetime | None = None
    ) -> None:
        if (seconds is None) == (until is None):
            raise ValueError("Sleep takes either seconds or until=, not both or neither")
        if until is not None and (not isinstance(until, dt.datetime) or until.tzinfo is None):
            raise ValueError(f"Sleep(until=...) needs a timezone-aware datetime, not {until!r}")
        object.__setattr__(self, "seconds", None if seconds is None else to_seconds(seconds))
        object.__setattr__(self, "until", until)

    def wake_at(self, now: dt.datetime) -> dt.datetime:
        """When the sleep ends, seen from ``now``."""
        if self.until is not None:
            return self.until
        return now + dt.timedelta(seconds=self.seconds or 0.0)


def to_seconds(value: float | dt.timedelta, what: str = "a duration") -> float:
    """Seconds from a number or a ``timedelta``; refuses negatives and other types."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} must be seconds (int or float) or a timedelta, not {value!r}")
    if not seconds >= 0:
        raise ValueError(f"{what} must not be negative, not {value!r}")
    return seconds
