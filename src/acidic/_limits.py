"""Flow limits: how many runs of a key or a queue may hold a lock at once, and how many
runs a queue may start per time window. Enforced where workers claim runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ._errors import InvalidArgumentError, JobDefinitionError

if TYPE_CHECKING:
    from ._job import Job

__all__ = ["Limit", "Queue", "Rate"]

#: Longest concurrency key stored (the column's width).
MAX_LIMIT_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Limit:
    """A job's concurrency limit (the class attribute ``concurrency``): at most ``max``
    runs whose ``key`` is the same hold a lock at once, across all workers and machines.

    ``key`` is a format string over the job's fields (``"user:{user_id}"``) or a function
    of the job returning a string. Runs of different jobs with the same key share the
    limit (each run is held to its own job's ``max``). A run over its limit stays pending
    and is claimed when a slot frees; it is never failed for it.
    """

    key: str | Callable[[Any], str]
    max: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.max, bool) or not isinstance(self.max, int) or self.max < 1:
            raise InvalidArgumentError(f"Limit max must be an int >= 1, not {self.max!r}")
        if not (isinstance(self.key, str) and self.key) and not callable(self.key):
            raise InvalidArgumentError(
                f"Limit key must be a format string or a function of the job, not {self.key!r}"
            )

    def check(self, job_cls: type[Job], fields: tuple[str, ...]) -> None:
        """Refuse a format string that names no field of ``job_cls``."""
        if not isinstance(self.key, str):
            return
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(self.key) if f is not None]
        except ValueError as exc:
            raise JobDefinitionError(
                f"job {job_cls.__qualname__}: bad concurrency key {self.key!r}: {exc}"
            ) from exc
        unknown = [n for n in names if n.split(".")[0].split("[")[0] not in fields]
        if unknown or "" in names:
            raise JobDefinitionError(
                f"job {job_cls.__qualname__}: concurrency key {self.key!r} names "
                f"{unknown or ['{}']}, which are not fields of the job ({list(fields)})"
            )

    def key_of(self, job: Job) -> str:
        """The concurrency key of ``job``."""
        if isinstance(self.key, str):
            values = {f.name: getattr(job, f.name) for f in dataclasses.fields(cast(Any, job))}
            value = self.key.format(**values)
        else:
            value = self.key(job)
            if not isinstance(value, str) or not value:
                raise InvalidArgumentError(
                    f"the concurrency key function of {type(job).__qualname__} returned "
                    f"{value!r}, not a non-empty str"
                )
        if len(value) > MAX_LIMIT_KEY_LENGTH:
            raise InvalidArgumentError(
                f"concurrency key of {type(job).__qualname__} is longer than "
                f"{MAX_LIMIT_KEY_LENGTH} characters: {value[:40]!r}..."
            )
        return value


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` runs started in any window of ``per`` (a sliding window)."""

    count: int
    per: dt.timedelta

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InvalidArgumentError(f"Rate count must be an int >= 1, not {self.count!r}")
        if not isinstance(self.per, dt.timedelta) or self.per <= dt.timedelta(0):
            raise InvalidArgumentError(f"Rate per must be a positive timedelta, not {self.per!r}")


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue's limits, in ``App(queues={"emails": Queue(...)})``: at most
    ``concurrency`` of its runs hold a lock at once, at most ``rate`` start per window,
    across all workers. ``Queue()`` has no limit."""

    concurrency: int | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        c = self.concurrency
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise InvalidArgumentError(f"Queue concurrency must be an int >= 1, not {c!r}")
        if self.rate is not None and not isinstance(self.rate, Rate):
            raise InvalidArgumentError(f"Queue rate must be an acidic.Rate, not {self.rate!r}")

    @property
    def limited(self) -> bool:
        """Whether claims from this queue are limited."""
        return self.concurrency is not None or self.rate is not None
