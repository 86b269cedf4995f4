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

import datetime as dt
import json
import random
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ._context import Context
from ._encoding import check_key, default_key, dumps, encode, encode_value, loads
from ._errors import (
    ArgumentMismatchError,
    ContentionError,
    DefinitionMismatchError,
    JobDefinitionError,
    KeyLockedError,
    LockLostError,
    StorageError,
    UnknownRecoveryPointError,
)
from ._job import Job, JobDefinition, StepSpec, StepState
from ._outcomes import Halt, RecoveryPoint, Response
from ._run import RunError, RunStatus
from ._storage import EventRow, RunRow, Store

__all__ = ["Engine", "Finished"]

#: How many times a race on a key (deadlock, serialization failure, busy SQLite,
#: a row created or claimed under our feet) is retried before ContentionError.
RACE_RETRIES = 8

_CLAIMABLE = tuple(
    s.value for s in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.HALTED, RunStatus.FAILED)
)

Clock = Callable[[], dt.datetime]


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


class Engine:
    """Runs jobs inline against a :class:`Store`."""

    def __init__(self, store: Store, *, lock_timeout: float, clock: Clock = utcnow) -> None:
        self.store = store
        self.lock_timeout = lock_timeout
        self.clock = clock

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
        return self.execute(job, definition, claim)

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
                        f"database error while claiming key {key!r} (job {name}): {exc.orig!r}"
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
        row = store.find(key)
        token = uuid.uuid4().hex
        now = self.clock()
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
                    "created_at": now,
                    "last_run_at": now,
                    "finished_at": None,
                },
                patient=patient,
            )
            return None if new is None else _Claim(new, token, retrying=False)
        _check_same_call(row, name, encoded_args if same_args else None)
        if row.status == RunStatus.SUCCEEDED:
            return Finished(None if row.result is None else loads(row.result))
        timeout = self.lock_timeout_for(definition)
        stale_before = now - dt.timedelta(seconds=timeout)
        if _is_locked(row, stale_before):
            raise _locked(row, timeout)
        _check_definition(row, name, definition)
        claimed = store.claim(
            row.id,
            token=token,
            now=now,
            stale_before=stale_before,
            steps=dumps(definition.step_names),
            claimable=_CLAIMABLE,
        )
        if claimed is not None:
            return _Claim(claimed, token, retrying=self._retrying(claimed))
        fresh = store.find(key)
        if fresh is not None and fresh.status == RunStatus.SUCCEEDED:
            return None  # finished meanwhile: the next attempt returns its result
        raise _locked(fresh or row, timeout)

    def _retrying(self, row: RunRow) -> bool:
        last = self.store.last_event(row.id)
        return last is not None and last.step == row.recovery_point and last.event != "succeeded"

    # -- execution --------------------------------------------------------------------

    def execute(self, job: Job, definition: JobDefinition, claim: _Claim) -> Any:
        row = claim.row
        assert row.recovery_point is not None  # claimed runs are unfinished
        state = StepState(
            key=row.key,
            ctx=Context.from_json(row.ctx),
            attempt=row.attempts,
            retrying=claim.retrying,
            step=row.recovery_point,
        )
        committed_ctx = row.ctx
        job.__dict__["_acidic_state"] = state
        try:
            while True:
                spec = definition.steps_by_name.get(state.step)
                if spec is None:  # pragma: no cover - checked at claim and at RecoveryPoint
                    raise UnknownRecoveryPointError(state.step)
                runner = self._transactional_step if spec.transactional else self._foreign_step
                outcome, committed_ctx = runner(job, definition, spec, claim, state, committed_ctx)
                if isinstance(outcome, _Done):
                    return outcome.value
                state.step = outcome
                state.retrying = False
        finally:
            job.__dict__.pop("_acidic_state", None)

    def _transactional_step(
        self,
        job: Job,
        definition: JobDefinition,
        spec: StepSpec,
        claim: _Claim,
        state: StepState,
        committed_ctx: str,
    ) -> tuple[str | _Done, str]:
        started = self.clock()
        conn = self.store.engine.connect()
        try:
            with self.store.translated(f"starting step {spec.name} of {state.key!r}"):
                tx = conn.begin()
            try:
                # While the step runs, a COMMIT on its connection is refused (see Store).
                conn.execution_options(
                    acidic_in_step=f"step {spec.name} of job {definition.cls.__qualname__}"
                )
                try:
                    returned = spec.func(job, conn)
                finally:
                    conn.execution_options(acidic_in_step=None)
                if not tx.is_active or not conn.in_transaction():
                    raise JobDefinitionError(
                        f"step {spec.name} of job {definition.cls.__qualname__} ended its "
                        "transaction itself; a step must leave commit and rollback to acidic"
                    )
                decision = self._decide(definition, spec, state, returned)
                ctx_json = state.ctx.to_json()
                values, events = self._progress(decision, spec, state, ctx_json, started)
            except BaseException as exc:
                _rollback(conn, tx)
                state.ctx = Context.from_json(committed_ctx)
                self._record_failure(claim, spec, state, exc, started, record_start=True)
                raise
            try:
                if not self.store.write_progress(conn, claim.row.id, claim.token, values, events):
                    tx.rollback()
                    raise _lost(state, spec)
                tx.commit()
            except sa.exc.SQLAlchemyError as exc:
                # The progress write or the commit failed (connection lost, deferred
                # constraint, serialization failure): nothing of the step is known to be
                # committed by us, so report it like a step failure. If the commit did
                # reach the database, the recovery point moved and the run resumes there.
                _rollback(conn, tx)
                state.ctx = Context.from_json(committed_ctx)
                error = StorageError(
                    f"key {state.key!r}: committing step {spec.name} failed: {exc}"
                )
                error.__cause__ = exc
                self._record_failure(claim, spec, state, error, started, record_start=True)
                raise error from exc
        finally:
            conn.close()
        return decision.next, ctx_json

    def _foreign_step(
        self,
        job: Job,
        definition: JobDefinition,
        spec: StepSpec,
        claim: _Claim,
        state: StepState,
        committed_ctx: str,
    ) -> tuple[str | _Done, str]:
        started = self.clock()
        with self.store.translated(f"starting step {spec.name} of {state.key!r}"):
            with self.store.transaction() as conn:
                ok = self.store.write_progress(
                    conn,
                    claim.row.id,
                    claim.token,
                    {"locked_at": started},
                    [EventRow(spec.name, "started", started, state.attempt)],
                )
            if not ok:
                raise _lost(state, spec)
        try:
            returned = spec.func(job)
            decision = self._decide(definition, spec, state, returned)
            ctx_json = state.ctx.to_json()
            values, events = self._progress(decision, spec, state, ctx_json, None)
        except BaseException as exc:
            state.ctx = Context.from_json(committed_ctx)
            self._record_failure(claim, spec, state, exc, started, record_start=False)
            raise
        with self.store.translated(f"committing step {spec.name} of {state.key!r}"):
            with self.store.transaction() as conn:
                ok = self.store.write_progress(conn, claim.row.id, claim.token, values, events)
            if not ok:
                raise _lost(state, spec)
        return decision.next, ctx_json

    def _decide(
        self, definition: JobDefinition, spec: StepSpec, state: StepState, returned: object
    ) -> _Decision:
        names = definition.step_names
        if returned is None:
            index = names.index(spec.name)
            if index + 1 < len(names):
                return _Decision(RunStatus.RUNNING, names[index + 1])
            return _Decision(RunStatus.SUCCEEDED, _Done(None), result_json=None)
        if isinstance(returned, Response):
            result_json = encode(returned.value, f"result of step {spec.name}")
            # Return what later calls will read back, so every caller sees the same value.
            return _Decision(
                RunStatus.SUCCEEDED, _Done(loads(result_json)), result_json=result_json
            )
        if isinstance(returned, RecoveryPoint):
            if returned.step not in definition.steps_by_name:
                raise UnknownRecoveryPointError(
                    f"step {spec.name} of job {definition.cls.__qualname__} (key {state.key!r}) "
                    f"returned RecoveryPoint({returned.step!r}), which is not one of its steps "
                    f"{names}"
                )
            return _Decision(RunStatus.RUNNING, returned.step)
        if isinstance(returned, Halt):
            return _Decision(RunStatus.HALTED, _Done(None))
        raise JobDefinitionError(
            f"step {spec.name} of job {definition.cls.__qualname__} returned {returned!r}; "
            "a step returns None, acidic.Response(value), acidic.RecoveryPoint(step) or "
            "acidic.Halt()"
        )

    def _progress(
        self,
        decision: _Decision,
        spec: StepSpec,
        state: StepState,
        ctx_json: str,
        started: dt.datetime | None,
    ) -> tuple[dict[str, Any], list[EventRow]]:
        now = self.clock()
        values: dict[str, Any] = {"ctx": ctx_json, "error": None}
        end = "halted" if decision.status is RunStatus.HALTED else "succeeded"
        if decision.status is RunStatus.RUNNING:
            values.update(recovery_point=decision.next, locked_at=now)
        else:
            values.update(status=decision.status.value, lock_token=None, locked_at=None)
            if decision.status is RunStatus.SUCCEEDED:
                values.update(recovery_point=None, result=decision.result_json, finished_at=now)
        events = [EventRow(spec.name, end, now, state.attempt)]
        if started is not None:
            events.insert(0, EventRow(spec.name, "started", started, state.attempt))
        return values, events

    def _record_failure(
        self,
        claim: _Claim,
        spec: StepSpec,
        state: StepState,
        exc: BaseException,
        started: dt.datetime,
        *,
        record_start: bool,
    ) -> None:
        """Store the error with its step and release the lock; never mask ``exc``."""
        if isinstance(exc, LockLostError):
            return
        error = RunError(
            type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            step=spec.name,
        )
        # ASCII-escaped: a traceback may hold text the database cannot store raw.
        error_json = json.dumps(error.to_json())
        now = self.clock()
        events = [EventRow(spec.name, "errored", now, state.attempt, error_json)]
        if record_start:
            events.insert(0, EventRow(spec.name, "started", started, state.attempt))
        try:
            with self.store.transaction() as conn:
                self.store.write_progress(
                    conn,
                    claim.row.id,
                    claim.token,
                    {
                        "status": RunStatus.FAILED.value,
                        "error": error_json,
                        "lock_token": None,
                        "locked_at": None,
                    },
                    events,
                )
        except Exception as db_exc:
            # The step's exception is what the caller must see; the lock will go
            # stale and the run be taken over, so nothing is lost.
            exc.add_note(f"acidic could not record this failure: {db_exc!r}")


@dataclass(frozen=True, slots=True)
class _Done:
    value: Any


@dataclass(frozen=True, slots=True)
class _Decision:
    status: RunStatus
    next: str | _Done  # the next step's name, or the end of this execution
    result_json: str | None = None


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


def _is_locked(row: RunRow, stale_before: dt.datetime) -> bool:
    return row.lock_token is not None and row.locked_at is not None and row.locked_at > stale_before


def _locked(row: RunRow, timeout: float) -> KeyLockedError:
    since = row.locked_at.isoformat() if row.locked_at else "just now"
    return KeyLockedError(
        f"key {row.key!r} (job {row.job}) is held by a live run at step "
        f"{row.recovery_point!r} since {since}; it becomes claimable {timeout:g} s after "
        "its owner last renewed the lock"
    )


def _lost(state: StepState, spec: StepSpec) -> LockLostError:
    return LockLostError(
        f"key {state.key!r}: the lock went stale during step {spec.name} and another owner "
        "took the run over; this step's work was rolled back and is not committed"
    )


def _check_same_call(row: RunRow, name: str, encoded_args: dict[str, Any] | None) -> None:
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
