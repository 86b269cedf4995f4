"""Reading runs for the people who operate them.

The read side under ``acidic runs``, ``acidic stats`` and the dashboard: runs by
filter with a cursor, one run with its step timeline, counts and rates over time
windows, and the keys a bulk action selects. :class:`Admin` reaches the database only
through the manager's read-only queries (``app.manager.queries``, SQL in
:mod:`acidic._storage._queries`); actions go through :class:`acidic.App`.

- :mod:`._filters`: :class:`RunFilter` and the durations and times operators type;
- :mod:`._records`: what :class:`Admin` returns (summaries, details, stats);
- :mod:`._format`: times, durations and stored values for display (CLI and dashboard);
- :mod:`._reader`: :class:`Admin`;
- :mod:`._acting`: :func:`perform`, the operator actions through the App;
- :mod:`._bulk`: :class:`BulkAction`, an action on every run a filter selects, in batches;
- :mod:`._insights`: per-job statistics and the schedule of waiting runs;
- :mod:`._schedules`: the App's schedules with their last and next tick.
"""

from ._acting import OPERATIONS, perform
from ._bulk import BulkAction, BulkPlan, BulkStep, Skipped
from ._filters import RunFilter, parse_duration, parse_since
from ._fleet import FleetView, UnknownJob
from ._format import fmt_duration, fmt_time, to_jsonable
from ._insights import JobStats, Schedule
from ._reader import ESTIMATE_OVER, MAX_BUCKETS, MAX_PAGE, Admin, timeline
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
from ._schedules import describe_schedules

__all__ = [
    "ESTIMATE_OVER",
    "MAX_BUCKETS",
    "MAX_PAGE",
    "OPERATIONS",
    "REDACTED",
    "Admin",
    "Bucket",
    "BulkAction",
    "BulkPlan",
    "BulkStep",
    "FleetView",
    "JobStats",
    "QueueInfo",
    "RunDetail",
    "RunFilter",
    "RunPage",
    "RunSummary",
    "Schedule",
    "SignalInfo",
    "Skipped",
    "Stats",
    "StepSpan",
    "UnknownJob",
    "WorkerInfo",
    "describe_schedules",
    "fmt_duration",
    "fmt_time",
    "parse_duration",
    "parse_since",
    "perform",
    "timeline",
    "to_jsonable",
]
