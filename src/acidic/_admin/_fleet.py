"""The fleet as operators see it: workers and the runs they hold, queues, and what is
stuck (orphaned runs, due runs of a job no live worker knows, paused queues).

Everything is read from the worker registry and the runs (``app.manager.fleet``,
SQL in :mod:`acidic._storage._fleet`); a page of runs costs two small reads more
(workers, paused queues), whatever its size.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .._run import RunStatus
from .._storage._fleet import Fleet, WorkerRow
from ._format import iso
from ._records import QueueInfo, RunSummary, WorkerInfo

__all__ = ["FleetView", "UnknownJob", "list_queues", "list_workers", "unknown_jobs"]


def unknown_job_warning(job: str, queue: str) -> str:
    """The warning of a due run that no live worker can execute."""
    return f"no live worker knows job {job!r} on queue {queue!r}"


@dataclass(frozen=True, slots=True)
class UnknownJob:
    """Due runs of a job that no live worker knows on their queue."""

    queue: str
    job: str
    count: int
    oldest_due: dt.datetime | None

    @property
    def warning(self) -> str:
        """The warning shown on each of these runs."""
        return unknown_job_warning(self.job, self.queue)

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "queue": self.queue,
            "job": self.job,
            "count": self.count,
            "oldest_due": iso(self.oldest_due),
            "warning": self.warning,
        }


@dataclass(frozen=True, slots=True)
class FleetView:
    """The registry and paused queues at ``now``: what run summaries are judged by."""

    now: dt.datetime
    registered: dict[str, WorkerRow]
    paused: dict[str, dt.datetime]

    @classmethod
    def read(cls, fleet: Fleet, now: dt.datetime) -> FleetView:
        """Two reads: the registered workers and the paused queues."""
        return cls(now, {w.id: w for w in fleet.workers()}, fleet.paused())

    def live(self) -> list[WorkerRow]:
        """The workers that are not gone."""
        return [w for w in self.registered.values() if w.gone_at > self.now]

    def knows(self, queue: str, job: str) -> bool:
        """Whether a live worker serves ``queue`` and knows ``job``."""
        return any(queue in w.queues and job in w.jobs for w in self.live())

    def annotate(self, summary: RunSummary) -> RunSummary:
        """``summary`` with its owner, orphaned state, warning, due flag and reason."""
        s, now = summary, self.now
        status = s.status
        worker = self.registered.get(s.owner) if s.owner is not None else None
        owner = s.owner if status == RunStatus.RUNNING else None
        orphaned = False
        takeover_at = None
        warning = None
        due = False
        reason = None
        if status == RunStatus.RUNNING:
            expired = s.lock_expires_at is not None and s.lock_expires_at <= now
            gone = owner is not None and (worker is None or worker.gone_at <= now)
            orphaned = expired or gone
            if orphaned:
                takeover_at = s.lock_expires_at
                who = f"worker {owner}" if owner is not None else "its inline caller"
                if expired:
                    reason = (
                        f"orphaned: {who} stopped renewing its lock, which expired at "
                        f"{iso(takeover_at)}; the next claim takes it over"
                    )
                else:
                    reason = (
                        f"orphaned: {who} stopped heartbeating; it will be taken over when "
                        f"its lock expires at {iso(takeover_at)}"
                    )
                warning = reason
        elif status in (RunStatus.PENDING, RunStatus.SCHEDULED) and s.run_at is not None:
            due = s.run_at <= now
            if status == RunStatus.SCHEDULED:
                why = "retrying after an error" if s.error is not None else "sleeping"
                reason = f"{why} until {iso(s.run_at)}"
            else:
                reason = f"due {'since' if due else 'at'} {iso(s.run_at)}"
            if due and s.queue is not None:
                if s.queue in self.paused:
                    warning = f"queue {s.queue!r} is paused"
                elif not self.knows(s.queue, s.job):
                    warning = unknown_job_warning(s.job, s.queue)
        elif status == RunStatus.HALTED:
            reason = (
                f"halted by step {s.recovery_point!r} (it returned Halt()): it continues "
                "there when the key is run, resumed or retried; no time is set"
            )
        elif status == RunStatus.INTERRUPTED:
            reason = (
                f"interrupted (Ctrl-C or SystemExit) in step {s.recovery_point!r}: the next "
                "app.run, resume or retry of the key continues it"
            )
        return dataclasses.replace(
            s,
            owner=owner,
            owner_heartbeat_at=worker.heartbeat_at if worker is not None and owner else None,
            orphaned=orphaned,
            takeover_at=takeover_at,
            warning=warning,
            due=due,
            reason=reason,
        )


def needs_view(summaries: Iterable[RunSummary]) -> bool:
    """Whether any of these runs is judged by the registry (running or waiting)."""
    judged = {RunStatus.RUNNING, RunStatus.PENDING, RunStatus.SCHEDULED}
    return any(s.status in judged for s in summaries)


def unknown_jobs(fleet: Fleet, view: FleetView) -> list[UnknownJob]:
    """Due runs, by queue and job, that no live worker knows (paused queues left out:
    nobody claims from them anyway, and they say so)."""
    return [
        UnknownJob(d.queue, d.job, d.count, d.oldest_due)
        for d in fleet.due_jobs(view.now)
        if d.queue not in view.paused and not view.knows(d.queue, d.job)
    ]


def list_workers(fleet: Fleet, now: dt.datetime) -> list[WorkerInfo]:
    """Every registered worker (live ones first, then gone ones), with its runs."""
    rows = fleet.workers()
    held: dict[str, list[str]] = {w.id: [] for w in rows}
    for owner, key in fleet.held([w.id for w in rows]):
        held.setdefault(owner, []).append(key)
    infos = [
        WorkerInfo(
            **{f.name: getattr(w, f.name) for f in dataclasses.fields(w)},
            live=w.gone_at > now,
            runs=held[w.id],
        )
        for w in rows
    ]
    return sorted(infos, key=lambda w: (not w.live, w.started_at, w.id))


def list_queues(fleet: Fleet, declared: Sequence[str], now: dt.datetime) -> list[QueueInfo]:
    """The declared queues, and any other queue that has runs or is paused, by name."""
    counts = {q.name: q for q in fleet.queue_counts(now)}
    paused = fleet.paused()
    live = fleet.live_workers(now)
    names = sorted(set(declared) | set(counts) | set(paused))
    infos = []
    for name in names:
        c = counts.get(name)
        oldest = c.oldest_due if c is not None else None
        infos.append(
            QueueInfo(
                name=name,
                depth=c.depth if c else 0,
                due=c.due if c else 0,
                running=c.running if c else 0,
                oldest_due_age_s=None
                if oldest is None
                else max((now - oldest).total_seconds(), 0.0),
                paused=name in paused,
                paused_at=paused.get(name),
                declared=name in declared,
                workers=sum(1 for w in live if name in w.queues),
            )
        )
    return infos
