"""The worker's housekeeping: wake-ups that a crash may have left undone.

A child that finishes wakes its awaiting parent right after its own commit; a process
killed in between leaves the parent awaiting with nothing left to wait for. Every
worker looks for such runs every few seconds and makes them due, so that a fan-in
never hangs on a crash.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._engine import Manager
from ._scheduler import Scheduler

if TYPE_CHECKING:
    from .._app import App

__all__ = ["Housekeeper", "side_threads"]

log = logging.getLogger("acidic.worker")

#: Seconds between two passes.
INTERVAL = 2.0


class Housekeeper:
    """Wakes awaiting runs whose awaited runs are all finished, until ``stopped``."""

    def __init__(
        self, manager: Manager, stopped: threading.Event, interval: float = INTERVAL
    ) -> None:
        self.manager = manager
        self.stopped = stopped
        self.interval = interval

    def run(self) -> None:
        """Pass every ``interval`` seconds until stopped (the housekeeping thread)."""
        failing = False
        while not self.stopped.wait(self.interval):
            try:
                woken = self.manager.wake_ready_awaiting()
            except Exception as exc:  # e.g. the database is down: the next pass retries
                if not failing:
                    log.warning("housekeeping failed: %s; retrying", exc)
                failing = True
                continue
            failing = False
            if woken:
                log.info("woke %d awaiting run(s) whose awaited runs had finished", woken)


def side_threads(
    app: App, stopping: threading.Event, wake: Callable[[], None]
) -> list[threading.Thread]:
    """The worker's threads beside its dispatcher, heartbeat and listener: housekeeping,
    and the scheduler when the App has schedules (``wake``: after it enqueued a tick)."""
    manager = app.manager
    threads = [
        threading.Thread(
            target=Housekeeper(manager, stopping).run, name="acidic-housekeeping", daemon=True
        )
    ]
    if app.schedules:
        scheduler = Scheduler(manager, list(app.schedules.values()), stopping, on_enqueued=wake)
        threads.append(threading.Thread(target=scheduler.run, name="acidic-scheduler", daemon=True))
    return threads
