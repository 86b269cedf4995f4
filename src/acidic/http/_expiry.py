"""Expired idempotency records: finding and deleting them.

Every SQL statement of acidic.http is here, on acidic's tables (``runs``, ``history``,
``signals``), to move under the storage layer as a named operation.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from .._app import App
from .._run import RunStatus
from .._storage._schema import history, runs, signals

__all__ = ["expire", "purge"]

#: The statuses of records that may expire (no handler is running for them).
_ENDED = (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)


def expire(app: App, job: str, key: str, expires: float) -> bool:
    """Delete the run of ``job`` under ``key`` if it has expired (ended more than
    ``expires`` seconds ago, not locked); True if it did."""
    store = app._store
    now = app.manager.clock()
    with store.translated(f"reading key {key!r}"):
        row = store.find(key)
    # Looked at first without a write transaction: on SQLite that would take the
    # database's only write lock for every replay.
    if row is None or row.status not in _ENDED:
        return False
    if row.lock_token is not None and (row.lock_expires_at or now) > now:
        return False
    stored_at = row.finished_at or row.last_run_at or row.created_at
    if stored_at >= now - dt.timedelta(seconds=expires):
        return False
    with store.translated(f"expiring key {key!r}"), store.transaction() as conn:
        run_id = conn.execute(
            sa.select(runs.c.id).where(
                runs.c.idempotency_key == key, _expired_where(job, app.manager.clock(), expires)
            )
        ).scalar()
        if run_id is None:
            return False
        _delete(conn, [run_id])
    return True


def purge(app: App, job: str, expires: float, batch: int) -> int:
    """Delete every expired record of ``job``, ``batch`` per transaction; how many."""
    store = app._store
    store.check_schema()
    total = 0
    while True:
        with store.translated("purging expired idempotency keys"), store.transaction() as conn:
            ids = list(
                conn.execute(
                    sa.select(runs.c.id)
                    .where(_expired_where(job, app.manager.clock(), expires))
                    .limit(batch)
                ).scalars()
            )
            if not ids:
                return total
            _delete(conn, ids)
        total += len(ids)


def _expired_where(job: str, now: dt.datetime, expires: float) -> sa.ColumnElement[bool]:
    cutoff = now - dt.timedelta(seconds=expires)
    return sa.and_(
        runs.c.job == job,
        runs.c.status.in_(_ENDED),
        sa.func.coalesce(runs.c.finished_at, runs.c.last_run_at, runs.c.created_at) < cutoff,
        sa.or_(runs.c.lock_token.is_(None), runs.c.lock_expires_at <= now),
    )


def _delete(conn: sa.Connection, ids: list[int]) -> None:
    conn.execute(history.delete().where(history.c.run_id.in_(ids)))
    conn.execute(signals.delete().where(signals.c.run_id.in_(ids)))
    conn.execute(runs.delete().where(runs.c.id.in_(ids)))
