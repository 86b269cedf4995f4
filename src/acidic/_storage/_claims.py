"""Claiming due runs for workers: the dialect hook behind ``Store.claim_due``.

Two ways to claim, chosen by the dialect (:meth:`Dialect.claimer`):

* :class:`OneStatementClaimer` (PostgreSQL): one UPDATE over a CTE that picks the rows
  with SKIP LOCKED, in autocommit: one round trip per claim;
* :class:`StepwiseClaimer` (SQLite, MariaDB/MySQL): pick, then update each picked row,
  in one transaction; where there are no partial indexes (MariaDB) the due runs are read
  one waiting status at a time, each in index order, and merged (the index walk).

Both return runs whose owner's lock expired first (a crashed owner's runs must not wait
behind a busy queue), then due pending and scheduled runs by priority, due time and
enqueue order; rows locked by another claimer are skipped, never waited for.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._fleet import not_paused
from ._rendered import Rendered
from ._rows import RunRow
from ._schema import WAITING, runs
from ._statements import RUN_COLUMNS, run_row

if TYPE_CHECKING:
    from ._connected import Connected

__all__ = ["Claimer", "OneStatementClaimer", "StepwiseClaimer"]


class Claimer(Protocol):
    """Claims up to ``limit`` due runs of ``queue`` whose job is one of ``jobs``; each
    claimed run gets a token of its own and a lock of its job's ``lock_timeout``."""

    def claim_due(
        self,
        queue: str,
        jobs: Sequence[str],
        limit: int,
        *,
        clock: Callable[[], dt.datetime],
        lock_timeout: Callable[[str], float],
        owner: str | None = None,
    ) -> list[RunRow]: ...


class StepwiseClaimer:
    """Pick, then take each picked run, in one transaction (SQLite, MariaDB/MySQL)."""

    def __init__(self, store: Connected) -> None:
        self.store = store
        self.dialect = store.dialect
        self._built: tuple[sa.Select[Any], sa.Select[Any], sa.Update, sa.Select[Any]] | None = None

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
        """Claim up to ``limit`` runs of ``queue`` that a worker should execute now: runs
        whose owner's lock expired first (a crashed owner's runs must not wait behind a
        busy queue), then due pending/scheduled runs (highest priority first, then
        earliest ``run_at``, then enqueue order). Rows locked by another claimer are
        skipped, never waited for. Each claimed run gets a token of its own."""

        stale, due, _, fetch = self._statements()
        params: dict[str, Any] = {"c_queue": queue, "c_jobs": list(jobs)}
        if self.dialect.single_writer:
            # Look before taking SQLite's only write lock: idle polls must not queue
            # behind (and delay) running steps.
            look = {**params, "c_now": clock(), "c_limit": 1}
            with self.store.engine.connect().execution_options(acidic_read_only=True) as conn:
                anything = conn.execute(stale, look).first() or conn.execute(due, look).first()
                conn.rollback()
            if anything is None:
                return []
        claimed: list[int] = []
        stale_ids: set[int] = set()
        with self.store.transaction() as conn:
            # The clock is read once the transaction holds its locks (SQLite may have
            # waited for the write lock): a lock must not start life already expired.
            now = clock()
            # Without partial indexes the due runs are read one waiting status at a time.
            per_status = not self.dialect.partial_indexes
            for query, by_status in ((stale, False), (due, per_status)):
                if len(claimed) >= limit:
                    break
                picked = self._pick(
                    conn,
                    query,
                    {**params, "c_now": now, "c_limit": limit - len(claimed)},
                    by_status=by_status,
                )
                for run_id, job in picked:
                    self.take(conn, run_id, job, now, lock_timeout(job), owner)
                    claimed.append(run_id)
                    if query is stale:
                        stale_ids.add(run_id)
            if not claimed:
                return []
            rows = conn.execute(fetch, {"c_ids": claimed}).all()
        order = {run_id: i for i, run_id in enumerate(claimed)}
        return sorted(
            (run_row(r, taken_over=r[0] in stale_ids) for r in rows), key=lambda r: order[r.id]
        )

    def take(
        self,
        conn: Connection,
        run_id: int,
        job: str,
        now: dt.datetime,
        lock_timeout: float,
        owner: str | None,
    ) -> None:
        """In ``conn``'s transaction, give the picked run ``run_id`` to ``owner``: a token
        of its own, a lock of ``lock_timeout`` seconds, one more attempt."""
        conn.execute(
            self._statements()[2],
            {
                "c_id": run_id,
                "c_token": uuid.uuid4().hex,
                "c_now": now,
                "c_expires": now + dt.timedelta(seconds=lock_timeout),
                "c_owner": owner,
            },
        )

    @staticmethod
    def _pick(
        conn: Connection, query: sa.Select[Any], params: dict[str, Any], *, by_status: bool
    ) -> list[tuple[int, str]]:
        """(id, job) of the runs ``query`` picks. ``by_status`` (the due runs, where
        there are no partial indexes: MariaDB, MySQL): read per waiting status, each
        walked in the order of acidic_runs_claim_idx (queue, status, priority DESC,
        run_at, id) and stopped at the limit, then merged; one query over both statuses
        would sort every due run."""
        if not by_status:
            return [(row[0], row[1]) for row in conn.execute(query, params)]
        rows = [
            row
            for status in ("pending", "scheduled")
            for row in conn.execute(query, {**params, "c_status": status})
        ]
        rows.sort(key=lambda r: (-r.priority, r.run_at, r.id))
        return [(row[0], row[1]) for row in rows[: params["c_limit"]]]

    def _statements(
        self,
    ) -> tuple[sa.Select[Any], sa.Select[Any], sa.Update, sa.Select[Any]]:
        """The statements of :meth:`claim_due` where it takes several (SQLite, MariaDB):
        stale runs, due runs, the update of one picked run, the claimed rows. Built once,
        with bound parameters, so that a claim does not pay for building them."""
        if self._built is None:
            now = sa.bindparam("c_now", type_=runs.c.lock_expires_at.type)
            queue = sa.bindparam("c_queue", type_=runs.c.queue.type)
            base = sa.select(runs.c.id, runs.c.job).where(
                runs.c.queue == queue,
                runs.c.job.in_(sa.bindparam("c_jobs", expanding=True)),
                not_paused(queue),
            )
            limit = sa.bindparam("c_limit", type_=sa.Integer)
            stale = (
                base.where(
                    runs.c.status == sa.literal_column("'running'"), runs.c.lock_expires_at <= now
                )
                .order_by(runs.c.lock_expires_at)
                .limit(limit)
            )
            if self.dialect.partial_indexes:
                # Literal statuses: SQLite uses its partial claim index only then.
                due = base.where(runs.c.status.in_(WAITING))
            else:
                # One waiting status at a time (see _pick).
                due = base.add_columns(runs.c.status, runs.c.priority, runs.c.run_at).where(
                    runs.c.status == sa.bindparam("c_status", type_=runs.c.status.type)
                )
            due = (
                due.where(runs.c.run_at <= now)
                .order_by(runs.c.priority.desc(), runs.c.run_at, runs.c.id)
                .limit(limit)
            )
            take = (
                runs.update()
                .where(runs.c.id == sa.bindparam("c_id", type_=runs.c.id.type))
                .values(
                    status="running",
                    lock_token=sa.bindparam("c_token", type_=runs.c.lock_token.type),
                    locked_at=now,
                    lock_expires_at=sa.bindparam("c_expires", type_=runs.c.lock_expires_at.type),
                    owner=sa.bindparam("c_owner", type_=runs.c.owner.type),
                    last_run_at=now,
                    run_at=None,
                    attempts=runs.c.attempts + 1,
                )
            )
            fetch: sa.Select[Any] = (
                sa.select(*RUN_COLUMNS)
                .where(runs.c.id.in_(sa.bindparam("c_ids", expanding=True)))
                .order_by(runs.c.id)
            )
            self._built = (
                self.dialect.lock_rows_skip_locked(stale),
                self.dialect.lock_rows_skip_locked(due),
                take,
                fetch,
            )
        return self._built


class OneStatementClaimer:
    """One statement in autocommit (PostgreSQL)."""

    def __init__(self, store: Connected) -> None:
        self.store = store
        self._cache: dict[tuple[str, ...], Rendered] = {}

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
        """See :class:`Claimer`: one statement in autocommit, the rows picked with SKIP
        LOCKED in a CTE, updated and returned; one round trip instead of a transaction of
        several."""
        stmt = self._statement(tuple(jobs))
        now = clock()
        params: dict[str, Any] = {
            "c_queue": queue,
            "c_now": now,
            "c_owner": owner,
            "c_limit": limit,
        }
        for i, job in enumerate(jobs):
            params[f"c_job{i}"] = job
            params[f"c_expires{i}"] = now + dt.timedelta(seconds=lock_timeout(job))
        with self.store.autocommitted() as conn:
            rows = stmt.rows(conn, params)
        # The last two columns: the run's priority (claim order) and its candidate rank
        # (0: its owner's lock had expired, a takeover).
        ordered = sorted(rows, key=lambda r: (-r[-2], r[0]))
        return [run_row(r[:-2], taken_over=r[-1] == 0) for r in ordered]

    def _statement(self, jobs: tuple[str, ...]) -> Rendered:
        """The statement of :meth:`claim_due`, built once per set of jobs (the limit is a
        parameter: an async worker's claims ask for anything from 1 to its concurrency):
        building it costs more than executing it (a worker claims once per run)."""
        cached = self._cache.get(jobs)
        if cached is not None:
            return cached
        limit = sa.bindparam("c_limit", type_=sa.Integer)
        now = sa.bindparam("c_now", type_=runs.c.lock_expires_at.type)
        job_params = [sa.bindparam(f"c_job{i}", type_=runs.c.job.type) for i in range(len(jobs))]
        queue = sa.bindparam("c_queue", type_=runs.c.queue.type)
        mine = (
            runs.c.queue == queue,
            sa.or_(*(runs.c.job == job for job in job_params)),
            not_paused(queue),
        )
        # Two candidate lists, each walked in its index's order and stopped at the
        # limit: runs whose owner's lock expired (a crashed owner's runs must not wait
        # behind a busy queue), then waiting runs by priority, due time and enqueue
        # order (acidic_runs_claim_idx; the statuses are literals, or the partial index
        # would not be used). One ORDER BY over both would sort every due run.
        stale = (
            sa.select(runs.c.id, sa.literal(0).label("rank"))
            .where(*mine, runs.c.status == sa.literal_column("'running'"))
            .where(runs.c.lock_expires_at <= now)
            .order_by(runs.c.lock_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("acidic_stale")
        )
        due = (
            sa.select(runs.c.id, sa.literal(1).label("rank"))
            .where(*mine, runs.c.status.in_(WAITING), runs.c.run_at <= now)
            .order_by(runs.c.priority.desc(), runs.c.run_at, runs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("acidic_due")
        )
        candidates = sa.union_all(
            sa.select(stale.c.id, stale.c.rank), sa.select(due.c.id, due.c.rank)
        ).subquery("acidic_candidates")
        picked = (
            sa.select(candidates.c.id, candidates.c.rank)
            .order_by(candidates.c.rank)
            .limit(limit)
            .cte("acidic_picked")
        )
        expires = sa.case(
            *(
                (
                    runs.c.job == job,
                    sa.bindparam(f"c_expires{i}", type_=runs.c.lock_expires_at.type),
                )
                for i, job in enumerate(job_params)
            ),
        )
        stmt = (
            runs.update()
            .where(runs.c.id == picked.c.id)
            .values(
                status="running",
                # A token of its own per run, made by the database in the same statement.
                lock_token=sa.func.replace(sa.cast(sa.func.gen_random_uuid(), sa.String), "-", ""),
                locked_at=now,
                lock_expires_at=expires,
                owner=sa.bindparam("c_owner", type_=runs.c.owner.type),
                last_run_at=now,
                run_at=None,
                attempts=runs.c.attempts + 1,
            )
            .returning(*RUN_COLUMNS, runs.c.priority, picked.c.rank)
        )
        if len(self._cache) > 64:  # jobs registered on the fly: stay bounded
            self._cache.clear()
        rendered = self._cache[jobs] = Rendered.of(stmt, self.store.engine.dialect)
        return rendered
