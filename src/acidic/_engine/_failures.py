"""What a failing step leaves behind: its stored error, its rolled-back transaction,
the error of a lost lock, the outcome the observer is told, and whether a commit that
raised landed anyway."""

from __future__ import annotations

import json
import traceback

import sqlalchemy as sa

from .._errors import LockLostError, RunCancelledError
from .._job import StepSpec, StepState
from .._run import RunError, RunStatus
from .._storage import EventRow, Store

__all__ = ["error_json", "landed", "lost", "outcome_of", "rollback"]


def error_json(exc: BaseException, step: str | None) -> str:
    """The stored form of a run's error."""
    error = RunError(
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        step=step,
    )
    # ASCII-escaped: a traceback may hold text the database cannot store raw.
    return json.dumps(error.to_json())


def outcome_of(exc: BaseException, failed_as: str | None) -> str:
    """What an attempt that raised ``exc`` did to its run, for the observer."""
    if isinstance(exc, LockLostError):
        return "lock_lost"
    if isinstance(exc, RunCancelledError):
        return RunStatus.CANCELLED.value
    return failed_as or RunStatus.FAILED.value


def rollback(conn: sa.Connection, tx: sa.RootTransaction) -> None:
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


def lost(state: StepState, spec: StepSpec) -> LockLostError:
    return LockLostError(
        f"key {state.key!r}: the lock went stale during step {spec.name} and another owner "
        "took the run over; this step's work was rolled back and is not committed"
    )


def landed(store: Store, run_id: int, last: EventRow) -> bool:
    """After a commit that raised: whether it reached the database anyway, i.e. the
    event it was to append (``last``, exact to the microsecond) is the run's last."""
    try:
        stored = store.last_event(run_id)
    except Exception:  # the database is still unreachable: it is not known to have landed
        return False
    return stored is not None and (stored.step, stored.event, stored.at, stored.attempt) == (
        last.step,
        last.event,
        last.at,
        last.attempt,
    )
