"""The dashboard's ASGI application: server-rendered pages over :class:`acidic._admin.Admin`.

Pages are Jinja2 templates with autoescaping on, so every value from the database is
escaped; a few lines of JavaScript (no inline script, a strict Content-Security-Policy)
refresh the live part of a page. Reading needs no JavaScript. Who may see it, and how
its forms are protected, is :mod:`._security`.

Actions go to the App (through :func:`acidic._admin.perform`), which refuses a run
whose status does not allow them with :class:`acidic.RunStateError`: the page then
says so. :data:`acidic._engine._actions.ACTIONS` only decides which buttons to show.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import urllib.parse
from importlib import resources
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .._admin import (
    ESTIMATE_OVER,
    OPERATIONS,
    Admin,
    RunDetail,
    RunFilter,
    Stats,
    fmt_duration,
    fmt_time,
    perform,
    to_jsonable,
)
from .._app import App
from .._engine._actions import ACTIONS, accepted
from .._errors import (
    AcidicError,
    InvalidArgumentError,
    InvalidKeyError,
    RunStateError,
    StorageError,
    UnknownKeyError,
    UnknownRecoveryPointError,
)
from .._run import RunStatus
from ._bulk import BulkPages
from ._charts import SINCE, WINDOWS, chart, slice_label
from ._fleet import FleetPages
from ._pages import InsightPages
from ._params import ONLY, filter_params, query_of, run_filter
from ._security import CSRF_COOKIE, SESSION_COOKIE, Access, AuthCallback, SecurityHeaders, base_path

__all__ = ["AuthCallback", "create_app"]

PAGE_SIZE = 50
#: The runs page counts matching runs up to this, then says "more than".
COUNT_LIMIT = 10_000
#: ... and up to this for a search by text: a search that matches most of a million runs
#: would otherwise read ten thousand of them to say so (the pages go on with "Older").
SEARCH_COUNT_LIMIT = PAGE_SIZE
NOTICES = {
    "retried": "Retry requested: the run is pending and a worker will pick it up.",
    "resumed": "Resumed: the run is pending and a worker will pick it up.",
    "cancelled": "Cancelled.",
    "cancel-requested": "Cancel requested: the run stops at its next step boundary.",
}
#: The files under /static/, with their media types.
STATIC_TYPES = {
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
#: Statuses whose page refreshes itself: the run may change without anyone acting.
LIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SCHEDULED})


def _pretty(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


class Dashboard:
    """The pages and actions, bound to one App."""

    def __init__(
        self,
        app: App,
        *,
        token: str | None,
        auth: AuthCallback | None,
        refresh: float,
        secret: bytes,
    ) -> None:
        self.app = app
        self.admin = Admin(app, hide_unregistered=True)
        self.access = Access(token=token, auth=auth, secret=secret, refuse=self.message)
        self.refresh_ms = int(refresh * 1000)
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("acidic.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["time"] = fmt_time
        env.filters["duration"] = fmt_duration
        env.filters["pretty"] = _pretty
        env.filters["quote"] = lambda s: urllib.parse.quote(str(s), safe="")
        self.env = env
        self.static = {
            name: resources.files("acidic.dashboard")
            .joinpath("static", name)
            .read_text(encoding="utf-8")
            for name in STATIC_TYPES
        }

    # -- rendering --------------------------------------------------------------------

    def page(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        """Render ``template``; set the CSRF cookie if the browser has none yet."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        fresh = None
        if len(cookie) != 32:
            fresh = cookie = secrets.token_hex(16)
        values = {
            "base": base_path(request),
            "csrf": self.access.csrf_for(cookie),
            "refresh_ms": self.refresh_ms,
            "logged_in": self.access.token is not None and self.access.auth is None,
            "path": request.url.path,
            # Navigation only for someone who may use the dashboard.
            "nav": True,
            **context,
        }
        html = self.env.get_template(template).render(values)
        response = HTMLResponse(html, status_code=status)
        if fresh is not None:
            self.access.set_cookie(request, response, CSRF_COOKIE, fresh, max_age=None)
        return response

    def message(self, request: Request, title: str, message: str, status: int) -> Response:
        """A page that only says ``message`` (without navigation when it refuses access)."""
        context = {"title": title, "message": message, "nav": status not in (401, 403)}
        return self.page(request, "message.html", context, status)

    def searchable(self) -> tuple[str, ...]:
        """The jobs whose arguments a search looks in: those registered with the App
        that redact nothing (a search must not confirm a guess of a hidden value)."""
        return tuple(
            sorted(name for name, cls in self.app.jobs.items() if not getattr(cls, "redact", ()))
        )

    def base(self, request: Request) -> str:
        """The path the dashboard is mounted at."""
        return base_path(request)

    def unavailable(self, request: Request, exc: Exception) -> Response:
        """The page (or, for a live update, the fragment) shown while the database
        cannot be reached: 503, and the page retries by itself."""
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        context = {"reason": str(exc), "here": here, "now": dt.datetime.now(dt.UTC)}
        response = self.page(request, "unavailable.html", context, 503)
        response.headers["Retry-After"] = "5"
        return response

    def live(self, request: Request) -> bool:
        """The page's script asks for its live part only."""
        return request.headers.get("x-acidic-live") == "1"

    # -- pages ------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        if (refused := await self.access.guard(request)) is not None:
            return refused
        name = request.query_params.get("window", "1h")
        window = WINDOWS.get(name) or WINDOWS["1h"]
        name = name if name in WINDOWS else "1h"
        stats: Stats = await run_in_threadpool(
            self.admin.stats, window.delta, buckets=window.buckets, estimate=True
        )
        failed = await run_in_threadpool(
            self.admin.list_runs, RunFilter(statuses=(RunStatus.FAILED.value,)), limit=5
        )
        labels = [b.start.strftime(window.label_format) for b in stats.buckets]
        context = {
            "stats": stats,
            "window": name,
            "windows": list(WINDOWS),
            "statuses": [s.value for s in RunStatus],
            "done_chart": chart([b.succeeded for b in stats.buckets], labels),
            "error_chart": chart([b.errors for b in stats.buckets], labels),
            "first_label": labels[0] if labels else "",
            "slice": slice_label(window.delta / window.buckets),
            "failed": failed.runs,
            "estimate_over": ESTIMATE_OVER,
        }
        template = "overview_live.html" if self.live(request) else "overview.html"
        return self.page(request, template, context)

    async def runs(self, request: Request) -> Response:
        if (refused := await self.access.guard(request)) is not None:
            return refused
        params = filter_params(request.query_params)
        cursor = request.query_params.get("cursor") or None
        error = None
        try:
            flt = run_filter(params, args_jobs=self.searchable())
            page = await run_in_threadpool(
                self.admin.list_runs, flt, limit=PAGE_SIZE, cursor=cursor
            )
            # Counting a million rows would take longer than the rest of the page.
            count_limit = SEARCH_COUNT_LIMIT if flt.text or flt.key_contains else COUNT_LIMIT
            total = await run_in_threadpool(lambda: self.admin.count_runs(flt, at_most=count_limit))
        except StorageError:
            raise
        except AcidicError as exc:
            error, flt, total, count_limit = str(exc), RunFilter(), 0, COUNT_LIMIT
            page = await run_in_threadpool(self.admin.list_runs, flt, limit=PAGE_SIZE)
        # The App's jobs and queues: reading the distinct values of a big table would
        # take longer than the rest of the page (the stored ones when it has no jobs).
        jobs = sorted(self.app.jobs)
        queues = list(self.app.queues)
        if not self.live(request) and not jobs:
            jobs = await run_in_threadpool(self.admin.distinct, "job")
            queues = await run_in_threadpool(self.admin.distinct, "queue")
        jobs += [params["job"]] if params["job"] and params["job"] not in jobs else []
        queues += (
            [params["queue"]]
            if params["queue"] not in ("", "-") and params["queue"] not in queues
            else []
        )
        next_query = query_of(params, cursor=page.next_cursor) if page.next_cursor else None
        # The bulk actions that apply to some of the statuses the filter selects.
        bulk = [
            (action, verb, query_of(params, action=action))
            for action, verb in (("retry", "Retry"), ("resume", "Resume"), ("cancel", "Cancel"))
            if error is None and total and flt.narrowed(accepted(action)) is not None
        ]
        context = {
            "runs": page.runs,
            "total": total,
            "count_limit": count_limit,
            "params": params,
            "statuses": [s.value for s in RunStatus],
            "jobs": jobs,
            "queues": queues,
            "since_options": list(SINCE),
            "only_options": ONLY,
            "next_query": next_query,
            "error": error,
            "first_page": cursor is None,
            "bulk": bulk,
            "now": dt.datetime.now(dt.UTC),
        }
        template = "runs_live.html" if self.live(request) else "runs.html"
        return self.page(request, template, context, 400 if error else 200)

    async def run(self, request: Request) -> Response:
        if (refused := await self.access.guard(request)) is not None:
            return refused
        key = request.query_params.get("key", "")
        if not key:
            return self.message(request, "No key", "Give a run's key: ?key=...", 400)
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return await self._run_page(request, key, notice=notice)

    async def _run_page(
        self,
        request: Request,
        key: str,
        *,
        notice: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        detail: RunDetail | None = await run_in_threadpool(self.admin.detail, key)
        if detail is None:
            return self.message(request, "No such run", f"No run has the key {key!r}.", 404)
        s = detail.summary
        context = {
            "d": detail,
            "s": s,
            "notice": notice,
            "error": error,
            # Which buttons to offer; the App decides when one is pressed.
            "can_retry": s.status in ACTIONS["retry"],
            "can_resume": s.status in ACTIONS["resume"],
            "can_resume_from": s.status in ACTIONS["resume_from"],
            "can_cancel": s.status in ACTIONS["cancel"],
            "now": dt.datetime.now(dt.UTC),
            "is_live": s.status in LIVE,
        }
        template = "run_live.html" if self.live(request) else "run.html"
        return self.page(request, template, context, status)

    # -- actions ----------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        if (refused := await self.access.guard(request)) is not None:
            return refused
        fields = await self.access.form(request)
        if isinstance(fields, Response):
            return fields
        action = request.path_params["action"]
        key = fields.get("key", "")
        if action not in OPERATIONS or not key:
            return PlainTextResponse("unknown action or missing key", status_code=400)
        from_step = fields.get("from_step") or None

        def act_now() -> str:
            run = perform(self.app, action, key, from_step=from_step)
            if action == "cancel":
                return "cancel-requested" if run.status == RunStatus.RUNNING else "cancelled"
            return "retried" if action == "retry" else "resumed"

        try:
            notice = await run_in_threadpool(act_now)
        except UnknownKeyError as exc:
            return self.message(request, "No such run", str(exc), 404)
        except InvalidKeyError as exc:
            return self.message(request, "Invalid key", str(exc), 400)
        except UnknownRecoveryPointError as exc:
            return await self._run_page(request, key, error=str(exc), status=400)
        except RunStateError as exc:
            # Its status changed since the page was shown (or a button was pressed twice).
            return await self._run_page(request, key, error=str(exc), status=409)
        except AcidicError as exc:
            return await self._run_page(request, key, error=str(exc), status=409)
        target = f"{base_path(request)}/run?key={urllib.parse.quote(key, safe='')}&notice={notice}"
        return RedirectResponse(target, status_code=303)

    # -- login ------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if self.access.token is None:
            return RedirectResponse(f"{base_path(request)}/", status_code=303)
        nxt = request.query_params.get("next", "")
        if request.method == "GET":
            context = {"next": nxt, "failed": False, "nav": False}
            return self.page(request, "login.html", context, 401)
        fields = await self.access.form(request)
        if isinstance(fields, Response):
            return fields
        nxt = fields.get("next", "")
        if not self.access.token_matches(fields.get("token", "")):
            context = {"next": nxt, "failed": True, "nav": False}
            return self.page(request, "login.html", context, 401)
        # Only a path of this site: never an open redirect.
        if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
            nxt = f"{base_path(request)}/"
        response = RedirectResponse(nxt, status_code=303)
        self.access.set_cookie(
            request, response, SESSION_COOKIE, self.access.session_value(), max_age=None
        )
        return response

    async def logout(self, request: Request) -> Response:
        fields = await self.access.form(request)
        if isinstance(fields, Response):
            return fields
        response = RedirectResponse(f"{base_path(request)}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=base_path(request) or "/")
        return response

    async def favicon(self, request: Request) -> Response:
        """``/favicon.ico``, for clients that ask for it without reading the page."""
        return RedirectResponse(f"{base_path(request)}/static/favicon.svg", status_code=301)

    async def static_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        text = self.static.get(name)
        if text is None:
            return PlainTextResponse("not found", status_code=404)
        return Response(
            text,
            media_type=f"{STATIC_TYPES[name]}; charset=utf-8",
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )


def create_app(
    app: App,
    *,
    token: str | None = None,
    auth: AuthCallback | None = None,
    refresh: float = 3.0,
    secret: bytes | None = None,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI application (Starlette), to serve or mount.

    ``auth(request)`` (sync or async) returns whether a request may use the dashboard:
    use it to reuse your application's own login. Or give ``token``: requests must
    carry ``Authorization: Bearer <token>``, or a session cookie that the login page
    (or one visit to ``?token=<token>``) sets. With neither, only requests to and
    from a loopback address are served (others get 403): do not expose it that way.

    ``refresh``: seconds between updates of the live parts of pages (0: none).
    ``secret``: the key that binds CSRF tokens to their cookie (default: random per
    process; give the same one to every process behind one address).

    Bad arguments raise :class:`acidic.InvalidArgumentError` (also a ValueError and a
    TypeError).

    Runs of jobs that ``app`` does not register have their arguments and context
    hidden (the job's ``redact`` list is unknown); registered jobs' ``redact`` fields
    are shown as ``[redacted]``.
    """
    if token is not None and auth is not None:
        raise InvalidArgumentError("give the dashboard a token or an auth callback, not both")
    if token is not None and not isinstance(token, str):
        raise InvalidArgumentError(f"the dashboard token must be a str, not {type(token).__name__}")
    if token is not None and len(token) < 8:
        raise InvalidArgumentError("the dashboard token must be at least 8 characters long")
    if auth is not None and not callable(auth):
        raise InvalidArgumentError(f"auth must be a function(request) -> bool, not {auth!r}")
    if isinstance(refresh, bool) or not isinstance(refresh, int | float):
        raise InvalidArgumentError(f"refresh must be a number of seconds >= 0, not {refresh!r}")
    if refresh < 0:
        raise InvalidArgumentError(f"refresh must be a number of seconds >= 0, not {refresh!r}")
    if secret is not None and not isinstance(secret, bytes):
        raise InvalidArgumentError(f"secret must be bytes, not {type(secret).__name__}")
    dashboard = Dashboard(
        app,
        token=token,
        auth=auth,
        refresh=float(refresh),
        secret=secret or secrets.token_bytes(32),
    )
    bulk = BulkPages(dashboard)
    insights = InsightPages(dashboard)
    fleet = FleetPages(dashboard)
    routes = [
        Route("/", dashboard.overview, methods=["GET"], name="overview"),
        Route("/runs", dashboard.runs, methods=["GET"], name="runs"),
        Route("/runs/bulk", bulk.confirm, methods=["GET"], name="bulk-confirm"),
        Route("/runs/bulk", bulk.act, methods=["POST"], name="bulk"),
        Route("/jobs", insights.jobs, methods=["GET"], name="jobs"),
        Route("/scheduled", insights.scheduled, methods=["GET"], name="scheduled"),
        Route("/workers", fleet.workers, methods=["GET"], name="workers"),
        Route("/queues", fleet.queues, methods=["GET"], name="queues"),
        Route("/queues/{action}", fleet.act, methods=["POST"], name="queue-act"),
        Route("/run", dashboard.run, methods=["GET"], name="run"),
        Route("/run/{action}", dashboard.act, methods=["POST"], name="act"),
        Route("/login", dashboard.login, methods=["GET", "POST"], name="login"),
        Route("/logout", dashboard.logout, methods=["POST"], name="logout"),
        Route("/static/{name}", dashboard.static_file, methods=["GET"], name="static"),
        Route("/favicon.ico", dashboard.favicon, methods=["GET"], name="favicon"),
    ]

    async def unavailable(request: Request, exc: Exception) -> Response:
        return dashboard.unavailable(request, exc)

    # A database that cannot be reached (or fails) is a styled 503, not a bare 500.
    starlette_app = Starlette(routes=routes, exception_handlers={StorageError: unavailable})
    starlette_app.add_middleware(SecurityHeaders)
    starlette_app.state.acidic_dashboard = dashboard
    return starlette_app
