"""A worker's row in the registry (``acidic workers``), and its warnings about due runs
no live worker can execute.

The worker registers at start, renews its row from its heartbeat thread (never from a
run's path: claims and steps send no statement for it) and removes it on a graceful
stop. A worker whose row was not renewed for :data:`GONE_AFTER_MISSED` heartbeats
counts as gone; rows of workers gone for :data:`PRUNE_GONE_AFTER` are deleted by the
next worker that registers or beats.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._engine import Manager

__all__ = [
    "GONE_AFTER_MISSED",
    "PRUNE_GONE_AFTER",
    "REGISTRY_MAX_INTERVAL",
    "REGISTRY_MIN_INTERVAL",
    "UNKNOWN_CHECK_INTERVAL",
    "Registration",
]

log = logging.getLogger("acidic.worker")

#: A worker is gone once it missed this many heartbeats of the registry.
GONE_AFTER_MISSED = 3
#: The registry is renewed at each heartbeat of the worker, but not more often than
#: this (seconds): a worker with a very short heartbeat does not write every 50 ms...
REGISTRY_MIN_INTERVAL = 1.0
#: ... nor less often than this: a long lock timeout (90 s: a heartbeat every 30 s)
#: must not leave a dead worker looking live for minutes.
REGISTRY_MAX_INTERVAL = 5.0
#: Rows of workers gone for longer than this are deleted.
PRUNE_GONE_AFTER = dt.timedelta(hours=1)
#: How often an idle worker looks for due runs of jobs no live worker knows (seconds).
UNKNOWN_CHECK_INTERVAL = 5.0
#: Beats between two prunes of gone workers.
_PRUNE_EVERY = 600


def new_worker_id() -> str:
    """``host:pid:random``: readable in logs, unique across restarts of a pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Registration:
    """One worker process's registry row and its unknown-job warnings."""

    def __init__(
        self,
        manager: Manager,
        *,
        queues: Sequence[str],
        jobs: Sequence[str],
        concurrency: int,
        heartbeat: float,
    ) -> None:
        self.manager = manager
        self.id = new_worker_id()
        self.queues = list(queues)
        self.jobs = list(jobs)
        self.concurrency = concurrency
        self.interval = min(max(heartbeat, REGISTRY_MIN_INTERVAL), REGISTRY_MAX_INTERVAL)
        self.registered = False
        self._last_beat = 0.0
        self._last_check = 0.0
        self._beats = 0
        #: Job names warned about and not cleared since (see :meth:`check_unknown`).
        self.warned: set[str] = set()

    def _gone_at(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.interval * GONE_AFTER_MISSED)

    def register(self) -> None:
        """Record this worker (and prune workers gone long ago)."""
        from .. import __version__  # noqa: PLC0415  # the package imports this module

        fleet = self.manager.fleet
        now = self.manager.clock()
        fleet.register(
            self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
            version=__version__,
            jobs=self.jobs,
            now=now,
            gone_at=self._gone_at(now),
        )
        self.registered = True
        self._last_beat = time.monotonic()
        fleet.prune_workers(now - PRUNE_GONE_AFTER)
        log.info("worker registered as %s", self.id, extra={"worker": self.id})

    def beat(self) -> None:
        """From the heartbeat thread: renew the row when due (re-register if it was
        pruned meanwhile, or never written because the database was down)."""
        if time.monotonic() - self._last_beat < self.interval:
            return
        if not self.registered:
            self.register()
            return
        now = self.manager.clock()
        fleet = self.manager.fleet
        if not fleet.heartbeat(self.id, now, self._gone_at(now)):
            self.register()
            return
        self._last_beat = time.monotonic()
        self._beats += 1
        if self._beats % _PRUNE_EVERY == 0:
            fleet.prune_workers(now - PRUNE_GONE_AFTER)

    def unregister(self) -> None:
        """A graceful stop: remove the row."""
        if self.registered:
            self.manager.fleet.unregister(self.id)
            self.registered = False

    def check_unknown(self) -> None:
        """While idle: warn once per job name about due runs of this worker's queues that
        no live worker knows; a job warned about is warned about again only after its
        condition cleared and came back."""
        if time.monotonic() - self._last_check < UNKNOWN_CHECK_INTERVAL:
            return
        self._last_check = time.monotonic()
        fleet = self.manager.fleet
        now = self.manager.clock()
        due = fleet.due_jobs(now, queues=self.queues, except_jobs=self.jobs)
        stuck: dict[str, list[tuple[str, int]]] = {}
        if due:
            live = fleet.live_workers(now)
            paused = fleet.paused()
            for d in due:
                if d.queue in paused:
                    continue
                if any(d.queue in w.queues and d.job in w.jobs for w in live):
                    continue
                stuck.setdefault(d.job, []).append((d.queue, d.count))
        self.warned &= set(stuck)  # cleared conditions may warn again
        for job, where in sorted(stuck.items()):
            if job in self.warned:
                continue
            self.warned.add(job)
            for queue, count in where:
                log.warning(
                    "no live worker knows job %r on queue %r: %d due run(s) wait "
                    "(register the job with the App that the workers serve)",
                    job,
                    queue,
                    count,
                    extra={"job": job, "queue": queue, "runs": count, "worker": self.id},
                )
