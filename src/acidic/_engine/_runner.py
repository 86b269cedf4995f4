"""The sync runner: drives a claimed run step by step, doing the I/O that the
transitions of :mod:`._transitions` decide.

The rules it enforces:

* every write of progress is conditional on the claim's token still owning the run
  (fencing), so an owner whose lock went stale and was taken over never commits again;
* a transactional step, the move of the recovery point, the context and the step's
  history commit in one transaction;
* a non-transactional step records ``started`` first (so a crash leaves a trace and
  ``retrying`` is known), then runs with no transaction open, then commits progress;
  when the step before it goes on to it, that step's commit records the ``started``
  (one transaction less per such step: ``retrying`` then means "the call may have been
  made", as it already did for a crash between the ``started`` write and the call);
* whatever a step raises is stored with its step, the lock is released at once and the
  exception leaves unchanged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import sqlalchemy as sa

from .._context import Context
from .._errors import (
    JobDefinitionError,
    LockLostError,
    Retry,
    RunCancelledError,
    StorageError,
    UnknownRecoveryPointError,
)
from .._job import Job, JobDefinition, StepSpec, StepState
from .._run import ENDED, Run, RunStatus
from .._storage import EventRow, Fence, RunChange, RunRow, mark_step
from . import _transitions as t
from ._calls import call_step
from ._failures import error_json, landed, lost, outcome_of, rollback
from ._family import children, refuse_missing, spawn
from ._steplog import log_step
from ._transitions import Decision, Ended, Transition

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = ["Claim", "Runner", "current_step", "error_json"]


log = logging.getLogger("acidic.run")

#: The step executing in this context, for labelling what happens meanwhile
#: (acidic.testing names its crash points after it).
current_step: ContextVar[str | None] = ContextVar("acidic_current_step", default=None)


@dataclass(slots=True)
class Claim:
    """A run this process owns: its row as claimed, and whether its recovery point was
    started before without ending well."""

    row: RunRow
    token: str
    retrying: bool
    #: A heartbeat renews the lock meanwhile (a worker's): see Runner._expiry.
    heartbeat: bool = False

    @property
    def fence(self) -> Fence:
        return Fence(self.row.id, self.token)


@dataclass(slots=True)
class _Execution:
    """The state of one execution of a claimed run."""

    job: Job
    definition: JobDefinition
    claim: Claim
    state: StepState
    committed_ctx: str
    should_stop: Callable[[], bool]
    #: The transactional step's connection while it runs (children join its transaction).
    conn: sa.Connection | None = None
    #: The run's status after a failed step (for the observer), once recorded.
    failed_as: str | None = None
    #: The lock's expiry as this execution last set it (a heartbeat may push it further).
    lock_until: dt.datetime | None = None
    #: The non-transactional step whose ``started`` event the last commit recorded.
    started_ahead: str | None = None

    def advance(self, decision: Decision, ctx_json: str, ended: Ended | None) -> Ended | None:
        self.committed_ctx = ctx_json
        if ended is None:
            assert decision.next is not None
            self.state.step = decision.next
        return ended


class Runner:
    """Executes the steps of claimed runs in the calling thread."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.store = manager.store

    def execute(
        self,
        job: Job,
        definition: JobDefinition,
        claim: Claim,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Ended:
        """Drive a claimed run from its recovery point until it ends, parks or is released.

        A step's exception is recorded (failed, or scheduled for a retry) and raised;
        :class:`acidic.Retry` is recorded and returned as ``scheduled``. When
        ``should_stop()`` turns true, the run is released at the next step boundary.
        """
        row = claim.row
        assert row.recovery_point is not None  # claimed runs are unfinished
        store = self.store
        state = StepState(
            key=row.key,
            ctx=Context.from_json(row.ctx),
            attempt=row.attempts,
            retrying=claim.retrying,
            step=row.recovery_point,
            read_signal=lambda name: store.latest_signal(row.id, name),
        )
        run = _Execution(
            job, definition, claim, state, row.ctx, should_stop, lock_until=row.lock_expires_at
        )
        state.spawn = lambda child, key, queue, priority: self._spawn(
            run, child, key, queue, priority
        )
        state.children = lambda: self._children(run)
        job.__dict__["_acidic_state"] = state
        # Telemetry hooks (see _observe): one attempt, then each step inside it.
        observer = self.manager.observer
        attempt_handle = observer.run_started(row, state.attempt, state.step)
        outcome, error = "lock_lost", None
        try:
            while True:
                spec = definition.steps_by_name.get(state.step)
                if spec is None:  # pragma: no cover - checked at claim and at RecoveryPoint
                    raise UnknownRecoveryPointError(state.step)
                step = self._transactional_step if spec.transactional else self._foreign_step
                entered = current_step.set(spec.name)
                step_handle = observer.step_started(attempt_handle, row, spec.name, state.attempt)
                began = time.perf_counter()
                try:
                    ended = step(run, spec)
                except BaseException as exc:
                    observer.step_ended(
                        step_handle, "errored", run.failed_as, exc, time.perf_counter() - began
                    )
                    raise
                finally:
                    current_step.reset(entered)
                if ended is not None:
                    outcome, error = ended.status.value, ended.error
                observer.step_ended(
                    step_handle,
                    "succeeded" if error is None else "errored",
                    outcome if ended is not None else None,
                    error,
                    time.perf_counter() - began,
                )
                if ended is not None:
                    return ended
                state.retrying = False
        except BaseException as exc:
            outcome, error = outcome_of(exc, run.failed_as), exc
            raise
        finally:
            job.__dict__.pop("_acidic_state", None)
            if row.parent_id is not None and outcome in ENDED:
                self._wake_parent(row)
            observer.run_ended(attempt_handle, row, outcome, error)

    # -- steps ------------------------------------------------------------------------

    def _transactional_step(self, run: _Execution, spec: StepSpec) -> Ended | None:
        state = run.state
        store = self.store
        started = self.manager.clock()
        conn = store.step_engine.connect()
        try:
            with store.translated(f"starting step {spec.name} of {state.key!r}"):
                tx = conn.begin()
            try:
                # While the step runs, a COMMIT on its connection is refused (see Store).
                store.step_broken(conn)  # forget a previous use of the connection
                mark_step(conn, f"step {spec.name} of job {run.definition.cls.__qualname__}")
                run.conn = conn
                try:
                    returned = self._call(run, spec, conn)
                finally:
                    run.conn = None
                    mark_step(conn, None)
                broken = store.step_broken(conn)
                if broken is not None:
                    raise StorageError(
                        f"key {state.key!r}: step {spec.name} caught {broken}, after which "
                        "the database had rolled back its transaction; its writes are not "
                        "committed, and the step runs again"
                    )
                if not tx.is_active or not conn.in_transaction():
                    raise JobDefinitionError(
                        f"step {spec.name} of job {run.definition.cls.__qualname__} ended its "
                        "transaction itself; a step must leave commit and rollback to acidic"
                    )
                decision, ctx_json, transition = self._ended(run, spec, returned, started)
                if decision.awaits:
                    refuse_missing(spec, store.set_awaits(conn, run.claim.row.id, decision.awaits))
            except BaseException as exc:
                rollback(conn, tx)
                return self._failed(run, spec, exc, started, record_start=True)
            try:
                if not store.write_progress(
                    conn, run.claim.fence, transition.change, transition.events
                ):
                    rollback(conn, tx)
                    return self._refused(run, spec)
                tx.commit()
            except sa.exc.SQLAlchemyError as exc:
                # The progress write or the commit failed (connection lost, deferred
                # constraint, serialization failure). If the commit landed anyway (its
                # acknowledgement was lost), the step is done: go on. Else nothing of the
                # step is committed: report it like a step failure.
                rollback(conn, tx)
                if not landed(self.store, run.claim.row.id, transition.events[-1]):
                    error = StorageError(
                        f"key {state.key!r}: committing step {spec.name} failed: {exc}"
                    )
                    error.__cause__ = exc
                    return self._failed(run, spec, error, started, record_start=True)
        finally:
            conn.close()
        return self._advanced(run, spec, decision, ctx_json, transition, started)

    def _foreign_step(self, run: _Execution, spec: StepSpec) -> Ended | None:
        state = run.state
        store = self.store
        started = self.manager.clock()
        # Recorded by the previous step's commit already (see _starts_next)?
        ahead, run.started_ahead = run.started_ahead == spec.name, None
        try:
            ok = ahead or self._record_start(run, spec, started)
        except StorageError as error:
            # Nothing ran: record the failure (if the database lets us) so that the run
            # is resumable at once instead of locked until its lock is stale.
            return self._failed(run, spec, error, started, record_start=True)
        if not ok:
            return self._refused(run, spec)
        try:
            returned = self._call(run, spec, None)
            decision, ctx_json, transition = self._ended(run, spec, returned, None)
            if decision.awaits:
                with store.translated(f"recording what step {spec.name} awaits"):
                    missing = store.set_awaits_alone(run.claim.row.id, decision.awaits)
                refuse_missing(spec, missing)
        except BaseException as exc:
            return self._failed(run, spec, exc, started, record_start=False)
        try:
            with store.translated(f"committing step {spec.name} of {state.key!r}"):
                ok = store.write_progress_alone(
                    run.claim.fence, transition.change, transition.events
                )
        except StorageError as error:
            # The call was made but its progress is not known to be committed. If the
            # commit landed (only its acknowledgement was lost), go on; else record the
            # failure, so the run is resumable at once and makes the call again.
            if not landed(self.store, run.claim.row.id, transition.events[-1]):
                return self._failed(run, spec, error, started, record_start=False)
            ok = True
        if not ok:
            return self._refused(run, spec)
        return self._advanced(run, spec, decision, ctx_json, transition, started)

    def _record_start(self, run: _Execution, spec: StepSpec, started: dt.datetime) -> bool:
        """Commit a non-transactional step's ``started`` event (fenced; renews the lock
        where :meth:`_expiry` says so). False: the run was cancelled or its lock lost."""
        with self.store.translated(f"starting step {spec.name} of {run.state.key!r}"):
            until = self._expiry(run, started)
            return self.store.write_progress_alone(
                run.claim.fence,
                # No renewal: a fenced write of the unchanged recovery point.
                RunChange(renewed_at=started, renew_until=until)
                if until
                else RunChange(recovery_point=spec.name),
                [EventRow(spec.name, "started", started, run.state.attempt)],
            )

    def _call(self, run: _Execution, spec: StepSpec, conn: sa.Connection | None) -> object:
        """The step's call (sync or async, given a connection or an ORM session)."""
        manager = self.manager
        return call_step(
            spec,
            run.job,
            conn,
            async_engine=self.store.async_engine,
            session_factory=manager.session_factory,
            async_session_factory=manager.async_session_factory,
        )

    def _ended(
        self, run: _Execution, spec: StepSpec, returned: object, started: dt.datetime | None
    ) -> tuple[Decision, str, Transition]:
        """The transition a step's return value makes (raises for a bad return value)."""
        manager = self.manager
        state = run.state
        now = manager.clock()
        decision = t.decide(
            run.definition.step_names,
            run.definition.cls.__qualname__,
            state.key,
            spec.name,
            returned,
            now,
        )
        ctx_json = state.ctx.to_json()
        transition = t.after_step(
            run.claim.row,
            decision,
            step=spec.name,
            ctx_json=ctx_json,
            attempt=state.attempt,
            started=started,
            now=now,
            lock_expires_at=self._expiry(run, now),
            stopping=decision.status is RunStatus.RUNNING and run.should_stop(),
            default_queue=manager.default_queue,
            start_next=self._starts_next(run, decision),
        )
        return decision, ctx_json, transition

    @staticmethod
    def _starts_next(run: _Execution, decision: Decision) -> bool:
        """Whether the progress write of this decision also records the ``started`` of
        the step it goes on to: a non-transactional one, called right after it."""
        if decision.status is not RunStatus.RUNNING or decision.next is None:
            return False
        following = run.definition.steps_by_name.get(decision.next)
        return following is not None and not following.transactional

    def _advanced(
        self,
        run: _Execution,
        spec: StepSpec,
        decision: Decision,
        ctx_json: str,
        transition: Transition,
        started: dt.datetime,
    ) -> Ended | None:
        ended = transition.ended
        last = transition.events[-1]
        if ended is None and last.event == "started" and last.step == decision.next:
            run.started_ahead = last.step
        log_step(run.state, run.claim.row.job, spec.name, started, self.manager.clock, ended)
        self._wake_if_signalled(run, ended, started)
        if ended is not None and ended.status is RunStatus.AWAITING:
            # What it awaits may have finished before it parked: then it is due at once.
            self.manager.wake_awaiting(run.claim.row.id)
        return run.advance(decision, ctx_json, ended)

    # -- child runs -------------------------------------------------------------------

    def _spawn(
        self, run: _Execution, child: Job, key: str | None, queue: str | None, priority: int
    ) -> str:
        row = run.claim.row
        return spawn(self.manager, row, run.conn, child, key, queue=queue, priority=priority)

    def _children(self, run: _Execution) -> list[Run]:
        return children(self.manager, run.claim.row.id, run.conn)

    def _wake_parent(self, row: RunRow) -> None:
        assert row.parent_id is not None
        try:
            self.manager.wake_awaiting(row.parent_id)
        except Exception:  # the workers' sweep wakes it later (Manager.wake_ready_awaiting)
            log.warning("could not wake the parent of %r", row.key, exc_info=True)

    def _wake_if_signalled(
        self, run: _Execution, ended: Ended | None, started: dt.datetime
    ) -> None:
        """A signal sent while the step was deciding to halt found the run still running
        and could not wake it: wake it now, so the halted step runs again and sees it."""
        if ended is None or ended.status is not RunStatus.HALTED:
            return
        row = run.claim.row
        with contextlib.suppress(Exception):  # best effort: app.resume still works
            if self.store.signalled_since(row.id, started):
                self.manager.wake_halted(row)

    def _expiry(self, run: _Execution, now: dt.datetime) -> dt.datetime | None:
        """The lock's new expiry for a progress write at ``now``, or None to leave it.
        Inline, every write renews it; under a heartbeat, only one that finds it half
        spent: a renewal changes an indexed column, so PostgreSQL cannot update the row
        in place (HOT) and writes an entry into every index of the runs table."""
        timeout = dt.timedelta(seconds=self.manager.lock_timeout_for(run.definition))
        if run.claim.heartbeat and run.lock_until and run.lock_until - now > timeout / 2:
            return None
        run.lock_until = now + timeout
        return run.lock_until

    # -- refusals and failures --------------------------------------------------------

    def _refused(self, run: _Execution, spec: StepSpec) -> Ended:
        """A progress write was refused: the run was cancelled, or its lock lost."""
        claim = run.claim
        if not self.store.cancel_requested(claim.row.id, claim.token):
            self.manager.observer.lock_lost(claim.row.job, claim.row.key)
            raise lost(run.state, spec)
        self.store.release(claim.fence, t.cancelled_by_owner(self.manager.clock()))
        raise RunCancelledError(
            f"key {run.state.key!r} (job {claim.row.job}) was cancelled; step {spec.name} "
            "was not committed"
        )

    def _failed(
        self,
        run: _Execution,
        spec: StepSpec,
        exc: BaseException,
        started: dt.datetime,
        *,
        record_start: bool,
    ) -> Ended:
        """Record the step's failure (the context reverts to its last commit), release the
        lock, and raise ``exc``; a :class:`Retry` is returned as ``scheduled`` instead."""
        state = run.state
        state.ctx = Context.from_json(run.committed_ctx)
        if isinstance(exc, LockLostError | RunCancelledError):
            raise exc
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            self._interrupted(run, spec, exc, started if record_start else None)
        manager = self.manager
        now = manager.clock()
        job = run.job
        status, wake_at = t.failure_status(
            run.claim.row,
            attempt=state.attempt,
            retry=isinstance(exc, Retry),
            retry_after=exc.after if isinstance(exc, Retry) else None,
            discarded=isinstance(exc, type(job).discard_on or ()),
            backoff=job.backoff,
            now=now,
        )
        try:
            transition = t.after_failure(
                run.claim.row,
                status=status,
                wake_at=wake_at,
                step=spec.name,
                error_json=error_json(exc, spec.name),
                attempt=state.attempt,
                started=started if record_start else None,
                now=now,
                cancel_requested=self.store.cancel_requested(run.claim.row.id, run.claim.token),
                default_queue=manager.default_queue,
            )
            assert transition.ended is not None
            status = transition.ended.status
            self.store.fail(run.claim.fence, transition.change, transition.events)
        except Exception as db_exc:
            # The step's exception is what the caller must see; the lock will go
            # stale and the run be taken over, so nothing is lost.
            exc.add_note(f"acidic could not record this failure: {db_exc!r}")
        run.failed_as = status.value
        outcome = f"errored:{type(exc).__name__}->{status}"
        log_step(
            run.state, run.claim.row.job, spec.name, started, self.manager.clock, None, outcome
        )
        if isinstance(exc, Retry) and status is RunStatus.SCHEDULED:
            return Ended(RunStatus.SCHEDULED, error=exc)
        raise exc

    def _interrupted(
        self,
        run: _Execution,
        spec: StepSpec,
        exc: KeyboardInterrupt | SystemExit,
        started: dt.datetime | None,
    ) -> NoReturn:
        """Ctrl-C (or SystemExit) in a step: release the run as ``interrupted`` (not a
        failure) and let the exception go on."""
        transition = t.after_interrupt(step=spec.name, attempt=run.state.attempt, started=started)
        try:
            self.store.fail(run.claim.fence, transition.change, transition.events)
        except Exception as db_exc:  # the lock goes stale: the run is taken over later
            exc.add_note(f"acidic could not record this interruption: {db_exc!r}")
        log_step(
            run.state,
            run.claim.row.job,
            spec.name,
            started or self.manager.clock(),
            self.manager.clock,
            transition.ended,
        )
        raise exc
