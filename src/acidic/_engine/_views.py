"""Stored rows as users see them: :class:`acidic.Run` records with decoded fields."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from .._encoding import loads
from .._errors import SerializationError
from .._job import Job
from .._run import Run, RunError, RunStatus, StepEvent
from .._storage import EventRow, RunRow

__all__ = ["executor_of", "to_run"]


def to_run(row: RunRow, events: list[EventRow], job_cls: type[Job] | None) -> Run:
    """The :class:`acidic.Run` of a stored row and its history. Arguments are decoded by
    the registered job class when there is one (as stored otherwise, or when the class
    changed since). ``row`` was checked when read (:meth:`Store.find`)."""
    args: dict[str, Any] = json.loads(row.args)
    if job_cls is not None:
        with contextlib.suppress(SerializationError):
            args = job_cls.__acidic_definition__.decode_args(args)
    return Run(
        key=row.key,
        job=row.job,
        args=args,
        status=RunStatus(row.status),
        recovery_point=row.recovery_point,
        ctx=loads(row.ctx),
        result=None if row.result is None else loads(row.result),
        error=None if row.error is None else RunError.from_json(json.loads(row.error)),
        attempts=row.attempts,
        created_at=row.created_at,
        last_run_at=row.last_run_at,
        locked_at=row.locked_at,
        finished_at=row.finished_at,
        steps=json.loads(row.steps),
        history=[
            StepEvent(
                step=e.step,
                event=e.event,
                time=e.at,
                attempt=e.attempt,
                error=None if e.error is None else _event_error(e.error),
            )
            for e in events
        ],
        queue=row.queue,
        priority=row.priority,
        run_at=row.run_at,
        lock_expires_at=row.lock_expires_at,
        max_attempts=row.attempt_limit,
        executor=executor_of(row.executor, row.queue),
    )


def executor_of(executor: str | None, queue: str | None) -> str:
    """The executor a run is shown with: its queue's (stored), else acidic's own worker
    for a run with a queue, else ``"inline"``."""
    if executor is not None:
        return executor
    return "inline" if queue is None else "acidic"


def _event_error(text: str) -> RunError:
    """The error of a history event; one edited into something unreadable is shown as
    such rather than making the whole run unreadable."""
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            return RunError.from_json(data)
    except ValueError:
        pass
    return RunError(
        type="", message=f"unreadable stored error: {text[:200]!r}", traceback="", step=None
    )
