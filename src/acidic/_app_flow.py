"""The App's flow-control methods: schedules and waiting for a result (mixed into
:class:`acidic.App`; see docs/flow.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ._engine._schedules import Schedule
from ._engine._views import to_run
from ._errors import InvalidArgumentError, RunCancelledError, RunFailedError, UnknownJobError
from ._job import Job
from ._outcomes import to_seconds
from ._run import RunStatus

if TYPE_CHECKING:
    from ._app import App

__all__ = ["FlowMethods"]


def _app(mixin: FlowMethods) -> App:
    return cast("App", mixin)


class FlowMethods:
    """``app.schedule``, ``app.schedules`` and ``app.wait``."""

    def schedule(
        self,
        name: str,
        job: Job,
        *,
        cron: str | None = None,
        every: dt.timedelta | None = None,
        timezone: str = "UTC",
        catch_up: int = 1,
        queue: str | None = None,
    ) -> Schedule:
        """Run ``job`` (an instance, with its arguments) on a recurring schedule.

        ``cron`` is a five-field cron expression evaluated in ``timezone``; ``every`` a
        ``timedelta`` of whole seconds (at least one), ticks aligned to the Unix epoch.
        Give exactly one. Workers evaluate the schedules of their App: each tick becomes
        one run of the key ``schedule:<name>:<tick, ISO 8601 UTC>`` (for example
        ``schedule:nightly:2026-12-03T03:00:00Z``), so any number of workers create
        exactly one run per tick. After downtime (no worker running), at most
        ``catch_up`` missed ticks run, the latest ones. ``queue`` defaults to the App's
        first queue. A bad expression or argument raises :class:`InvalidArgumentError`
        (a ``ValueError``) here.
        """
        app = _app(self)
        if not isinstance(job, Job):
            raise UnknownJobError(f"app.schedule() takes a job instance, not {job!r}")
        job_name = app.name_of(job)
        type(job).__acidic_definition__.encode_args(job)  # unstorable arguments fail now
        queue = app._queues[0] if queue is None else queue
        if queue not in app._queues:
            raise InvalidArgumentError(
                f"queue {queue!r} is not declared; this App's queues are {list(app._queues)}"
            )
        if name in app._schedules:
            raise InvalidArgumentError(f"a schedule named {name!r} is already registered")
        schedule = Schedule.build(
            name,
            job,
            job_name,
            cron=cron,
            every=every,
            timezone=timezone,
            catch_up=catch_up,
            queue=queue,
        )
        app._schedules[name] = schedule
        return schedule

    @property
    def schedules(self) -> Mapping[str, Schedule]:
        """The registered schedules by name."""
        return dict(_app(self)._schedules)

    def wait(
        self,
        key: str,
        timeout: float | dt.timedelta | None = None,
        *,
        poll_interval: float = 0.1,
    ) -> Any:
        """Block until the run of ``key`` is finished and return its result.

        Raises :class:`RunFailedError` (carrying the stored :class:`RunError`) for a
        failed run, :class:`RunCancelledError` for a cancelled one, ``TimeoutError``
        when ``timeout`` (seconds or a timedelta) passes first, and
        :class:`UnknownKeyError` when no run has the key. On PostgreSQL the waiter is
        woken the moment the run's last transaction commits (LISTEN/NOTIFY); elsewhere
        it reads the run every ``poll_interval`` seconds. A halted or interrupted run is
        not finished: wait goes on waiting for it.
        """
        app = _app(self)
        try:
            seconds = None if timeout is None else to_seconds(timeout, "timeout")
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(str(exc)) from None
        if not isinstance(poll_interval, int | float) or not poll_interval > 0:
            raise InvalidArgumentError(f"poll_interval must be > 0, not {poll_interval!r}")
        row = app._manager.wait(key, seconds, float(poll_interval))
        run = to_run(row, [], app._jobs.get(row.job))
        if run.status == RunStatus.SUCCEEDED:
            return run.result
        if run.status == RunStatus.FAILED:
            raise RunFailedError(run.key, run.error)
        raise RunCancelledError(f"run {run.key!r} was cancelled")

    async def wait_async(
        self,
        key: str,
        timeout: float | dt.timedelta | None = None,
        *,
        poll_interval: float = 0.1,
    ) -> Any:
        """Awaitable :meth:`wait`, with the same results and errors. It waits in a worker
        thread (``asyncio.to_thread``): the event loop stays free meanwhile. Cancelling the
        awaiting task stops waiting for the result; the thread ends at the run's finish or
        at ``timeout``."""
        return await asyncio.to_thread(_app(self).wait, key, timeout, poll_interval=poll_interval)
