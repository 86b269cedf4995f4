"""The telemetry options shared by ``acidic worker`` and ``acidic dashboard``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .._errors import AcidicError
from .._telemetry import JsonFormatter
from ._root import CLIError

__all__ = ["json_logging", "metrics_options", "start_metrics"]

F = TypeVar("F", bound=Callable[..., Any])


def metrics_options(func: F) -> F:
    """``--metrics-port`` and ``--metrics-host``."""
    func = click.option(
        "--metrics-host",
        default="0.0.0.0",  # noqa: S104 - Prometheus scrapes from another host
        show_default=True,
        help="address of the metrics endpoint",
    )(func)
    return click.option(
        "--metrics-port",
        default=None,
        type=click.IntRange(0, 65535),
        metavar="PORT",
        help="serve Prometheus metrics on this port (needs acidic[prometheus])",
    )(func)


def start_metrics(port: int | None, host: str, app: Any | None = None) -> None:
    """Serve the metrics endpoint if ``port`` is given (and report ``app``'s queues)."""
    if port is None:
        return
    from .._telemetry._prometheus import serve_metrics, watch  # noqa: PLC0415 - optional

    try:
        server = serve_metrics(port, host)
    except AcidicError as exc:
        raise CLIError(str(exc)) from exc
    if app is not None:
        watch(app)
    logging.getLogger("acidic.metrics").info(
        "serving metrics on http://%s:%d/metrics", server.host, server.port
    )


def json_logging(level: str) -> None:
    """Log one JSON object per line to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
