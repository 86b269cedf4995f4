"""The dashboard's pages beyond runs: per-job statistics and the schedule of waiting
runs (and, with the worker registry, workers and queues)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .._admin import JobStats, Schedule, describe_schedules
from .._errors import AcidicError, StorageError
from ._charts import WINDOWS

if TYPE_CHECKING:
    from ._server import Dashboard

__all__ = ["InsightPages"]


class InsightPages:
    """``/jobs`` and ``/scheduled`` for one :class:`Dashboard`."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard

    async def jobs(self, request: Request) -> Response:
        if (refused := await self.d.access.guard(request)) is not None:
            return refused
        name = request.query_params.get("window", "24h")
        name = name if name in WINDOWS else "24h"
        stats: list[JobStats] = await run_in_threadpool(self.d.admin.job_stats, WINDOWS[name].delta)
        context = {
            "jobs": stats,
            "window": name,
            "windows": list(WINDOWS),
            "now": dt.datetime.now(dt.UTC),
        }
        template = "jobs_live.html" if self.d.live(request) else "jobs.html"
        return self.d.page(request, template, context)

    async def scheduled(self, request: Request) -> Response:
        if (refused := await self.d.access.guard(request)) is not None:
            return refused
        cursor = request.query_params.get("cursor") or None
        try:
            plan: Schedule = await run_in_threadpool(
                lambda: self.d.admin.schedule(limit=50, cursor=cursor)
            )
        except StorageError:
            raise
        except AcidicError as exc:
            return self.d.message(request, "Invalid page", str(exc), 400)
        schedules = await run_in_threadpool(describe_schedules, self.d.app)
        context = {"schedule": plan, "first_page": cursor is None, "schedules": schedules}
        template = "scheduled_live.html" if self.d.live(request) else "scheduled.html"
        return self.d.page(request, template, context)
