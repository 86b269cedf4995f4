"""Read-only queries for the people who operate runs: the SQL under ``acidic runs``,
``acidic stats`` and the dashboard.

Runs by selection with a cursor, one run with its history and signals, counts by
status and queue, activity over time slices. Every query is SQLAlchemy Core on the
tables of :mod:`._schema`, with bound parameters; what differs between databases (an
exact substring search) is a :class:`._dialects.Dialect` hook. Nothing here writes,
and nothing here interprets what it reads: rows come back as stored (JSON still
text), and :mod:`acidic._admin` decodes, redacts and presents them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._run import RunStatus
from ._report_queries import ReportQueries
from ._schema import IN_FLIGHT, WAITING, history, runs, signals, workers

if TYPE_CHECKING:
    from ._store import Store

__all__ = [
    "Activity",
    "FleetScope",
    "Queries",
    "Selection",
    "SignalRow",
    "StepEvent",
    "StoredRun",
    "SummaryRow",
]


class Selection(Protocol):
    """Which runs a query selects (:class:`acidic._admin.RunFilter` is one). Empty
    fields select everything; fields combine with AND, values within one with OR."""

    @property
    def statuses(self) -> tuple[str, ...]: ...

    @property
    def jobs(self) -> tuple[str, ...]: ...

    #: ``None`` among the queues selects inline runs (no queue).
    @property
    def queues(self) -> tuple[str | None, ...]: ...

    @property
    def key_prefix(self) -> str | None: ...

    @property
    def key_contains(self) -> str | None: ...

    #: Key, arguments or error containing this text.
    @property
    def text(self) -> str | None: ...

    #: With ``text``: the jobs whose arguments are searched (None: every job's).
    @property
    def text_args_jobs(self) -> tuple[str, ...] | None: ...

    #: Runs created, claimed or finished at or after this time.
    @property
    def since(self) -> dt.datetime | None: ...


@dataclass(frozen=True, slots=True)
class FleetScope:
    """What the fleet filters of a selection (``due``, ``orphaned``, ``unknown_job``)
    are judged against: the time, and the (queue, job) pairs of due runs that no live
    worker knows (found by :mod:`acidic._admin` from the registry)."""

    now: dt.datetime
    unknown: tuple[tuple[str, str], ...] = ()


class SummaryRow(NamedTuple):
    """A run's columns that a list shows (its error still JSON text)."""

    key: str
    job: str
    status: str
    queue: str | None
    priority: int
    attempts: int
    attempt_limit: int | None
    recovery_point: str | None
    created_at: dt.datetime
    last_run_at: dt.datetime | None
    finished_at: dt.datetime | None
    run_at: dt.datetime | None
    locked_at: dt.datetime | None
    error: str | None
    id: int
    lock_expires_at: dt.datetime | None = None
    owner: str | None = None
    executor: str | None = None


class StepEvent(NamedTuple):
    """One event of a run's history, oldest first (its error still JSON text)."""

    step: str
    event: str
    at: dt.datetime
    attempt: int
    error: str | None


class SignalRow(NamedTuple):
    """A signal delivered to a run (its payload is not read: it may hold secrets)."""

    name: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class StoredRun:
    """One run as stored: its summary, its JSON columns as text, its history and
    signals, read in one transaction."""

    summary: SummaryRow
    args: str
    ctx: str
    result: str | None
    steps: str
    events: list[StepEvent]
    signals: list[SignalRow]


@dataclass(frozen=True, slots=True)
class Activity:
    """Counts per time slice: runs that succeeded, step errors recorded."""

    succeeded: list[int]
    errors: list[int]


_SUMMARY_COLUMNS = (
    runs.c.idempotency_key,
    runs.c.job,
    runs.c.status,
    runs.c.queue,
    runs.c.priority,
    runs.c.attempts,
    runs.c.attempt_limit,
    runs.c.recovery_point,
    runs.c.created_at,
    runs.c.last_run_at,
    runs.c.finished_at,
    runs.c.run_at,
    runs.c.locked_at,
    runs.c.error,
    runs.c.id,
    runs.c.lock_expires_at,
    runs.c.owner,
    runs.c.executor,
)
_DISTINCT = {"job": runs.c.job, "queue": runs.c.queue}
#: What ``app.prune`` deletes once old enough.
_PRUNABLE = (RunStatus.SUCCEEDED.value, RunStatus.CANCELLED.value)


class Queries(ReportQueries):
    """The read-only queries of one :class:`Store`; every method checks the schema
    first and reports a database failure as :class:`acidic.StorageError`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[Connection]:
        """A read-only transaction (no write lock on SQLite), rolled back at the end."""
        self.store.check_schema()
        with (
            self.store.translated(doing),
            self.store.engine.connect().execution_options(acidic_read_only=True) as conn,
        ):
            self.store.dialect.prepare_report(conn)
            yield conn
            conn.rollback()

    def _all(self, doing: str, stmt: sa.Executable) -> list[Any]:
        with self._reading(doing) as conn:
            return list(conn.execute(stmt).all())

    def _columns(self) -> tuple[sa.ColumnElement[Any], ...]:
        return _SUMMARY_COLUMNS

    def _summaries(self, doing: str, stmt: sa.Executable) -> list[SummaryRow]:
        return [SummaryRow._make(r) for r in self._all(doing, stmt)]

    def _where(
        self, selection: Selection, scope: FleetScope | None = None
    ) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = self._fleet_where(selection, scope)
        if selection.statuses:
            conditions.append(runs.c.status.in_(selection.statuses))
        if selection.jobs:
            conditions.append(runs.c.job.in_(selection.jobs))
        if selection.queues:
            named = [q for q in selection.queues if q is not None]
            either = [runs.c.queue.in_(named)] if named else []
            if None in selection.queues:
                either.append(runs.c.queue.is_(None))
            conditions.append(sa.or_(*either))
        if selection.key_prefix:
            prefix = selection.key_prefix
            # LIKE lets an index help; substr keeps it exact where LIKE ignores case (SQLite).
            conditions.append(runs.c.idempotency_key.startswith(prefix, autoescape=True))
            conditions.append(sa.func.substr(runs.c.idempotency_key, 1, len(prefix)) == prefix)
        if selection.key_contains:
            in_key = self._contains(runs.c.idempotency_key, selection.key_contains)
            conditions.append(self._searched([in_key]))
        if selection.text:
            contains = self._contains
            in_args = contains(runs.c.args, selection.text)
            if selection.text_args_jobs is not None:
                in_args = sa.and_(runs.c.job.in_(selection.text_args_jobs), in_args)
            conditions.append(
                self._searched(
                    [contains(runs.c.idempotency_key, selection.text), in_args],
                    # NULL (no error) is not "does not contain": say false outright.
                    sa.and_(runs.c.error.is_not(None), contains(runs.c.error, selection.text)),
                )
            )
        if selection.since is not None:
            conditions.append(
                sa.func.coalesce(runs.c.finished_at, runs.c.last_run_at, runs.c.created_at)
                >= selection.since
            )
        return conditions

    def _searched(
        self, arms: list[sa.ColumnElement[bool]], error: sa.ColumnElement[bool] | None = None
    ) -> sa.ColumnElement[bool]:
        """Any of ``arms`` (searches in the key or the arguments), or ``error``.

        On PostgreSQL the trigram indexes of keys and arguments leave out the runs in
        flight (migration 0012): each arm is asked of the other runs, where its index
        serves it, and all of them of the runs in flight, which
        ``acidic_runs_in_flight_idx`` lists. The planner proves a partial index usable
        only from a condition in the same arm of an OR, with the statuses written as
        literals, hence one flat OR.
        """
        either = list(arms)
        if self.store.dialect.name == "postgresql":
            settled = runs.c.status.not_in(IN_FLIGHT)
            either = [sa.and_(settled, arm) for arm in arms]
            either.append(sa.and_(runs.c.status.in_(IN_FLIGHT), sa.or_(*arms)))
        if error is not None:
            either.append(error)
        return either[0] if len(either) == 1 else sa.or_(*either)

    def _contains(self, column: sa.ColumnElement[str], text: str) -> sa.ColumnElement[bool]:
        """``column`` contains ``text`` exactly (case included)."""
        if self.store.dialect.name == "postgresql":
            # LIKE is exact on PostgreSQL (case-sensitive; % _ and \ escaped here), and the
            # trigram indexes (0011, 0012) serve it, where strpos reads every row.
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return column.like(f"%{escaped}%", escape="\\")
        return self.store.dialect.contains(column, text)

    @staticmethod
    def _fleet_where(
        selection: Selection, scope: FleetScope | None
    ) -> list[sa.ColumnElement[bool]]:
        """The conditions of the fleet filters (read with getattr: a selection may not
        have them)."""
        due, orphaned, unknown = (
            bool(getattr(selection, name, False)) for name in ("due", "orphaned", "unknown_job")
        )
        if not (due or orphaned or unknown):
            return []
        now = scope.now if scope is not None else dt.datetime.now(dt.UTC)
        conditions: list[sa.ColumnElement[bool]] = []
        if due or unknown:
            conditions += [runs.c.status.in_(WAITING), runs.c.run_at <= now]
        if unknown:
            pairs = scope.unknown if scope is not None else ()
            conditions.append(
                sa.or_(*(sa.and_(runs.c.queue == q, runs.c.job == j) for q, j in pairs))
                if pairs
                else sa.false()
            )
        if orphaned:
            live_owner = sa.exists().where(workers.c.id == runs.c.owner, workers.c.gone_at > now)
            conditions += [
                runs.c.status == sa.literal_column("'running'"),
                sa.or_(
                    runs.c.lock_expires_at <= now,
                    sa.and_(runs.c.owner.is_not(None), ~live_owner),
                ),
            ]
        return conditions

    def _sliced_counts(
        self,
        edges: Sequence[dt.datetime],
        column: sa.ColumnElement[Any],
        *where: sa.ColumnElement[bool],
    ) -> list[int]:
        """:meth:`_sliced` on PostgreSQL: one count per slice, each a range of a covering
        index (0011), read from the index alone. A CASE per slice evaluated on every row
        cost several times the scan itself (140 ms of 160 for a day of a million runs)."""
        table = column.table
        last = len(edges) - 2
        counts = [
            sa.select(sa.func.count())
            .select_from(table)
            .where(*where, column >= lo, column <= hi if i == last else column < hi)
            .scalar_subquery()
            for i, (lo, hi) in enumerate(itertools.pairwise(edges))
        ]
        return [int(c) for c in self._all("computing stats", sa.select(*counts))[0]]

    # -- runs -------------------------------------------------------------------------

    def page(
        self,
        selection: Selection,
        *,
        limit: int,
        before_id: int | None = None,
        scope: FleetScope | None = None,
    ) -> list[SummaryRow]:
        """At most ``limit`` selected runs, newest first, older than ``before_id``."""
        conditions = self._where(selection, scope)
        if before_id is not None:
            conditions.append(runs.c.id < before_id)
        stmt = (
            sa.select(*_SUMMARY_COLUMNS).where(*conditions).order_by(runs.c.id.desc()).limit(limit)
        )
        return [SummaryRow._make(r) for r in self._all("listing runs", stmt)]

    def count(
        self, selection: Selection, scope: FleetScope | None = None, at_most: int | None = None
    ) -> int:
        """How many runs are selected (counting stops past ``at_most``, when given: a
        page that shows "10,000+" need not read a million rows)."""
        where = self._where(selection, scope)
        if at_most is None:
            stmt = sa.select(sa.func.count()).select_from(runs).where(*where)
        else:
            first = sa.select(runs.c.id).where(*where).limit(at_most + 1).subquery()
            stmt = sa.select(sa.func.count()).select_from(first)
        return int(self._all("counting runs", stmt)[0][0])

    def keys(self, selection: Selection, scope: FleetScope | None = None) -> list[str]:
        """The keys of the selected runs, oldest first."""
        stmt = (
            sa.select(runs.c.idempotency_key)
            .where(*self._where(selection, scope))
            .order_by(runs.c.id)
        )
        return [r[0] for r in self._all("selecting runs", stmt)]

    def summary(self, key: str) -> SummaryRow | None:
        """One run's summary, or None if no run has ``key``."""
        stmt = sa.select(*_SUMMARY_COLUMNS).where(runs.c.idempotency_key == key)
        rows = self._all(f"reading key {key!r}", stmt)
        return SummaryRow._make(rows[0]) if rows else None

    def run(self, key: str) -> StoredRun | None:
        """One run with its history and signals, or None if no run has ``key``."""
        with self._reading(f"reading key {key!r}") as conn:
            row = conn.execute(
                sa.select(
                    *_SUMMARY_COLUMNS, runs.c.args, runs.c.ctx, runs.c.result, runs.c.steps
                ).where(runs.c.idempotency_key == key)
            ).first()
            if row is None:
                return None
            summary = SummaryRow._make(row[: len(_SUMMARY_COLUMNS)])
            events = conn.execute(
                sa.select(
                    history.c.step,
                    history.c.event,
                    history.c.at,
                    history.c.attempt,
                    history.c.error,
                )
                .where(history.c.run_id == summary.id)
                .order_by(history.c.id)
            ).all()
            sent = conn.execute(
                sa.select(signals.c.name, signals.c.created_at)
                .where(signals.c.run_id == summary.id)
                .order_by(signals.c.id)
            ).all()
        args, ctx, result, steps = row[len(_SUMMARY_COLUMNS) :]
        return StoredRun(
            summary=summary,
            args=args,
            ctx=ctx,
            result=result,
            steps=steps,
            events=[StepEvent._make(e) for e in events],
            signals=[SignalRow._make(s) for s in sent],
        )

    def distinct(self, column: Literal["job", "queue"]) -> list[str]:
        """The distinct values of ``job`` or ``queue`` among stored runs, sorted."""
        col = _DISTINCT[column]
        stmt = sa.select(col).where(col.is_not(None)).distinct().order_by(col)
        return [r[0] for r in self._all(f"listing {column}s", stmt)]

    def prunable(self, finished_before: dt.datetime) -> int:
        """How many runs ``app.prune`` would delete with this cut-off."""
        stmt = (
            sa.select(sa.func.count())
            .select_from(runs)
            .where(runs.c.status.in_(_PRUNABLE), runs.c.finished_at < finished_before)
        )
        return int(self._all("counting prunable runs", stmt)[0][0])

    # -- stats ------------------------------------------------------------------------

    def counts(self) -> list[tuple[str | None, str, int]]:
        """(queue, status, how many runs) for every pair that has runs."""
        stmt = sa.select(runs.c.queue, runs.c.status, sa.func.count()).group_by(
            runs.c.queue, runs.c.status
        )
        return [(r[0], r[1], int(r[2])) for r in self._all("counting runs", stmt)]

    def due(self, now: dt.datetime) -> list[tuple[str, int, dt.datetime]]:
        """(queue, how many, earliest due time) of the pending and scheduled runs due
        at ``now``, per queue that has any (telemetry's queue depth and age)."""
        stmt = (
            sa.select(runs.c.queue, sa.func.count(), sa.func.min(runs.c.run_at))
            .where(
                runs.c.queue.is_not(None),
                runs.c.status.in_(WAITING),
                runs.c.run_at <= now,
            )
            .group_by(runs.c.queue)
        )
        return [(r[0], int(r[1]), r[2]) for r in self._all("measuring queues", stmt)]

    def activity(self, edges: Sequence[dt.datetime]) -> Activity:
        """Runs that succeeded and step errors recorded in each slice between
        consecutive ``edges`` (a slice holds its start, not its end; the last one holds
        both)."""
        done = self._sliced(edges, runs.c.finished_at, runs.c.status == RunStatus.SUCCEEDED.value)
        # Literal: a partial index (0004) is used only for a value known when planning.
        errored = history.c.event == sa.literal_column("'errored'")
        errors = self._sliced(edges, history.c.at, errored)
        return Activity(done, errors)

    def _sliced(
        self,
        edges: Sequence[dt.datetime],
        column: sa.ColumnElement[Any],
        *where: sa.ColumnElement[bool],
    ) -> list[int]:
        start, end = edges[0], edges[-1]
        if self.store.dialect.name == "postgresql":
            return self._sliced_counts(edges, column, *where)
        # One scan, one CASE per slice: portable where date_trunc & co are not.
        sums = [
            sa.func.coalesce(
                sa.func.sum(sa.case((sa.and_(column >= lo, column < hi), 1), else_=0)), 0
            )
            for lo, hi in itertools.pairwise(edges)
        ]
        last = sa.func.coalesce(sa.func.sum(sa.case((column == end, 1), else_=0)), 0)
        stmt = sa.select(*sums, last).where(*where, column >= start, column <= end)
        counts = [int(c) for c in self._all("computing stats", stmt)[0]]
        counts[-2] += counts[-1]  # an event exactly at the end belongs to the last slice
        return counts[:-1]
