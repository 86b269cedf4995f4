"""The engine: claims a run by its key and drives it step by step to an outcome.

It knows runs, steps, locks and recovery points, and talks to the database only
through :class:`acidic._storage.Store`. The rules it enforces:

* a run is claimed with a fresh owner token; every write of progress is conditional
  on that token still owning the run (fencing), so an owner whose lock went stale
  and was taken over can never commit again;
* a transactional step, the move of the recovery point, the context and the step's
  history commit in one transaction;
* a non-transactional step records ``started`` first (so a crash leaves a trace and
  ``retrying`` is known), then runs with no transaction open, then commits progress;
* whatever a step raises is stored with its step, the lock is released at once and
  the exception leaves unchanged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import random
import time
import traceback
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .._context import Context
from .._encoding import check_key, default_key, dumps, encode, encode_value, loads
from .._errors import (
    ArgumentMismatchError,
    ContentionError,
    DefinitionMismatchError,
    JobDefinitionError,
    KeyLockedError,
    LockLostError,
    Retry,
    RunCancelledError,
    StorageError,
    UnknownRecoveryPointError,
)
from .._job import Job, JobDefinition, StepSpec, StepState
from .._outcomes import Halt, RecoveryPoint, Response, Sleep
from .._run import RunError, RunStatus
from .._storage import EventRow, RunRow, Store
from .._storage._checks import check_row

__all__ = ["Ended", "Finished", "Manager", "check_same_call", "utcnow"]

log = logging.getLogger("acidic.run")

#: How many times a race on a key (deadlock, serialization failure, busy SQLite,
#: a row created or claimed under our feet) is retried before ContentionError.
RACE_RETRIES = 8

_CLAIMABLE = tuple(
    s.value
    for s in (
        RunStatus.PENDING,
        RunStatus.SCHEDULED,
        RunStatus.RUNNING,
        RunStatus.HALTED,
        RunStatus.FAILED,
    )
)

Clock = Callable[[], dt.datetime]

#: The step executing in this context, for labelling what happens meanwhile
#: (acidic.testing names its crash points after it).
current_step: ContextVar[str | None] = ContextVar("acidic_current_step", default=None)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Finished:
    """The key's run had already succeeded: its decoded stored result."""

    result: Any


@dataclass(slots=True)
class _Claim:
    row: RunRow
    token: str
    retrying: bool


class Manager:
    """The one manager of runs: claims, executes, releases; every adapter calls it."""

    def __init__(
        self,
        store: Store,
        *,
        lock_timeout: float,
        clock: Clock = utcnow,
        default_queue: str = "default",
    ) -> None:
        self.store = store
        self.lock_timeout = lock_timeout
        self.clock = clock
        #: Where an inline run goes when it parks, so that a worker can continue it.
        self.default_queue = default_queue

    def check_schema(self) -> None:
        """Raise :class:`acidic.SchemaVersionError` unless acidic's tables are current."""
        self.store.check_schema()

    # -- keys and claims --------------------------------------------------------------

    def key_for(self, name: str, job: Job, encoded_args: dict[str, Any]) -> str:
        if type(job).unique_by is not Job.unique_by:
            identity = encode_value(job.unique_by(), f"job {name}: unique_by()")
            return default_key(name, {"unique_by": identity})
        return default_key(name, encoded_args)

    def lock_timeout_for(self, definition: JobDefinition) -> float:
        return definition.cls.lock_timeout or self.lock_timeout

    def run(self, name: str, job: Job, key: str | None) -> Any:
        """Run ``job`` under ``key`` to its end: its result, or None if it halted."""
        definition = type(job).__acidic_definition__
        encoded_args = definition.encode_args(job)
        # A key derived from unique_by() identifies the run by that value alone: other
        # arguments may differ between calls, and the first call's arguments are used.
        same_args = key is not None or type(job).unique_by is Job.unique_by
        key = self.key_for(name, job, encoded_args) if key is None else check_key(key)
        claim = self.claim(name, definition, key, encoded_args, same_args=same_args)
        if isinstance(claim, Finished):
            return claim.result
        if not same_args:  # the run keeps the arguments it was created with
            job = definition.instantiate(json.loads(claim.row.args))
        ended = self.execute(job, definition, claim)
        return ended.value

    def claim(
        self,
        name: str,
        definition: JobDefinition,
        key: str,
        encoded_args: dict[str, Any],
        *,
        same_args: bool = True,
    ) -> _Claim | Finished:
        """Create the key's run or take it over, or return its stored result."""
        self.store.check_schema()
        dialect = self.store.dialect
        for attempt in range(RACE_RETRIES):
            try:
                # The first try does not wait for SQLite's write lock: if the lock is held
                # by a racer that just created this key, the next try finds its row and
                # reports KeyLockedError at once instead of queueing behind its step.
                outcome = self._try_claim(
                    name, definition, key, encoded_args, same_args, patient=attempt > 0
                )
            except sa.exc.DBAPIError as exc:
                if not (dialect.is_retryable(exc) or dialect.is_unique_violation(exc)):
                    raise StorageError(
                        f"database error while claiming key {key!r} (job {name}): "
                        + dialect.describe(exc, self.store.engine.url)
                    ) from exc
                outcome = None
            if outcome is not None:
                return outcome
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - jitter, not crypto
        raise ContentionError(
            f"key {key!r} (job {name}): could not create or claim the run after "
            f"{RACE_RETRIES} attempts because of concurrent writers"
        )

    def _try_claim(
        self,
        name: str,
        definition: JobDefinition,
        key: str,
        encoded_args: dict[str, Any],
        same_args: bool,
        *,
        patient: bool,
    ) -> _Claim | Finished | None:
        """One attempt; None when a concurrent writer changed the row under us."""
        store = self.store
        # Most calls create their key: where inserting costs one statement in autocommit
        # (PostgreSQL), insert first and read the row only if the key exists. Not where
        # the insert would take a write lock even for a replay (SQLite).
        insert_first = not patient and store.dialect.autocommit_writes
        row = None if insert_first else store.find(key)
        if row is not None:
            check_row(row)
        token = uuid.uuid4().hex
        now = self.clock()
        timeout = self.lock_timeout_for(definition)
        expires = now + dt.timedelta(seconds=timeout)
        if row is None:
            new = store.insert_claimed(
                {
                    "idempotency_key": key,
                    "job": name,
                    "args": dumps(encoded_args),
                    "steps": dumps(definition.step_names),
                    "status": RunStatus.RUNNING.value,
                    "recovery_point": definition.steps[0].name,
                    "ctx": "{}",
                    "result": None,
                    "error": None,
                    "attempts": 1,
                    "lock_token": token,
                    "locked_at": now,
                    "lock_expires_at": expires,
                    "created_at": now,
                    "last_run_at": now,
                    "finished_at": None,
                    "queue": None,
                    "priority": 0,
                    "run_at": None,
                    "attempt_limit": None,
                    "cancel_requested": False,
                },
                patient=patient,
            )
            if new is not None:
                return _Claim(new, token, retrying=False)
            if not insert_first:
                return None  # created meanwhile: the next attempt reads it
            row = store.find(key)
            if row is None:
                return None  # gone again (pruned): the next attempt starts over
            check_row(row)
        check_same_call(row, name, encoded_args if same_args else None)
        if row.status == RunStatus.SUCCEEDED:
            return Finished(None if row.result is None else loads(row.result))
        if row.status == RunStatus.CANCELLED:
            raise RunCancelledError(f"key {key!r} (job {name}) was cancelled; it does not run")
        waiting = (RunStatus.SCHEDULED, RunStatus.PENDING)
        if row.status in waiting and row.run_at is not None and row.run_at > now:
            return Finished(None)  # not due: asleep (Sleep, a retry's backoff) or run_at ahead
        if _is_locked(row, now):
            raise _locked(row)
        _check_definition(row, name, definition)
        claimed = store.claim_seen(
            row,
            token=token,
            clock=self.clock,
            lock_timeout=timeout,
            steps=dumps(definition.step_names),
            claimable=_CLAIMABLE,
        )
        if claimed is not None:
            return _Claim(claimed, token, retrying=self._retrying(claimed))
        fresh = store.find(key)
        if fresh is not None and fresh.status == RunStatus.SUCCEEDED:
            return None  # finished meanwhile: the next attempt returns its result
        raise _locked(fresh or row)

    def check_claimed(self, row: RunRow, definition: JobDefinition) -> None:
        """The checks ``app.run`` makes before executing an existing run."""
        _check_definition(row, row.job, definition)

    def fail_claimed(self, row: RunRow, token: str, exc: BaseException) -> None:
        """Fail a claimed run that cannot execute (changed job code, used-up budget).
        The claim does not count as an attempt: nothing was executed."""
        self.store.update_run(
            row.id,
            {
                "status": RunStatus.FAILED.value,
                "error": _error_json(exc, row.recovery_point),
                "attempts": row.attempts - 1,
                "run_at": None,
                "lock_token": None,
                "locked_at": None,
                "lock_expires_at": None,
            },
            token=token,
        )

    def release_claimed(self, row: RunRow, token: str) -> None:
        """Hand back a claimed run before any step of it ran (its worker is stopping):
        due at once, for any worker, without using up an attempt."""
        self.store.update_run(
            row.id,
            {
                "status": RunStatus.PENDING.value,
                "attempts": row.attempts - 1,
                "run_at": self.clock(),
                "lock_token": None,
                "locked_at": None,
                "lock_expires_at": None,
            },
            token=token,
        )

    def claimed(self, row: RunRow, token: str) -> _Claim:
        """A run claimed by a worker, ready for :meth:`execute`."""
        # Claimed for the first time (attempts just became 1): no step has started, so
        # there is no history to read.
        return _Claim(row, token, retrying=row.attempts > 1 and self._retrying(row))

    def _retrying(self, row: RunRow) -> bool:
        last = self.store.last_event(row.id)
        return last is not None and last.step == row.recovery_point and last.event != "succeeded"

    # -- execution --------------------------------------------------------------------

    def execute(
        self,
        job: Job,
        definition: JobDefinition,
        claim: _Claim,
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
        state = StepState(
            key=row.key,
            ctx=Context.from_json(row.ctx),
            attempt=row.attempts,
            retrying=claim.retrying,
            step=row.recovery_point,
            read_signal=lambda name: self.store.latest_signal(row.id, name),
        )
        run = _Execution(job, definition, claim, state, row.ctx, should_stop)
        job.__dict__["_acidic_state"] = state
        try:
            while True:
                spec = definition.steps_by_name.get(state.step)
                if spec is None:  # pragma: no cover - checked at claim and at RecoveryPoint
                    raise UnknownRecoveryPointError(state.step)
                step = self._transactional_step if spec.transactional else self._foreign_step
                entered = current_step.set(spec.name)
                try:
                    ended = step(run, spec)
                finally:
                    current_step.reset(entered)
                if ended is not None:
                    return ended
                state.retrying = False
        finally:
            job.__dict__.pop("_acidic_state", None)

    def _transactional_step(self, run: _Execution, spec: StepSpec) -> Ended | None:
        state = run.state
        started = self.clock()
        conn = self.store.engine.connect()
        try:
            with self.store.translated(f"starting step {spec.name} of {state.key!r}"):
                tx = conn.begin()
            try:
                # While the step runs, a COMMIT on its connection is refused (see Store).
                self.store.step_broken(conn)  # forget a previous use of the connection
                conn.execution_options(
                    acidic_in_step=f"step {spec.name} of job {run.definition.cls.__qualname__}"
                )
                try:
                    returned = spec.func(run.job, conn)
                finally:
                    conn.execution_options(acidic_in_step=None)
                broken = self.store.step_broken(conn)
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
                decision = self._decide(run, spec, returned)
                ctx_json = state.ctx.to_json()
                values, events, ended = self._progress(run, decision, spec, ctx_json, started)
            except BaseException as exc:
                _rollback(conn, tx)
                return self._failed(run, spec, exc, started, record_start=True)
            try:
                if not self.store.write_progress(
                    conn, run.claim.row.id, run.claim.token, values, events
                ):
                    _rollback(conn, tx)
                    return self._refused(run, spec)
                tx.commit()
            except sa.exc.SQLAlchemyError as exc:
                # The progress write or the commit failed (connection lost, deferred
                # constraint, serialization failure). If the commit landed anyway (its
                # acknowledgement was lost), the step is done: go on. Else nothing of the
                # step is committed: report it like a step failure.
                _rollback(conn, tx)
                if not self._landed(run, events[-1]):
                    error = StorageError(
                        f"key {state.key!r}: committing step {spec.name} failed: {exc}"
                    )
                    error.__cause__ = exc
                    return self._failed(run, spec, error, started, record_start=True)
        finally:
            conn.close()
        self._log(run, spec, started, ended)
        self._wake_if_signalled(run, ended, started)
        return run.advance(decision, ctx_json, ended)

    def _foreign_step(self, run: _Execution, spec: StepSpec) -> Ended | None:
        state = run.state
        started = self.clock()
        try:
            with self.store.translated(f"starting step {spec.name} of {state.key!r}"):
                ok = self.store.write_progress_alone(
                    run.claim.row.id,
                    run.claim.token,
                    {"locked_at": started, "lock_expires_at": self._expiry(run, started)},
                    [EventRow(spec.name, "started", started, state.attempt)],
                )
        except StorageError as error:
            # Nothing ran: record the failure (if the database lets us) so that the run
            # is resumable at once instead of locked until its lock is stale.
            return self._failed(run, spec, error, started, record_start=True)
        if not ok:
            return self._refused(run, spec)
        try:
            returned = spec.func(run.job)
            decision = self._decide(run, spec, returned)
            ctx_json = state.ctx.to_json()
            values, events, ended = self._progress(run, decision, spec, ctx_json, None)
        except BaseException as exc:
            return self._failed(run, spec, exc, started, record_start=False)
        try:
            with self.store.translated(f"committing step {spec.name} of {state.key!r}"):
                ok = self.store.write_progress_alone(
                    run.claim.row.id, run.claim.token, values, events
                )
        except StorageError as error:
            # The call was made but its progress is not known to be committed. If the
            # commit landed (only its acknowledgement was lost), go on; else record the
            # failure, so the run is resumable at once and makes the call again.
            if not self._landed(run, events[-1]):
                return self._failed(run, spec, error, started, record_start=False)
            ok = True
        if not ok:
            return self._refused(run, spec)
        self._log(run, spec, started, ended)
        self._wake_if_signalled(run, ended, started)
        return run.advance(decision, ctx_json, ended)

    def _landed(self, run: _Execution, last: EventRow) -> bool:
        """After a commit that raised: whether it reached the database anyway, i.e. the
        event it was to append (``last``, exact to the microsecond) is the run's last."""
        try:
            stored = self.store.last_event(run.claim.row.id)
        except Exception:  # the database is still unreachable: it is not known to have landed
            return False
        return stored is not None and (stored.step, stored.event, stored.at, stored.attempt) == (
            last.step,
            last.event,
            last.at,
            last.attempt,
        )

    def _log(
        self,
        run: _Execution,
        spec: StepSpec,
        started: dt.datetime,
        ended: Ended | None,
        outcome: str | None = None,
    ) -> None:
        """One line per step transition, with fields for structured log handlers."""
        if not log.isEnabledFor(logging.INFO):
            return
        if outcome is None:
            outcome = "succeeded" if ended is None else ended.status.value
        fields = {
            "key": run.state.key,
            "job": run.claim.row.job,
            "step": spec.name,
            "attempt": run.state.attempt,
            "duration_ms": round((self.clock() - started).total_seconds() * 1000, 1),
            "outcome": outcome,
        }
        log.info(" ".join(f"{k}={v}" for k, v in fields.items()), extra={"acidic": fields})

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
                self.store.wake(
                    row.id,
                    [RunStatus.HALTED.value],
                    {"status": RunStatus.PENDING.value, "run_at": self.clock()},
                    row.queue or self.default_queue,
                )

    def _expiry(self, run: _Execution, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.lock_timeout_for(run.definition))

    def _decide(self, run: _Execution, spec: StepSpec, returned: object) -> _Decision:
        definition = run.definition
        names = definition.step_names
        index = names.index(spec.name)
        following = names[index + 1] if index + 1 < len(names) else None
        if returned is None:
            if following is not None:
                return _Decision(RunStatus.RUNNING, following)
            return _Decision(RunStatus.SUCCEEDED, None, result_json=None)
        if isinstance(returned, Response):
            result_json = encode(returned.value, f"result of step {spec.name}")
            return _Decision(RunStatus.SUCCEEDED, None, result_json=result_json)
        if isinstance(returned, RecoveryPoint):
            if returned.step not in definition.steps_by_name:
                raise UnknownRecoveryPointError(
                    f"step {spec.name} of job {definition.cls.__qualname__} (key "
                    f"{run.state.key!r}) returned RecoveryPoint({returned.step!r}), which is "
                    f"not one of its steps {names}"
                )
            return _Decision(RunStatus.RUNNING, returned.step)
        if isinstance(returned, Halt):
            return _Decision(RunStatus.HALTED, spec.name)
        if isinstance(returned, Sleep):
            if following is None:
                raise JobDefinitionError(
                    f"step {spec.name} of job {definition.cls.__qualname__} returned Sleep(), "
                    "but it is the last step: there is no step to wake up to"
                )
            return _Decision(RunStatus.SCHEDULED, following, wake_at=returned.wake_at(self.clock()))
        raise JobDefinitionError(
            f"step {spec.name} of job {definition.cls.__qualname__} returned {returned!r}; "
            "a step returns None, acidic.Response(value), acidic.RecoveryPoint(step), "
            "acidic.Sleep(...) or acidic.Halt()"
        )

    def _progress(
        self,
        run: _Execution,
        decision: _Decision,
        spec: StepSpec,
        ctx_json: str,
        started: dt.datetime | None,
    ) -> tuple[dict[str, Any], list[EventRow], Ended | None]:
        """The row values and history events that record a step's end, and how the
        execution ends (None: it continues with the next step)."""
        now = self.clock()
        attempt = run.state.attempt
        values: dict[str, Any] = {"ctx": ctx_json, "error": None}
        released = {"lock_token": None, "locked_at": None, "lock_expires_at": None}
        end = "halted" if decision.status is RunStatus.HALTED else "succeeded"
        ended: Ended | None = None
        status = decision.status
        if status is RunStatus.RUNNING and run.should_stop():
            # Graceful stop: hand the run back, due now, without using up an attempt.
            limit = run.claim.row.attempt_limit
            values.update(
                released,
                status=RunStatus.PENDING.value,
                recovery_point=decision.next,
                run_at=now,
                attempt_limit=None if limit is None else limit + 1,
            )
            ended = Ended(RunStatus.PENDING)
        elif status is RunStatus.RUNNING:
            values.update(
                recovery_point=decision.next,
                locked_at=now,
                lock_expires_at=self._expiry(run, now),
            )
        elif status is RunStatus.SUCCEEDED:
            values.update(
                released,
                status=status.value,
                recovery_point=None,
                result=decision.result_json,
                finished_at=now,
                run_at=None,
            )
            # Return what later calls will read back, so every caller sees the same value.
            value = None if decision.result_json is None else loads(decision.result_json)
            ended = Ended(status, value)
        else:
            # Parked (Sleep, or Halt until app.resume/app.signal makes it due): an inline
            # run joins the default queue so a worker can continue it, and the wake-up
            # claim will not use up an attempt of the retry budget.
            limit = run.claim.row.attempt_limit
            values.update(
                released,
                status=status.value,
                run_at=decision.wake_at,
                queue=run.claim.row.queue or self.default_queue,
                attempt_limit=None if limit is None else limit + 1,
            )
            if status is RunStatus.SCHEDULED:
                values["recovery_point"] = decision.next
            ended = Ended(status)
        events = [EventRow(spec.name, end, now, attempt)]
        if started is not None:
            events.insert(0, EventRow(spec.name, "started", started, attempt))
        return values, events, ended

    def _refused(self, run: _Execution, spec: StepSpec) -> Ended:
        """A progress write was refused: the run was cancelled, or its lock lost."""
        claim = run.claim
        if not self.store.cancel_requested(claim.row.id, claim.token):
            raise _lost(run.state, spec)
        now = self.clock()
        self.store.update_run(
            claim.row.id,
            {
                "status": RunStatus.CANCELLED.value,
                "finished_at": now,
                "run_at": None,
                "lock_token": None,
                "locked_at": None,
                "lock_expires_at": None,
            },
            token=claim.token,
        )
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
        status, wake_at = self._after_failure(run, exc)
        error_json = _error_json(exc, spec.name)
        now = self.clock()
        events = [EventRow(spec.name, "errored", now, state.attempt, error_json)]
        if record_start:
            events.insert(0, EventRow(spec.name, "started", started, state.attempt))
        try:
            if self.store.cancel_requested(run.claim.row.id, run.claim.token):
                status, wake_at = RunStatus.CANCELLED, None
            self.store.update_run(
                run.claim.row.id,
                {
                    "status": status.value,
                    "error": error_json,
                    "run_at": wake_at,
                    "lock_token": None,
                    "locked_at": None,
                    "lock_expires_at": None,
                    "queue": run.claim.row.queue
                    or (self.default_queue if status is RunStatus.SCHEDULED else None),
                    **({"finished_at": now} if status is RunStatus.CANCELLED else {}),
                },
                token=run.claim.token,
                events=events,
            )
        except Exception as db_exc:
            # The step's exception is what the caller must see; the lock will go
            # stale and the run be taken over, so nothing is lost.
            exc.add_note(f"acidic could not record this failure: {db_exc!r}")
        self._log(run, spec, started, None, f"errored:{type(exc).__name__}->{status.value}")
        if isinstance(exc, Retry) and status is RunStatus.SCHEDULED:
            return Ended(status, error=exc)
        raise exc

    def _after_failure(
        self, run: _Execution, exc: BaseException
    ) -> tuple[RunStatus, dt.datetime | None]:
        """Failed for good, or scheduled for another attempt (and when)."""
        limit = run.claim.row.attempt_limit
        job = run.job
        if isinstance(exc, Retry):
            has_budget = limit is None or run.state.attempt < limit
        else:
            # Inline runs (no limit) fail at once: the caller sees the error and decides.
            has_budget = limit is not None and run.state.attempt < limit
            if isinstance(exc, type(job).discard_on or ()):
                has_budget = False
        if not has_budget:
            return RunStatus.FAILED, None
        if isinstance(exc, Retry) and exc.after is not None:
            delay = exc.after
        else:
            delay = job.backoff(run.state.attempt)
        return RunStatus.SCHEDULED, self.clock() + dt.timedelta(seconds=delay)


@dataclass(frozen=True, slots=True)
class Ended:
    """How an execution ended: the run's new status, and its result when it succeeded."""

    status: RunStatus
    value: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Execution:
    """The state of one execution of a claimed run."""

    job: Job
    definition: JobDefinition
    claim: _Claim
    state: StepState
    committed_ctx: str
    should_stop: Callable[[], bool]

    def advance(self, decision: _Decision, ctx_json: str, ended: Ended | None) -> Ended | None:
        self.committed_ctx = ctx_json
        if ended is None:
            assert decision.next is not None
            self.state.step = decision.next
        return ended


@dataclass(frozen=True, slots=True)
class _Decision:
    status: RunStatus
    next: str | None  # the step to continue at (now, after a sleep, or after a halt)
    result_json: str | None = None
    wake_at: dt.datetime | None = None


def _error_json(exc: BaseException, step: str | None) -> str:
    """The stored form of a run's error."""
    error = RunError(
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        step=step,
    )
    # ASCII-escaped: a traceback may hold text the database cannot store raw.
    return json.dumps(error.to_json())


def _rollback(conn: sa.Connection, tx: sa.RootTransaction) -> None:
    """Roll back the step's transaction, or whatever the step left open instead, and
    give the connection back: on SQLite it may hold the write lock that recording the
    failure needs next."""
    if tx.is_active:
        tx.rollback()
        conn.close()
    else:
        # The step ended or broke the transaction itself (e.g. a refused commit):
        # SQLAlchemy no longer tracks what the driver holds open, and the pool would
        # not roll it back. Discard the connection; the server rolls back.
        conn.invalidate()
        conn.close()


def _is_locked(row: RunRow, now: dt.datetime) -> bool:
    return (
        row.lock_token is not None and row.lock_expires_at is not None and row.lock_expires_at > now
    )


def _locked(row: RunRow) -> KeyLockedError:
    expiry = row.lock_expires_at.isoformat() if row.lock_expires_at else "soon"
    return KeyLockedError(
        f"key {row.key!r} (job {row.job}) is held by a live run at step "
        f"{row.recovery_point!r}; unless its owner renews the lock, it becomes claimable "
        f"at {expiry}"
    )


def _lost(state: StepState, spec: StepSpec) -> LockLostError:
    return LockLostError(
        f"key {state.key!r}: the lock went stale during step {spec.name} and another owner "
        "took the run over; this step's work was rolled back and is not committed"
    )


def check_same_call(row: RunRow, name: str, encoded_args: dict[str, Any] | None) -> None:
    if row.job != name:
        raise ArgumentMismatchError(
            f"key {row.key!r} belongs to job {row.job}, not {name}; use another key"
        )
    if encoded_args is None:
        return
    stored = json.loads(row.args)
    if stored != encoded_args:
        fields = sorted(set(stored) | set(encoded_args))
        diffs = [
            f"{f}: stored {stored.get(f, '<absent>')!r}, given {encoded_args.get(f, '<absent>')!r}"
            for f in fields
            if stored.get(f, ...) != encoded_args.get(f, ...)
        ]
        raise ArgumentMismatchError(
            f"key {row.key!r} (job {name}) was first used with other arguments: " + "; ".join(diffs)
        )


def _check_definition(row: RunRow, job: str, definition: JobDefinition) -> None:
    names = definition.step_names
    if row.recovery_point not in definition.steps_by_name:
        raise UnknownRecoveryPointError(
            f"key {row.key!r}: the stored recovery point {row.recovery_point!r} is not a step "
            f"of job {job}, whose steps are {names}"
        )
    stored = json.loads(row.steps)
    if names[: len(stored)] != stored:
        raise DefinitionMismatchError(
            f"key {row.key!r}: job {job} was started with steps {stored}, but its steps are now "
            f"{names}; steps may only be appended at the end while runs are unfinished"
        )
