"""Schedules: recurring runs of a job, one run per tick, keyed by the tick.

A schedule computes its ticks (from a five-field cron expression in a timezone, or a
fixed interval aligned to the Unix epoch) without I/O. Each tick becomes the run of
the key ``schedule:<name>:<tick in ISO 8601 UTC>``: any number of workers enqueue the
same tick, and the key's uniqueness leaves exactly one run. No leader is elected.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .._errors import InvalidArgumentError
from .._job import Job

__all__ = ["KEY_PREFIX", "MAX_NAME_LENGTH", "Schedule", "tick_key"]

KEY_PREFIX = "schedule:"
#: Long enough for any sensible name, short enough that every tick key fits in 255.
MAX_NAME_LENGTH = 200
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def tick_key(name: str, tick: dt.datetime) -> str:
    """The idempotency key of the run of schedule ``name`` at ``tick``."""
    return f"{KEY_PREFIX}{name}:{tick.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring job registered with :meth:`acidic.App.schedule`.

    ``job`` is the job instance each tick runs (with its arguments); exactly one of
    ``cron`` (five fields, evaluated in ``timezone``) and ``every`` (whole seconds,
    ticks aligned to the Unix epoch) is set. After downtime, at most ``catch_up``
    missed ticks run: the latest ones.
    """

    name: str
    job: Job
    job_name: str
    cron: str | None
    every: dt.timedelta | None
    timezone: str
    catch_up: int
    queue: str

    @classmethod
    def build(
        cls,
        name: str,
        job: Job,
        job_name: str,
        *,
        cron: str | None,
        every: dt.timedelta | None,
        timezone: str,
        catch_up: int,
        queue: str,
    ) -> Schedule:
        """Check the arguments of :meth:`acidic.App.schedule` and build the schedule;
        :class:`acidic.InvalidArgumentError` (a ``ValueError``) names what is wrong."""
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
            raise InvalidArgumentError(
                f"a schedule name is a str of 1 to {MAX_NAME_LENGTH} characters, not {name!r}"
            )
        if (cron is None) == (every is None):
            raise InvalidArgumentError(f"schedule {name!r}: give exactly one of cron= and every=")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise InvalidArgumentError(f"schedule {name!r}: unknown timezone {timezone!r}") from exc
        if cron is not None:
            if not isinstance(cron, str) or len(cron.split()) != 5:
                raise InvalidArgumentError(
                    f"schedule {name!r}: cron must be a five-field expression "
                    f"('minute hour day month weekday'), not {cron!r}"
                )
            try:
                CronSim(cron, dt.datetime.now(ZoneInfo(timezone)))
            except CronSimError as exc:
                raise InvalidArgumentError(
                    f"schedule {name!r}: bad cron expression {cron!r}: {exc}"
                ) from exc
        if every is not None:
            if not isinstance(every, dt.timedelta):
                raise InvalidArgumentError(
                    f"schedule {name!r}: every must be a timedelta, not {every!r}"
                )
            seconds = every.total_seconds()
            if seconds < 1 or seconds != int(seconds):
                raise InvalidArgumentError(
                    f"schedule {name!r}: every must be a whole number of seconds, at least "
                    f"one, not {every!r}"
                )
        if isinstance(catch_up, bool) or not isinstance(catch_up, int) or catch_up < 0:
            raise InvalidArgumentError(
                f"schedule {name!r}: catch_up must be an int >= 0, not {catch_up!r}"
            )
        return cls(name, job, job_name, cron, every, timezone, catch_up, queue)

    @property
    def spec(self) -> str:
        """The recurrence as written: the cron expression or ``every 30s``."""
        if self.cron is not None:
            return self.cron
        assert self.every is not None
        return f"every {int(self.every.total_seconds())}s"

    def key(self, tick: dt.datetime) -> str:
        """The idempotency key of this schedule's run at ``tick``."""
        return tick_key(self.name, tick)

    def _backward(self, moment: dt.datetime) -> Iterator[dt.datetime]:
        """Ticks at or before ``moment``, latest first (UTC)."""
        if self.every is not None:
            step = int(self.every.total_seconds())
            last = int((moment - _EPOCH).total_seconds()) // step * step
            for n in itertools.count():
                yield _EPOCH + dt.timedelta(seconds=last - n * step)
        assert self.cron is not None
        local = moment.astimezone(ZoneInfo(self.timezone)).replace(microsecond=0)
        # CronSim's reverse iteration starts strictly before its start: include moment.
        for tick in CronSim(self.cron, local + dt.timedelta(seconds=1), reverse=True):
            yield tick.astimezone(dt.UTC)

    def latest(self, now: dt.datetime, count: int) -> list[dt.datetime]:
        """The ``count`` latest ticks at or before ``now``, oldest first."""
        return sorted(itertools.islice(self._backward(now), count))

    def between(self, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
        """The ticks in ``(after, until]``, oldest first."""
        found = itertools.takewhile(lambda t: t > after, self._backward(until))
        return sorted(found)

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first tick strictly after ``moment``."""
        if self.every is not None:
            step = int(self.every.total_seconds())
            elapsed = (moment - _EPOCH).total_seconds()
            return _EPOCH + dt.timedelta(seconds=(int(elapsed) // step + 1) * step)
        assert self.cron is not None
        local = moment.astimezone(ZoneInfo(self.timezone))
        return next(iter(CronSim(self.cron, local))).astimezone(dt.UTC)
