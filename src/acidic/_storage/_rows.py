"""The vocabulary of the storage port: rows as read, new runs as written, and the typed
change of a run that the engine's transitions decide and the store writes.

The engine never names a column: it hands the store a :class:`RunChange` (only the
fields it sets are written) and the store maps it onto its tables.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["KEEP", "EventRow", "Fence", "Keep", "NewRun", "RunChange", "RunRow"]


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run row as stored (JSON columns still text)."""

    id: int
    key: str
    job: str
    args: str
    steps: str
    status: str
    recovery_point: str | None
    ctx: str
    result: str | None
    error: str | None
    attempts: int
    lock_token: str | None
    locked_at: dt.datetime | None
    created_at: dt.datetime
    last_run_at: dt.datetime | None
    finished_at: dt.datetime | None
    queue: str | None = None
    priority: int = 0
    run_at: dt.datetime | None = None
    lock_expires_at: dt.datetime | None = None
    attempt_limit: int | None = None
    cancel_requested: bool = False
    #: The run whose step spawned this one (``self.spawn``).
    parent_id: int | None = None
    #: A limited run's concurrency key and its job's maximum (``acidic.Limit``).
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    #: The W3C traceparent of the code that enqueued the run (None without telemetry).
    traceparent: str | None = None
    #: The queue that executes the run (``"celery"``, ...); None: acidic's own worker.
    executor: str | None = None
    #: Not a column: set on a row a worker's claim returns when the run was ``running``
    #: under an owner whose lock had expired (a takeover), for the metrics.
    taken_over: bool = False


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of a run's history: a step ``started``, ``succeeded``, ``errored`` or
    ``halted`` (``error`` is the stored error's JSON)."""

    step: str
    event: str
    at: dt.datetime
    attempt: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Fence:
    """Who may write a run: its id and the lock token of the owner that claimed it. A
    write under a fence changes nothing once another owner took the run over."""

    run_id: int
    token: str


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to insert: pending for a worker (``enqueue``), or already claimed by the
    caller that creates it (``app.run``: ``lock_token`` set, status ``running``)."""

    key: str
    job: str
    args: str
    steps: str
    status: str
    recovery_point: str
    created_at: dt.datetime
    attempts: int = 0
    lock_token: str | None = None
    locked_at: dt.datetime | None = None
    lock_expires_at: dt.datetime | None = None
    last_run_at: dt.datetime | None = None
    queue: str | None = None
    priority: int = 0
    run_at: dt.datetime | None = None
    attempt_limit: int | None = None
    parent_id: int | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    traceparent: str | None = None
    executor: str | None = None

    def row(self, run_id: int) -> RunRow:
        """The row this insert stored, with the id the database gave it."""
        return RunRow(
            id=run_id,
            key=self.key,
            job=self.job,
            args=self.args,
            steps=self.steps,
            status=self.status,
            recovery_point=self.recovery_point,
            ctx="{}",
            result=None,
            error=None,
            attempts=self.attempts,
            lock_token=self.lock_token,
            locked_at=self.locked_at,
            created_at=self.created_at,
            last_run_at=self.last_run_at,
            finished_at=None,
            queue=self.queue,
            priority=self.priority,
            run_at=self.run_at,
            lock_expires_at=self.lock_expires_at,
            attempt_limit=self.attempt_limit,
            cancel_requested=False,
            parent_id=self.parent_id,
            concurrency_key=self.concurrency_key,
            concurrency_limit=self.concurrency_limit,
            traceparent=self.traceparent,
            executor=self.executor,
        )

    def values(self) -> dict[str, Any]:
        """Column values of the INSERT (every column, so one statement shape)."""
        return {
            "idempotency_key": self.key,
            "job": self.job,
            "args": self.args,
            "steps": self.steps,
            "status": self.status,
            "recovery_point": self.recovery_point,
            "ctx": "{}",
            "result": None,
            "error": None,
            "attempts": self.attempts,
            "lock_token": self.lock_token,
            "locked_at": self.locked_at,
            "lock_expires_at": self.lock_expires_at,
            "created_at": self.created_at,
            "last_run_at": self.last_run_at,
            "finished_at": None,
            "queue": self.queue,
            "priority": self.priority,
            "run_at": self.run_at,
            "attempt_limit": self.attempt_limit,
            "cancel_requested": False,
            "parent_id": self.parent_id,
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
            "traceparent": self.traceparent,
            "executor": self.executor,
        }


class Keep:
    """The type of :data:`KEEP`: a field of a :class:`RunChange` that is not written."""

    _instance: Keep | None = None

    def __new__(cls) -> Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"


#: A field of a :class:`RunChange` left as it is.
KEEP: Final = Keep()


@dataclass(frozen=True, slots=True)
class RunChange:
    """What a transition writes to a run: each field set is written, each field left at
    :data:`KEEP` is not. ``release`` clears the lock (owner token, its times, the owning
    worker);
    ``renew_until`` renews it (``locked_at`` = ``renewed_at``, expiry = ``renew_until``)."""

    status: str | Keep = KEEP
    recovery_point: str | Keep | None = KEEP
    ctx: str | Keep = KEEP
    result: str | Keep | None = KEEP
    error: str | Keep | None = KEEP
    attempts: int | Keep = KEEP
    run_at: dt.datetime | Keep | None = KEEP
    queue: str | Keep | None = KEEP
    attempt_limit: int | Keep | None = KEEP
    finished_at: dt.datetime | Keep | None = KEEP
    cancel_requested: bool | Keep = KEEP
    release: bool = False
    renewed_at: dt.datetime | Keep = KEEP
    renew_until: dt.datetime | Keep = KEEP

    def values(self) -> dict[str, Any]:
        """The columns to write and their values, in a stable order (the store caches
        one statement per set of columns)."""
        values: dict[str, Any] = {}
        for f in _PLAIN_FIELDS:
            value = getattr(self, f)
            if value is not KEEP:
                values[f] = value
        if self.release:
            values["lock_token"] = None
            values["locked_at"] = None
            values["lock_expires_at"] = None
            values["owner"] = None
        else:
            if self.renewed_at is not KEEP:
                values["locked_at"] = self.renewed_at
            if self.renew_until is not KEEP:
                values["lock_expires_at"] = self.renew_until
        return values


_PLAIN_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(RunChange)
    if f.name not in ("release", "renewed_at", "renew_until")
)
