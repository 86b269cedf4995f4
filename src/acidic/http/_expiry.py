"""Expired idempotency records: deleted when their key comes back, or in bulk."""

from __future__ import annotations

import datetime as dt

from .._engine import Manager
from .._run import RunStatus

__all__ = ["expire", "purge"]

#: The statuses of records that may expire (no handler is running for them).
_ENDED = (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)


def expire(manager: Manager, job: str, key: str, expires: float) -> bool:
    """Delete the run of ``job`` under ``key`` if it has expired (ended more than
    ``expires`` seconds ago, not locked); True if it did."""
    now = manager.clock()
    # Looked at first without a write transaction: on SQLite that would take the
    # database's only write lock for every replay.
    row = manager.find(key, checked=False)
    if row is None or row.status not in _ENDED:
        return False
    if row.lock_token is not None and (row.lock_expires_at or now) > now:
        return False
    stored_at = row.finished_at or row.last_run_at or row.created_at
    if stored_at >= now - dt.timedelta(seconds=expires):
        return False
    return manager.delete_expired(job, expires, key=key) > 0


def purge(manager: Manager, job: str, expires: float, batch: int) -> int:
    """Delete every expired record of ``job``, ``batch`` per transaction; how many."""
    return manager.delete_expired(job, expires, batch=batch)
