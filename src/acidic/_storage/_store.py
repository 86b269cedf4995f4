"""The store: every read and write acidic makes to its own tables.

A narrow port between the engine and the database. The engine asks for runs by key,
for a claim, for progress to be written under the owner's token (fencing); the store
answers in plain records and never interprets job semantics. Driver errors leave here
translated to :class:`acidic.StorageError`, except inside a step's own transaction,
where the step's exceptions must stay the user's.

The class is assembled from its parts: :mod:`._connected` (connections, schema,
reads), :mod:`._owner_writes` (fenced writes of a run's owner), :mod:`._queue_writes`
(the queue and the operators), :mod:`._family` (child runs and ``Await``), and the
claims of a key here.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from ._connected import IMPATIENT_BUSY_TIMEOUT
from ._engines import SQLITE_BUSY_TIMEOUT
from ._family import Family
from ._owner_writes import OwnerWrites
from ._queue_writes import QueueWrites
from ._relay_reads import RelayReads
from ._rows import NewRun, RunRow
from ._schema import runs
from ._statements import BY_ID, run_row

__all__ = ["Store"]


class Store(OwnerWrites, QueueWrites, Family, RelayReads):
    """acidic's tables on one database (PostgreSQL, SQLite or MySQL/MariaDB)."""

    # -- claims -----------------------------------------------------------------------

    def insert_claimed(
        self, new: NewRun, *, patient: bool = True, flushed_later: bool = False
    ) -> RunRow | None:
        """Insert a new run already claimed by its creator; None if the key exists.

        Not ``patient``: on SQLite, give up after a few milliseconds if another
        connection holds the write lock (a retryable "database is locked" error).

        ``flushed_later``: the insert's commit need not wait for the disk (see
        :meth:`Dialect.flushed_later`), because the caller makes no effect depend on the
        new row before its next write, which is flushed and so flushes the row too (the
        database's log is written in order). A job's run: its first transactional step
        commits with the step's writes; a non-transactional first step's ``started``
        record commits before the call. A database crash in between loses the row and
        nothing done under it: the caller's next write fails, and the next call creates
        the run again.
        """
        values = new.values()
        if self.dialect.autocommit_writes:
            # One statement: atomic on its own, without BEGIN and COMMIT round trips.
            insert = self._insert_statement(tuple(values), flushed_later=flushed_later)
            with self.autocommitted() as conn:
                run_id = self.dialect.inserted(conn, insert, values)
            return None if run_id is None else new.row(run_id)
        insert = self._insert_statement(tuple(values))
        with self.engine.connect() as conn:
            if not patient:
                conn.execution_options(acidic_busy_timeout=IMPATIENT_BUSY_TIMEOUT)
            with conn.begin():
                run_id = self.dialect.inserted(conn, insert, values)
        return None if run_id is None else new.row(run_id)

    def claim(
        self,
        run_id: int,
        *,
        token: str,
        clock: Callable[[], dt.datetime],
        lock_timeout: float,
        steps: str,
        claimable: Sequence[str],
        patient: bool = True,
    ) -> RunRow | None:
        """Take an existing run if it is claimable and unlocked (or its lock is stale).

        Returns the claimed row, or None when another owner holds a live lock (found
        without waiting) or the run changed state meanwhile. ``patient``: as for
        :meth:`transaction`.
        """
        try:
            with self.transaction(patient=patient) as conn:
                # Read the clock once the write lock is ours (SQLite may have waited).
                now = clock()
                expires = now + dt.timedelta(seconds=lock_timeout)
                free = sa.or_(runs.c.lock_token.is_(None), runs.c.lock_expires_at <= now)
                locked = conn.execute(
                    self.dialect.lock_row_nowait(sa.select(runs.c.id).where(runs.c.id == run_id))
                ).first()
                if locked is None:
                    return None
                updated = conn.execute(
                    runs.update()
                    .where(runs.c.id == run_id, runs.c.status.in_(claimable), free)
                    .values(
                        lock_token=token,
                        locked_at=now,
                        lock_expires_at=expires,
                        owner=None,  # taken by key: no worker holds it
                        run_at=None,
                        last_run_at=now,
                        status="running",
                        attempts=runs.c.attempts + 1,
                        steps=steps,
                    )
                ).rowcount
                if updated != 1:
                    return None
                row = conn.execute(BY_ID, {"id": run_id}).one()
        except sa.exc.OperationalError as exc:
            if self.dialect.is_lock_unavailable(exc):
                return None
            raise
        return run_row(row)

    def claim_seen(
        self,
        seen: RunRow,
        *,
        token: str,
        clock: Callable[[], dt.datetime],
        lock_timeout: float,
        steps: str,
        claimable: Sequence[str],
    ) -> RunRow | None:
        """:meth:`claim` of the run ``seen``, as the caller last read it.

        Where writers queue for one write lock (SQLite), a claim does not wait behind
        it while another caller may be taking the run (and then holding the lock for
        its whole first step): it tries with an impatient busy timeout, reads the row
        between tries (reads never wait), and returns None as soon as the row changed,
        so that the caller reports the new owner (or the result) at once.
        """
        claim = functools.partial(
            self.claim,
            seen.id,
            token=token,
            clock=clock,
            lock_timeout=lock_timeout,
            steps=steps,
            claimable=claimable,
        )
        if not self.dialect.single_writer:
            return claim()
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT  # as long as a patient claim
        while True:
            try:
                return claim(patient=False)
            except sa.exc.OperationalError as exc:
                if not self.dialect.is_retryable(exc) or time.monotonic() > deadline:
                    raise
            if self.find(seen.key, checked=False) != seen:
                return None
