"""Deliveries: what a queue's worker does with a message naming a run's key.

An executor (Celery, RQ, Dramatiq) hands runs to another queue. Its messages carry
only a key: the run row is the truth, the message a wake-up. :func:`deliver` reads the
row, claims the run by its key when it is due and nobody holds it, executes it through
the manager (steps, progress, history, fencing, attempts), and answers when the key
should be delivered again (a ``Sleep``, a retry's backoff, a lock held elsewhere), so
that the executor maps it onto its queue's delayed delivery. :func:`relay_pass` finds
the runs whose wake-up may be lost and marks them for one relay to republish.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from dataclasses import dataclass

from .._errors import LockLostError, RunCancelledError
from .._run import RunStatus
from .._storage import RunRow
from ._manager import Manager

__all__ = [
    "EARLY_TOLERANCE",
    "MISSING_TRIES",
    "RELAY_BACKOFF_LIMIT",
    "Delivery",
    "deliver",
    "relay_pass",
]

log = logging.getLogger("acidic.executor")

#: A message for a run that is not due yet is delivered again when it falls due only if
#: it came at most this early (a queue's delay rounded down); a run due later was parked
#: by its owner, which published its own wake-up for then.
EARLY_TOLERANCE = 5.0
#: How many times a message whose key has no run yet is delivered again (the enqueuing
#: transaction may still be committing) before it is dropped.
MISSING_TRIES = 8
#: The longest a relay leaves a waiting run it republished, in multiples of its grace.
RELAY_BACKOFF_LIMIT = 10
#: The statuses a message may claim (a halted or failed run waits for an operator).
_DELIVERABLE = (RunStatus.PENDING.value, RunStatus.SCHEDULED.value, RunStatus.RUNNING.value)
#: Seconds past a lock's expiry at which a message for a locked run is delivered again.
_LOCK_MARGIN = 0.05


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a delivery did, and when the key should be delivered again (``again``:
    seconds from now; None: no message is needed)."""

    outcome: str
    again: float | None = None
    #: Set when the key has no run (yet): how many times this was seen so far.
    missing: int = 0


def deliver(
    manager: Manager, key: str, *, missing: int = 0, heartbeat: float | None = None
) -> Delivery:
    """Handle one message for ``key``: execute the run if it is due and free, and say
    when to deliver the key again. Step errors are recorded, not raised; a database
    error is raised (the queue's message is then delivered again by the executor)."""
    for _ in range(3):
        row = manager.find(key)
        if row is None:
            if missing + 1 >= MISSING_TRIES:
                log.warning("key %r has no run: its message is dropped", key)
                return Delivery("missing")
            return Delivery("missing", min(0.05 * 2**missing, 2.0), missing + 1)
        waiting = _waiting(manager, row)
        if waiting is not None:
            return waiting
        if row.job not in manager.jobs:
            # A worker deployed without the job (a rolling deploy): not a reason to bounce
            # the message every few seconds; the relay republishes the run later.
            log.error(
                "run %r is of job %r, which is not registered with the App this worker "
                "imported: its message is dropped (the relay republishes it)",
                key,
                row.job,
            )
            return Delivery("unknown job")
        claimed = _claim(manager, row)
        if claimed is not None:
            _execute(manager, claimed, heartbeat)
            return _after(manager, key)
    return Delivery("busy", 1.0)  # the row kept changing under us: look again soon


def _waiting(manager: Manager, row: RunRow) -> Delivery | None:
    """The delivery for a run that is not to be claimed now; None if it is."""
    now = manager.clock()
    if row.status not in _DELIVERABLE:
        return Delivery(row.status)  # finished, cancelled, halted or failed
    if row.status == RunStatus.RUNNING:
        if row.lock_expires_at is not None and row.lock_expires_at > now:
            # Held elsewhere (a duplicate message, a redelivery after a worker died):
            # look again once the lock would be stale.
            remaining = (row.lock_expires_at - now).total_seconds()
            return Delivery("locked", remaining + _LOCK_MARGIN)
        return None  # its owner died: take it over
    if row.run_at is not None and row.run_at > now:
        early = (row.run_at - now).total_seconds()
        return Delivery("not due", early if early <= EARLY_TOLERANCE else None)
    return None


def _claim(manager: Manager, row: RunRow) -> RunRow | None:
    timeout = manager.lock_timeout_of(row.job)
    return manager.store.claim_seen(
        row,
        token=uuid.uuid4().hex,
        clock=manager.clock,
        lock_timeout=timeout,
        # The stored definition: an incompatible change fails the run in execute_claimed.
        steps=row.steps,
        claimable=_DELIVERABLE,
    )


def _execute(manager: Manager, row: RunRow, heartbeat: float | None) -> None:
    """Execute a claimed run, renewing its lock meanwhile (a step may outlast it)."""
    assert row.lock_token is not None
    timeout = manager.lock_timeout_of(row.job)
    done = threading.Event()

    def renew() -> None:
        while not done.wait(heartbeat or max(timeout / 3, 0.05)):
            try:
                manager.renew_locks([(row.id, row.lock_token or "", timeout)])
            except Exception:  # the step's own write reports a lost database
                log.debug("renewing the lock of %r failed", row.key, exc_info=True)

    renewer = threading.Thread(target=renew, name="acidic-renew", daemon=True)
    renewer.start()
    try:
        manager.execute_claimed(row, should_stop=lambda: False)
    except (LockLostError, RunCancelledError) as exc:
        log.info("run %s: %s", row.key, exc)
    except Exception as exc:  # recorded as the step's failure: retried or failed
        log.info("run %s errored: %s: %s", row.key, type(exc).__name__, exc)
    finally:
        done.set()
        renewer.join()


def _after(manager: Manager, key: str) -> Delivery:
    """After an execution: when the run wants its next delivery."""
    row = manager.find(key)
    if row is None:
        return Delivery("pruned")
    now = manager.clock()
    if row.status in (RunStatus.PENDING, RunStatus.SCHEDULED):
        due = row.run_at or now
        return Delivery("parked", max((due - now).total_seconds(), 0.0))
    if row.status == RunStatus.RUNNING:
        # The lock was lost to another owner (whose own messages follow it), or our
        # last write did not land: look again once the lock is stale.
        if row.lock_expires_at is None or row.lock_expires_at <= now:
            return Delivery("stale", 0.0)
        return Delivery("taken over")
    return Delivery(row.status)


def relay_pass(manager: Manager, executor: str, *, grace: float, limit: int = 500) -> list[str]:
    """The keys of ``executor``'s runs that are due but may have lost their wake-up:
    waiting runs due for more than ``grace`` seconds, running runs whose owner's lock
    expired. Each is marked so that a concurrent relay does not publish it again: a
    running run (nobody executes it) for ``grace``; a waiting run (perhaps only queued
    behind a backlog) for as long as it has been due, between ``grace`` and
    :data:`RELAY_BACKOFF_LIMIT` times ``grace``, so that a backlog is republished ever
    more rarely rather than at every pass. The caller publishes them."""
    now = manager.clock()
    step = dt.timedelta(seconds=grace)
    cutoff = now - step
    store = manager.store
    keys = []
    with store.translated(f"relaying runs of {executor}"):
        for run_id, key, due, running in store.relay_candidates(executor, now, cutoff, limit):
            wait = step if running else min(max(now - due, step), step * RELAY_BACKOFF_LIMIT)
            if store.mark_relayed(run_id, now, now + wait):
                keys.append(key)
    return keys
