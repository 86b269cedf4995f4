"""Who may use the dashboard, and how its forms are protected.

The ``auth`` callback says yes or no for each request; else a ``token`` (a bearer
header, or a session cookie set by the login form or a one-time ``?token=`` link);
with neither, only requests that arrive on a loopback address and come from one are
served. State changes are POST forms with a CSRF token bound to a cookie by an HMAC,
and a request whose ``Origin`` is another site is refused. Every response carries a
strict Content-Security-Policy and the usual hardening headers.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import ipaddress
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

__all__ = [
    "CSRF_COOKIE",
    "MAX_FORM",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "Access",
    "AuthCallback",
    "Refusal",
    "SecurityHeaders",
    "base_path",
    "is_loopback",
]

#: Decides whether a request may use the dashboard (may be ``async``).
AuthCallback = Callable[[Request], bool | Awaitable[bool]]
#: Renders a message page refusing a request: (request, title, message, status).
Refusal = Callable[[Request, str, str, int], Response]

CSRF_COOKIE = "acidic_csrf"
SESSION_COOKIE = "acidic_session"
#: Largest form body accepted, in bytes.
MAX_FORM = 16 * 1024

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


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is this machine's loopback."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def base_path(request: Request) -> str:
    """The path the dashboard is mounted at (empty at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


class Access:
    """The dashboard's access rules: authentication, sessions and CSRF tokens."""

    def __init__(
        self, *, token: str | None, auth: AuthCallback | None, secret: bytes, refuse: Refusal
    ) -> None:
        self.token = token
        self.auth = auth
        self.secret = secret
        self.refuse = refuse

    def session_value(self) -> str:
        """The session cookie's value: derived from the token, never the token itself."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"acidic-dashboard-session", "sha256").hexdigest()

    def csrf_for(self, cookie: str) -> str:
        """The CSRF token a form must carry for the browser holding ``cookie``."""
        return hmac.new(self.secret, cookie.encode(), hashlib.sha256).hexdigest()

    def set_cookie(
        self, request: Request, response: Response, name: str, value: str, *, max_age: int | None
    ) -> None:
        """Set one of the dashboard's cookies (HttpOnly, SameSite=Lax, on its path)."""
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=base_path(request) or "/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )

    def token_matches(self, offered: str) -> bool:
        """Whether ``offered`` is the token (compared in constant time)."""
        assert self.token is not None
        return secrets.compare_digest(offered.encode(), self.token.encode())

    async def guard(self, request: Request) -> Response | None:
        """None when the request may proceed, else the response refusing it."""
        if self.auth is not None:
            allowed = self.auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if allowed:
                return None
            return self.refuse(
                request, "Not allowed", "You are not allowed to use this dashboard.", 403
            )
        if self.token is not None:
            return self._token_guard(request)
        client = request.client.host if request.client else None
        server = request.scope.get("server")
        # The Host check stops DNS rebinding: another site's name pointed at 127.0.0.1
        # would otherwise make the browser treat this dashboard as that site.
        host = urllib.parse.urlsplit(f"//{request.headers.get('host', '')}").hostname
        if is_loopback(client) and is_loopback(server[0] if server else None) and is_loopback(host):
            return None
        return self.refuse(
            request,
            "Authentication required",
            "This dashboard has no token or auth callback, so it serves requests to and "
            "from a loopback address only (addressed to localhost or a loopback IP).",
            403,
        )

    def _token_guard(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            if self.token_matches(header[7:]):
                return None
            # A script, not a person: a login page would not help it.
            return PlainTextResponse(
                "invalid bearer token",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        session = request.cookies.get(SESSION_COOKIE, "")
        if session and secrets.compare_digest(session, self.session_value()):
            return None
        offered = request.query_params.get("token")
        if request.method == "GET" and offered is not None and self.token_matches(offered):
            # A one-time link: keep the session in a cookie, drop the token from the URL.
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urllib.parse.urlencode(query) if query else "")
            response = RedirectResponse(target, status_code=303)
            self.set_cookie(request, response, SESSION_COOKIE, self.session_value(), max_age=None)
            return response
        if request.method == "GET" and request.headers.get("x-acidic-live") != "1":
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = f"{base_path(request)}/login?next={urllib.parse.quote(here, safe='')}"
            return RedirectResponse(target, status_code=303)
        return PlainTextResponse(
            "authentication required", status_code=401, headers={"WWW-Authenticate": "Bearer"}
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
        if not cookie or not sent or not secrets.compare_digest(sent, self.csrf_for(cookie)):
            return PlainTextResponse(
                "CSRF check failed: reload the page and try again", status_code=403
            )
        return fields


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response that lacks them."""

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
