"""The worker's scheduler: turns the App's schedules into runs, one per tick.

Every worker process runs one (no leader): a tick's run has a key derived from the
schedule and the tick, so the workers that enqueue the same tick leave one run. At
start it enqueues the latest ``catch_up`` ticks (those missed while no worker ran, or
already enqueued by another worker: then nothing happens); from then on, every tick
since its previous pass, so no tick is lost while it runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence

from .._engine import Manager
from .._engine._schedules import Schedule
from .._errors import AcidicError, ArgumentMismatchError

__all__ = ["Scheduler"]

log = logging.getLogger("acidic.worker")

#: Longest sleep between passes (seconds): bounds how late a stop or a clock jump is seen.
MAX_SLEEP = 1.0
#: A pass that finds more ticks than this many seconds late treats them as missed
#: (a suspended process): only the latest ``catch_up`` run.
LATE_LIMIT = dt.timedelta(seconds=60)


class Scheduler:
    """Enqueues the ticks of ``schedules`` until ``stopped`` is set."""

    def __init__(
        self,
        manager: Manager,
        schedules: Sequence[Schedule],
        stopped: threading.Event,
        clock: Callable[[], dt.datetime] | None = None,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.manager = manager
        self.schedules = tuple(schedules)
        self.stopped = stopped
        self.clock = clock or manager.clock
        self.on_enqueued = on_enqueued
        self._last: dict[str, dt.datetime] = {}
        self._failing: set[str] = set()

    def run(self) -> None:
        """Pass over the schedules until stopped (the worker's scheduler thread)."""
        while not self.stopped.is_set():
            now = self.clock()
            try:
                self.tick(now)
            except Exception:  # a bug must not silently end the schedules of this worker
                log.exception("scheduler pass failed; retrying")
            upcoming = min(s.next_after(now) for s in self.schedules)
            pause = (upcoming - self.clock()).total_seconds()
            self.stopped.wait(min(max(pause, 0.0), MAX_SLEEP))

    def tick(self, now: dt.datetime) -> int:
        """One pass: enqueue the ticks due by ``now`` (an existing tick's run is left as
        it is); how many ticks were enqueued."""
        enqueued = 0
        for schedule in self.schedules:
            last = self._last.get(schedule.name)
            if last is None:
                due = schedule.latest(now, schedule.catch_up)
            else:
                due = schedule.between(last, now)
                late = [t for t in due if now - t > LATE_LIMIT]
                on_time = [t for t in due if now - t <= LATE_LIMIT]
                due = (late[-schedule.catch_up :] if schedule.catch_up else []) + on_time
            try:
                for tick in due:
                    try:
                        self._enqueue(schedule, tick)
                    except ArgumentMismatchError as exc:  # another deploy's arguments: skip it
                        log.warning(
                            "schedule %r: tick not enqueued: %s",
                            schedule.name,
                            exc,
                            extra={"schedule": schedule.name},
                        )
                        continue
                    enqueued += 1
            except AcidicError as exc:  # e.g. the database is down: the next pass retries
                if schedule.name not in self._failing:
                    log.warning(
                        "schedule %r: could not enqueue its tick: %s",
                        schedule.name,
                        exc,
                        extra={"schedule": schedule.name},
                    )
                self._failing.add(schedule.name)
                continue
            self._failing.discard(schedule.name)
            self._last[schedule.name] = now
        if enqueued and self.on_enqueued is not None:
            self.on_enqueued()  # a polling worker need not wait for its next poll
        return enqueued

    def _enqueue(self, schedule: Schedule, tick: dt.datetime) -> None:
        self.manager.enqueue(
            schedule.job_name,
            schedule.job,
            schedule.key(tick),
            run_at=tick,
            queue=schedule.queue,
            priority=0,
            connection=None,
        )
