"""The fleet's tables: the worker registry, paused queues, and the reads about queues
and the runs workers hold.

Nothing here is on a run's path: a worker writes its registry row at start, at each
heartbeat and at a graceful stop; the runs it holds are read from ``acidic_runs.owner``,
which the claim statement writes and the release clears (no statement of their own).
Paused queues are read by the claim statement itself (``NOT EXISTS``), so that a pause
takes effect at the next claim of every worker without a statement more per claim.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._schema import WAITING, paused_queues, runs, workers

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["DueJob", "Fleet", "QueueRow", "WorkerRow", "not_paused"]


def not_paused(queue: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """The claim's condition: ``queue`` is not paused (one primary-key probe)."""
    return ~sa.exists().where(paused_queues.c.name == queue)


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker process as registered (``queues`` and ``jobs`` decoded)."""

    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    version: str
    jobs: list[str]
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    #: After this time the worker counts as gone (it missed its heartbeats).
    gone_at: dt.datetime


class QueueRow(NamedTuple):
    """Counts of one queue's runs now."""

    name: str
    #: Waiting runs (pending or scheduled), due or not.
    depth: int
    #: Waiting runs already due.
    due: int
    running: int
    #: The ``run_at`` of the oldest due run.
    oldest_due: dt.datetime | None


@dataclass(frozen=True, slots=True)
class DueJob:
    """Due waiting runs of one job on one queue."""

    queue: str
    job: str
    count: int
    oldest_due: dt.datetime | None


def _worker(row: Any) -> WorkerRow:
    def listed(text: str) -> list[str]:
        try:
            value = json.loads(text)
        except ValueError:
            return []
        return [str(v) for v in value] if isinstance(value, list) else []

    return WorkerRow(
        id=row.id,
        host=row.host,
        pid=row.pid,
        queues=listed(row.queues),
        concurrency=row.concurrency,
        version=row.version,
        jobs=listed(row.jobs),
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        gone_at=row.gone_at,
    )


class Fleet:
    """The fleet's reads and writes on one :class:`Store`. Reads check the schema first;
    database failures come out as :class:`acidic.StorageError`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[Connection]:
        self.store.check_schema()
        with (
            self.store.translated(doing),
            self.store.engine.connect().execution_options(acidic_read_only=True) as conn,
        ):
            yield conn
            conn.rollback()

    @contextlib.contextmanager
    def _writing(self, doing: str) -> Iterator[Connection]:
        self.store.check_schema()
        with self.store.translated(doing), self.store.transaction() as conn:
            yield conn

    # -- the worker registry ------------------------------------------------------------

    def register(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        queues: Sequence[str],
        concurrency: int,
        version: str,
        jobs: Sequence[str],
        now: dt.datetime,
        gone_at: dt.datetime,
    ) -> None:
        """Record a worker started ``now`` (replacing a row of the same id)."""
        with self._writing(f"registering worker {worker_id}") as conn:
            conn.execute(workers.delete().where(workers.c.id == worker_id))
            conn.execute(
                workers.insert().values(
                    id=worker_id,
                    host=host,
                    pid=pid,
                    queues=json.dumps(list(queues)),
                    concurrency=concurrency,
                    version=version,
                    jobs=json.dumps(list(jobs)),
                    started_at=now,
                    heartbeat_at=now,
                    gone_at=gone_at,
                )
            )

    def heartbeat(self, worker_id: str, now: dt.datetime, gone_at: dt.datetime) -> bool:
        """Renew a worker's heartbeat; False if its row is no longer there (pruned while
        the worker was cut off: it registers again)."""
        with self._writing(f"renewing the heartbeat of worker {worker_id}") as conn:
            updated = conn.execute(
                workers.update()
                .where(workers.c.id == worker_id)
                .values(heartbeat_at=now, gone_at=gone_at)
            ).rowcount
        return bool(updated)

    def unregister(self, worker_id: str) -> None:
        """Remove a worker's row (a graceful stop)."""
        with self._writing(f"removing worker {worker_id}") as conn:
            conn.execute(workers.delete().where(workers.c.id == worker_id))

    def prune_workers(self, gone_before: dt.datetime) -> int:
        """Delete the rows of workers gone before ``gone_before``; how many."""
        with self._writing("pruning gone workers") as conn:
            deleted = conn.execute(workers.delete().where(workers.c.gone_at < gone_before))
        return int(deleted.rowcount or 0)

    def workers(self) -> list[WorkerRow]:
        """Every registered worker, live or gone, oldest first."""
        stmt = sa.select(workers).order_by(workers.c.started_at, workers.c.id)
        with self._reading("listing workers") as conn:
            return [_worker(r) for r in conn.execute(stmt)]

    def live_workers(self, now: dt.datetime) -> list[WorkerRow]:
        """The workers not gone at ``now``."""
        stmt = sa.select(workers).where(workers.c.gone_at > now).order_by(workers.c.started_at)
        with self._reading("listing workers") as conn:
            return [_worker(r) for r in conn.execute(stmt)]

    def held(self, worker_ids: Sequence[str]) -> list[tuple[str, str]]:
        """(worker id, key) of the running runs these workers hold."""
        if not worker_ids:
            return []
        stmt = (
            sa.select(runs.c.owner, runs.c.idempotency_key)
            .where(runs.c.owner.in_(list(worker_ids)), runs.c.status == "running")
            .order_by(runs.c.id)
        )
        with self._reading("listing the runs of workers") as conn:
            return [(r[0], r[1]) for r in conn.execute(stmt)]

    # -- queues -------------------------------------------------------------------------

    def pause(self, name: str, now: dt.datetime) -> bool:
        """Pause a queue; False if it was paused already."""
        with self._writing(f"pausing queue {name!r}") as conn:
            found = conn.execute(
                sa.select(paused_queues.c.name).where(paused_queues.c.name == name)
            ).first()
            if found is not None:
                return False
            conn.execute(paused_queues.insert().values(name=name, paused_at=now))
        return True

    def resume(self, name: str) -> bool:
        """Resume a paused queue; False if it was not paused."""
        with self._writing(f"resuming queue {name!r}") as conn:
            deleted = conn.execute(paused_queues.delete().where(paused_queues.c.name == name))
        return bool(deleted.rowcount)

    def paused(self) -> dict[str, dt.datetime]:
        """Paused queue -> when it was paused."""
        stmt = sa.select(paused_queues.c.name, paused_queues.c.paused_at)
        with self._reading("listing paused queues") as conn:
            return {r[0]: r[1] for r in conn.execute(stmt)}

    def queue_counts(self, now: dt.datetime) -> list[QueueRow]:
        """Each queue that has waiting or running runs, with its counts.

        Two index walks: waiting runs (the claim index: queue, then run_at) and running
        runs (acidic_runs_running_idx); finished runs, however many, are not read."""
        due = runs.c.run_at <= now
        waiting = (
            sa.select(
                runs.c.queue,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.case((due, 1), else_=0)), 0),
                sa.func.min(sa.case((due, runs.c.run_at), else_=None)),
            )
            .where(runs.c.queue.is_not(None), runs.c.status.in_(WAITING))
            .group_by(runs.c.queue)
        )
        running = (
            sa.select(runs.c.queue, sa.func.count())
            .where(runs.c.queue.is_not(None), runs.c.status == sa.literal_column("'running'"))
            .group_by(runs.c.queue)
        )
        found: dict[str, list[Any]] = {}
        with self._reading("counting queues") as conn:
            for queue, depth, n_due, oldest in conn.execute(waiting):
                found[queue] = [int(depth), int(n_due), 0, _aware(oldest)]
            for queue, n_running in conn.execute(running):
                found.setdefault(queue, [0, 0, 0, None])[2] = int(n_running)
        return [QueueRow(q, *found[q]) for q in sorted(found)]

    def due_jobs(
        self,
        now: dt.datetime,
        *,
        queues: Sequence[str] | None = None,
        except_jobs: Sequence[str] = (),
        limit: int = 100,
    ) -> list[DueJob]:
        """(queue, job) pairs of due waiting runs (of ``queues``, of jobs other than
        ``except_jobs``), with their count and oldest due time."""
        conditions: list[sa.ColumnElement[bool]] = [
            runs.c.queue.is_not(None),
            runs.c.status.in_(WAITING),
            runs.c.run_at <= now,
        ]
        if queues is not None:
            conditions.append(runs.c.queue.in_(list(queues)))
        if except_jobs:
            conditions.append(runs.c.job.not_in(list(except_jobs)))
        stmt = (
            sa.select(runs.c.queue, runs.c.job, sa.func.count(), sa.func.min(runs.c.run_at))
            .where(*conditions)
            .group_by(runs.c.queue, runs.c.job)
            .order_by(runs.c.queue, runs.c.job)
            .limit(limit)
        )
        with self._reading("looking for due runs") as conn:
            return [DueJob(r[0], r[1], int(r[2]), _aware(r[3])) for r in conn.execute(stmt)]


def _aware(value: Any) -> dt.datetime | None:
    """An aggregate's time (min() of a column comes back without the column's type on
    some dialects): aware UTC."""
    if value is None:
        return None
    stamp: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
