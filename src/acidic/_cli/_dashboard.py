"""``acidic dashboard``: serve the web dashboard with uvicorn."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

import click

from .._errors import AcidicError
from .._imports import import_target
from ._options import app_option, opened, traceback_option
from ._root import CLIError, CLIUsageError, database_url_option
from ._telemetry import metrics_options, start_metrics

__all__ = ["dashboard", "is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """Whether listening on ``host`` keeps the dashboard on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:  # a name: every address it resolves to must be loopback
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _load_callable(target: str) -> Callable[..., Any]:
    try:
        found = import_target(target, "--auth")
    except AcidicError as exc:
        raise CLIUsageError(str(exc)) from exc
    if not callable(found):
        raise CLIError(f"{target} is not a function (found {type(found).__name__})")
    return found


@click.command()
@database_url_option()
@app_option(
    "the acidic.App registering the jobs (its database is used); without it, runs' "
    "arguments and context are hidden, since their redact lists are unknown"
)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="ACIDIC_DASHBOARD_TOKEN",
    default=None,
    metavar="TOKEN",
    help="require this token (at least 8 characters) [env: ACIDIC_DASHBOARD_TOKEN]",
)
@click.option(
    "--auth",
    "auth_path",
    default=None,
    metavar="MODULE:FUNCTION",
    help="a function(request) -> bool deciding who may use the dashboard",
)
@click.option(
    "--refresh",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds between live updates of pages (0: none)",
)
@metrics_options
@traceback_option
def dashboard(
    database_url: str | None,
    app_path: str | None,
    host: str,
    port: int,
    token: str | None,
    auth_path: str | None,
    refresh: float,
    metrics_port: int | None,
    metrics_host: str,
    show_traceback: bool,
) -> None:
    """Serve the web dashboard: overview, runs, and retry, resume and cancel buttons.

    It listens on 127.0.0.1 by default. On any other address it refuses to start
    unless authentication is configured: --token (or $ACIDIC_DASHBOARD_TOKEN), or
    --auth module:function. Needs the dashboard extra: pip install 'acidic[dashboard]'.
    """
    try:
        import uvicorn  # noqa: PLC0415 - an optional dependency

        from ..dashboard import create_app  # noqa: PLC0415
    except ImportError as exc:
        raise CLIError(
            f"acidic dashboard needs the dashboard extra: pip install 'acidic[dashboard]' ({exc})"
        ) from exc
    if token is not None and auth_path is not None:
        raise CLIUsageError("give --token or --auth, not both")
    if token is not None and len(token) < 8:
        raise CLIUsageError("the dashboard token must be at least 8 characters long")
    if token is None and auth_path is None and not is_loopback_host(host):
        raise CLIUsageError(
            f"refusing to serve the dashboard on {host} (not a loopback address) without "
            "authentication: pass --token (or set $ACIDIC_DASHBOARD_TOKEN) or "
            "--auth module:function"
        )
    auth = _load_callable(auth_path) if auth_path is not None else None
    with opened(database_url, app_path, show_traceback) as app:
        app.manager.check_schema()  # fail now, not on the first page (same package)
        asgi = create_app(app, token=token, auth=auth, refresh=refresh)
        # The queues' depth and age, and what the dashboard's actions do.
        start_metrics(metrics_port, metrics_host, app)
        shown = f"[{host}]" if ":" in host else host
        how = " (log in with the token)" if token else ""
        click.echo(f"acidic dashboard: http://{shown}:{port}/{how}", err=True)
        config = uvicorn.Config(
            asgi,
            host=host,
            port=port,
            log_level=os.environ.get("ACIDIC_DASHBOARD_LOG_LEVEL", "warning"),
            access_log=False,
            server_header=False,
        )
        uvicorn.Server(config).run()
