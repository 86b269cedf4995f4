"""The dashboard's heavier reads: the selection of a bulk action, per-job statistics
and the runs waiting for their due time. Mixed into :class:`._queries.Queries`, whose
filter (``_where``) and read-only transactions they use."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._run import RunStatus
from ._schema import WAITING, runs

if TYPE_CHECKING:
    from ._queries import FleetScope, Selection, SummaryRow
    from ._store import Store

__all__ = ["ESTIMATE_OVER", "ReportQueries"]

#: A status with more runs than this is counted from PostgreSQL's statistics (its table
#: size and the share of each status and queue that ANALYZE measured) by
#: :meth:`ReportQueries.counts_estimated`, not row by row: counting a million succeeded
#: runs exactly takes longer than the rest of the overview.
ESTIMATE_OVER = 10_000

#: The estimated number of rows of acidic_runs now (reltuples scaled to the table's size
#: now, as the planner does) and the most common values of ``status`` and ``queue`` with
#: their shares, as ANALYZE measured them.
_PG_STATISTICS = """
SELECT CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN NULL
            ELSE c.reltuples / c.relpages
                 * (pg_relation_size(c.oid) / current_setting('block_size')::float8) END,
       s.attname, s.null_frac, s.most_common_vals::text::text[], s.most_common_freqs
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stats AS s ON s.schemaname = n.nspname AND s.tablename = c.relname
    AND s.attname IN ('status', 'queue')
WHERE c.oid = CAST(:table AS regclass)
"""


class ReportQueries:
    """Reads for bulk actions, statistics and the schedule (see the module)."""

    store: Store

    def _where(
        self, selection: Selection, scope: FleetScope | None = None
    ) -> list[sa.ColumnElement[bool]]:
        raise NotImplementedError

    def _reading(self, doing: str) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def _all(self, doing: str, stmt: sa.Executable) -> list[Any]:
        raise NotImplementedError

    def _columns(self) -> tuple[sa.ColumnElement[Any], ...]:
        raise NotImplementedError

    def _summaries(self, doing: str, stmt: sa.Executable) -> list[SummaryRow]:
        raise NotImplementedError

    def counts(self) -> list[tuple[str | None, str, int]]:
        raise NotImplementedError

    def counts_estimated(
        self, over: int = ESTIMATE_OVER
    ) -> tuple[list[tuple[str | None, str, int]], frozenset[str]]:
        """(queue, status, how many runs) like :meth:`counts`, and the statuses whose
        counts are estimates: on PostgreSQL, a status with more than ``over`` runs is
        estimated from the table's statistics (exact below that, and everywhere else)."""
        if self.store.dialect.name != "postgresql":
            return self.counts(), frozenset()
        with self._reading("counting runs") as conn:
            # How many of each status, counting each no further than over + 1.
            first = [
                sa.select(sa.literal(status.value), sa.func.count()).select_from(
                    sa.select(runs.c.id)
                    .where(runs.c.status == status.value)
                    .limit(over + 1)
                    .subquery()
                )
                for status in RunStatus
            ]
            many = {r[0] for r in conn.execute(sa.union_all(*first)) if r[1] > over}
            estimated = self._estimates(conn, sorted(many)) if many else None
            if estimated is None:
                many = set()  # no statistics yet (never analysed): count them all
            exact = sa.select(runs.c.queue, runs.c.status, sa.func.count()).group_by(
                runs.c.queue, runs.c.status
            )
            if many:
                # IN, not NOT IN: the status index (0010) finds the others alone.
                others = [st.value for st in RunStatus if st.value not in many]
                exact = exact.where(runs.c.status.in_(others))
            rows = [(r[0], r[1], int(r[2])) for r in conn.execute(exact)]
        return rows + (estimated or []), frozenset(many)

    @staticmethod
    def _estimates(
        conn: Connection, statuses: Sequence[str]
    ) -> list[tuple[str | None, str, int]] | None:
        """(queue, status, estimated runs) for ``statuses``, from PostgreSQL's statistics
        (queues among the most common values only); None without statistics."""
        found = conn.execute(sa.text(_PG_STATISTICS), {"table": runs.name}).all()
        rows = found[0][0] if found else None
        shares: dict[str, dict[str | None, float]] = {}
        for _, column, null_frac, values, freqs in found:
            if column is not None:
                share = dict(zip(values or [], freqs or [], strict=True))
                share[None] = float(null_frac or 0.0)
                shares[column] = share
        if rows is None or set(shares) != {"status", "queue"}:
            return None
        by_status, by_queue = shares["status"], shares["queue"]
        if not all(status in by_status for status in statuses):
            return None
        return [
            (queue, status, round(rows * by_status[status] * part))
            for status in statuses
            for queue, part in by_queue.items()
            if round(rows * by_status[status] * part) > 0
        ]

    def bounds(self, selection: Selection, scope: FleetScope | None = None) -> tuple[int, int]:
        """How many runs are selected, and the highest id among them (0 when none): a
        bulk action confirmed for that many runs stops at that id."""
        stmt = (
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.max(runs.c.id), 0))
            .select_from(runs)
            .where(*self._where(selection, scope))
        )
        count, top = self._all("counting runs", stmt)[0]
        return int(count), int(top)

    def batch(
        self,
        selection: Selection,
        *,
        after_id: int,
        upto_id: int,
        limit: int,
        scope: FleetScope | None = None,
    ) -> list[tuple[int, str]]:
        """(id, key) of at most ``limit`` selected runs with ``after_id < id <= upto_id``,
        in id order: one batch of a bulk action."""
        stmt = (
            sa.select(runs.c.id, runs.c.idempotency_key)
            .where(*self._where(selection, scope), runs.c.id > after_id, runs.c.id <= upto_id)
            .order_by(runs.c.id)
            .limit(limit)
        )
        return [(int(r[0]), r[1]) for r in self._all("selecting runs", stmt)]

    def ended_by_job(self, start: dt.datetime, end: dt.datetime) -> list[tuple[str, str, int]]:
        """(job, status, how many) of the runs that ended from ``start`` to ``end``:
        succeeded or cancelled then (``finished_at``), or failed in an attempt claimed
        then (a failed run keeps no end time: it may be retried)."""
        finished = (
            sa.select(runs.c.job, runs.c.status, sa.func.count())
            .where(
                runs.c.finished_at >= start,
                runs.c.finished_at <= end,
                runs.c.status.in_((RunStatus.SUCCEEDED.value, RunStatus.CANCELLED.value)),
            )
            .group_by(runs.c.job, runs.c.status)
        )
        failed = (
            sa.select(runs.c.job, sa.func.count())
            .where(
                runs.c.status == RunStatus.FAILED.value,
                runs.c.last_run_at >= start,
                runs.c.last_run_at <= end,
            )
            .group_by(runs.c.job)
        )
        with self._reading("computing job stats") as conn:
            rows = [(r[0], r[1], int(r[2])) for r in conn.execute(finished)]
            rows += [(r[0], RunStatus.FAILED.value, int(r[1])) for r in conn.execute(failed)]
        return rows

    def open_by_job(self, statuses: Sequence[str]) -> list[tuple[str, str, int]]:
        """(job, status, how many) of the runs now in one of ``statuses``."""
        stmt = (
            sa.select(runs.c.job, runs.c.status, sa.func.count())
            .where(runs.c.status.in_(statuses))
            .group_by(runs.c.job, runs.c.status)
        )
        return [(r[0], r[1], int(r[2])) for r in self._all("computing job stats", stmt)]

    def durations(
        self, start: dt.datetime, end: dt.datetime, *, limit: int
    ) -> list[tuple[str, dt.datetime, dt.datetime]]:
        """(job, last claimed, finished) of the latest ``limit`` runs that succeeded
        from ``start`` to ``end`` (their last attempt's span)."""
        stmt = (
            sa.select(runs.c.job, runs.c.last_run_at, runs.c.finished_at)
            .where(
                runs.c.finished_at >= start,
                runs.c.finished_at <= end,
                runs.c.status == RunStatus.SUCCEEDED.value,
                runs.c.last_run_at.is_not(None),
            )
            .order_by(runs.c.finished_at.desc())
            .limit(limit)
        )
        return [(r[0], r[1], r[2]) for r in self._all("computing job stats", stmt)]

    def percentiles(
        self, start: dt.datetime, end: dt.datetime, *, limit: int, quantiles: Sequence[float]
    ) -> dict[str, tuple[list[float], int]] | None:
        """Per job, the ``quantiles`` (nearest rank) of the durations :meth:`durations`
        reads, and how many there were, computed by the database (PostgreSQL: from the
        finished index alone, without sending the sample); None on other databases."""
        if self.store.dialect.name != "postgresql":
            return None
        span = sa.func.greatest(sa.extract("epoch", runs.c.finished_at - runs.c.last_run_at), 0)
        sample = (
            sa.select(runs.c.job, span.label("span"))
            .where(
                runs.c.finished_at >= start,
                runs.c.finished_at <= end,
                runs.c.status == RunStatus.SUCCEEDED.value,
                runs.c.last_run_at.is_not(None),
            )
            .order_by(runs.c.finished_at.desc())
            .limit(limit)
            .subquery()
        )
        # percentile_disc is the nearest-rank method: the same values as Python's.
        stmt = sa.select(
            sample.c.job,
            *(sa.func.percentile_disc(q).within_group(sample.c.span) for q in quantiles),
            sa.func.count(),
        ).group_by(sample.c.job)
        return {
            r[0]: ([float(v) for v in r[1:-1]], int(r[-1]))
            for r in self._all("computing job stats", stmt)
        }

    def waiting(self, *, after: tuple[dt.datetime, int] | None, limit: int) -> list[SummaryRow]:
        """Runs waiting for their due time (``pending`` or ``scheduled``), soonest
        first, after the (run_at, id) ``after``."""
        conditions: list[sa.ColumnElement[bool]] = [
            runs.c.status.in_(WAITING),
            runs.c.run_at.is_not(None),
        ]
        if after is not None:
            at, run_id = after
            conditions.append(
                sa.or_(runs.c.run_at > at, sa.and_(runs.c.run_at == at, runs.c.id > run_id))
            )
        stmt = sa.select(*self._columns()).where(*conditions).order_by(runs.c.run_at, runs.c.id)
        return self._summaries("listing scheduled runs", stmt.limit(limit))

    def waiting_counts(self, edges: Sequence[dt.datetime]) -> list[int]:
        """How many waiting runs fall due before ``edges[0]``, between consecutive
        edges, and after the last one."""
        due = runs.c.run_at
        cases = [sa.case((due < edges[0], 1), else_=0)]
        cases += [
            sa.case((sa.and_(due >= lo, due < hi), 1), else_=0)
            for lo, hi in itertools.pairwise(edges)
        ]
        cases.append(sa.case((due >= edges[-1], 1), else_=0))
        stmt = sa.select(*(sa.func.coalesce(sa.func.sum(c), 0) for c in cases)).where(
            runs.c.status.in_(WAITING), due.is_not(None)
        )
        return [int(c) for c in self._all("counting scheduled runs", stmt)[0]]
