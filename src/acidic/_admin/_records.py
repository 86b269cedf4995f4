"""What :class:`acidic._admin.Admin` returns: runs, pages, timelines and stats, ready to
show or to print as JSON (times in ISO 8601)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .._run import RunError
from .._storage._fleet import WorkerRow
from ._format import iso

__all__ = [
    "REDACTED",
    "Bucket",
    "QueueInfo",
    "RunDetail",
    "RunPage",
    "RunSummary",
    "SignalInfo",
    "Stats",
    "StepSpan",
    "WorkerInfo",
]

#: What a redacted argument or context value is shown as.
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as a list shows it (no arguments, context or history)."""

    key: str
    job: str
    status: str
    queue: str | None
    priority: int
    attempts: int
    max_attempts: int | None
    recovery_point: str | None
    created_at: dt.datetime
    last_run_at: dt.datetime | None
    finished_at: dt.datetime | None
    run_at: dt.datetime | None
    locked_at: dt.datetime | None
    error: RunError | None
    #: The row id: the cursor of pages and the order of runs (newest first).
    id: int = 0
    #: When the lock of a running run goes stale (then anyone may take the run over).
    lock_expires_at: dt.datetime | None = None
    #: The id of the worker holding a running run (None: inline, or not running).
    owner: str | None = None
    #: The owner's last heartbeat (its registry row), when it is registered.
    owner_heartbeat_at: dt.datetime | None = None
    #: Running, but its owner stopped heartbeating (gone) or its lock expired.
    orphaned: bool = False
    #: When an orphaned run will be (or may be) taken over: its lock expiry.
    takeover_at: dt.datetime | None = None
    #: What is wrong with it, e.g. "no live worker knows job 'x' on queue 'default'".
    warning: str | None = None
    #: Waiting (pending or scheduled) and due now.
    due: bool = False
    #: Why it waits, or is stuck, and until when (None for a plain finished run).
    reason: str | None = None
    #: Who executes it: "celery", "rq", "dramatiq", "acidic" or "inline".
    executor: str = "inline"

    @property
    def updated_at(self) -> dt.datetime:
        """The run's latest activity: finished, else last claimed, else created."""
        return self.finished_at or self.last_run_at or self.created_at

    def to_json(self) -> dict[str, Any]:
        """As JSON data (times in ISO 8601, UTC)."""
        return {
            "key": self.key,
            "job": self.job,
            "status": self.status,
            "queue": self.queue,
            "executor": self.executor,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "recovery_point": self.recovery_point,
            "created_at": iso(self.created_at),
            "last_run_at": iso(self.last_run_at),
            "finished_at": iso(self.finished_at),
            "run_at": iso(self.run_at),
            "locked_at": iso(self.locked_at),
            "error": None if self.error is None else self.error.to_json(),
            "lock_expires_at": iso(self.lock_expires_at),
            "owner": self.owner,
            "owner_heartbeat_at": iso(self.owner_heartbeat_at),
            "orphaned": self.orphaned,
            "takeover_at": iso(self.takeover_at),
            "warning": self.warning,
            "due": self.due,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class WorkerInfo(WorkerRow):
    """A registered worker process (its row, :class:`WorkerRow`) and the runs it holds."""

    #: False once it missed its heartbeats (killed, cut off, frozen).
    live: bool
    #: Keys of the running runs it holds.
    runs: list[str]

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "version": self.version,
            "jobs": self.jobs,
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "gone_at": iso(self.gone_at),
            "live": self.live,
            "runs": self.runs,
        }


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue now: its waiting, due and running runs, and whether it is paused."""

    name: str
    #: Waiting runs (pending or scheduled), due or not.
    depth: int
    #: Waiting runs already due.
    due: int
    running: int
    #: Seconds the oldest due run has been due: the latency a new run sees now.
    oldest_due_age_s: float | None
    paused: bool
    paused_at: dt.datetime | None
    #: Declared by the App (it may also be known only from stored runs or a pause).
    declared: bool
    #: Live workers serving it.
    workers: int

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "name": self.name,
            "depth": self.depth,
            "due": self.due,
            "running": self.running,
            "oldest_due_age_s": self.oldest_due_age_s,
            "paused": self.paused,
            "paused_at": iso(self.paused_at),
            "declared": self.declared,
            "workers": self.workers,
        }


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs, newest first; ``next_cursor`` fetches the next (older) page."""

    runs: list[RunSummary]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class StepSpan:
    """One execution of a step: from its ``started`` event to the event that ended it."""

    step: str
    attempt: int
    started_at: dt.datetime
    ended_at: dt.datetime | None
    #: ``succeeded``, ``errored``, ``halted``; ``running`` for the step executing now;
    #: ``interrupted`` when a later execution began without this one ending (a crash).
    outcome: str
    error: RunError | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end; None while it runs or if it never ended."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "step": self.step,
            "attempt": self.attempt,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_s": self.duration,
            "outcome": self.outcome,
            "error": None if self.error is None else self.error.to_json(),
        }


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """A signal delivered to a run (its payload is not shown: it may hold secrets)."""

    name: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class RunDetail:
    """Everything about one run, redacted as its job asks, ready to show."""

    summary: RunSummary
    #: Arguments as JSON data, redacted; None when hidden (job unknown to the App).
    args: dict[str, Any] | None
    #: Context as JSON data, redacted; None when hidden.
    ctx: dict[str, Any] | None
    result: Any
    steps: list[str]
    timeline: list[StepSpan]
    signals: list[SignalInfo]
    #: Why args and context are hidden, when they are.
    hidden_reason: str | None = None
    #: The names of the fields the job redacts.
    redacted: tuple[str, ...] = ()
    #: Steps the run may be resumed from (the registered job's, else the stored ones).
    resumable_steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            **self.summary.to_json(),
            "args": self.args,
            "ctx": self.ctx,
            "result": self.result,
            "steps": self.steps,
            "timeline": [s.to_json() for s in self.timeline],
            "signals": [{"name": s.name, "created_at": iso(s.created_at)} for s in self.signals],
            "hidden_reason": self.hidden_reason,
            "redacted": list(self.redacted),
        }


@dataclass(frozen=True, slots=True)
class Bucket:
    """Activity in one slice of a stats window."""

    start: dt.datetime
    #: Runs that succeeded in the slice.
    succeeded: int
    #: Step errors recorded in the slice (each failed attempt, retried or not).
    errors: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts now, and activity over a window ending now."""

    now: dt.datetime
    window: dt.timedelta
    by_status: dict[str, int]
    #: Queue name (``None``: inline runs) -> status -> count.
    by_queue: dict[str | None, dict[str, int]]
    #: Runs that succeeded within the window.
    succeeded: int
    #: Step errors recorded within the window.
    errors: int
    buckets: list[Bucket]
    #: Statuses whose counts (in ``by_status`` and ``by_queue``) are estimates from the
    #: database's statistics, not counted row by row (see :meth:`Admin.stats`).
    estimated: frozenset[str] = frozenset()

    @property
    def total(self) -> int:
        """All runs stored."""
        return sum(self.by_status.values())

    @property
    def throughput_per_minute(self) -> float:
        """Runs that succeeded per minute over the window."""
        return self.succeeded / max(self.window.total_seconds() / 60, 1e-9)

    @property
    def failure_rate(self) -> float | None:
        """Errors / (successes + errors) within the window; None without either."""
        ended = self.succeeded + self.errors
        return None if ended == 0 else self.errors / ended

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "now": iso(self.now),
            "window_s": self.window.total_seconds(),
            "total": self.total,
            "by_status": self.by_status,
            "by_queue": [{"queue": q, "by_status": counts} for q, counts in self.by_queue.items()],
            "estimated": sorted(self.estimated),
            "succeeded": self.succeeded,
            "errors": self.errors,
            "throughput_per_minute": self.throughput_per_minute,
            "failure_rate": self.failure_rate,
            "buckets": [
                {"start": iso(b.start), "succeeded": b.succeeded, "errors": b.errors}
                for b in self.buckets
            ],
        }
