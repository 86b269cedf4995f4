"""The dashboard's ASGI application: server-rendered pages over :class:`acidic._admin.Admin`.

Pages are Jinja2 templates with autoescaping on, so every value from the database is
escaped; a few lines of JavaScript (no inline script, a strict Content-Security-Policy)
refresh the live part of a page. Reading needs no JavaScript.

Who may see it: the ``auth`` callback says yes or no for each request; else a
``token`` (a bearer header, or a session cookie set by the login form or a one-time
``?token=`` link); with neither, only requests that arrive on a loopback address
and come from one are served. State changes are POST forms with a CSRF token bound
to a cookie by an HMAC, and a request whose ``Origin`` is another site is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import inspect
import ipaddress
import json
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .._admin import Admin, RunDetail, RunFilter, Stats, to_jsonable
from .._app import App
from .._cli._runs import ACTIONS, fmt_duration, fmt_time
from .._errors import AcidicError, UnknownKeyError, UnknownRecoveryPointError
from .._run import RunStatus

__all__ = ["AuthCallback", "create_app"]

#: Decides whether a request may use the dashboard (may be ``async``).
AuthCallback = Callable[[Request], bool | Awaitable[bool]]

CSRF_COOKIE = "acidic_csrf"
SESSION_COOKIE = "acidic_session"
#: Largest form body accepted, in bytes.
MAX_FORM = 16 * 1024
PAGE_SIZE = 50

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NOTICES = {
    "retried": "Retry requested: the run is pending and a worker will pick it up.",
    "resumed": "Resumed: the run is pending and a worker will pick it up.",
    "cancelled": "Cancelled.",
    "cancel-requested": "Cancel requested: the run stops at its next step boundary.",
}


@dataclass(frozen=True, slots=True)
class Window:
    """A period the overview can show, cut into slices for its charts."""

    delta: dt.timedelta
    buckets: int
    label_format: str


WINDOWS = {
    "1h": Window(dt.timedelta(hours=1), 12, "%H:%M"),
    "24h": Window(dt.timedelta(hours=24), 24, "%H:%M"),
    "7d": Window(dt.timedelta(days=7), 28, "%m-%d %H:%M"),
}
SINCE = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7)}


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _chart(values: list[int], labels: list[str], *, width: int = 560, height: int = 120) -> Any:
    """Bars for an SVG chart (coordinates only: the template writes the markup)."""
    top = max(values, default=0)
    n = max(len(values), 1)
    slot = width / n
    bars = []
    for i, value in enumerate(values):
        h = 0.0 if top == 0 else (height - 4) * value / top
        bars.append(
            {
                "x": round(i * slot + 1, 2),
                "y": round(height - h, 2),
                "w": round(max(slot - 2, 1), 2),
                "h": round(h, 2),
                "title": f"{labels[i]}: {value}",
            }
        )
    return {"width": width, "height": height, "bars": bars, "top": top}


def _slice_label(width: dt.timedelta) -> str:
    minutes = width.total_seconds() / 60
    return f"{minutes:g} min" if minutes < 60 else f"{minutes / 60:g} h"


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
        self.token = token
        self.auth = auth
        self.refresh_ms = int(refresh * 1000)
        self.secret = secret
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
            for name in ("dashboard.css", "dashboard.js")
        }

    # -- plumbing ---------------------------------------------------------------------

    @staticmethod
    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def _session_value(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"acidic-dashboard-session", "sha256").hexdigest()

    def _csrf_for(self, cookie: str) -> str:
        return hmac.new(self.secret, cookie.encode(), hashlib.sha256).hexdigest()

    def _cookie(
        self, request: Request, response: Response, name: str, value: str, *, max_age: int | None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.base(request) or "/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )

    async def guard(self, request: Request) -> Response | None:
        """None when the request may proceed, else the response refusing it."""
        if self.auth is not None:
            allowed = self.auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if allowed:
                return None
            return self.page(
                request,
                "message.html",
                {"title": "Not allowed", "message": "You are not allowed to use this dashboard."},
                403,
            )
        if self.token is not None:
            header = request.headers.get("authorization", "")
            if header.startswith("Bearer ") and secrets.compare_digest(
                header[7:].encode(), self.token.encode()
            ):
                return None
            session = request.cookies.get(SESSION_COOKIE, "")
            if session and secrets.compare_digest(session, self._session_value()):
                return None
            offered = request.query_params.get("token")
            if (
                request.method == "GET"
                and offered is not None
                and secrets.compare_digest(offered.encode(), self.token.encode())
            ):
                # A one-time link: keep the session in a cookie, drop the token from the URL.
                query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + ("?" + urllib.parse.urlencode(query) if query else "")
                response = RedirectResponse(target, status_code=303)
                self._cookie(request, response, SESSION_COOKIE, self._session_value(), max_age=None)
                return response
            if request.method == "GET" and request.headers.get("x-acidic-live") != "1":
                here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                target = f"{self.base(request)}/login?next={urllib.parse.quote(here, safe='')}"
                return RedirectResponse(target, status_code=303)
            return PlainTextResponse("authentication required", status_code=401)
        client = request.client.host if request.client else None
        server = request.scope.get("server")
        # The Host check stops DNS rebinding: another site's name pointed at 127.0.0.1
        # would otherwise make the browser treat this dashboard as that site.
        host = urllib.parse.urlsplit(f"//{request.headers.get('host', '')}").hostname
        if (
            _is_loopback(client)
            and _is_loopback(server[0] if server else None)
            and _is_loopback(host)
        ):
            return None
        return self.page(
            request,
            "message.html",
            {
                "title": "Authentication required",
                "message": "This dashboard has no token or auth callback, so it serves "
                "requests to and from a loopback address only (addressed to localhost or a "
                "loopback IP).",
            },
            403,
        )

    async def form(self, request: Request) -> dict[str, str] | Response:
        """The POSTed form, once its CSRF token and origin are checked."""
        origin = request.headers.get("origin")
        if origin and origin != "null":
            host = request.headers.get("host", "")
            if urllib.parse.urlsplit(origin).netloc != host:
                return PlainTextResponse("cross-site request refused", status_code=403)
        body = await request.body()
        if len(body) > MAX_FORM:
            return PlainTextResponse("form too large", status_code=413)
        fields = {
            k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()
        }
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = fields.get("csrf_token", "")
        if not cookie or not sent or not secrets.compare_digest(sent, self._csrf_for(cookie)):
            return PlainTextResponse(
                "CSRF check failed: reload the page and try again", status_code=403
            )
        return fields

    def page(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        """Render ``template``; set the CSRF cookie if the browser has none yet."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        fresh = None
        if len(cookie) != 32:
            fresh = cookie = secrets.token_hex(16)
        values = {
            "base": self.base(request),
            "csrf": self._csrf_for(cookie),
            "refresh_ms": self.refresh_ms,
            "logged_in": self.token is not None and self.auth is None,
            "path": request.url.path,
            **context,
        }
        html = self.env.get_template(template).render(values)
        response = HTMLResponse(html, status_code=status)
        if fresh is not None:
            self._cookie(request, response, CSRF_COOKIE, fresh, max_age=None)
        return response

    def live(self, request: Request) -> bool:
        """The page's script asks for its live part only."""
        return request.headers.get("x-acidic-live") == "1"

    # -- pages ------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        if (refused := await self.guard(request)) is not None:
            return refused
        name = request.query_params.get("window", "1h")
        window = WINDOWS.get(name) or WINDOWS["1h"]
        name = name if name in WINDOWS else "1h"
        stats: Stats = await run_in_threadpool(
            self.admin.stats, window.delta, buckets=window.buckets
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
            "done_chart": _chart([b.succeeded for b in stats.buckets], labels),
            "error_chart": _chart([b.errors for b in stats.buckets], labels),
            "first_label": labels[0] if labels else "",
            "slice": _slice_label(window.delta / window.buckets),
            "failed": failed.runs,
        }
        template = "overview_live.html" if self.live(request) else "overview.html"
        return self.page(request, template, context)

    async def runs(self, request: Request) -> Response:
        if (refused := await self.guard(request)) is not None:
            return refused
        q = request.query_params
        status, job, queue = q.get("status", ""), q.get("job", ""), q.get("queue", "")
        search, since = q.get("q", "").strip(), q.get("since", "")
        cursor = q.get("cursor") or None
        error = None
        try:
            flt = RunFilter(
                statuses=(status,) if status else (),
                jobs=(job,) if job else (),
                queues=((None if queue == "-" else queue),) if queue else (),
                key_contains=search or None,
                since=dt.datetime.now(dt.UTC) - SINCE[since] if since in SINCE else None,
            )
            page = await run_in_threadpool(
                self.admin.list_runs, flt, limit=PAGE_SIZE, cursor=cursor
            )
            total = await run_in_threadpool(self.admin.count_runs, flt)
        except AcidicError as exc:
            error, flt, total = str(exc), RunFilter(), 0
            page = await run_in_threadpool(self.admin.list_runs, flt, limit=PAGE_SIZE)
        jobs = await run_in_threadpool(self.admin.distinct, "job")
        queues = await run_in_threadpool(self.admin.distinct, "queue")
        params = {"status": status, "job": job, "queue": queue, "q": search, "since": since}
        next_query = (
            urllib.parse.urlencode(
                {**{k: v for k, v in params.items() if v}, "cursor": page.next_cursor}
            )
            if page.next_cursor
            else None
        )
        context = {
            "runs": page.runs,
            "total": total,
            "params": params,
            "statuses": [s.value for s in RunStatus],
            "jobs": jobs,
            "queues": queues,
            "since_options": list(SINCE),
            "next_query": next_query,
            "error": error,
            "first_page": cursor is None,
        }
        return self.page(request, "runs.html", context, 400 if error else 200)

    async def run(self, request: Request) -> Response:
        if (refused := await self.guard(request)) is not None:
            return refused
        key = request.query_params.get("key", "")
        if not key:
            return self.page(
                request,
                "message.html",
                {"title": "No key", "message": "Give a run's key: ?key=..."},
                400,
            )
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
            return self.page(
                request,
                "message.html",
                {"title": "No such run", "message": f"No run has the key {key!r}."},
                404,
            )
        s = detail.summary
        context = {
            "d": detail,
            "s": s,
            "notice": notice,
            "error": error,
            "can_retry": s.status in ACTIONS["retry"].statuses,
            "can_resume": s.status in ACTIONS["resume"].statuses,
            "can_resume_from": s.status in (*ACTIONS["resume"].statuses, RunStatus.FAILED.value),
            "can_cancel": s.status in ACTIONS["cancel"].statuses,
            "now": dt.datetime.now(dt.UTC),
            "is_live": s.status
            in (RunStatus.PENDING.value, RunStatus.RUNNING.value, RunStatus.SCHEDULED.value),
        }
        template = "run_live.html" if self.live(request) else "run.html"
        return self.page(request, template, context, status)

    # -- actions ----------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        if (refused := await self.guard(request)) is not None:
            return refused
        fields = await self.form(request)
        if isinstance(fields, Response):
            return fields
        action = request.path_params["action"]
        key = fields.get("key", "")
        if action not in ACTIONS or not key:
            return PlainTextResponse("unknown action or missing key", status_code=400)
        from_step = fields.get("from_step") or None

        def perform() -> str:
            if action in ("retry", "resume"):
                if action == "retry":
                    run = self.app.retry(key)
                else:
                    run = self.app.resume(key, from_step=from_step)
                return "retried" if action == "retry" else "resumed"
            summary = self.admin.summary(key)
            if summary is not None and summary.status not in ACTIONS["cancel"].statuses:
                raise AcidicError(f"cannot cancel key {key!r}: it is {summary.status}")
            run = self.app.cancel(key)
            return "cancel-requested" if run.status == RunStatus.RUNNING else "cancelled"

        try:
            notice = await run_in_threadpool(perform)
        except UnknownKeyError as exc:
            return self.page(
                request, "message.html", {"title": "No such run", "message": str(exc)}, 404
            )
        except UnknownRecoveryPointError as exc:
            return await self._run_page(request, key, error=str(exc), status=400)
        except AcidicError as exc:
            return await self._run_page(request, key, error=str(exc), status=409)
        target = f"{self.base(request)}/run?key={urllib.parse.quote(key, safe='')}&notice={notice}"
        return RedirectResponse(target, status_code=303)

    # -- login ------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if self.token is None:
            return RedirectResponse(f"{self.base(request)}/", status_code=303)
        nxt = request.query_params.get("next", "")
        if request.method == "GET":
            return self.page(request, "login.html", {"next": nxt, "failed": False}, 401)
        fields = await self.form(request)
        if isinstance(fields, Response):
            return fields
        nxt = fields.get("next", "")
        offered = fields.get("token", "")
        if not secrets.compare_digest(offered.encode(), self.token.encode()):
            return self.page(request, "login.html", {"next": nxt, "failed": True}, 401)
        # Only a path of this site: never an open redirect.
        if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
            nxt = f"{self.base(request)}/"
        response = RedirectResponse(nxt, status_code=303)
        self._cookie(request, response, SESSION_COOKIE, self._session_value(), max_age=None)
        return response

    async def logout(self, request: Request) -> Response:
        fields = await self.form(request)
        if isinstance(fields, Response):
            return fields
        response = RedirectResponse(f"{self.base(request)}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=self.base(request) or "/")
        return response

    async def static_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        text = self.static.get(name)
        if text is None:
            return PlainTextResponse("not found", status_code=404)
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return Response(
            text,
            media_type=f"{kind}; charset=utf-8",
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )


class _SecurityHeaders:
    """Adds the security headers to every HTML and text response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


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

    Runs of jobs that ``app`` does not register have their arguments and context
    hidden (the job's ``redact`` list is unknown); registered jobs' ``redact`` fields
    are shown as ``[redacted]``.
    """
    if token is not None and auth is not None:
        raise AcidicError("give the dashboard a token or an auth callback, not both")
    if token is not None and (not isinstance(token, str) or len(token) < 8):
        raise AcidicError("the dashboard token must be a string of at least 8 characters")
    if isinstance(refresh, bool) or not isinstance(refresh, int | float) or refresh < 0:
        raise AcidicError(f"refresh must be a number of seconds >= 0, not {refresh!r}")
    dashboard = Dashboard(
        app,
        token=token,
        auth=auth,
        refresh=float(refresh),
        secret=secret or secrets.token_bytes(32),
    )
    routes = [
        Route("/", dashboard.overview, methods=["GET"], name="overview"),
        Route("/runs", dashboard.runs, methods=["GET"], name="runs"),
        Route("/run", dashboard.run, methods=["GET"], name="run"),
        Route("/run/{action}", dashboard.act, methods=["POST"], name="act"),
        Route("/login", dashboard.login, methods=["GET", "POST"], name="login"),
        Route("/logout", dashboard.logout, methods=["POST"], name="logout"),
        Route("/static/{name}", dashboard.static_file, methods=["GET"], name="static"),
    ]
    starlette_app = Starlette(routes=routes)
    starlette_app.add_middleware(_SecurityHeaders)
    starlette_app.state.acidic_dashboard = dashboard
    return starlette_app
