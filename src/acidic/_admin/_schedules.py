"""The App's schedules as operators see them: recurrence, last tick and its run, next
tick (``acidic schedules`` and the dashboard's Scheduled page)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._app import App

__all__ = ["describe_schedules"]


def describe_schedules(app: App) -> list[dict[str, Any]]:
    """Each schedule of ``app`` as a JSON object: its recurrence, its last tick (the
    latest at or before now: its key, and its run's status, or None if no worker
    enqueued it) and its next tick."""
    now = app.manager.clock()
    described = []
    for schedule in app.schedules.values():
        last = schedule.latest(now, 1)
        last_key = schedule.key(last[0]) if last else None
        # The row alone (no history): its status is all the listing shows.
        run = app.manager.find(last_key) if last_key else None
        described.append(
            {
                "name": schedule.name,
                "job": schedule.job_name,
                "cron": schedule.cron,
                "every_s": None if schedule.every is None else int(schedule.every.total_seconds()),
                "timezone": schedule.timezone,
                "catch_up": schedule.catch_up,
                "queue": schedule.queue,
                "last_tick": last[0].isoformat() if last else None,
                "last_key": last_key,
                "last_status": None if run is None else str(run.status),
                "next_tick": schedule.next_after(now).isoformat(),
            }
        )
    return described
