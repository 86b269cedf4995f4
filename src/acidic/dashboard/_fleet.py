"""The dashboard's fleet pages: the workers (``/workers``) and the queues (``/queues``,
with pause and resume). Reads come from :class:`acidic._admin.Admin` (the worker
registry and the queues' counts); pausing and resuming go through the App
(``pause_queue`` / ``resume_queue``), as POST forms checked for CSRF like every action."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from .._admin import QueueInfo, UnknownJob, WorkerInfo
from .._errors import InvalidArgumentError

if TYPE_CHECKING:
    from ._server import Dashboard

__all__ = ["FleetPages"]

NOTICES = {
    "paused": "Paused: workers stop claiming its runs within a second.",
    "already-paused": "It was paused already.",
    "resumed": "Resumed: workers claim its runs again.",
    "not-paused": "It was not paused.",
}


class FleetPages:
    """``/workers`` and ``/queues`` for one :class:`Dashboard`."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard

    async def workers(self, request: Request) -> Response:
        if (refused := await self.d.access.guard(request)) is not None:
            return refused
        found: list[WorkerInfo] = await run_in_threadpool(self.d.admin.workers)
        unknown: list[UnknownJob] = await run_in_threadpool(self.d.admin.unknown_jobs)
        context = {"workers": found, "unknown": unknown, "now": dt.datetime.now(dt.UTC)}
        template = "workers_live.html" if self.d.live(request) else "workers.html"
        return self.d.page(request, template, context)

    async def queues(self, request: Request) -> Response:
        if (refused := await self.d.access.guard(request)) is not None:
            return refused
        found: list[QueueInfo] = await run_in_threadpool(self.d.admin.queues)
        name = request.query_params.get("queue", "")
        notice = NOTICES.get(request.query_params.get("notice", ""))
        context = {
            "queues": found,
            "notice": f"Queue {name}: {notice}" if notice and name else None,
            "now": dt.datetime.now(dt.UTC),
        }
        template = "queues_live.html" if self.d.live(request) else "queues.html"
        return self.d.page(request, template, context)

    async def act(self, request: Request) -> Response:
        if (refused := await self.d.access.guard(request)) is not None:
            return refused
        fields = await self.d.access.form(request)
        if isinstance(fields, Response):
            return fields
        action, name = request.path_params["action"], fields.get("name", "")
        if action not in ("pause", "resume") or not name:
            return PlainTextResponse("unknown action or missing queue name", status_code=400)
        change = self.d.admin.pause_queue if action == "pause" else self.d.admin.resume_queue
        try:
            changed: bool = await run_in_threadpool(change, name)
        except InvalidArgumentError as exc:
            return self.d.message(request, "Invalid queue name", str(exc), 400)
        if action == "pause":
            notice = "paused" if changed else "already-paused"
        else:
            notice = "resumed" if changed else "not-paused"
        query = urllib.parse.urlencode({"queue": name, "notice": notice})
        return RedirectResponse(f"{self.d.base(request)}/queues?{query}", status_code=303)
