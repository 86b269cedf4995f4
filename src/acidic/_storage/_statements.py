"""Statements on acidic's tables that several parts of the store share, built once."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from ._rows import RunRow
from ._schema import history, runs

__all__ = ["APPEND", "BY_ID", "BY_KEY", "EVENT_COLUMNS", "RUN_COLUMNS", "fenced_update", "run_row"]

RUN_COLUMNS = (
    runs.c.id,
    runs.c.idempotency_key,
    runs.c.job,
    runs.c.args,
    runs.c.steps,
    runs.c.status,
    runs.c.recovery_point,
    runs.c.ctx,
    runs.c.result,
    runs.c.error,
    runs.c.attempts,
    runs.c.lock_token,
    runs.c.locked_at,
    runs.c.created_at,
    runs.c.last_run_at,
    runs.c.finished_at,
    runs.c.queue,
    runs.c.priority,
    runs.c.run_at,
    runs.c.lock_expires_at,
    runs.c.attempt_limit,
    runs.c.cancel_requested,
    runs.c.parent_id,
    runs.c.concurrency_key,
    runs.c.concurrency_limit,
    runs.c.traceparent,
    runs.c.executor,
)
EVENT_COLUMNS = (
    history.c.step,
    history.c.event,
    history.c.at,
    history.c.attempt,
    history.c.error,
)
APPEND = history.insert().values(
    {
        name: sa.bindparam(name, type_=history.c[name].type)
        for name in ("run_id", "step", "event", "at", "attempt", "error")
    }
)
BY_KEY = sa.select(*RUN_COLUMNS).where(runs.c.idempotency_key == sa.bindparam("key"))
BY_ID = sa.select(*RUN_COLUMNS).where(runs.c.id == sa.bindparam("id"))


def fenced_update(columns: tuple[str, ...]) -> sa.Update:
    """UPDATE of a run's ``columns`` (parameters ``v_<column>``) only while the owner's
    token (``p_token``) holds its lock and no cancellation was requested (fencing)."""
    return (
        runs.update()
        .where(
            runs.c.id == sa.bindparam("p_run_id", type_=runs.c.id.type),
            runs.c.lock_token == sa.bindparam("p_token", type_=runs.c.lock_token.type),
            runs.c.cancel_requested == sa.false(),
        )
        .values({c: sa.bindparam(f"v_{c}", type_=runs.c[c].type) for c in columns})
    )


def run_row(row: Any, *, taken_over: bool = False) -> RunRow:
    # The columns of RUN_COLUMNS, in RunRow's field order (taken_over is not one).
    made = RunRow(*row)
    return dataclasses.replace(made, taken_over=True) if taken_over else made
