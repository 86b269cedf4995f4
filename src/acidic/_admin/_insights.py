"""Per-job statistics over a window, and the runs waiting for their due time.

:func:`job_stats`: for each job, the runs that ended in the window by status, the runs
open now by status, the p50/p95 duration of the last attempt of the runs that ended
(from their last claim to their end) and the failure rate: failed / (succeeded +
failed). A run cut short by Ctrl-C (``interrupted``) is open, not ended: it is counted
apart and never as a failure. :func:`schedule`: waiting runs (``pending`` or
``scheduled``) soonest due first, with how many fall due in each coming period.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from .._run import RunStatus
from .._storage._queries import Queries
from ._filters import check_int
from ._format import iso
from ._records import RunSummary

__all__ = [
    "DUE_PERIODS",
    "DURATION_SAMPLE",
    "ENDED",
    "JobStats",
    "Schedule",
    "job_stats",
    "percentile",
    "schedule",
]

#: Statuses of runs that ended.
ENDED = (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)
#: Most runs whose durations the percentiles are computed from (the latest ones).
DURATION_SAMPLE = 10_000
#: The periods the schedule counts waiting runs in, after "overdue".
DUE_PERIODS = (
    ("next minute", dt.timedelta(minutes=1)),
    ("next hour", dt.timedelta(hours=1)),
    ("next 24 h", dt.timedelta(hours=24)),
    ("next 7 days", dt.timedelta(days=7)),
)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class JobStats:
    """One job's runs over a window."""

    job: str
    #: Runs that ended in the window, by status (succeeded, failed, cancelled).
    ended: dict[str, int]
    #: Runs not ended now, by status (pending, running, interrupted, ...).
    open: dict[str, int]
    p50: float | None
    p95: float | None
    #: How many durations the percentiles come from.
    sampled: int

    @property
    def failure_rate(self) -> float | None:
        """failed / (succeeded + failed) in the window; None without either."""
        ok, bad = self.ended.get("succeeded", 0), self.ended.get("failed", 0)
        return None if ok + bad == 0 else bad / (ok + bad)

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "job": self.job,
            "ended": self.ended,
            "open": self.open,
            "p50_s": self.p50,
            "p95_s": self.p95,
            "failure_rate": self.failure_rate,
        }


def job_stats(
    queries: Queries, window: dt.timedelta, *, now: dt.datetime | None = None
) -> list[JobStats]:
    """Each job's statistics over ``window`` ending ``now``, by job name."""
    now = now or dt.datetime.now(dt.UTC)
    start = now - window
    ended: dict[str, dict[str, int]] = {}
    for job, status, count in queries.ended_by_job(start, now):
        ended.setdefault(job, {})[status] = count
    opened: dict[str, dict[str, int]] = {}
    open_statuses = [s.value for s in RunStatus if s.value not in ENDED]
    for job, status, count in queries.open_by_job(open_statuses):
        opened.setdefault(job, {})[status] = count
    # (p50, p95, sampled) per job: computed by the database where it can (PostgreSQL),
    # else here from the sample of durations.
    found = queries.percentiles(start, now, limit=DURATION_SAMPLE, quantiles=(0.5, 0.95))
    quantiles: dict[str, tuple[float | None, float | None, int]] = {}
    if found is not None:
        quantiles = {job: (qs[0], qs[1], n) for job, (qs, n) in found.items()}
    else:
        spans: dict[str, list[float]] = {}
        for job, claimed, finished in queries.durations(start, now, limit=DURATION_SAMPLE):
            spans.setdefault(job, []).append(max((finished - claimed).total_seconds(), 0.0))
        quantiles = {
            job: (percentile(values, 0.5), percentile(values, 0.95), len(values))
            for job, values in spans.items()
        }
    return [
        JobStats(
            job=job,
            ended=ended.get(job, {}),
            open=opened.get(job, {}),
            p50=quantiles.get(job, (None, None, 0))[0],
            p95=quantiles.get(job, (None, None, 0))[1],
            sampled=quantiles.get(job, (None, None, 0))[2],
        )
        for job in sorted(set(ended) | set(opened))
    ]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Waiting runs soonest first, and how many fall due in each period."""

    now: dt.datetime
    #: (period, how many): "overdue", then :data:`DUE_PERIODS`, then "later".
    periods: list[tuple[str, int]]
    runs: list[RunSummary]
    #: The cursor of the next page, or None.
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "now": iso(self.now),
            "periods": [{"period": p, "runs": n} for p, n in self.periods],
            "runs": [r.to_json() for r in self.runs],
            "next_cursor": self.next_cursor,
        }


def cursor_of(run: RunSummary) -> str:
    """The cursor of the page after ``run`` in the schedule."""
    assert run.run_at is not None
    return f"{run.run_at.timestamp():.6f}_{run.id}"


def parse_cursor(cursor: str) -> tuple[dt.datetime, int] | None:
    """A schedule cursor back as (run_at, id); None if it is not one."""
    at, _, run_id = cursor.partition("_")
    try:
        return dt.datetime.fromtimestamp(float(at), dt.UTC), int(run_id)
    except (ValueError, OverflowError, OSError):
        return None


def schedule(
    runs: list[RunSummary],
    counts: list[int],
    *,
    now: dt.datetime,
    limit: int,
) -> Schedule:
    """A :class:`Schedule` from a page of ``limit + 1`` waiting runs and the counts per
    period of :func:`due_edges`."""
    check_int("limit", limit, 1, 1000)
    names = ["overdue", *(name for name, _ in DUE_PERIODS), "later"]
    more = len(runs) > limit
    page = runs[:limit]
    return Schedule(
        now=now,
        periods=list(zip(names, counts, strict=True)),
        runs=page,
        next_cursor=cursor_of(page[-1]) if more and page else None,
    )


def due_edges(now: dt.datetime) -> list[dt.datetime]:
    """The edges between the schedule's periods: now, then each period's end."""
    return [now, *(now + span for _, span in DUE_PERIODS)]
