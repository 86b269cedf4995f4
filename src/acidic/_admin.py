"""Reading runs for the people who operate them.

The query layer under ``acidic runs``, ``acidic stats`` and the dashboard: runs by
filter with a cursor, one run with its step timeline, counts and rates over time
windows, and the keys a bulk action selects. Every query is SQLAlchemy Core on the
tables of :mod:`acidic._storage._schema`, with bound parameters, the same on every
database. Nothing here writes: actions go through :class:`acidic.App`
(``retry``, ``resume``, ``cancel``, ``prune``), which keep their own checks.

Jobs may name fields to hide (``redact``); :class:`Admin` replaces their values by
:data:`REDACTED` in everything it returns, so a caller cannot show them by mistake.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from ._app import App
from ._encoding import loads
from ._errors import AcidicError, SerializationError
from ._job import Job
from ._run import RunError, RunStatus
from ._storage._schema import history, runs, signals

__all__ = [
    "REDACTED",
    "Admin",
    "Bucket",
    "RunDetail",
    "RunFilter",
    "RunPage",
    "RunSummary",
    "SignalInfo",
    "Stats",
    "StepSpan",
    "parse_duration",
    "parse_since",
    "to_jsonable",
]

#: What a redacted argument or context value is shown as.
REDACTED = "[redacted]"
#: Most runs one page of :meth:`Admin.list_runs` returns.
MAX_PAGE = 1000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``"90"``, ``"30s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` as a timedelta;
    anything else raises ``ValueError`` saying what is accepted."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: give a number with an optional unit s, m, h, d or w "
            "(e.g. 30s, 15m, 12h, 7d)"
        )
    return dt.timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """A point in time: a duration ago (``"1h"``) or an ISO 8601 time (UTC if naive)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 12h, 7d) nor an ISO 8601 time "
            "(2025-01-31T12:00:00+00:00)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def to_jsonable(value: Any) -> Any:
    """A decoded context value, result or argument as plain JSON data, for display."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [to_jsonable(v) for v in value]
    return repr(value)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to select; empty fields select everything. Fields combine with AND,
    the values within one field with OR."""

    statuses: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    #: Queue names; ``None`` in the tuple selects inline runs (started by ``app.run``).
    queues: tuple[str | None, ...] = ()
    #: Keys starting with this text (compared exactly, case included).
    key_prefix: str | None = None
    #: Keys containing this text (compared exactly, case included).
    key_contains: str | None = None
    #: Runs created, claimed or finished at or after this time.
    since: dt.datetime | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.statuses if s not in {m.value for m in RunStatus}]
        if unknown:
            known = ", ".join(s.value for s in RunStatus)
            raise AcidicError(f"unknown status {unknown[0]!r}; the statuses are {known}")
        if self.since is not None and self.since.tzinfo is None:
            raise AcidicError("since must be a timezone-aware datetime")

    @property
    def empty(self) -> bool:
        """True when the filter selects every run."""
        return not (
            self.statuses
            or self.jobs
            or self.queues
            or self.key_prefix
            or self.key_contains
            or self.since
        )

    def narrowed(self, statuses: Sequence[str]) -> RunFilter | None:
        """This filter restricted to ``statuses`` (the ones an action applies to); None
        when it asks only for other statuses."""
        chosen = tuple(s for s in (self.statuses or tuple(statuses)) if s in statuses)
        if not chosen:
            return None
        return RunFilter(
            statuses=chosen,
            jobs=self.jobs,
            queues=self.queues,
            key_prefix=self.key_prefix,
            key_contains=self.key_contains,
            since=self.since,
        )

    def describe(self) -> str:
        """The filter in words, for confirmations and messages."""
        parts = []
        if self.statuses:
            parts.append("status " + "|".join(s or "(none)" for s in self.statuses))
        if self.jobs:
            parts.append("job " + "|".join(self.jobs))
        if self.queues:
            parts.append("queue " + "|".join(q or "(inline)" for q in self.queues))
        if self.key_prefix:
            parts.append(f"key starting with {self.key_prefix!r}")
        if self.key_contains:
            parts.append(f"key containing {self.key_contains!r}")
        if self.since:
            parts.append(f"active since {self.since.isoformat(timespec='seconds')}")
        return ", ".join(parts) or "all runs"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as a list shows it (no arguments, context or history)."""

    key: str
    job: str
    status: str
    queue: str | None
    priority: int
    attempts: int
    max_attempts: int | None
    recovery_point: str | None
    created_at: dt.datetime
    last_run_at: dt.datetime | None
    finished_at: dt.datetime | None
    run_at: dt.datetime | None
    locked_at: dt.datetime | None
    error: RunError | None
    #: The row id: the cursor of pages and the order of runs (newest first).
    id: int = 0

    @property
    def updated_at(self) -> dt.datetime:
        """The run's latest activity: finished, else last claimed, else created."""
        return self.finished_at or self.last_run_at or self.created_at

    def to_json(self) -> dict[str, Any]:
        """As JSON data (times in ISO 8601, UTC)."""
        return {
            "key": self.key,
            "job": self.job,
            "status": self.status,
            "queue": self.queue,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "recovery_point": self.recovery_point,
            "created_at": _iso(self.created_at),
            "last_run_at": _iso(self.last_run_at),
            "finished_at": _iso(self.finished_at),
            "run_at": _iso(self.run_at),
            "locked_at": _iso(self.locked_at),
            "error": None if self.error is None else self.error.to_json(),
        }


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs, newest first; ``next_cursor`` fetches the next (older) page."""

    runs: list[RunSummary]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class StepSpan:
    """One execution of a step: from its ``started`` event to the event that ended it."""

    step: str
    attempt: int
    started_at: dt.datetime
    ended_at: dt.datetime | None
    #: ``succeeded``, ``errored``, ``halted``; ``running`` for the step executing now;
    #: ``interrupted`` when a later execution began without this one ending (a crash).
    outcome: str
    error: RunError | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end; None while it runs or if it never ended."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "step": self.step,
            "attempt": self.attempt,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration_s": self.duration,
            "outcome": self.outcome,
            "error": None if self.error is None else self.error.to_json(),
        }


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """A signal delivered to a run (its payload is not shown: it may hold secrets)."""

    name: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class RunDetail:
    """Everything about one run, redacted as its job asks, ready to show."""

    summary: RunSummary
    #: Arguments as JSON data, redacted; None when hidden (job unknown to the App).
    args: dict[str, Any] | None
    #: Context as JSON data, redacted; None when hidden.
    ctx: dict[str, Any] | None
    result: Any
    steps: list[str]
    timeline: list[StepSpan]
    signals: list[SignalInfo]
    #: Why args and context are hidden, when they are.
    hidden_reason: str | None = None
    #: The names of the fields the job redacts.
    redacted: tuple[str, ...] = ()
    #: Steps the run may be resumed from (the registered job's, else the stored ones).
    resumable_steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            **self.summary.to_json(),
            "args": self.args,
            "ctx": self.ctx,
            "result": self.result,
            "steps": self.steps,
            "timeline": [s.to_json() for s in self.timeline],
            "signals": [{"name": s.name, "created_at": _iso(s.created_at)} for s in self.signals],
            "hidden_reason": self.hidden_reason,
            "redacted": list(self.redacted),
        }


@dataclass(frozen=True, slots=True)
class Bucket:
    """Activity in one slice of a stats window."""

    start: dt.datetime
    #: Runs that succeeded in the slice.
    succeeded: int
    #: Step errors recorded in the slice (each failed attempt, retried or not).
    errors: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts now, and activity over a window ending now."""

    now: dt.datetime
    window: dt.timedelta
    by_status: dict[str, int]
    #: Queue name (``None``: inline runs) -> status -> count.
    by_queue: dict[str | None, dict[str, int]]
    #: Runs that succeeded within the window.
    succeeded: int
    #: Step errors recorded within the window.
    errors: int
    buckets: list[Bucket]

    @property
    def total(self) -> int:
        """All runs stored."""
        return sum(self.by_status.values())

    @property
    def throughput_per_minute(self) -> float:
        """Runs that succeeded per minute over the window."""
        return self.succeeded / max(self.window.total_seconds() / 60, 1e-9)

    @property
    def failure_rate(self) -> float | None:
        """Errors / (successes + errors) within the window; None without either."""
        ended = self.succeeded + self.errors
        return None if ended == 0 else self.errors / ended

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "now": _iso(self.now),
            "window_s": self.window.total_seconds(),
            "total": self.total,
            "by_status": self.by_status,
            "by_queue": [{"queue": q, "by_status": counts} for q, counts in self.by_queue.items()],
            "succeeded": self.succeeded,
            "errors": self.errors,
            "throughput_per_minute": self.throughput_per_minute,
            "failure_rate": self.failure_rate,
            "buckets": [
                {"start": _iso(b.start), "succeeded": b.succeeded, "errors": b.errors}
                for b in self.buckets
            ],
        }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


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
)


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


def _summary(row: Any) -> RunSummary:
    values = list(row)
    values[13] = _error(values[13])
    return RunSummary(*values)


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


def timeline(events: Sequence[Any], *, running: bool) -> list[StepSpan]:
    """Pair each ``started`` event with the event that ended it. ``running``: the run
    executes now, so a last unended start is the step in progress."""
    spans: list[StepSpan] = []
    open_start: Any = None
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


class Admin:
    """Read-only queries on an App's runs, for the CLI and the dashboard.

    ``hide_unregistered``: for runs of a job that ``app`` does not register, hide the
    arguments and context altogether (their ``redact`` list is unknown). The dashboard
    sets it; the CLI, used by people who hold the database URL, does not.
    """

    def __init__(self, app: App, *, hide_unregistered: bool = False) -> None:
        self.app = app
        self.hide_unregistered = hide_unregistered
        self._store = app._store  # same package: the store is the read port

    # -- helpers ----------------------------------------------------------------------

    def _read(
        self, doing: str, stmt: sa.Executable, params: Mapping[str, Any] | None = None
    ) -> Any:
        self._store.check_schema()
        with (
            self._store.translated(doing),
            self._store.engine.connect().execution_options(acidic_read_only=True) as conn,
        ):
            result = conn.execute(stmt, dict(params or {})).all()
            conn.rollback()
        return result

    def _where(self, flt: RunFilter) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if flt.statuses:
            conditions.append(runs.c.status.in_(flt.statuses))
        if flt.jobs:
            conditions.append(runs.c.job.in_(flt.jobs))
        if flt.queues:
            named = [q for q in flt.queues if q is not None]
            either = [runs.c.queue.in_(named)] if named else []
            if None in flt.queues:
                either.append(runs.c.queue.is_(None))
            conditions.append(sa.or_(*either))
        if flt.key_prefix:
            prefix = flt.key_prefix
            # LIKE lets an index help; substr keeps it exact where LIKE ignores case (SQLite).
            conditions.append(runs.c.idempotency_key.startswith(prefix, autoescape=True))
            conditions.append(sa.func.substr(runs.c.idempotency_key, 1, len(prefix)) == prefix)
        if flt.key_contains:
            conditions.append(self._contains(flt.key_contains))
        if flt.since is not None:
            conditions.append(
                sa.func.coalesce(runs.c.finished_at, runs.c.last_run_at, runs.c.created_at)
                >= flt.since
            )
        return conditions

    def _contains(self, text: str) -> sa.ColumnElement[bool]:
        column = runs.c.idempotency_key
        name = self._store.engine.dialect.name
        # Exact substring search: LIKE ignores ASCII case on SQLite.
        if name == "postgresql":
            return sa.func.strpos(column, text) > 0
        if name == "sqlite":
            return sa.func.instr(column, text) > 0
        return sa.func.locate(text, column) > 0

    # -- runs -------------------------------------------------------------------------

    def list_runs(
        self, flt: RunFilter = RunFilter(), *, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """Runs matching ``flt``, newest first, ``limit`` at most, after ``cursor``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise AcidicError(f"limit must be an int from 1 to {MAX_PAGE}, not {limit!r}")
        conditions = self._where(flt)
        if cursor is not None:
            if not cursor.isdigit():
                raise AcidicError(f"invalid cursor {cursor!r}: use the next_cursor of a page")
            conditions.append(runs.c.id < int(cursor))
        stmt = (
            sa.select(*_SUMMARY_COLUMNS)
            .where(*conditions)
            .order_by(runs.c.id.desc())
            .limit(limit + 1)
        )
        rows = [_summary(r) for r in self._read("listing runs", stmt)]
        more = len(rows) > limit
        rows = rows[:limit]
        return RunPage(rows, str(rows[-1].id) if more and rows else None)

    def count_runs(self, flt: RunFilter = RunFilter()) -> int:
        """How many runs match ``flt``."""
        stmt = sa.select(sa.func.count()).select_from(runs).where(*self._where(flt))
        return int(self._read("counting runs", stmt)[0][0])

    def keys(self, flt: RunFilter) -> list[str]:
        """The keys of every run matching ``flt``, oldest first (for bulk actions)."""
        stmt = sa.select(runs.c.idempotency_key).where(*self._where(flt)).order_by(runs.c.id)
        return [r[0] for r in self._read("selecting runs", stmt)]

    def summary(self, key: str) -> RunSummary | None:
        """One run's summary, or None."""
        stmt = sa.select(*_SUMMARY_COLUMNS).where(runs.c.idempotency_key == key)
        rows = self._read(f"reading key {key!r}", stmt)
        return _summary(rows[0]) if rows else None

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
        rows = self._read(
            f"reading key {key!r}",
            sa.select(
                *_SUMMARY_COLUMNS, runs.c.args, runs.c.ctx, runs.c.result, runs.c.steps
            ).where(runs.c.idempotency_key == key),
        )
        if not rows:
            return None
        row = rows[0]
        summary = _summary(row[: len(_SUMMARY_COLUMNS)])
        args_json, ctx_json, result_json, steps_json = row[len(_SUMMARY_COLUMNS) :]
        events = self._read(
            f"reading the history of key {key!r}",
            sa.select(
                history.c.step, history.c.event, history.c.at, history.c.attempt, history.c.error
            )
            .where(history.c.run_id == summary.id)
            .order_by(history.c.id),
        )
        sent = self._read(
            f"reading the signals of key {key!r}",
            sa.select(signals.c.name, signals.c.created_at)
            .where(signals.c.run_id == summary.id)
            .order_by(signals.c.id),
        )
        cls = self.job_class(summary.job)
        names: tuple[str, ...] = tuple(getattr(cls, "redact", ())) if cls is not None else ()
        args: dict[str, Any] | None = _redacted(
            _decoded(key, "arguments", args_json, json.loads, dict), names
        )
        ctx: dict[str, Any] | None = _redacted(
            _decoded(key, "context", ctx_json, loads, dict), names
        )
        hidden = None
        if cls is None and self.hide_unregistered:
            args = ctx = None
            hidden = (
                f"job {summary.job} is not registered with this App, so the fields it redacts "
                "are unknown: its arguments and context are not shown (serve the App that "
                "registers it)"
            )
        stored_steps = _decoded(key, "step list", steps_json, json.loads, list)
        return RunDetail(
            summary=summary,
            args=args,
            ctx=ctx,
            result=None
            if result_json is None
            else to_jsonable(_decoded(key, "result", result_json, loads)),
            steps=stored_steps,
            timeline=timeline(events, running=summary.status == RunStatus.RUNNING),
            signals=[SignalInfo(n, at) for n, at in sent],
            hidden_reason=hidden,
            redacted=names,
            resumable_steps=self.steps_of(summary, stored_steps),
        )

    def distinct(self, column: str) -> list[str]:
        """The distinct values of ``job`` or ``queue`` among stored runs (for filters)."""
        col = {"job": runs.c.job, "queue": runs.c.queue}[column]
        stmt = sa.select(col).where(col.is_not(None)).distinct().order_by(col)
        return [r[0] for r in self._read(f"listing {column}s", stmt)]

    def prunable(self, older_than: dt.timedelta, now: dt.datetime | None = None) -> int:
        """How many runs ``app.prune(older_than)`` would delete now."""
        now = now or dt.datetime.now(dt.UTC)
        stmt = (
            sa.select(sa.func.count())
            .select_from(runs)
            .where(
                runs.c.status.in_((RunStatus.SUCCEEDED.value, RunStatus.CANCELLED.value)),
                runs.c.finished_at < now - older_than,
            )
        )
        return int(self._read("counting prunable runs", stmt)[0][0])

    # -- stats ------------------------------------------------------------------------

    def stats(
        self,
        window: dt.timedelta = dt.timedelta(hours=1),
        *,
        buckets: int = 12,
        now: dt.datetime | None = None,
    ) -> Stats:
        """Counts by status and by queue now; successes and errors over ``window``
        (ending ``now``), in total and in ``buckets`` equal slices."""
        if window.total_seconds() <= 0:
            raise AcidicError("the stats window must be longer than 0 seconds")
        if not 1 <= buckets <= 200:
            raise AcidicError(f"buckets must be from 1 to 200, not {buckets!r}")
        now = now or dt.datetime.now(dt.UTC)
        start = now - window
        width = window / buckets
        edges = [start + width * i for i in range(buckets + 1)]
        edges[-1] = now

        grouped = self._read(
            "counting runs",
            sa.select(runs.c.queue, runs.c.status, sa.func.count()).group_by(
                runs.c.queue, runs.c.status
            ),
        )
        by_status = {s.value: 0 for s in RunStatus}
        by_queue: dict[str | None, dict[str, int]] = {}
        for queue, status, count in grouped:
            by_status[status] = by_status.get(status, 0) + int(count)
            by_queue.setdefault(queue, {})[status] = int(count)
        ordered = dict(sorted(by_queue.items(), key=lambda kv: (kv[0] is None, kv[0] or "")))

        def sliced(column: sa.ColumnElement[Any], *where: sa.ColumnElement[bool]) -> list[int]:
            # One scan, one CASE per slice: portable where date_trunc & co are not.
            sums = [
                sa.func.coalesce(
                    sa.func.sum(
                        sa.case((sa.and_(column >= edges[i], column < edges[i + 1]), 1), else_=0)
                    ),
                    0,
                )
                for i in range(buckets)
            ]
            last = sa.func.coalesce(sa.func.sum(sa.case((column == now, 1), else_=0)), 0)
            stmt = sa.select(*sums, last).where(*where, column >= start, column <= now)
            counts = [int(c) for c in self._read("computing stats", stmt)[0]]
            counts[-2] += counts[-1]  # an event exactly at "now" belongs to the last slice
            return counts[:-1]

        done = sliced(runs.c.finished_at, runs.c.status == RunStatus.SUCCEEDED.value)
        errors = sliced(history.c.at, history.c.event == "errored")
        return Stats(
            now=now,
            window=window,
            by_status=by_status,
            by_queue=ordered,
            succeeded=sum(done),
            errors=sum(errors),
            buckets=[Bucket(edges[i], done[i], errors[i]) for i in range(buckets)],
        )
