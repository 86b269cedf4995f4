"""Read-only records of runs, as :meth:`acidic.App.get` returns them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["ENDED", "Run", "RunError", "RunStatus", "StepEvent"]


class RunStatus(StrEnum):
    """Where a run stands. Compares equal to its lowercase name (``"succeeded"``)."""

    #: Stored, never started.
    PENDING = "pending"
    #: A live owner holds the lock and is executing steps (or crashed, until its
    #: lock is older than ``lock_timeout`` and the run is taken over).
    RUNNING = "running"
    #: A step returned :class:`acidic.Halt`; the run is released and continues at the
    #: same step when the key is run again.
    HALTED = "halted"
    #: Parked until ``run_at``: by :class:`acidic.Sleep`, or waiting out a retry's backoff.
    SCHEDULED = "scheduled"
    #: Parked by :class:`acidic.Await` until every awaited run is finished; then due.
    AWAITING = "awaiting"
    #: Finished; ``result`` holds the stored result.
    SUCCEEDED = "succeeded"
    #: The last attempt raised; ``error`` says where and why. The run is released and a
    #: later run of the key resumes at its recovery point.
    FAILED = "failed"
    #: Stopped by :meth:`acidic.App.cancel`; it never runs again.
    CANCELLED = "cancelled"
    #: A step of an inline run was interrupted by ``KeyboardInterrupt`` (Ctrl-C) or
    #: ``SystemExit``: released, not a failure; the next ``app.run``, ``app.resume`` or
    #: ``app.retry`` of the key continues it at its recovery point.
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """True only for ``succeeded``: a failed or halted run can still be resumed."""
        return self is RunStatus.SUCCEEDED


#: The statuses a run ends in (its last attempt is over; only an operator's action
#: moves it again).
ENDED = frozenset({RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value})


@dataclass(frozen=True, slots=True)
class RunError:
    """The last error of a run: the exception's type, message and traceback, and its step."""

    type: str
    message: str
    traceback: str
    step: str | None

    def to_json(self) -> dict[str, Any]:
        """The error as a JSON object, as stored."""
        return {
            "type": self.type,
            "message": self.message,
            "traceback": self.traceback,
            "step": self.step,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunError:
        """Read an error back from its stored JSON object."""
        return cls(
            type=str(data.get("type", "")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
            step=data.get("step"),
        )


@dataclass(frozen=True, slots=True)
class StepEvent:
    """One entry of a run's history: a step ``started``, ``succeeded``, ``errored``
    or ``halted``."""

    step: str
    #: ``started``, ``succeeded``, ``errored`` or ``halted``.
    event: str
    #: When it happened (aware UTC, the application's clock).
    time: dt.datetime
    #: The run's attempt number when it happened.
    attempt: int
    #: For ``errored`` events, the error; else None.
    error: RunError | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """A snapshot of one run, identified by its idempotency key."""

    key: str
    #: The registered name of the job.
    job: str
    #: The decoded arguments (typed when the job is registered with the App, else as stored).
    args: dict[str, Any]
    status: RunStatus
    #: The next step to run; None once the run has succeeded.
    recovery_point: str | None
    ctx: dict[str, Any]
    result: Any
    error: RunError | None
    #: How many times the run was claimed to execute (takeovers included).
    attempts: int
    created_at: dt.datetime
    last_run_at: dt.datetime | None
    locked_at: dt.datetime | None
    finished_at: dt.datetime | None
    #: The step names the run was started with (its definition).
    steps: list[str]
    history: list[StepEvent]
    #: The queue of an enqueued run; None for a run started inline by ``app.run``.
    queue: str | None = None
    priority: int = 0
    #: When a pending or scheduled run is due; None otherwise.
    run_at: dt.datetime | None = None
    #: When the owner's lock goes stale unless renewed; None when unlocked.
    lock_expires_at: dt.datetime | None = None
    #: The attempt count at which an error fails an enqueued run; None for inline runs.
    max_attempts: int | None = None
    #: Who executes the run: ``"celery"``, ``"rq"`` or ``"dramatiq"`` (a queue's
    #: executor, see :doc:`executors`), ``"acidic"`` (acidic's own worker) or
    #: ``"inline"`` (started by ``app.run`` and not parked since).
    executor: str = "inline"

    @property
    def succeeded(self) -> bool:
        """True when the run finished with a stored result."""
        return self.status is RunStatus.SUCCEEDED
