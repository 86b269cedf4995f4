""":class:`Admin`: the read side of operating runs, over the manager's read-only queries.

It asks :class:`acidic._storage._queries.Queries` (through ``app.manager.queries``) for
rows as stored, and turns them into records: errors and JSON decoded, fields redacted,
history paired into a timeline, activity cut into slices.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from .._app import App
from .._encoding import loads
from .._engine._views import executor_of
from .._errors import AcidicError, InvalidArgumentError, SerializationError
from .._job import Job
from .._run import RunError, RunStatus
from .._storage._queries import FleetScope, StepEvent, SummaryRow
from .._storage._report_queries import ESTIMATE_OVER
from ._filters import RunFilter, check_int
from ._fleet import FleetView, UnknownJob, list_queues, list_workers, needs_view, unknown_jobs
from ._format import to_jsonable
from ._insights import JobStats, Schedule, due_edges, job_stats, parse_cursor, schedule
from ._records import (
    REDACTED,
    Bucket,
    QueueInfo,
    RunDetail,
    RunPage,
    RunSummary,
    SignalInfo,
    Stats,
    StepSpan,
    WorkerInfo,
)

__all__ = ["ESTIMATE_OVER", "MAX_BUCKETS", "MAX_PAGE", "Admin", "timeline"]

#: Most runs one page of :meth:`Admin.list_runs` returns.
MAX_PAGE = 1000
#: Most slices :meth:`Admin.stats` cuts its window into.
MAX_BUCKETS = 200
#: The filter that selects every run.
ALL_RUNS = RunFilter()


def _error(text: str | None) -> RunError | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not an object")
    except (ValueError, TypeError) as exc:
        # A list must still show the other runs (and this one) if a row was edited by hand.
        return RunError("(unreadable)", f"the stored error cannot be read: {exc}", text, None)
    return RunError.from_json(data)


def _summary(row: SummaryRow) -> RunSummary:
    return RunSummary(
        key=row.key,
        job=row.job,
        status=row.status,
        queue=row.queue,
        priority=row.priority,
        attempts=row.attempts,
        max_attempts=row.attempt_limit,
        recovery_point=row.recovery_point,
        created_at=row.created_at,
        last_run_at=row.last_run_at,
        finished_at=row.finished_at,
        run_at=row.run_at,
        locked_at=row.locked_at,
        error=_error(row.error),
        id=row.id,
        lock_expires_at=row.lock_expires_at,
        owner=row.owner,
        executor=executor_of(row.executor, row.queue),
    )


def _decoded(
    key: str, what: str, text: str, decode: Callable[[str], Any], kind: type = object
) -> Any:
    try:
        value = decode(text)
        if not isinstance(value, kind):
            raise TypeError(f"not a JSON {'object' if kind is dict else 'array'}")
        return value
    except (ValueError, TypeError, SerializationError) as exc:
        raise AcidicError(
            f"key {key!r}: its stored {what} cannot be read ({exc}); was the row edited "
            "outside acidic?"
        ) from exc


def _redacted(data: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    hidden = set(names)
    return {k: (REDACTED if k in hidden else to_jsonable(v)) for k, v in data.items()}


def timeline(events: Sequence[StepEvent], *, running: bool) -> list[StepSpan]:
    """Pair each ``started`` event with the event that ended it. ``running``: the run
    executes now, so a last unended start is the step in progress."""
    spans: list[StepSpan] = []
    open_start: StepEvent | None = None
    for e in events:
        error = _error(e.error)
        if e.event == "started":
            if open_start is not None:
                spans.append(
                    StepSpan(
                        open_start.step, open_start.attempt, open_start.at, None, "interrupted"
                    )
                )
            open_start = e
            continue
        if open_start is not None and open_start.step == e.step:
            spans.append(StepSpan(e.step, open_start.attempt, open_start.at, e.at, e.event, error))
        else:  # an end without its start (history written by an older version)
            spans.append(StepSpan(e.step, e.attempt, e.at, e.at, e.event, error))
        open_start = None
    if open_start is not None:
        outcome = "running" if running else "interrupted"
        spans.append(StepSpan(open_start.step, open_start.attempt, open_start.at, None, outcome))
    return spans


def _window(name: str, value: object) -> dt.timedelta:
    if not isinstance(value, dt.timedelta):
        raise InvalidArgumentError(f"{name} must be a datetime.timedelta, not {value!r}")
    if value.total_seconds() <= 0:
        raise InvalidArgumentError(f"{name} must be longer than 0 seconds, not {value}")
    return value


class Admin:
    """Read-only queries on an App's runs, for the CLI and the dashboard.

    Nothing here writes: actions go through :class:`acidic.App` (``retry``, ``resume``,
    ``cancel``, ``prune``), which refuse with :class:`acidic.RunStateError`. Jobs may
    name fields to hide (``redact``); every record returned shows their values as
    :data:`REDACTED`, so a caller cannot show them by mistake.

    ``hide_unregistered``: for runs of a job that ``app`` does not register, hide the
    arguments and context altogether (their ``redact`` list is unknown). The dashboard
    sets it; the CLI, used by people who hold the database URL, does not.

    Bad arguments raise :class:`acidic.InvalidArgumentError` (also a ValueError and a
    TypeError).
    """

    def __init__(self, app: App, *, hide_unregistered: bool = False) -> None:
        self.app = app
        self.hide_unregistered = hide_unregistered
        self.queries = app.manager.queries
        self.fleet = app.manager.fleet

    # -- the fleet ----------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self.app.manager.clock()

    def workers(self) -> list[WorkerInfo]:
        """Every registered worker with the keys of the runs it holds: live ones first,
        then gone ones (missed heartbeats) until they are pruned."""
        return list_workers(self.fleet, self._now())

    def queues(self) -> list[QueueInfo]:
        """The App's queues and any other queue with runs or a pause: depth, due,
        running, the age of the oldest due run, paused."""
        return list_queues(self.fleet, self.app.queues, self._now())

    def pause_queue(self, name: str) -> bool:
        """:meth:`acidic.App.pause_queue`: False if it was paused already."""
        return self.app.pause_queue(name)

    def resume_queue(self, name: str) -> bool:
        """:meth:`acidic.App.resume_queue`: False if it was not paused."""
        return self.app.resume_queue(name)

    def unknown_jobs(self) -> list[UnknownJob]:
        """Due runs, by queue and job, that no live worker knows."""
        return unknown_jobs(self.fleet, FleetView.read(self.fleet, self._now()))

    def scope(self, flt: RunFilter) -> FleetScope | None:
        """What the fleet filters of ``flt`` (due, orphaned, unknown job) compare with
        now: the time and the (queue, job) pairs no live worker knows; None without them."""
        return self._scope(flt)

    def _scope(self, flt: RunFilter) -> FleetScope | None:
        if not (flt.due or flt.orphaned or flt.unknown_job):
            return None
        now = self._now()
        pairs: tuple[tuple[str, str], ...] = ()
        if flt.unknown_job:
            view = FleetView.read(self.fleet, now)
            pairs = tuple((u.queue, u.job) for u in unknown_jobs(self.fleet, view))
        return FleetScope(now, pairs)

    def _annotated(self, summaries: list[RunSummary]) -> list[RunSummary]:
        if not needs_view(summaries):
            return [FleetView(self._now(), {}, {}).annotate(s) for s in summaries]
        view = FleetView.read(self.fleet, self._now())
        return [view.annotate(s) for s in summaries]

    # -- runs -------------------------------------------------------------------------

    def list_runs(
        self, flt: RunFilter = ALL_RUNS, *, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """Runs matching ``flt``, newest first, ``limit`` at most, after ``cursor`` (the
        ``next_cursor`` of the page before)."""
        check_int("limit", limit, 1, MAX_PAGE)
        before = None
        if cursor is not None:
            if not isinstance(cursor, str):
                raise InvalidArgumentError(
                    f"cursor must be a str (a page's next_cursor), not {cursor!r}"
                )
            if not cursor.isdigit():
                raise InvalidArgumentError(
                    f"invalid cursor {cursor!r}: use the next_cursor of a page"
                )
            before = int(cursor)
        found = self.queries.page(flt, limit=limit + 1, before_id=before, scope=self._scope(flt))
        more = len(found) > limit
        rows = self._annotated([_summary(r) for r in found[:limit]])
        return RunPage(rows, str(rows[-1].id) if more and rows else None)

    def count_runs(self, flt: RunFilter = ALL_RUNS, *, at_most: int | None = None) -> int:
        """How many runs match ``flt``; with ``at_most``, counting stops there (the
        result is then at most ``at_most + 1``: "more than ``at_most``")."""
        if at_most is not None:
            check_int("at_most", at_most, 1, 2**31 - 1)
        return self.queries.count(flt, self._scope(flt), at_most)

    def keys(self, flt: RunFilter) -> list[str]:
        """The keys of every run matching ``flt``, oldest first (for bulk actions)."""
        return self.queries.keys(flt, self._scope(flt))

    def summary(self, key: str) -> RunSummary | None:
        """One run's summary, or None."""
        row = self.queries.summary(key)
        return None if row is None else self._annotated([_summary(row)])[0]

    def job_class(self, job: str) -> type[Job] | None:
        """The class registered for ``job`` with the App, if any."""
        return self.app.jobs.get(job)

    def steps_of(self, summary: RunSummary, stored: Sequence[str]) -> list[str]:
        """The steps a run may be resumed from: its registered job's, else the stored list."""
        cls = self.job_class(summary.job)
        if cls is not None:
            return cls.__acidic_definition__.step_names
        return list(stored)

    def detail(self, key: str) -> RunDetail | None:
        """One run with its timeline and signals, redacted; None if no run has ``key``."""
        stored = self.queries.run(key)
        if stored is None:
            return None
        summary = self._annotated([_summary(stored.summary)])[0]
        cls = self.job_class(summary.job)
        names: tuple[str, ...] = tuple(getattr(cls, "redact", ())) if cls is not None else ()
        args: dict[str, Any] | None = _redacted(
            _decoded(key, "arguments", stored.args, json.loads, dict), names
        )
        ctx: dict[str, Any] | None = _redacted(
            _decoded(key, "context", stored.ctx, loads, dict), names
        )
        hidden = None
        if cls is None and self.hide_unregistered:
            args = ctx = None
            hidden = (
                f"job {summary.job} is not registered with this App, so the fields it redacts "
                "are unknown: its arguments and context are not shown (serve the App that "
                "registers it)"
            )
        stored_steps = _decoded(key, "step list", stored.steps, json.loads, list)
        return RunDetail(
            summary=summary,
            args=args,
            ctx=ctx,
            result=None
            if stored.result is None
            else to_jsonable(_decoded(key, "result", stored.result, loads)),
            steps=stored_steps,
            timeline=timeline(stored.events, running=summary.status == RunStatus.RUNNING),
            signals=[SignalInfo(s.name, s.created_at) for s in stored.signals],
            hidden_reason=hidden,
            redacted=names,
            resumable_steps=self.steps_of(summary, stored_steps),
        )

    def distinct(self, column: Literal["job", "queue"]) -> list[str]:
        """The distinct values of ``job`` or ``queue`` among stored runs (for filters)."""
        if column not in ("job", "queue"):
            raise InvalidArgumentError(f"distinct() takes 'job' or 'queue', not {column!r}")
        return self.queries.distinct(column)

    def prunable(self, older_than: dt.timedelta, now: dt.datetime | None = None) -> int:
        """How many runs ``app.prune(older_than)`` would delete now."""
        if not isinstance(older_than, dt.timedelta):
            raise InvalidArgumentError(
                f"older_than must be a datetime.timedelta, not {older_than!r}"
            )
        now = now or dt.datetime.now(dt.UTC)
        return self.queries.prunable(now - older_than)

    # -- job statistics and the schedule ----------------------------------------------

    def job_stats(
        self, window: dt.timedelta = dt.timedelta(hours=24), *, now: dt.datetime | None = None
    ) -> list[JobStats]:
        """Each job's runs over ``window``: ended by status, open by status, p50/p95
        duration and failure rate (see :mod:`._insights`)."""
        return job_stats(self.queries, _window("the window", window), now=now)

    def schedule(
        self, *, limit: int = 50, cursor: str | None = None, now: dt.datetime | None = None
    ) -> Schedule:
        """Runs waiting for their due time, soonest first, ``limit`` a page after
        ``cursor`` (a schedule's ``next_cursor``), with counts per coming period."""
        check_int("limit", limit, 1, MAX_PAGE)
        after = None
        if cursor is not None:
            after = parse_cursor(cursor) if isinstance(cursor, str) else None
            if after is None:
                raise InvalidArgumentError(
                    f"invalid cursor {cursor!r}: use the next_cursor of a schedule"
                )
        now = now or dt.datetime.now(dt.UTC)
        rows = [_summary(r) for r in self.queries.waiting(after=after, limit=limit + 1)]
        counts = self.queries.waiting_counts(due_edges(now))
        return schedule(rows, counts, now=now, limit=limit)

    # -- stats ------------------------------------------------------------------------

    def stats(
        self,
        window: dt.timedelta = dt.timedelta(hours=1),
        *,
        buckets: int = 12,
        now: dt.datetime | None = None,
        estimate: bool = False,
    ) -> Stats:
        """Counts by status and by queue now; successes and errors over ``window``
        (ending ``now``), in total and in ``buckets`` equal slices.

        ``estimate``: on PostgreSQL, a status with more than
        :data:`~acidic._storage._report_queries.ESTIMATE_OVER` runs is counted from the
        table's statistics (``Stats.estimated`` names them): a dashboard refreshed every
        few seconds need not read a million succeeded runs each time."""
        _window("the stats window", window)
        check_int("buckets", buckets, 1, MAX_BUCKETS)
        now = now or dt.datetime.now(dt.UTC)
        start = now - window
        width = window / buckets
        edges = [start + width * i for i in range(buckets + 1)]
        edges[-1] = now

        by_status = {s.value: 0 for s in RunStatus}
        by_queue: dict[str | None, dict[str, int]] = {}
        estimated: frozenset[str] = frozenset()
        if estimate:
            counted, estimated = self.queries.counts_estimated()
        else:
            counted = self.queries.counts()
        for queue, status, count in counted:
            by_status[status] = by_status.get(status, 0) + count
            by_queue.setdefault(queue, {})[status] = count
        ordered = dict(sorted(by_queue.items(), key=lambda kv: (kv[0] is None, kv[0] or "")))
        activity = self.queries.activity(edges)
        return Stats(
            now=now,
            window=window,
            by_status=by_status,
            by_queue=ordered,
            succeeded=sum(activity.succeeded),
            errors=sum(activity.errors),
            buckets=[
                Bucket(edges[i], activity.succeeded[i], activity.errors[i]) for i in range(buckets)
            ],
            estimated=estimated,
        )
