"""Run transitions, without I/O: what a run becomes after each outcome.

Every function here is a function of what the engine knows (the claimed run's row, the
outcome of a step, the time) and returns what to write: a :class:`RunChange`, the
history events to append, and how the execution ends. Nothing here touches a database,
reads a clock or calls job code, so a sync runner and an async runner share these rules
and differ only in how they do their I/O; the unit tests need no database.

The rules, in one place:

* a step that returns ``None`` moves the recovery point to the next step (the lock is
  renewed); after the last step the run succeeds with a ``None`` result;
* ``Response(v)`` finishes the run with ``v``; ``RecoveryPoint(s)`` jumps to step ``s``;
* ``Halt()`` parks the run at the same step (``halted``); ``Sleep`` parks it until its
  wake-up time at the next step (``scheduled``); ``Await(*keys)`` parks it at the next
  step until the awaited runs are finished (``awaiting``); a parked inline run joins the default
  queue so that a worker can continue it, and its wake-up claim does not use up an
  attempt;
* an error fails the run, or schedules another attempt after the backoff while the run
  has attempts left (inline runs have no budget: they fail at once); ``Retry`` always
  schedules while attempts are left; a cancellation requested meanwhile wins;
* a graceful stop hands the run back, due at once, without using up an attempt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._encoding import encode, loads
from .._errors import JobDefinitionError, UnknownRecoveryPointError
from .._outcomes import Await, Halt, RecoveryPoint, Response, Sleep
from .._run import RunStatus
from .._storage import KEEP, EventRow, RunChange, RunRow

__all__ = [
    "Decision",
    "Ended",
    "Transition",
    "after_failure",
    "after_step",
    "awaited",
    "cancelled_at_once",
    "cancelled_by_owner",
    "claimable",
    "decide",
    "failed_before_start",
    "failed_by_owner",
    "failure_status",
    "finished_by_owner",
    "handed_back",
    "is_locked",
    "retrying",
    "woken",
]


@dataclass(frozen=True, slots=True)
class Ended:
    """How an execution ended: the run's new status, and its result when it succeeded."""

    status: RunStatus
    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a step's return value sends the run."""

    status: RunStatus
    #: The step to continue at (now, after a sleep, or after a halt); None when finished.
    next: str | None
    result_json: str | None = None
    wake_at: dt.datetime | None = None
    #: The keys an ``Await`` waits for.
    awaits: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Transition:
    """What to write at the end of a step, and how the execution ends (None: it goes
    on with the step the decision names)."""

    change: RunChange
    events: tuple[EventRow, ...]
    ended: Ended | None


def decide(
    step_names: list[str], job_name: str, key: str, step: str, returned: object, now: dt.datetime
) -> Decision:
    """Where ``returned`` (what step ``step`` returned) sends the run."""
    index = step_names.index(step)
    following = step_names[index + 1] if index + 1 < len(step_names) else None
    if returned is None:
        if following is not None:
            return Decision(RunStatus.RUNNING, following)
        return Decision(RunStatus.SUCCEEDED, None, result_json=None)
    if isinstance(returned, Response):
        return Decision(
            RunStatus.SUCCEEDED, None, result_json=encode(returned.value, f"result of step {step}")
        )
    if isinstance(returned, RecoveryPoint):
        if returned.step not in step_names:
            raise UnknownRecoveryPointError(
                f"step {step} of job {job_name} (key {key!r}) returned "
                f"RecoveryPoint({returned.step!r}), which is not one of its steps {step_names}"
            )
        return Decision(RunStatus.RUNNING, returned.step)
    if isinstance(returned, Halt):
        return Decision(RunStatus.HALTED, step)
    if isinstance(returned, Sleep):
        if following is None:
            raise JobDefinitionError(
                f"step {step} of job {job_name} returned Sleep(), but it is the last step: "
                "there is no step to wake up to"
            )
        return Decision(RunStatus.SCHEDULED, following, wake_at=returned.wake_at(now))
    if isinstance(returned, Await):
        if following is None:
            raise JobDefinitionError(
                f"step {step} of job {job_name} returned Await(), but it is the last step: "
                "there is no step to continue at"
            )
        if key in returned.keys:
            raise JobDefinitionError(
                f"step {step} of job {job_name} (key {key!r}) returned an Await of its own "
                "key: a run cannot wait for itself"
            )
        return Decision(RunStatus.AWAITING, following, awaits=returned.keys)
    raise JobDefinitionError(
        f"step {step} of job {job_name} returned {returned!r}; a step returns None, "
        "acidic.Response(value), acidic.RecoveryPoint(step), acidic.Sleep(...), "
        "acidic.Await(*keys) or acidic.Halt()"
    )


def after_step(
    row: RunRow,
    decision: Decision,
    *,
    step: str,
    ctx_json: str,
    attempt: int,
    started: dt.datetime | None,
    now: dt.datetime,
    lock_expires_at: dt.datetime | None,
    stopping: bool,
    default_queue: str,
    start_next: bool = False,
) -> Transition:
    """The end of a step that returned normally. ``started``: also record the step's
    ``started`` event (a transactional step records both at its commit). ``start_next``:
    where the run goes on at once, also record the next step's ``started`` event (the
    next step is non-transactional and will be called right after this commit: its own
    ``started`` write would be one more transaction per run)."""
    status = decision.status
    end = "halted" if status is RunStatus.HALTED else "succeeded"
    events: tuple[EventRow, ...] = (EventRow(step, end, now, attempt),)
    if started is not None:
        events = (EventRow(step, "started", started, attempt), *events)
    limit = row.attempt_limit
    # A parked or handed-back run's next claim must not use up an attempt of its budget.
    spared = None if limit is None else limit + 1
    if status is RunStatus.RUNNING and stopping:
        change = RunChange(
            ctx=ctx_json,
            error=None,
            status=RunStatus.PENDING,
            recovery_point=decision.next,
            run_at=now,
            attempt_limit=spared,
            release=True,
        )
        return Transition(change, events, Ended(RunStatus.PENDING))
    if status is RunStatus.RUNNING:
        change = RunChange(
            ctx=ctx_json,
            error=None,
            recovery_point=decision.next,
            # None: the lock is left as it is (a heartbeat keeps it).
            renewed_at=KEEP if lock_expires_at is None else now,
            renew_until=KEEP if lock_expires_at is None else lock_expires_at,
        )
        if start_next:
            assert decision.next is not None
            events = (*events, EventRow(decision.next, "started", now, attempt))
        return Transition(change, events, None)
    if status is RunStatus.SUCCEEDED:
        change = RunChange(
            ctx=ctx_json,
            error=None,
            status=status,
            recovery_point=None,
            result=decision.result_json,
            finished_at=now,
            run_at=None,
            release=True,
        )
        # Return what later calls will read back, so every caller sees the same value.
        value = None if decision.result_json is None else loads(decision.result_json)
        return Transition(change, events, Ended(status, value))
    # Parked: Sleep (scheduled, at the next step), Await (awaiting, at the next step) or
    # Halt (halted, at the same step).
    change = RunChange(
        ctx=ctx_json,
        error=None,
        status=status,
        run_at=decision.wake_at,
        queue=row.queue or default_queue,
        attempt_limit=spared,
        release=True,
        recovery_point=KEEP if status is RunStatus.HALTED else decision.next,
    )
    return Transition(change, events, Ended(status))


def awaited(now: dt.datetime) -> RunChange:
    """An awaiting run whose awaited runs are all finished: due now (its attempt budget
    was spared when it parked)."""
    return RunChange(status=RunStatus.PENDING, run_at=now)


def failure_status(
    row: RunRow,
    *,
    attempt: int,
    retry: bool,
    retry_after: float | None,
    discarded: bool,
    backoff: Callable[[int], float],
    now: dt.datetime,
) -> tuple[RunStatus, dt.datetime | None]:
    """After a step raised: failed for good, or scheduled for another attempt (and when).

    ``retry``: the step raised :class:`acidic.Retry` (``retry_after`` its delay, if any);
    ``discarded``: the error is one of the job's ``discard_on``; ``backoff``: the job's
    backoff (seconds before the next attempt, by attempt number)."""
    limit = row.attempt_limit
    if retry:
        has_budget = limit is None or attempt < limit
    else:
        # Inline runs (no limit) fail at once: the caller sees the error and decides.
        has_budget = limit is not None and attempt < limit and not discarded
    if not has_budget:
        return RunStatus.FAILED, None
    delay = retry_after if retry and retry_after is not None else backoff(attempt)
    return RunStatus.SCHEDULED, now + dt.timedelta(seconds=delay)


def after_failure(
    row: RunRow,
    *,
    status: RunStatus,
    wake_at: dt.datetime | None,
    step: str,
    error_json: str,
    attempt: int,
    started: dt.datetime | None,
    now: dt.datetime,
    cancel_requested: bool,
    default_queue: str,
) -> Transition:
    """Record a step's failure (``status``/``wake_at`` from :func:`failure_status`) and
    release the lock; a cancellation requested meanwhile ends the run ``cancelled``.
    ``started``: also record the step's ``started`` event."""
    if cancel_requested:
        status, wake_at = RunStatus.CANCELLED, None
    events: tuple[EventRow, ...] = (EventRow(step, "errored", now, attempt, error_json),)
    if started is not None:
        events = (EventRow(step, "started", started, attempt), *events)
    change = RunChange(
        status=status,
        error=error_json,
        run_at=wake_at,
        queue=row.queue or (default_queue if status is RunStatus.SCHEDULED else None),
        finished_at=now if status is RunStatus.CANCELLED else KEEP,
        release=True,
    )
    return Transition(change, events, Ended(status))


def after_interrupt(*, step: str, attempt: int, started: dt.datetime | None) -> Transition:
    """A step interrupted by ``KeyboardInterrupt`` or ``SystemExit`` (Ctrl-C): the run is
    released as ``interrupted``, not failed. No end event is recorded (the timeline shows
    the step as interrupted, and failure rates, which count ``errored`` events, do not
    count it); the error and the attempt budget are left as they were. The next
    ``app.run``, ``resume`` or ``retry`` of the key continues at the same step.
    ``started``: also record the step's ``started`` event."""
    events: tuple[EventRow, ...] = ()
    if started is not None:
        events = (EventRow(step, "started", started, attempt),)
    change = RunChange(status=RunStatus.INTERRUPTED, run_at=None, release=True)
    return Transition(change, events, Ended(RunStatus.INTERRUPTED))


def finished_by_owner(result_json: str, now: dt.datetime) -> RunChange:
    """An owner finishes its run with a result outside any step (the HTTP layer stores
    a response this way)."""
    return RunChange(
        status=RunStatus.SUCCEEDED,
        result=result_json,
        recovery_point=None,
        error=None,
        finished_at=now,
        run_at=None,
        release=True,
    )


def failed_by_owner(error_json: str) -> RunChange:
    """An owner gives its run up as failed outside any step: resumable by a later claim."""
    return RunChange(status=RunStatus.FAILED, error=error_json, run_at=None, release=True)


def cancelled_by_owner(now: dt.datetime) -> RunChange:
    """The owner of a run found a cancellation request at a step boundary."""
    return RunChange(status=RunStatus.CANCELLED, finished_at=now, run_at=None, release=True)


def failed_before_start(row: RunRow, error_json: str) -> RunChange:
    """A claimed run that cannot execute (changed job code, a used-up budget): failed,
    and the claim does not count as an attempt, since nothing was executed."""
    return RunChange(
        status=RunStatus.FAILED,
        error=error_json,
        attempts=row.attempts - 1,
        run_at=None,
        release=True,
    )


def handed_back(row: RunRow, now: dt.datetime) -> RunChange:
    """A claimed run handed back before any step of it ran (its worker is stopping):
    due at once, for any worker, without using up an attempt."""
    return RunChange(status=RunStatus.PENDING, attempts=row.attempts - 1, run_at=now, release=True)


def woken(
    row: RunRow,
    now: dt.datetime,
    default_queue: str,
    *,
    recovery_point: str | None = None,
    attempt_limit: int | None = None,
) -> RunChange:
    """A parked run made due now (resume, retry, signal). A run started inline has no
    queue until it parks; woken, it joins the default queue as a parked one does, so
    that a worker (or ``app.run``) continues it."""
    return RunChange(
        status=RunStatus.PENDING,
        run_at=now,
        queue=row.queue or default_queue,
        recovery_point=KEEP if recovery_point is None else recovery_point,
        attempt_limit=KEEP if attempt_limit is None else attempt_limit,
    )


def cancelled_at_once(now: dt.datetime) -> RunChange:
    """An operator cancelled a run that is not running."""
    return RunChange(status=RunStatus.CANCELLED, run_at=None, finished_at=now)


def is_locked(row: RunRow, now: dt.datetime) -> bool:
    """Whether a live owner holds the run's lock."""
    return (
        row.lock_token is not None and row.lock_expires_at is not None and row.lock_expires_at > now
    )


def claimable(row: RunRow, now: dt.datetime) -> str:
    """What ``app.run`` does with an existing run: ``"finished"`` (return its result),
    ``"cancelled"`` (refuse), ``"not due"`` (asleep or ``run_at`` ahead: return None),
    ``"locked"`` (refuse: a live owner holds it) or ``"claim"``."""
    if row.status == RunStatus.SUCCEEDED:
        return "finished"
    if row.status == RunStatus.CANCELLED:
        return "cancelled"
    waiting = (RunStatus.SCHEDULED, RunStatus.PENDING)
    if row.status in waiting and row.run_at is not None and row.run_at > now:
        return "not due"
    if is_locked(row, now):
        return "locked"
    return "claim"


def retrying(row: RunRow, last: EventRow | None) -> bool:
    """Whether the claimed run's recovery point was started before without ending well
    (a previous attempt of this very step failed or was cut short)."""
    return last is not None and last.step == row.recovery_point and last.event != "succeeded"
