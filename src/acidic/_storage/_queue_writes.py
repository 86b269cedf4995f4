"""The queue and the operators' writes: enqueue, claims of due runs, heartbeats,
signals, wake-ups, cancellation and deletion."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._encoding import loads
from ._connected import Connected
from ._limited_claims import LimitedClaimer, QueueLimits
from ._rendered import Rendered
from ._rows import NewRun, RunChange, RunRow
from ._schema import history, limits, runs, signals
from ._statements import BY_KEY, run_row

__all__ = ["QueueWrites"]


class QueueWrites(Connected):
    """The queue's and operators' statements (see :class:`Store`)."""

    def _enqueue_statement(self, columns: tuple[str, ...]) -> Rendered | None:
        """The INSERT of a new run and its notification as one statement, built once per
        set of columns; None where the dialect cannot."""
        if columns not in self._enqueue_statements:
            insert = self.dialect.insert_unless_exists(runs, columns, "idempotency_key")
            both = self.dialect.inserted_and_notified(insert)
            self._enqueue_statements[columns] = (
                None if both is None else Rendered.of(both, self.engine.dialect)
            )
        return self._enqueue_statements[columns]

    # -- the queue --------------------------------------------------------------------

    def enqueue(self, new: NewRun, conn: Connection | None = None) -> RunRow | None:
        """Insert a pending run (in ``conn``'s transaction when given) and wake workers;
        None if the key exists (nothing written)."""
        values = new.values()
        new_run = self._insert_statement(tuple(values))
        both = self._enqueue_statement(tuple(values))

        def write(c: Connection) -> int | None:
            if new.concurrency_key is not None:
                # The limit's row, for the claims to lock (acidic_limits).
                c.execute(self.dialect.insert_ignore(limits, {"name": new.concurrency_key}))
            if both is not None:
                row = both.execute(c, values).first()
                return None if row is None else int(row[0])
            run_id = self.dialect.inserted(c, new_run, values)
            if run_id is not None:
                self.dialect.notify(c, values["queue"])
            return run_id

        if conn is not None:
            # The caller's transaction: a MySQL duplicate-key error aborts only the
            # statement, a PostgreSQL/SQLite ON CONFLICT never errors.
            run_id = write(conn)
        elif both is not None and self.dialect.autocommit_writes and new.concurrency_key is None:
            # One statement (PostgreSQL): atomic on its own, no BEGIN and COMMIT.
            with self.autocommitted() as own:
                run_id = write(own)
        else:
            with self.transaction() as own:
                run_id = write(own)
        return None if run_id is None else new.row(run_id)

    def find_in(self, conn: Connection, key: str) -> RunRow | None:
        row = conn.execute(BY_KEY, {"key": key}).first()
        return None if row is None else run_row(row)

    def claim_due(
        self,
        queue: str,
        jobs: Sequence[str],
        limit: int,
        *,
        clock: Callable[[], dt.datetime],
        lock_timeout: Callable[[str], float],
        owner: str | None = None,
    ) -> list[RunRow]:
        """Claim due runs for a worker (see :mod:`._claims`); ``owner``: the worker's
        registry id, written to the claimed runs by the same statement."""
        return self._claimer.claim_due(
            queue, jobs, limit, clock=clock, lock_timeout=lock_timeout, owner=owner
        )

    def claim_limited(
        self,
        queue: str,
        jobs: Sequence[str],
        limit: int,
        *,
        clock: Callable[[], dt.datetime],
        lock_timeout: Callable[[str], float],
        queue_limits: QueueLimits | None,
        owner: str | None = None,
    ) -> list[RunRow]:
        """Claim due runs within concurrency and rate limits (see :mod:`._limited_claims`)."""
        return LimitedClaimer(self).claim_due(
            queue,
            jobs,
            limit,
            clock=clock,
            lock_timeout=lock_timeout,
            queue_limits=queue_limits,
            owner=owner,
        )

    def notifications(
        self, queues: Sequence[str], stopped: Callable[[], bool]
    ) -> Iterator[str] | None:
        """The queue names of runs enqueued from now on, while not ``stopped()``; None
        where the database cannot notify (workers poll)."""
        return self.dialect.notifications(self.engine, queues, stopped)

    def next_due(self, queues: Sequence[str], jobs: Sequence[str]) -> dt.datetime | None:
        """When the earliest waiting run of ``queues`` falls due (or a lock expires)."""
        scope = (runs.c.queue.in_(queues), runs.c.job.in_(jobs))
        waiting = sa.select(sa.func.min(runs.c.run_at)).where(
            *scope, runs.c.status.in_(("pending", "scheduled"))
        )
        expiring = sa.select(sa.func.min(runs.c.lock_expires_at)).where(
            *scope, runs.c.status == "running"
        )
        with self.engine.connect().execution_options(acidic_read_only=True) as conn:
            times = [conn.execute(waiting).scalar(), conn.execute(expiring).scalar()]
            conn.rollback()
        found = [t for t in times if t is not None]
        if not found:
            return None
        earliest: dt.datetime = min(found)
        return earliest if earliest.tzinfo else earliest.replace(tzinfo=dt.UTC)

    def renew_locks(
        self, held: Sequence[tuple[int, str, float]], clock: Callable[[], dt.datetime]
    ) -> set[int]:
        """Heartbeat: push back the lock expiry (by each run's lock timeout, in seconds)
        of runs still owned by their token; return the ids whose lock was lost."""
        lost: set[int] = set()
        with self.transaction() as conn:
            now = clock()  # once the transaction holds its locks (SQLite may have waited)
            for run_id, token, timeout in held:
                updated = conn.execute(
                    runs.update()
                    .where(runs.c.id == run_id, runs.c.lock_token == token)
                    .values(locked_at=now, lock_expires_at=now + dt.timedelta(seconds=timeout))
                ).rowcount
                if updated != 1:
                    lost.add(run_id)
        return lost

    def add_signal(self, run_id: int, name: str, payload: str, now: dt.datetime) -> None:
        with self.transaction() as conn:
            conn.execute(
                signals.insert().values(run_id=run_id, name=name, payload=payload, created_at=now)
            )

    def wake(
        self, run_id: int, statuses: Sequence[str], change: RunChange, queue: str | None
    ) -> bool:
        """Make a parked run due now as ``change`` says, if it is in one of ``statuses``;
        wake the workers of ``queue``."""
        with self.transaction() as conn:
            updated = conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.status.in_(statuses))
                .values(change.values())
            ).rowcount
            if updated == 1 and queue is not None:
                self.dialect.notify(conn, queue)
        return updated == 1

    def cancel(self, run_id: int, parked: Sequence[str], change: RunChange) -> str | None:
        """Cancel a run: at once (``change``) if it is in one of ``parked``, else ask its
        owner to stop at its next step boundary if it is running. Which of the two
        (``"cancelled"``, ``"requested"``), or None (it had finished)."""
        with self.transaction() as conn:
            if (
                conn.execute(
                    runs.update()
                    .where(runs.c.id == run_id, runs.c.status.in_(parked))
                    .values(change.values())
                ).rowcount
                == 1
            ):
                return "cancelled"
            if (
                conn.execute(
                    runs.update()
                    .where(runs.c.id == run_id, runs.c.status == "running")
                    .values(cancel_requested=True)
                ).rowcount
                == 1
            ):
                return "requested"
        return None

    def delete_finished(self, finished_before: dt.datetime, batch: int = 1000) -> int:
        """Delete succeeded and cancelled runs finished before the given time, with their
        history and signals, ``batch`` runs per transaction; return how many."""
        return self._delete_where(
            (
                runs.c.status.in_(("succeeded", "cancelled")),
                runs.c.finished_at < finished_before,
            ),
            batch,
        )

    def delete_expired(
        self,
        job: str,
        stored_before: dt.datetime,
        now: dt.datetime,
        *,
        key: str | None = None,
        batch: int = 1000,
    ) -> int:
        """Delete the ended runs of ``job`` (succeeded, failed, cancelled) last active
        before ``stored_before`` and not locked at ``now`` (only ``key``'s, when given),
        with their history and signals; return how many."""
        conditions = [
            runs.c.job == job,
            runs.c.status.in_(("succeeded", "failed", "cancelled")),
            sa.func.coalesce(runs.c.finished_at, runs.c.last_run_at, runs.c.created_at)
            < stored_before,
            sa.or_(runs.c.lock_token.is_(None), runs.c.lock_expires_at <= now),
        ]
        if key is not None:
            conditions.append(runs.c.idempotency_key == key)
        return self._delete_where(tuple(conditions), batch)

    def _delete_where(self, conditions: tuple[sa.ColumnElement[bool], ...], batch: int) -> int:
        total = 0
        while True:
            with self.transaction() as conn:
                ids = list(
                    conn.execute(sa.select(runs.c.id).where(*conditions).limit(batch)).scalars()
                )
                if not ids:
                    return total
                conn.execute(history.delete().where(history.c.run_id.in_(ids)))
                conn.execute(signals.delete().where(signals.c.run_id.in_(ids)))
                conn.execute(runs.delete().where(runs.c.id.in_(ids)))
            total += len(ids)

    def latest_signal(self, run_id: int, name: str) -> Any:
        """The decoded payload of the latest signal ``name`` of the run, or None."""
        stmt = (
            sa.select(signals.c.payload)
            .where(signals.c.run_id == run_id, signals.c.name == name)
            .order_by(signals.c.id.desc())
            .limit(1)
        )
        with self._translated("reading a signal"):
            payload: str | None = self._read(lambda conn: conn.execute(stmt).scalar())
        return None if payload is None else loads(payload)

    def signalled_since(self, run_id: int, since: dt.datetime) -> bool:
        """Whether a signal was delivered to the run at or after ``since``."""
        stmt = (
            sa.select(signals.c.id)
            .where(signals.c.run_id == run_id, signals.c.created_at >= since)
            .limit(1)
        )
        found: sa.Row[Any] | None = self._read(lambda conn: conn.execute(stmt).first())
        return found is not None

    def cancel_requested(self, run_id: int, token: str) -> bool:
        """After a refused progress write: True if ``token`` still owns the run and the
        refusal was a cancellation request, False if the lock was lost."""
        stmt = sa.select(runs.c.lock_token, runs.c.cancel_requested).where(runs.c.id == run_id)
        row: Any = self._read(lambda conn: conn.execute(stmt).first())
        return row is not None and row[0] == token and bool(row[1])
